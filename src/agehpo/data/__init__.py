"""Face data: the CSV format's vocabulary, its reader and cache, synthetic faces, splits."""

# ruff: noqa: F401 - these imports are the package's public names
from __future__ import annotations

from agehpo.data.facecache import default_cache_dir
from agehpo.data.facecsv import read_csv, write_csv
from agehpo.data.faces import AGE_RANGES, PIXELS_PER_IMAGE, DataError, FaceTable, age_to_bin
from agehpo.data.splits import (
    PreparedData,
    TensorSplit,
    load_table,
    prepare,
    preprocess,
    stratified_split,
)
from agehpo.data.synthetic import make_synthetic
