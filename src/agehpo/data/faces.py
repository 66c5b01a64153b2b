"""The face data's vocabulary: its format constants, labels, errors and the table type."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from agehpo.errors import UserError

AGE_RANGES: tuple[str, ...] = ("0-9", "10-19", "20-39", "40-59", "60+")
AGE_BIN_EDGES: tuple[int, ...] = (10, 20, 40, 60)
IMAGE_SIDE = 48
PIXELS_PER_IMAGE = IMAGE_SIDE * IMAGE_SIDE
CSV_COLUMNS: tuple[str, ...] = ("age", "ethnicity", "gender", "img_name", "pixels")
LABEL_RANGES = (("age", 1, 116), ("ethnicity", 0, 4), ("gender", 0, 1))


class DataError(UserError, ValueError):
    """Bad input data; the message is one line naming the problem, the value and the rule."""


@dataclass(frozen=True)
class FaceTable:
    """Labelled 48x48 grayscale faces in the CSV's schema."""

    pixels: np.ndarray
    age: np.ndarray
    ethnicity: np.ndarray
    gender: np.ndarray
    source: str
    digest: str

    def __post_init__(self) -> None:
        n = len(self.age)
        sizes = (self.pixels.shape, len(self.ethnicity), len(self.gender))
        if sizes != ((n, PIXELS_PER_IMAGE), n, n):
            raise DataError(
                f"FaceTable: pixels shape {self.pixels.shape} for {n} ages "
                f"(accepted: (N, {PIXELS_PER_IMAGE}) and N of each label)"
            )

    def __len__(self) -> int:
        return len(self.age)


def table_digest(pixels: np.ndarray, *labels: np.ndarray) -> str:
    """Content hash of pixels and labels (the same for a table and its CSV copy).

    Args:
        pixels: (N, 2304) values 0..255.
        *labels: Age, ethnicity and gender.

    Returns:
        16 hex digits.
    """
    h = hashlib.blake2b(digest_size=8)
    for arr in (pixels, *labels):
        h.update(np.ascontiguousarray(arr, dtype=np.uint8).data)
    return h.hexdigest()


def age_to_bin(age: np.ndarray) -> np.ndarray:
    """Map ages in years to bins 0:<10, 1:10-19, 2:20-39, 3:40-59, 4:60+.

    Args:
        age: Ages in years.

    Returns:
        int64 indices into ``AGE_RANGES``.
    """
    return np.digitize(np.asarray(age), AGE_BIN_EDGES).astype(np.int64)
