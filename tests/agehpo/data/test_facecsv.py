"""The age_gender.csv reader and writer on small real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agehpo.data import DataError, FaceTable, make_synthetic, read_csv, write_csv
from agehpo.errors import quote_path

HEADER = "age,ethnicity,gender,img_name,pixels"
PIXELS = " ".join(str(v % 256) for v in range(2304))


def error_of(path: Path, tmp_path: Path) -> str:
    with pytest.raises(DataError) as raised:
        read_csv(path, cache_dir=tmp_path / "cache")
    return str(raised.value)


def test_round_trip_keeps_every_value(tmp_path: Path) -> None:
    table = make_synthetic(n_samples=7, seed=2)
    path = tmp_path / "faces.csv"
    write_csv(table, path)
    back = read_csv(path, cache_dir=tmp_path / "cache")
    assert back.pixels.tolist() == table.pixels.tolist()
    assert back.age.tolist() == table.age.tolist() and back.gender.tolist() == table.gender.tolist()
    assert back.ethnicity.tolist() == table.ethnicity.tolist()
    assert back.digest == table.digest and back.source == str(path.resolve())
    lines = path.read_text().splitlines()
    assert lines[0] == HEADER and len(lines) == 8
    assert lines[1].startswith(
        f"{table.age[0]},{table.ethnicity[0]},{table.gender[0]},synthetic_00000.jpg,"
    )
    assert not list(tmp_path.glob(".faces.csv.*"))  # no temporary file left behind


def test_quotes_crlf_bom_blank_lines_and_column_order(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    header = '\ufeffpixels,"gender",age,ethnicity,img_name\r\n'
    body = f'{header}"{PIXELS}",1,30,4,a.jpg\r\n\r\n{PIXELS},0,5,0,b.jpg\r\n'
    path.write_bytes(body.encode())
    table = read_csv(path, cache_dir=tmp_path / "cache")
    assert table.age.tolist() == [30, 5] and table.gender.tolist() == [1, 0]
    assert table.ethnicity.tolist() == [4, 0] and table.pixels[0, :3].tolist() == [0, 1, 2]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            [f"30,1,0,a.jpg,{PIXELS}", "30,1,0,b.jpg,1 2 3 4 5 6"],
            "line 3: pixels has 6 values, expected 2304 space-separated integers 0..255",
        ),
        (
            [f"30,1,0,a.jpg,{PIXELS} 256"],
            "line 2: pixels has 2305 values, expected 2304 space-separated integers 0..255",
        ),
        (
            [f"30,1,0,a.jpg,300 {PIXELS[2:]}"],
            "line 2: column 'pixels' value 300 is out of range (accepted: integers 0..255)",
        ),
        (
            [f"30,1,0,a.jpg,{PIXELS}", "", f"30,1,0,c.jpg,x {PIXELS[2:]}"],
            "line 4: column 'pixels' value 'x' is not an integer (accepted: integers 0..255)",
        ),
        (
            [f"117,1,0,a.jpg,{PIXELS}"],
            "line 2: column 'age' value 117 is out of range (accepted: integers 1..116)",
        ),
        ([f"30,1,a.jpg,{PIXELS}"], "line 2: expected 5 comma-separated fields, got 4"),
        ([f"30,1,0,a,b.jpg,{PIXELS}"], "line 2: expected 5 comma-separated fields, got 6"),
    ],
)
def test_malformed_rows_name_their_line(rows: list[str], message: str, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    assert error_of(path, tmp_path) == f"data={quote_path(str(path))} {message}"


def test_empty_file_and_header_only(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    assert error_of(path, tmp_path).endswith(
        "is empty; expected the header " + HEADER + " and rows"
    )
    path.write_text("\n\n")
    assert "is empty" in error_of(path, tmp_path)
    path.write_text(HEADER + "\n")
    assert error_of(path, tmp_path).endswith(
        "has a header but no data rows; expected at least one row"
    )


def test_missing_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text(f"age,gender,pixels\n30,1,{PIXELS}\n")
    assert "missing column 'ethnicity' (header is 'age, gender, pixels'" in error_of(path, tmp_path)


def test_cache_hit_serves_the_same_table_and_an_edit_misses(tmp_path: Path) -> None:
    path, cache = tmp_path / "faces.csv", tmp_path / "cache"
    table: FaceTable = make_synthetic(n_samples=3, seed=4)
    write_csv(table, path)
    first = read_csv(path, cache_dir=cache)
    [entry] = cache.glob("csv-*.npy")
    assert entry.name.endswith(f"-{first.digest}.npy")
    path.write_text("age,ethnicity,gender,img_name,pixels\n30,1,0,a.jpg,1 2\n")
    with pytest.raises(DataError, match="line 2: pixels has 2 values"):  # a miss: parsed
        read_csv(path, cache_dir=cache)
    write_csv(table, path)
    hit = read_csv(path, cache_dir=cache)
    assert hit.pixels.tolist() == table.pixels.tolist() and hit.digest == table.digest
    assert np.array_equal(hit.age, table.age) and len(list(cache.glob("csv-*.npy"))) == 1
