"""The one decoder of the pixel format: 2304 integers 0..255 per face, as text or columns."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np

from agehpo.data.faces import PIXELS_PER_IMAGE, DataError
from agehpo.errors import quote

if TYPE_CHECKING:
    import pandas as pd

_CHUNK_BYTES = 1 << 20  # one chunk's work arrays stay in the CPU caches
_SENTINEL = 1000  # above any 3-digit value: marks each field's end in the decoded stream
_Arr = np.ndarray
_Bytes = bytes | bytearray | memoryview


def decode_fields(
    data: bytes | bytearray,
    starts: np.ndarray,
    ends: np.ndarray,
    where: Callable[[int], str],
    column: str = "pixels",
    lo: int = 0,
    hi: int = 255,
    per_row: int = PIXELS_PER_IMAGE,
) -> np.ndarray:
    """The fields ``data[starts[i]:ends[i]]`` of ``per_row`` space-separated integers
    ``lo..hi`` (``hi`` <= 255) as uint8 (rows, per_row); ``where(i)`` names row ``i`` in the
    DataError for the first bad row (or raises its own), ``column`` names the field."""
    size, step = len(starts), max(1, _CHUNK_BYTES // (4 * per_row))
    out = np.empty((size, per_row), np.uint8)
    if not size:
        return out
    # short fields as bytes copies: memoryviews are GC-tracked, thousands set off collections
    src = memoryview(data) if per_row > 1 else data
    cap = int((ends - starts).max() + 1) * min(step, size)

    def run(batch: range) -> list[int]:
        scratch, failed = _Scratch(cap), []
        for i in batch:
            got = scratch.rows(src, starts[i : i + step], ends[i : i + step], per_row, lo, hi)
            if got is None:
                failed.append(i)
            else:
                out[i : i + len(got)] = got
        return failed

    chunks = range(0, size, step)
    threads = min(4, os.cpu_count() or 1, len(chunks))
    with ThreadPoolExecutor(threads) as pool:
        parts = pool.map(run, [chunks[t::threads] for t in range(threads)])
        failed = sorted(i for part in parts for i in part)
    for i in failed:  # exact re-read, in row order, to name the first bad row
        for j in range(i, min(i + step, size)):
            field = bytes(data[int(starts[j]) : int(ends[j])])
            tokens = field.split() if per_row > 1 else [field.strip()]
            if problem := _problem(tokens, column, lo, hi, per_row):
                raise DataError(f"{where(j)}: {problem}")
            out[j] = [int(t) for t in tokens]
    return out


def _problem(tokens: list[bytes], column: str, lo: int, hi: int, per_row: int) -> str | None:
    """What is wrong with one field's tokens, or None."""
    expected = f"{per_row} space-separated integers {lo}..{hi}"
    if not tokens:
        return f"{column} is empty; expected {expected}"
    if len(tokens) != per_row:
        return f"{column} has {len(tokens)} values, expected {expected}"
    accepted = f"(accepted: integers {lo}..{hi})"
    for tok in tokens:
        if not (tok.isdigit() or (tok[:1] == b"-" and tok[1:].isdigit())):
            return f"column '{column}' value {quote(tok, 20)} is not an integer {accepted}"
        if not lo <= int(tok) <= hi:
            return f"column '{column}' value {int(tok)} is out of range {accepted}"
    return None


class _Scratch:
    """Reusable work arrays for decoding chunks made of digits, spaces and newlines."""

    def __init__(self, cap: int):
        self.d, self.t = np.empty(cap, np.uint8), np.empty(cap, np.uint8)
        self.v, self.w = np.empty(cap, np.uint16), np.empty(cap, np.uint16)
        self.isd, self.m = np.empty(cap, np.bool_), np.empty(cap, np.bool_)

    def rows(self, src: _Bytes, s: _Arr, e: _Arr, per_row: int, lo: int, hi: int) -> _Arr | None:
        """The fields ``src[s[k]:e[k]]`` as (len(s), per_row) values; None if a check fails."""
        blob = b"\n".join([src[i:j] for i, j in zip(s.tolist(), e.tolist(), strict=True)])
        a, newlines = np.frombuffer(blob + b"\n", np.uint8), np.cumsum(e - s + 1) - 1
        n = a.size
        d = np.subtract(a, np.uint8(48), out=self.d[:n])  # wraps: non-digits become >= 10
        isd, m = np.less(d, 10, out=self.isd[:n]), self.m[:n]
        spaces = np.count_nonzero(np.equal(a, 32, out=m))
        if n < 4 or np.count_nonzero(isd) + spaces + newlines.size != n:
            return None  # (blobs this short are left to the exact path)
        pair = np.logical_and(isd[1:], isd[:-1], out=m[: n - 1])  # digit after a digit
        if np.logical_and(pair[2:], pair[:-2], out=self.t[: n - 3].view(np.bool_)).any():
            return None  # a number of 4+ digits
        np.multiply(d, isd, out=d)  # digit values, 0 on separators
        v, t = self.v[:n], self.t
        v[:] = d
        v[1:] += np.multiply(d[:-1], np.uint8(10), out=t[: n - 1])  # tens, if a digit
        np.multiply(d[:-2], pair[:-1], out=t[: n - 2])  # hundreds, if two digits follow
        v[2:] += np.multiply(t[: n - 2], np.uint16(100), out=self.w[: n - 2])
        np.greater(isd[:-1], isd[1:], out=m[: n - 1])  # the last digit of each number
        m[newlines] = True
        v[newlines] = _SENTINEL  # proves each field's value count
        vals = v.compress(m)
        if vals.size != s.size * (per_row + 1):
            return None
        body = vals.reshape(s.size, per_row + 1)
        got = body[:, :-1]
        ok = (body[:, -1] == _SENTINEL).all() and lo <= got.min() and got.max() <= hi
        return got if ok else None


def pixels_from_frame(frame: pd.DataFrame) -> np.ndarray:
    """uint8 faces (rows, 2304) from a ``pixels`` column of strings or 2304 numeric columns;
    a DataError names the first bad row."""
    if "pixels" in frame.columns:
        fields = [str(s).encode() for s in frame["pixels"].fillna("")]
        ends = np.cumsum([len(f) + 1 for f in fields], dtype=np.int64) - 1
        starts = ends - [len(f) for f in fields]
        return decode_fields(b"\n".join(fields), starts, ends, lambda i: f"row {i}")
    if frame.shape[1] != PIXELS_PER_IMAGE:
        more = "..." if frame.shape[1] > 5 else ""
        raise DataError(
            f"input has columns {list(frame.columns)[:5]}{more} ({frame.shape[1]} in all); "
            f"expected a 'pixels' column of space-separated values or {PIXELS_PER_IMAGE} "
            "numeric columns"
        )
    try:
        values = frame.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        import pandas as pd

        values = frame.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = np.argwhere(~((values >= 0) & (values <= 255)))  # NaN too
    if bad.size:
        row, col = (int(k) for k in bad[0])
        kind = "non-numeric" if np.isnan(values[row, col]) else "out of range"
        name, value = quote(frame.columns[col]), quote(frame.iat[row, col], 20)
        raise DataError(
            f"row {row}: column {name} value {value} is {kind}; "
            f"expected {PIXELS_PER_IMAGE} numeric columns 0..255"
        )
    return np.rint(values).astype(np.uint8)
