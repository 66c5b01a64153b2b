"""Tests of agehpo.data: CSV reader/writer and cache, bins, splits, preprocessing."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from agehpo import data
from agehpo.data import DataError, FaceTable, facecache, facecsv, synthetic

HEADER = "age,ethnicity,gender,img_name,pixels"


@pytest.fixture(scope="module")
def table() -> FaceTable:
    return data.make_synthetic(n_samples=300, seed=7)


def pixel_text(n: int = 2304, start: int = 0) -> str:
    return " ".join(str((start + 37 * i) % 256) for i in range(n))


def write_rows(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def good_row(i: int = 0) -> str:
    return f"{20 + i % 50},{i % 5},{i % 2},img_{i}.jpg,{pixel_text(start=i)}"


def read_error(path: Path, tmp_path: Path) -> str:
    with pytest.raises(DataError) as info:
        data.read_csv(path, cache_dir=tmp_path / "cache")
    message = str(info.value)
    assert "\n" not in message
    return message


# ----------------------------------------------------------------------------- round trip


def test_write_then_read_returns_the_same_table(table: FaceTable, tmp_path: Path) -> None:
    path = tmp_path / "faces.csv"
    data.write_csv(table, path)
    back = data.read_csv(path, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(back.pixels, table.pixels)
    for name in ("age", "ethnicity", "gender"):
        np.testing.assert_array_equal(getattr(back, name), getattr(table, name))
    assert back.pixels.dtype == np.uint8 and back.age.dtype == np.int64
    assert back.digest == table.digest  # content hash, independent of the container
    assert back.source == str(path.resolve())
    assert len(back) == len(table) == 300


def test_written_csv_has_the_kaggle_layout(table: FaceTable, tmp_path: Path) -> None:
    path = tmp_path / "faces.csv"
    data.write_csv(table, path)
    lines = path.read_text().splitlines()
    assert lines[0] == HEADER and len(lines) == 301
    age, eth, gender, name, pixels = lines[1].split(",")
    assert (int(age), int(eth), int(gender)) == (table.age[0], table.ethnicity[0], table.gender[0])
    assert name.endswith(".jpg")
    assert [int(v) for v in pixels.split(" ")] == table.pixels[0].tolist()


def test_reader_accepts_crlf_quotes_blank_lines_and_tabs(tmp_path: Path) -> None:
    px = pixel_text()
    rows = [f'30,1,0,a.jpg,"{px}"', "", f"40,2,1,b.jpg,{px.replace(' ', chr(9), 5)}"]
    path = tmp_path / "odd.csv"
    path.write_bytes(("\r\n".join([HEADER, *rows]) + "\r\n").encode())
    back = data.read_csv(path, cache_dir=tmp_path / "cache")
    expected = [int(v) for v in px.split()]
    assert back.pixels.tolist() == [expected, expected]
    assert back.age.tolist() == [30, 40] and back.gender.tolist() == [0, 1]


def test_last_row_without_newline_and_empty_last_field(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("\n".join([HEADER, good_row(0), good_row(1)]))  # no final newline
    assert data.read_csv(path, cache_dir=tmp_path / "cache").age.tolist() == [20, 21]
    path.write_text("\n".join([HEADER, good_row(0), "30,1,0,empty.jpg,"]))
    assert "line 3: pixels is empty; expected 2304" in read_error(path, tmp_path)


def test_column_order_does_not_matter(tmp_path: Path) -> None:
    path = write_rows(
        tmp_path / "x.csv", [f"{pixel_text()},n.jpg,1,3,33"], "pixels,img_name,gender,ethnicity,age"
    )
    back = data.read_csv(path, cache_dir=tmp_path / "cache")
    assert (back.age[0], back.ethnicity[0], back.gender[0]) == (33, 3, 1)


# ----------------------------------------------------------------------------- cache


def test_second_read_comes_from_the_cache(
    table: FaceTable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, cache = tmp_path / "faces.csv", tmp_path / "cache"
    data.write_csv(table, path)
    first = data.read_csv(path, cache_dir=cache)
    assert len(list(cache.glob("csv-*.npy"))) == 1
    assert not list(cache.glob(".tmp-*"))  # the atomic write left no temporary behind

    def no_parse(*args: object) -> None:
        raise AssertionError("parsed again despite a valid cache")

    monkeypatch.setattr(facecsv, "_parse_csv", no_parse)
    second = data.read_csv(path, cache_dir=cache)
    np.testing.assert_array_equal(second.pixels, first.pixels)
    np.testing.assert_array_equal(second.age, first.age)
    assert second.digest == first.digest and second.source == first.source


def test_cache_is_invalidated_when_the_file_changes(table: FaceTable, tmp_path: Path) -> None:
    path, cache = tmp_path / "faces.csv", tmp_path / "cache"
    data.write_csv(table, path)
    data.read_csv(path, cache_dir=cache)
    other = data.make_synthetic(n_samples=120, seed=8)
    data.write_csv(other, path)
    back = data.read_csv(path, cache_dir=cache)
    np.testing.assert_array_equal(back.pixels, other.pixels)
    assert back.digest == other.digest
    assert len(list(cache.glob("csv-*.npy"))) == 1  # the stale entry was replaced


def test_concurrent_cold_loads_share_one_cache_entry(table: FaceTable, tmp_path: Path) -> None:
    path, cache = tmp_path / "faces.csv", tmp_path / "cache"
    data.write_csv(table, path)
    with ThreadPoolExecutor(4) as pool:  # each loader writes a temporary file, then renames
        tables = list(pool.map(lambda _: data.read_csv(path, cache_dir=cache), range(4)))
    assert {t.digest for t in tables} == {table.digest}
    assert len(list(cache.glob("csv-*.npy"))) == 1 and not list(cache.glob(".tmp-*"))
    np.testing.assert_array_equal(data.read_csv(path, cache_dir=cache).pixels, table.pixels)


def test_same_size_edit_is_detected(tmp_path: Path) -> None:
    path, cache = write_rows(tmp_path / "x.csv", [good_row(0)]), tmp_path / "cache"
    assert data.read_csv(path, cache_dir=cache).age[0] == 20
    path.write_text(path.read_text().replace("\n20,", "\n21,", 1))
    assert data.read_csv(path, cache_dir=cache).age[0] == 21


def test_corrupt_cache_file_is_ignored(table: FaceTable, tmp_path: Path) -> None:
    path, cache = tmp_path / "faces.csv", tmp_path / "cache"
    data.write_csv(table, path)
    data.read_csv(path, cache_dir=cache)
    (entry,) = cache.glob("csv-*.npy")
    entry.write_bytes(b"garbage")
    back = data.read_csv(path, cache_dir=cache)
    np.testing.assert_array_equal(back.pixels, table.pixels)


def test_default_cache_dir_follows_the_environment(
    table: FaceTable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGEHPO_CACHE_DIR", str(tmp_path / "env-cache"))
    assert data.default_cache_dir() == tmp_path / "env-cache"
    path = tmp_path / "faces.csv"
    data.write_csv(table, path)
    data.read_csv(path)
    assert len(list((tmp_path / "env-cache").glob("csv-*.npy"))) == 1
    monkeypatch.delenv("AGEHPO_CACHE_DIR")
    assert data.default_cache_dir() == Path.home() / ".cache" / "agehpo"


# ----------------------------------------------------------------------------- bad input


def test_missing_file(tmp_path: Path) -> None:
    message = read_error(tmp_path / "nope.csv", tmp_path)
    assert "not found" in message and "nope.csv" in message


def test_directory_is_not_a_csv(tmp_path: Path) -> None:
    assert "is not a file" in read_error(tmp_path, tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    assert "empty" in read_error(path, tmp_path)


def test_header_only(tmp_path: Path) -> None:
    path = tmp_path / "header.csv"
    path.write_text(HEADER + "\n")
    assert "no data rows" in read_error(path, tmp_path)


def test_missing_column(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "x.csv", ["20,1,0,a.jpg"], "age,ethnicity,gender,img_name")
    message = read_error(path, tmp_path)
    assert "missing column 'pixels'" in message and "required" in message


@pytest.mark.parametrize(("count", "bad_row"), [(2303, 2), (2305, 0), (1, 250)])
def test_wrong_pixel_count_names_the_line(count: int, bad_row: int, tmp_path: Path) -> None:
    rows = [good_row(i) for i in range(300)]
    rows[bad_row] = f"25,1,0,bad.jpg,{pixel_text(count)}"
    message = read_error(write_rows(tmp_path / "x.csv", rows), tmp_path)
    assert f"line {bad_row + 2}: pixels has {count} values, expected 2304" in message


@pytest.mark.parametrize(
    ("value", "fact"),
    [
        ("256", "256 is out of range"),
        ("-1", "-1 is out of range"),
        ("999", "999 is out of range"),
        ("1000", "1000 is out of range"),
        ("12.5", "'12.5' is not an integer"),
        ("abc", "'abc' is not an integer"),
        ("00012", None),
    ],
)
def test_bad_pixel_value_names_column_value_and_line(
    value: str, fact: str | None, tmp_path: Path
) -> None:
    rows = [good_row(i) for i in range(40)]
    values = pixel_text().split()
    values[100] = value
    rows[37] = "30,1,0,bad.jpg," + " ".join(values)
    path = write_rows(tmp_path / "x.csv", rows)
    if fact is None:  # leading zeros are still an integer in range
        assert data.read_csv(path, cache_dir=tmp_path / "cache").pixels[37, 100] == 12
        return
    message = read_error(path, tmp_path)
    assert "line 39" in message and "'pixels'" in message and fact in message
    assert "0..255" in message


@pytest.mark.parametrize(
    ("fields", "column", "value", "accepted"),
    [
        ("0,1,0", "age", "0", "1..116"),
        ("117,1,0", "age", "117", "1..116"),
        ("30,5,0", "ethnicity", "5", "0..4"),
        ("30,1,2", "gender", "2", "0..1"),
        ("thirty,1,0", "age", "'thirty'", "1..116"),
        (",1,0", "age", "''", "1..116"),
    ],
)
def test_label_out_of_range_names_column_value_and_line(
    fields: str, column: str, value: str, accepted: str, tmp_path: Path
) -> None:
    rows = [good_row(i) for i in range(10)]
    rows[4] = f"{fields},bad.jpg,{pixel_text()}"
    message = read_error(write_rows(tmp_path / "x.csv", rows), tmp_path)
    assert f"line 6: column '{column}' value {value}" in message and accepted in message


def test_missing_field_names_the_line(tmp_path: Path) -> None:
    rows = [good_row(0), f"30,1,bad.jpg,{pixel_text()}"]
    message = read_error(write_rows(tmp_path / "x.csv", rows), tmp_path)
    assert "line 3: expected 5 comma-separated fields, got 4" in message


def test_extra_comma_names_the_line(tmp_path: Path) -> None:
    rows = [good_row(0), f"30,1,0,bad,name.jpg,{pixel_text()}"]
    message = read_error(write_rows(tmp_path / "x.csv", rows), tmp_path)
    assert "line 3: expected 5 comma-separated fields, got 6" in message


def test_load_table_dispatches(table: FaceTable, tmp_path: Path) -> None:
    assert len(data.load_table("synthetic", n_samples=50, seed=2)) == 50
    path = tmp_path / "faces.csv"
    data.write_csv(table, path)
    assert data.load_table(str(path), cache_dir=tmp_path / "c").digest == table.digest
    with pytest.raises(DataError, match="synthetc"):
        data.load_table("synthetc")


def test_synthetic_faces_are_generated_once_then_loaded_from_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    first = data.load_table("synthetic", n_samples=60, seed=4, cache_dir=cache)
    assert [p.name.startswith("synthetic-4-60-") for p in cache.iterdir()] == [True]

    def no_generation(**_: object) -> FaceTable:
        raise AssertionError("generated again instead of loading the cache")

    monkeypatch.setattr(synthetic, "make_synthetic", no_generation)
    again = data.load_table("synthetic", n_samples=60, seed=4, cache_dir=cache)
    fresh = data.make_synthetic(n_samples=60, seed=4)
    for table in (first, again):
        assert (table.source, table.digest) == (fresh.source, fresh.digest)
        np.testing.assert_array_equal(table.pixels, fresh.pixels)
        np.testing.assert_array_equal(table.age, fresh.age)
        np.testing.assert_array_equal(table.gender, fresh.gender)
    with pytest.raises(AssertionError, match="generated again"):
        data.load_table("synthetic", n_samples=61, seed=4, cache_dir=cache)


def test_the_synthetic_key_changes_with_the_generators_code(tmp_path: Path) -> None:
    generator, constants = tmp_path / "synthetic.py", tmp_path / "faces.py"
    generator.write_text("EYES = 2\n")
    constants.write_text("EDGES = (10, 20)\n")
    key = facecache.content_key("v", generator, constants)
    assert facecache.content_key("v", generator, constants) == key
    constants.write_text("EDGES = (10, 21)\n")
    assert facecache.content_key("v", generator, constants) != key


def test_face_table_checks_shapes() -> None:
    with pytest.raises(DataError, match="shape"):
        FaceTable(
            np.zeros((2, 10), np.uint8), *(np.zeros(2, np.int64),) * 3, source="x", digest="y"
        )


# ----------------------------------------------------------------------------- bins and splits


def test_age_to_bin_edges() -> None:
    ages = np.array([1, 9, 10, 19, 20, 39, 40, 59, 60, 116])
    assert data.age_to_bin(ages).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert len(data.AGE_RANGES) == 5


def test_stratified_split_sizes_shares_and_determinism() -> None:
    rng = np.random.default_rng(0)
    bins = rng.choice(5, size=5000, p=[0.129, 0.065, 0.501, 0.192, 0.113])
    train, val, test = data.stratified_split(bins, seed=13)
    assert len(np.intersect1d(train, val)) == len(np.intersect1d(train, test)) == 0
    assert len(np.intersect1d(val, test)) == 0
    assert np.array_equal(np.sort(np.concatenate([train, val, test])), np.arange(5000))
    assert abs(len(test) / 5000 - 0.20) < 0.002
    assert abs(len(val) / 5000 - 0.08) < 0.002
    overall = np.bincount(bins, minlength=5) / 5000
    for part in (train, val, test):
        assert np.abs(np.bincount(bins[part], minlength=5) / len(part) - overall).max() < 0.01
    again = data.stratified_split(bins, seed=13)
    assert all(np.array_equal(a, b) for a, b in zip((train, val, test), again, strict=True))
    assert not np.array_equal(data.stratified_split(bins, seed=14)[2], test)


def test_stratified_split_rejects_bad_fractions() -> None:
    with pytest.raises(DataError, match="test_fraction"):
        data.stratified_split(np.zeros(10, np.int64), test_fraction=1.5)


# ----------------------------------------------------------------------------- tensors


def test_preprocess_shape_range_and_reference(table: FaceTable) -> None:
    x = data.preprocess(table.pixels, img_size=24)
    assert x.shape == (300, 576) and x.dtype == torch.float32
    assert x.min() >= -1.0 and x.max() <= 1.0
    for i in (0, 17, 299):  # whole-tensor result equals resizing the image alone
        one = torch.tensor(table.pixels[i], dtype=torch.float32).view(1, 1, 48, 48) / 255.0
        ref = F.interpolate(one, size=(24, 24), mode="bilinear", antialias=True)
        torch.testing.assert_close(x[i], (ref.flatten() - 0.5) / 0.5, atol=1e-5, rtol=0)
    flat = np.array([[0] * 2304, [255] * 2304], np.uint8)
    assert data.preprocess(flat, 12).tolist() == [[-1.0] * 144, [1.0] * 144]
    same = data.preprocess(table.pixels[:3], img_size=48)
    torch.testing.assert_close(
        same, torch.tensor(table.pixels[:3] / 127.5 - 1.0, dtype=torch.float32)
    )


@pytest.mark.parametrize("size", [0, 49, 2.5])
def test_preprocess_rejects_bad_img_size(size: object, table: FaceTable) -> None:
    with pytest.raises(DataError, match="img_size"):
        data.preprocess(table.pixels[:2], img_size=size)  # type: ignore[arg-type]


def test_prepare_builds_consistent_splits(table: FaceTable) -> None:
    prepared = data.prepare(table, img_size=16, split_seed=13)
    train, val, test = data.stratified_split(data.age_to_bin(table.age), seed=13)
    assert (len(prepared.train), len(prepared.val), len(prepared.test)) == (
        len(train),
        len(val),
        len(test),
    )
    x = data.preprocess(table.pixels, 16)
    torch.testing.assert_close(prepared.val.x, x[torch.from_numpy(val)])
    assert prepared.test.age_bin.tolist() == data.age_to_bin(table.age[test]).tolist()
    assert prepared.train.gender.dtype == torch.int64
    assert prepared.train.ethnicity.tolist() == table.ethnicity[train].tolist()
    assert (prepared.img_size, prepared.digest, prepared.source) == (16, table.digest, table.source)
    moved = prepared.val.to("cpu")
    assert len(moved) == len(val) and moved.x.device.type == "cpu"


def test_split_rows_gathers_an_index_and_views_a_slice(table: FaceTable) -> None:
    split = data.prepare(table, img_size=16).train
    index = torch.tensor([5, 0, 5, len(split) - 1])
    gathered = split.rows(index)
    for got, full in zip(gathered.tensors(), split.tensors(), strict=True):
        torch.testing.assert_close(got, full[index])
    sliced = split.rows(slice(10, 20))
    assert len(sliced) == 10
    assert sliced.x.data_ptr() == split.x[10].data_ptr()
    assert sliced.gender.tolist() == split.gender[10:20].tolist()


def test_one_endless_line_is_refused_before_it_is_read_whole(tmp_path: Path) -> None:
    from agehpo.data.facecsv import MAX_LINE_BYTES

    path = tmp_path / "long.csv"
    with path.open("wb") as f:  # 40 MB on one line after the header
        f.write((HEADER + "\n20,1,0,a.jpg,").encode())
        for _ in range(40):
            f.write(b"1 " * (1 << 19))
    message = read_error(path, tmp_path)
    assert f"line 2 is longer than {MAX_LINE_BYTES} bytes" in message
    assert "data=" in message and "long.csv" in message
    assert len(message) < 400


def test_the_longest_valid_row_is_accepted(tmp_path: Path) -> None:
    row = f'116,4,1,{"n" * 1000}.jpg,"{" ".join(["255"] * 2304)}"'
    path = write_rows(tmp_path / "wide.csv", [row, good_row(1)])
    assert data.read_csv(path, cache_dir=tmp_path / "cache").age.tolist() == [116, 21]


def test_a_binary_file_is_refused_without_echoing_it(tmp_path: Path) -> None:
    path = tmp_path / "faces.csv"
    path.write_bytes(bytes(range(256)) * 12)
    message = read_error(path, tmp_path)
    assert "not a text CSV file" in message and message.isprintable()
    assert len(message) < 300


def test_binary_header_without_nul_is_quoted_short_and_printable(tmp_path: Path) -> None:
    path = tmp_path / "faces.csv"
    path.write_bytes(bytes(range(1, 256)) * 12 + b"\n1,2\n")
    message = read_error(path, tmp_path)
    assert "missing column" in message and message.isprintable()
    assert len(message) < 300
