"""The one pixel decoder: text fields, a pixels column, numeric columns, and its messages."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import pytest

from agehpo.data import DataError
from agehpo.data.pixels import decode_fields, pixels_from_frame

ROW = np.arange(2304) % 256


def text(values: Iterable[object]) -> str:
    return " ".join(map(str, values))


def decode(fields: list[bytes], **kwargs: object) -> np.ndarray:
    blob = b"\n".join(fields)
    ends = np.cumsum([len(f) + 1 for f in fields]) - 1
    starts = ends - np.array([len(f) for f in fields])
    return decode_fields(blob, starts, ends, lambda i: f"row {i}", **kwargs)  # type: ignore[arg-type]


def test_fields_decode_exactly_fast_and_slow_path() -> None:
    rows = [ROW, ROW[::-1], np.full(2304, 255), np.zeros(2304, int)]
    fast = decode([text(r).encode() for r in rows])
    assert fast.dtype == np.uint8 and fast.tolist() == [list(r) for r in rows]
    # tabs, runs of spaces and leading zeros leave the fast path; the values stay the same
    slow = decode([b"\t " + text(r).replace(" ", "  ").encode() + b" " for r in rows[:1]])
    assert slow.tolist() == [list(ROW)]
    assert decode([b"007 " + text(ROW[1:]).encode()])[0, 0] == 7


def test_labels_decode_one_value_a_row() -> None:
    got = decode([b"1", b" 116 ", b"40"], column="age", lo=1, hi=116, per_row=1)
    assert got.ravel().tolist() == [1, 116, 40]


@pytest.mark.parametrize(
    ("field", "message"),
    [
        (
            text(ROW[:6]),
            "row 1: pixels has 6 values, expected 2304 space-separated integers 0..255",
        ),
        ("", "row 1: pixels is empty; expected 2304 space-separated integers 0..255"),
        (text([*ROW[:-1], 256]), "row 1: column 'pixels' value 256 is out of range"),
        (text([-1, *ROW[1:]]), "row 1: column 'pixels' value -1 is out of range"),
        (text([*ROW[:5], "1.5", *ROW[6:]]), "row 1: column 'pixels' value '1.5' is not an integer"),
    ],
)
def test_the_first_bad_row_is_named_with_its_problem(field: str, message: str) -> None:
    fields = [text(ROW).encode(), field.encode(), b"also bad"]
    with pytest.raises(DataError) as raised:
        decode(fields)
    assert str(raised.value).startswith(message)


def test_a_label_out_of_range() -> None:
    with pytest.raises(
        DataError,
        match=r"^row 2: column 'age' value 117 is out of range \(accepted: integers 1\.\.116\)$",
    ):
        decode([b"5", b"6", b"117"], column="age", lo=1, hi=116, per_row=1)


def test_where_may_raise_its_own_error() -> None:
    def where(i: int) -> str:
        raise DataError(f"row {i} has a stray comma")

    with pytest.raises(DataError, match=r"^row 0 has a stray comma$"):
        decode_fields(b"1 2", np.array([0]), np.array([3]), where)


def test_pixels_column_and_numeric_columns_give_the_same_faces() -> None:
    faces = np.stack([ROW, ROW[::-1]]).astype(np.uint8)
    from_text = pixels_from_frame(pd.DataFrame({"pixels": [text(r) for r in faces]}))
    numeric = pd.DataFrame(faces + np.where(faces < 255, 0.3, -0.3))  # rounded
    assert from_text.tolist() == faces.tolist()
    assert pixels_from_frame(numeric).tolist() == faces.tolist()
    assert pixels_from_frame(pd.DataFrame({"pixels": []})).shape == (0, 2304)


def test_frame_errors_name_the_row_and_the_column() -> None:
    with pytest.raises(DataError, match=r"^row 1: pixels is empty"):
        pixels_from_frame(pd.DataFrame({"pixels": [text(ROW), None]}))
    numeric = pd.DataFrame(np.zeros((2, 2304)))
    numeric.iloc[1, 7] = 300.0
    with pytest.raises(
        DataError, match=r"^row 1: column '7' value '300\.0' is out of range; expected 2304"
    ):
        pixels_from_frame(numeric)
    numeric = numeric.astype(object)
    numeric.iloc[0, 3] = "dark"
    with pytest.raises(DataError, match=r"^row 0: column '3' value 'dark' is non-numeric"):
        pixels_from_frame(numeric)
    with pytest.raises(DataError, match=r"input has columns \['image'\] \(1 in all\)"):
        pixels_from_frame(pd.DataFrame({"image": ["1 2"]}))
