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
    """16 hex digits hashing pixels and labels (the same for a table and its CSV copy)."""
    h = hashlib.blake2b(digest_size=8)
    for arr in (pixels, *labels):
        h.update(np.ascontiguousarray(arr, dtype=np.uint8).data)
    return h.hexdigest()


def age_to_bin(age: np.ndarray) -> np.ndarray:
    """Ages in years to int64 indices into ``AGE_RANGES``: 0:<10, 1:10-19, ..., 4:60+."""
    return np.digitize(np.asarray(age), AGE_BIN_EDGES).astype(np.int64)
