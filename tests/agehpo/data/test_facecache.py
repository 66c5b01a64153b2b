"""The face cache checks itself: a damaged entry is never used, it is rebuilt."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agehpo import data
from agehpo.data import FaceTable, facecache, facecsv


@pytest.fixture(scope="module")
def table() -> FaceTable:
    return data.make_synthetic(n_samples=40, seed=5)


def _zero_length(entry: Path) -> None:
    entry.write_bytes(b"")


def _garbage_in_the_middle(entry: Path) -> None:
    raw = bytearray(entry.read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + 14] = b"\xde\xad\xbe\xef garbage!"
    entry.write_bytes(bytes(raw))


def _truncated(entry: Path) -> None:
    raw = entry.read_bytes()
    entry.write_bytes(raw[: len(raw) - 100])


def _trailer_cut_off(entry: Path) -> None:
    raw = entry.read_bytes()
    entry.write_bytes(raw[:-45])


def _appended(entry: Path) -> None:
    entry.write_bytes(entry.read_bytes() + b"\0" * 14)


def _header_only(entry: Path) -> None:
    entry.write_bytes(entry.read_bytes()[:128])


DAMAGE: dict[str, Callable[[Path], None]] = {
    "zero length": _zero_length,
    "14 garbage bytes in the middle": _garbage_in_the_middle,
    "truncated": _truncated,
    "checksum trailer cut off": _trailer_cut_off,
    "bytes appended": _appended,
    "header only": _header_only,
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_csv_entry_is_detected_and_rebuilt(
    damage: str,
    table: FaceTable,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path, cache = tmp_path / "faces.csv", tmp_path / "cache"
    data.write_csv(table, path)
    data.read_csv(path, cache_dir=cache)
    (entry,) = cache.glob("csv-*.npy")
    DAMAGE[damage](entry)

    parsed: list[int] = []
    real_parse = facecsv._parse_csv

    def counting_parse(*args: Any) -> Any:
        parsed.append(1)
        return real_parse(*args)

    monkeypatch.setattr(facecsv, "_parse_csv", counting_parse)
    with caplog.at_level(logging.WARNING, logger="agehpo.data.facecache"):
        back = data.read_csv(path, cache_dir=cache)
    assert parsed == [1], "a damaged entry was used instead of parsing the CSV again"
    assert any("damaged" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(back.pixels, table.pixels)
    np.testing.assert_array_equal(back.age, table.age)
    assert back.digest == table.digest

    # The rebuilt entry is sound: the next read is a cache hit.
    monkeypatch.setattr(facecsv, "_parse_csv", lambda *a: pytest.fail("parsed a third time"))
    again = data.read_csv(path, cache_dir=cache)
    np.testing.assert_array_equal(again.pixels, table.pixels)
    assert len(list(cache.glob("csv-*.npy"))) == 1


def test_a_damaged_synthetic_entry_is_regenerated(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = data.load_table("synthetic", n_samples=30, seed=2, cache_dir=cache)
    (entry,) = cache.glob("synthetic-2-30-*.npy")
    _garbage_in_the_middle(entry)
    again = data.load_table("synthetic", n_samples=30, seed=2, cache_dir=cache)
    np.testing.assert_array_equal(again.pixels, first.pixels)
    assert again.digest == first.digest
    (fresh,) = cache.glob("synthetic-2-30-*.npy")
    assert facecache.load_cached(cache, fresh.stem.rsplit("-", 1)[0], "x") is not None


def test_an_entry_ends_in_the_sha256_of_its_arrays(table: FaceTable, tmp_path: Path) -> None:
    import hashlib

    path, cache = tmp_path / "faces.csv", tmp_path / "cache"
    data.write_csv(table, path)
    data.read_csv(path, cache_dir=cache)
    (entry,) = cache.glob("csv-*.npy")
    raw = entry.read_bytes()
    body = np.concatenate([table.pixels.ravel(), table.age, table.ethnicity, table.gender]).astype(
        np.uint8
    )
    assert raw.endswith(b"AGEHPO-SHA256" + hashlib.sha256(body.tobytes()).digest())


def test_keys_change_with_what_they_hash(tmp_path: Path) -> None:
    path = tmp_path / "f.bin"
    path.write_bytes(b"a" * 100)
    key = facecache.content_key("100|1", path)
    assert len(key) == 16 and key == facecache.content_key("100|1", path)
    assert key != facecache.content_key("100|2", path)  # mtime
    path.write_bytes(b"b" * 100)
    assert key != facecache.content_key("100|1", path)  # content of a small file
    assert facecache.content_key("", path) != facecache.content_key("", path, path)
    path.write_bytes(bytes(range(256)) * (5 << 12))  # 5 MiB: sampled blocks
    big = facecache.content_key("", path)
    with path.open("r+b") as f:
        f.seek(3 << 20)
        f.write(b"x")  # in none of the sampled blocks
    assert facecache.content_key("", path) == big
    with path.open("r+b") as f:
        f.write(b"x")  # in the first MiB
    assert facecache.content_key("", path) != big


def test_store_then_load_and_stale_entries_go(table: FaceTable, tmp_path: Path) -> None:
    arrays = (table.pixels, table.age, table.ethnicity, table.gender)
    assert facecache.load_cached(tmp_path, "s-k1", "src") is None  # a miss
    digest = facecache.store_cached(tmp_path, "s", "s-k1", arrays)
    assert digest == table.digest
    hit = facecache.load_cached(tmp_path, "s-k1", "src")
    assert hit is not None and hit.source == "src" and hit.digest == digest
    assert hit.pixels.tolist() == table.pixels.tolist() and hit.age.tolist() == table.age.tolist()
    facecache.store_cached(tmp_path, "s", "s-k2", arrays)
    assert [p.name for p in tmp_path.glob("s-*.npy")] == [f"s-k2-{digest}.npy"]
    assert facecache.load_cached(tmp_path, "s-k1", "src") is None
