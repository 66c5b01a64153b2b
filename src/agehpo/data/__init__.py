"""Face data: the CSV format's vocabulary, the reader and its cache, synthetic faces, splits.

The public names are re-exported here, so ``agehpo.data`` is the one import the rest of the
application needs; the modules of this package import each other directly, never this one.
"""

from __future__ import annotations

from agehpo.data.facecsv import read_csv, write_csv
from agehpo.data.faces import (
    AGE_BIN_EDGES,
    AGE_RANGES,
    CSV_COLUMNS,
    IMAGE_SIDE,
    LABEL_RANGES,
    PIXELS_PER_IMAGE,
    DataError,
    FaceTable,
    age_to_bin,
    default_cache_dir,
    table_digest,
)
from agehpo.data.splits import (
    PreparedData,
    TensorSplit,
    load_table,
    prepare,
    preprocess,
    stratified_split,
)
from agehpo.data.synthetic import make_synthetic

__all__ = [
    "AGE_BIN_EDGES",
    "AGE_RANGES",
    "CSV_COLUMNS",
    "IMAGE_SIDE",
    "LABEL_RANGES",
    "PIXELS_PER_IMAGE",
    "DataError",
    "FaceTable",
    "PreparedData",
    "TensorSplit",
    "age_to_bin",
    "default_cache_dir",
    "load_table",
    "make_synthetic",
    "prepare",
    "preprocess",
    "read_csv",
    "stratified_split",
    "table_digest",
    "write_csv",
]
