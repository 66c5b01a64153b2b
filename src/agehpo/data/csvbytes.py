"""Reading a data file's bytes without trusting it: no binary data, no endless line.

A CSV of faces is read whole (the vectorized parser wants one buffer), but in pieces, each
checked as it arrives: a NUL byte means a binary file, and a line longer than any valid row
means the wrong file. Either stops the read at once, so a 200 MB single-line file costs one
piece of memory rather than gigabytes of parser work arrays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agehpo.data.faces import PIXELS_PER_IMAGE, DataError
from agehpo.errors import quote_path

_READ_BYTES = 8 << 20  # the file is read in pieces this size, checking line lengths as it comes
# The longest line a valid file can hold: age, ethnicity and gender of at most 3 digits, the
# pixels as 2304 values of at most 3 digits with single spaces, 4 commas, quotes around every
# field and a CR; plus slack for img_name (free text) and stray whitespace. A longer line is
# refused as soon as it is seen, before it is read whole (one 200 MB line took 3.5 GB to parse).
_ROW_SLACK_BYTES = 4096
MAX_LINE_BYTES = 3 * 3 + (3 * PIXELS_PER_IMAGE + PIXELS_PER_IMAGE - 1) + 4 + 2 * 5 + 1
MAX_LINE_BYTES += _ROW_SLACK_BYTES


def read_bounded(path: Path, size: int) -> bytearray:
    """The file's bytes, read in pieces; refuses binary data and over-long lines early.

    Args:
        path: The file.
        size: Its size; a file that grew meanwhile is read up to this size.

    Returns:
        Its content.

    Raises:
        DataError: At the first NUL byte (a binary file) or the first line longer than
            ``MAX_LINE_BYTES``, naming its line number; only that far is read.
        OSError: When the file cannot be read.
    """
    # Grown piece by piece (realloc, not copies, for big buffers), so a file refused early
    # costs only what was read; a sound file ends as one buffer of its size.
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
