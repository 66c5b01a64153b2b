"""The Kaggle age_gender.csv format: a fast, cached, validating reader and a writer."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import numpy as np

from agehpo.data.csvbytes import read_bounded
from agehpo.data.facecache import file_key, load_cached, store_cached
from agehpo.data.faces import (
    CSV_COLUMNS,
    LABEL_RANGES,
    PIXELS_PER_IMAGE,
    DataError,
    FaceTable,
    default_cache_dir,
)
from agehpo.data.pixels import decode_fields
from agehpo.errors import quote, quote_path


def read_csv(path: str | Path, *, cache_dir: Path | None = None) -> FaceTable:
    """Read and validate an age_gender.csv file, through the parsed-array cache.

    Args:
        path: The CSV file (header ``age,ethnicity,gender,img_name,pixels``).
        cache_dir: Folder of the cache; ``default_cache_dir()`` when None.

    Returns:
        The table; ``source`` is the resolved path.

    Raises:
        DataError: Missing or empty file, missing column, or a malformed row (with its line).
    """
    path = Path(path)
    try:
        st = path.stat()
    except OSError:
        raise DataError(
            f"data={quote_path(str(path))}: CSV file not found; expected 'synthetic' or the path "
            "of an age_gender.csv file"
        ) from None
    where = f"data={quote_path(str(path))}"
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{where} is not a file; expected the path of an age_gender.csv file")
    if st.st_size == 0:
        raise _empty(where)
    source = str(path.resolve())
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    stem = "csv-" + hashlib.blake2b(source.encode(), digest_size=8).hexdigest()
    key = f"{stem}-{file_key(path, st.st_size, st.st_mtime_ns)}"
    cached = load_cached(cache, key, source)
    if cached is not None:
        return cached
    try:  # (read, not mapped: a mapped file truncated by another process would SIGBUS)
        raw = read_bounded(path, st.st_size)
    except OSError as exc:
        raise DataError(
            f"data={quote_path(str(path))} cannot be read ({exc.strerror or exc}); "
            "expected a readable age_gender.csv file"
        ) from None
    arrays = _parse_csv(raw, where)
    return FaceTable(*arrays, source=source, digest=store_cached(cache, stem, key, arrays))


def _empty(where: str) -> DataError:
    header = ",".join(CSV_COLUMNS)
    return DataError(f"{where} is empty; expected the header {header} and rows")


def _parse_csv(
    data: bytes | bytearray, name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parse CSV bytes into pixels (uint8 (N, 2304)) and age, ethnicity, gender (int64).

    ``name`` starts every message, e.g. ``data='faces.csv'``.
    """
    start = 3 if data[:3] == b"\xef\xbb\xbf" else 0
    eol = data.find(b"\n", start) % (len(data) + 1)  # no newline: the header is everything
    columns = [
        c.strip().strip('"').strip() for c in data[start:eol].decode("utf-8", "replace").split(",")
    ]
    if not any(columns) and not data[eol:].strip():  # (short-circuits on any real header)
        raise _empty(name)
    required = ("age", "ethnicity", "gender", "pixels")
    missing = ", ".join(repr(c) for c in required if c not in columns)
    if missing:
        raise DataError(
            f"{name}: missing column {missing} (header is {quote(', '.join(columns))}; "
            f"required: {', '.join(required)})"
        )
    rows = _Rows(data, eol + 1, len(columns), [columns.index(c) for c in required], name)
    if not rows.lines:
        raise DataError(f"{name} has a header but no data rows; expected at least one row")
    age, eth, gender = (
        rows.decode(k, col, lo, hi).ravel().astype(np.int64)
        for k, (col, lo, hi) in enumerate(LABEL_RANGES)
    )
    return rows.decode(3, "pixels", 0, 255, PIXELS_PER_IMAGE), age, eth, gender


