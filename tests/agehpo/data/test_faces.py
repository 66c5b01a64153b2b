"""The data vocabulary: bins, the table's shape check, the content digest, the cache folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agehpo.data import (
    AGE_RANGES,
    PIXELS_PER_IMAGE,
    DataError,
    FaceTable,
    age_to_bin,
    default_cache_dir,
)
from agehpo.data.faces import CSV_COLUMNS, table_digest
from agehpo.errors import UserError


def test_age_bins_follow_the_edges() -> None:
    ages = np.array([1, 9, 10, 19, 20, 39, 40, 59, 60, 116])
    assert age_to_bin(ages).tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert age_to_bin(ages).dtype == np.int64
    assert AGE_RANGES[age_to_bin(np.array([25]))[0]] == "20-39"
    assert CSV_COLUMNS == ("age", "ethnicity", "gender", "img_name", "pixels")


def test_digest_depends_on_every_value() -> None:
    pixels = np.zeros((2, PIXELS_PER_IMAGE), np.uint8)
    labels = (np.array([30, 40]), np.array([1, 2]), np.array([0, 1]))
    digest = table_digest(pixels, *labels)
    assert len(digest) == 16 and int(digest, 16) >= 0
    assert table_digest(pixels.copy(), *(a.astype(np.int64) for a in labels)) == digest
    changed = pixels.copy()
    changed[1, 2303] = 1
    assert table_digest(changed, *labels) != digest
    assert table_digest(pixels, labels[0], labels[1], np.array([1, 1])) != digest


def test_table_checks_its_shapes() -> None:
    pixels = np.zeros((2, PIXELS_PER_IMAGE), np.uint8)
    ok = FaceTable(pixels, np.array([1, 2]), np.array([0, 0]), np.array([1, 1]), "s", "d")
    assert len(ok) == 2
    with pytest.raises(DataError, match=r"pixels shape \(2, 2304\) for 3 ages"):
        FaceTable(pixels, np.array([1, 2, 3]), np.zeros(3), np.zeros(3), "s", "d")
    with pytest.raises(DataError, match="FaceTable"):
        FaceTable(pixels, np.array([1, 2]), np.zeros(1), np.zeros(2), "s", "d")
    assert issubclass(DataError, UserError) and issubclass(DataError, ValueError)


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AGEHPO_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path
    monkeypatch.setenv("AGEHPO_CACHE_DIR", "")
    assert default_cache_dir() == Path.home() / ".cache" / "agehpo"
