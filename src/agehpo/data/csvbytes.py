"""Reading a data file's bytes without trusting it: no binary data, no endless line."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agehpo.data.faces import PIXELS_PER_IMAGE, DataError
from agehpo.errors import quote_path

_READ_BYTES = 8 << 20
# The longest valid row (3-digit labels and pixels, single spaces, commas, quotes on every
# field, a CR) plus 4096 bytes for img_name: a 200 MB line took 3.5 GB to parse.
MAX_LINE_BYTES = 3 * 3 + (4 * PIXELS_PER_IMAGE - 1) + 4 + 2 * 5 + 1 + 4096


def read_bounded(path: Path, size: int) -> bytearray:
    """The file's bytes, read in pieces so that a NUL byte or an over-long line stops early.

    Args:
        path: The file.
        size: Its size; a file that grew meanwhile is read up to this size.

    Returns:
        Its content.

    Raises:
        DataError: At the first NUL byte or line longer than ``MAX_LINE_BYTES``.
        OSError: When the file cannot be read.
    """
    buf = bytearray()
    line_start, lineno = 0, 1
    with path.open("rb") as f:
        while len(buf) < size:
            piece = f.read(min(_READ_BYTES, size - len(buf)))
            if not piece:
                break  # the file shrank meanwhile
            pos = len(buf)
            values = np.frombuffer(piece, np.uint8)
            zero = np.flatnonzero(values == 0)
            if zero.size:
                raise DataError(
                    f"data={quote_path(str(path))} is not a text CSV file (a NUL byte at offset "
                    f"{pos + int(zero[0])}); expected an age_gender.csv file"
                )
            ends = np.flatnonzero(values == 10) + pos
            starts = np.concatenate(([line_start], ends[:-1] + 1))
            long = np.flatnonzero(ends - starts > MAX_LINE_BYTES)
            if long.size:
                raise _too_long(path, lineno + int(long[0]))
            if ends.size:
                lineno, line_start = lineno + ends.size, int(ends[-1]) + 1
            if pos + len(piece) - line_start > MAX_LINE_BYTES:  # the line goes on: stop now
                raise _too_long(path, lineno)
            buf += piece
    return buf


def _too_long(path: Path, lineno: int) -> DataError:
    return DataError(
        f"data={quote_path(str(path))} line {lineno} is longer than {MAX_LINE_BYTES} bytes, "
        "the most a row of age,ethnicity,gender,img_name and 2304 pixel values can take; expected "
        "an age_gender.csv file"
    )