class _Rows:
    """Line numbers and field offsets of the data rows, and the chunked field decoder."""

    def __init__(
        self, data: bytes | bytearray, pos: int, ncols: int, wanted: Sequence[int], name: str
    ):
        self.data, self.name, self.ncols = data, name, ncols
        # flat int lists, not tuples: nothing here for the cyclic GC to traverse over and over
        self.lines: list[int] = []
        self.bounds: tuple[list[int], list[int]] = ([], [])
        self.fields: list[tuple[list[int], list[int]]] = [([], []) for _ in wanted]
        find, n, lineno = data.find, len(data), 1
        while pos < n:
            lineno += 1
            end = find(b"\n", pos)
            end = n if end < 0 else end
            stop = end - 1 if end > pos and data[end - 1] == 13 else end  # CRLF
            if stop > pos:  # blank lines are skipped, but still counted
                cut, cuts = pos - 1, [pos - 1]
                for _ in range(ncols - 1):
                    cut = find(b",", cut + 1, stop)
                    if cut < 0:
                        self._bad_fields(lineno, pos, stop)
                    cuts.append(cut)
                cuts.append(stop)
                for (starts, ends), col in zip(self.fields, wanted, strict=True):
                    s, e = cuts[col] + 1, cuts[col + 1]
                    if e - s >= 2 and data[s] == 34 and data[e - 1] == 34:  # "quoted"
                        s, e = s + 1, e - 1
                    starts.append(s)
                    ends.append(e)
                self.lines.append(lineno)
                self.bounds[0].append(pos)
                self.bounds[1].append(stop)
            pos = end + 1

    def _bad_fields(self, lineno: int, start: int, stop: int) -> NoReturn:
        got = self.data[start:stop].count(b",") + 1
        raise DataError(
            f"{self.name} line {lineno}: expected {self.ncols} comma-separated fields, got {got}"
        )

    def where(self, j: int) -> str:
        """Names data row ``j``, unless its comma count is the problem (then raises that)."""
        line, start, stop = self.lines[j], self.bounds[0][j], self.bounds[1][j]
        if self.data[start:stop].count(b",") + 1 != self.ncols:
            self._bad_fields(line, start, stop)
        return f"{self.name} line {line}"

    def decode(self, k: int, column: str, lo: int, hi: int, per_row: int = 1) -> np.ndarray:
        """Wanted field ``k`` of every row as a (rows, per_row) uint8 array."""
        starts, ends = (np.array(x, dtype=np.int64) for x in self.fields[k])
        return decode_fields(self.data, starts, ends, self.where, column, lo, hi, per_row)


def write_csv(table: FaceTable, path: str | Path) -> None:
    """Write ``table`` in the Kaggle age_gender.csv format (temporary file, then rename).

    Args:
        table: The faces to write.
        path: Destination file; its folder must exist.
    """
    path = Path(path)
    text = np.zeros((256, 4), np.uint8)  # "v " for every byte value, zero-padded
    for v in range(256):
        text[v, : len(str(v)) + 1] = np.frombuffer(f"{v} ".encode(), np.uint8)
    last = text.copy()  # a row's final value ends the line instead
    last[np.arange(256), (text != 0).sum(1) - 1] = 10
    labels = np.stack([table.age, table.ethnicity, table.gender], axis=1).tolist()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write((",".join(CSV_COLUMNS) + "\n").encode())
            for i0 in range(0, len(table), 1024):
                px = table.pixels[i0 : i0 + 1024]
                chars = text[px]
                chars[:, -1] = last[px[:, -1]]
                body = memoryview(chars.reshape(-1).compress(chars.reshape(-1) != 0))
                ends = [0, *np.cumsum((chars != 0).sum(axis=(1, 2))).tolist()]
                parts: list[bytes | memoryview] = []
                for j, (age, eth, gender) in enumerate(labels[i0 : i0 + 1024]):
                    parts += [
                        f"{age},{eth},{gender},synthetic_{i0 + j:05d}.jpg,".encode(),
                        body[ends[j] : ends[j + 1]],
                    ]
                f.write(b"".join(parts))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
