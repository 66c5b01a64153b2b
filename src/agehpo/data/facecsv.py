"""The Kaggle age_gender.csv format: a bounded, cached, validating reader and a writer."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path
from typing import BinaryIO

import numpy as np

from agehpo.data import facecache
from agehpo.data.faces import CSV_COLUMNS, LABEL_RANGES, PIXELS_PER_IMAGE, DataError, FaceTable
from agehpo.data.pixels import decode_fields
from agehpo.errors import quote, quote_path

# The longest valid row (3-digit labels and pixels, single spaces, commas, quotes on every
# field, a CR) plus 4096 bytes for img_name: a 200 MB line took 3.5 GB to parse.
MAX_LINE_BYTES = 3 * 3 + (4 * PIXELS_PER_IMAGE - 1) + 4 + 2 * 5 + 1 + 4096


def read_csv(path: str | Path, *, cache_dir: Path | None = None) -> FaceTable:
    """Read and validate an age_gender.csv file through the cache (``default_cache_dir()``
    when None); a DataError names a bad line. The table's ``source`` is the resolved path."""
    path = Path(path)
    where = f"data={quote_path(str(path))}"
    try:
        st = path.stat()
    except OSError:
        raise DataError(
            f"{where}: CSV file not found; expected 'synthetic' or the path of an age_gender.csv "
            "file"
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise DataError(f"{where} is not a file; expected the path of an age_gender.csv file")
    source = str(path.resolve())
    cache = Path(cache_dir) if cache_dir is not None else facecache.default_cache_dir()
    stem = "csv-" + hashlib.blake2b(source.encode(), digest_size=8).hexdigest()
    try:  # (read, not mapped: a mapped file truncated by another process would SIGBUS)
        key = f"{stem}-{facecache.content_key(f'{st.st_size}|{st.st_mtime_ns}', path)}"
        if (cached := facecache.load_cached(cache, key, source)) is not None:
            return cached
        raw, newlines, commas = _read_bounded(path, st.st_size, where)
    except OSError as exc:
        raise DataError(
            f"{where} cannot be read ({exc.strerror or exc}); expected a readable age_gender.csv "
            "file"
        ) from None
    arrays = _parse_csv(raw, newlines, commas, where)
    digest = facecache.store_cached(cache, stem, key, arrays)
    return FaceTable(*arrays, source=source, digest=digest)


def _read_bounded(path: Path, size: int, where: str) -> tuple[bytearray, np.ndarray, np.ndarray]:
    """The first ``size`` bytes and their newline and comma offsets; stops at a NUL or long line."""
    buf, found = bytearray(), ([np.empty(0, np.int64)], [np.empty(0, np.int64)])
    last, lineno = -1, 1  # the last newline's offset, the current line's number
    with path.open("rb") as f:
        while len(buf) < size:
            piece = f.read(min(8 << 20, size - len(buf)))
            if not piece:
                break  # the file shrank meanwhile
            pos, values = len(buf), np.frombuffer(piece, np.uint8)
            if (zero := np.flatnonzero(values == 0)).size:
                raise DataError(
                    f"{where} is not a text CSV file (a NUL byte at offset {pos + int(zero[0])}); "
                    "expected an age_gender.csv file"
                )
            ends = np.flatnonzero(values == 10) + pos
            lengths = np.diff(np.concatenate(([last], ends, [pos + len(piece)]))) - 1
            if (long := np.flatnonzero(lengths > MAX_LINE_BYTES)).size:  # (the last one goes on)
                raise DataError(
                    f"{where} line {lineno + int(long[0])} is longer than {MAX_LINE_BYTES} bytes, "
                    "the most a row of age,ethnicity,gender,img_name and 2304 pixel values can "
                    "take; expected an age_gender.csv file"
                )
            lineno, last = lineno + ends.size, int(ends[-1]) if ends.size else last
            found[0].append(ends)
            found[1].append(np.flatnonzero(values == 44) + pos)
            buf += piece
    return buf, np.concatenate(found[0]), np.concatenate(found[1])


def _parse_csv(
    data: bytearray, newlines: np.ndarray, commas: np.ndarray, name: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pixels (uint8 (N, 2304)), age, ethnicity and gender (int64); ``name`` starts messages."""
    bounds = np.append(newlines, len(data))  # line k ends at bounds[k]
    start = 3 if data[:3] == b"\xef\xbb\xbf" else 0
    header = data[start : bounds[0]].decode("utf-8", "replace")
    columns = [c.strip().strip('"').strip() for c in header.split(",")]
    if not any(columns) and not data[bounds[0] :].strip():  # (short-circuits on a real header)
        raise DataError(f"{name} is empty; expected the header {','.join(CSV_COLUMNS)} and rows")
    required = ("age", "ethnicity", "gender", "pixels")
    missing = ", ".join(repr(c) for c in required if c not in columns)
    if missing:
        raise DataError(
            f"{name}: missing column {missing} (header is {quote(', '.join(columns))}; "
            f"required: {', '.join(required)})"
        )
    arr, n = np.frombuffer(data, np.uint8), len(columns) - 1
    starts, stops = bounds[:-1] + 1, bounds[1:]
    stops = stops - ((stops > starts) & (arr[stops - 1] == 13))  # CRLF
    lines = np.flatnonzero(stops > starts)  # blank lines are skipped, but still counted
    if not lines.size:
        raise DataError(f"{name} has a header but no data rows; expected at least one row")
    starts, stops = starts[lines], stops[lines]
    first = np.searchsorted(commas, starts)
    count = np.searchsorted(commas, stops) - first

    def where(j: int) -> str:
        if count[j] != n:
            raise DataError(
                f"{name} line {lines[j] + 2}: expected {n + 1} comma-separated fields, got "
                f"{count[j] + 1}"
            )
        return f"{name} line {lines[j] + 2}"

    if (short := np.flatnonzero(count < n)).size:
        where(int(short[0]))
    cuts = np.column_stack((starts - 1, commas[first[:, None] + np.arange(n)], stops))

    def decode(column: str, lo: int, hi: int, per_row: int = 1) -> np.ndarray:
        s, e = cuts[:, columns.index(column)] + 1, cuts[:, columns.index(column) + 1]
        quoted = e - s >= 2
        quoted[quoted] = (arr[s[quoted]] == 34) & (arr[e[quoted] - 1] == 34)
        return decode_fields(data, s + quoted, e - quoted, where, column, lo, hi, per_row)

    age, eth, gender = (decode(*label).ravel().astype(np.int64) for label in LABEL_RANGES)
    return decode("pixels", 0, 255, PIXELS_PER_IMAGE), age, eth, gender


def write_csv(table: FaceTable, path: str | Path) -> None:
    """Write ``table`` in the age_gender.csv format to ``path`` (its folder must exist)."""
    path = Path(path)
    text = np.array([list(f"{v} ".encode().ljust(4, b"\0")) for v in range(256)], np.uint8)
    last = text.copy()  # a row's final value ends the line instead
    last[np.arange(256), (text != 0).sum(1) - 1] = 10
    labels = np.stack([table.age, table.ethnicity, table.gender], axis=1).tolist()

    def write(f: BinaryIO) -> str:
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
        return path.name

    facecache.write_atomic(path.parent, f".{path.name}.", write)
