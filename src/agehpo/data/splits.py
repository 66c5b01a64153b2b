"""Where tables come from (synthetic or CSV, through the cache), splits and tensors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import agehpo.data.faces
import agehpo.data.synthetic
from agehpo.data.facecache import content_key, default_cache_dir, load_cached, store_cached
from agehpo.data.facecsv import read_csv
from agehpo.data.faces import IMAGE_SIDE, PIXELS_PER_IMAGE, DataError, FaceTable, age_to_bin


def load_table(
    data: str = "synthetic",
    *,
    n_samples: int = 23705,
    seed: int = 13,
    cache_dir: Path | None = None,
) -> FaceTable:
    """The synthetic faces (``n_samples`` rows of ``seed``) or the age_gender.csv file ``data``,
    through the face cache in ``cache_dir`` (``default_cache_dir()`` when None)."""
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    if data != "synthetic":
        return read_csv(data, cache_dir=cache)
    # generated once per machine (3 s) rather than once per process
    stem = f"synthetic-{seed}-{n_samples}"
    code = (Path(m.__file__ or "") for m in (agehpo.data.synthetic, agehpo.data.faces))
    key = f"{stem}-{content_key(np.__version__, *code)}"
    if (cached := load_cached(cache, key, f"synthetic:seed={seed},n={n_samples}")) is not None:
        return cached
    table = agehpo.data.synthetic.make_synthetic(n_samples=n_samples, seed=seed)
    store_cached(cache, stem, key, (table.pixels, table.age, table.ethnicity, table.gender))
    return table


def stratified_split(
    age_bin: np.ndarray, *, seed: int = 13, test_fraction: float = 0.2, val_fraction: float = 0.1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted, disjoint train, validation and test row indices covering all rows: per age bin
    (permuted by ``seed``), test ``test_fraction`` of it and val ``val_fraction`` of the rest."""
    age_bin = np.asarray(age_bin)
    if not (0.0 < test_fraction < 1.0 and 0.0 <= val_fraction < 1.0) or age_bin.size == 0:
        raise DataError(
            f"stratified_split: test_fraction={test_fraction}, val_fraction={val_fraction}, "
            f"{age_bin.size} rows (accepted: 0 < test_fraction < 1, 0 <= val_fraction < 1, "
            "at least one row)"
        )
    rng = np.random.default_rng(seed)
    parts: tuple[list[np.ndarray], ...] = ([], [], [])
    for b in np.unique(age_bin):
        idx = rng.permutation(np.flatnonzero(age_bin == b))
        n_test = int(idx.size * test_fraction + 0.5)
        n_val = int((idx.size - n_test) * val_fraction + 0.5)
        for part, rows in zip(parts, np.split(idx, [n_test, n_test + n_val])[::-1], strict=True):
            part.append(rows)
    train, val, test = (np.sort(np.concatenate(p)).astype(np.int64) for p in parts)
    return train, val, test


@dataclass(frozen=True)
class TensorSplit:
    """One split as preloaded tensors (features already preprocessed)."""

    x: torch.Tensor
    age_bin: torch.Tensor
    ethnicity: torch.Tensor
    gender: torch.Tensor

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The four tensors, in field order."""
        return self.x, self.age_bin, self.ethnicity, self.gender

    def to(self, device: torch.device | str) -> TensorSplit:
        """A copy of this split on ``device``."""
        return TensorSplit(*(t.to(device) for t in self.tensors()))

    def rows(self, index: torch.Tensor | slice) -> TensorSplit:
        """The rows ``index`` (a 1-D tensor of row numbers, or a slice for views)."""
        if isinstance(index, slice):
            return TensorSplit(*(t[index] for t in self.tensors()))
        # a plain row gather: advanced indexing (x[index]) cost twice as much on the CPU
        return TensorSplit(*(t.index_select(0, index) for t in self.tensors()))


@dataclass(frozen=True)
class PreparedData:
    """Train/validation/test splits of one table, ready for training."""

    train: TensorSplit
    val: TensorSplit
    test: TensorSplit
    img_size: int
    source: str
    digest: str


def preprocess(pixels: np.ndarray, img_size: int = 24) -> torch.Tensor:
    """(N, 2304) pixels 0..255 scaled to [0, 1], resized (antialiased) to ``img_size`` 1..48
    and normalized to [-1, 1], as a float32 tensor (N, img_size**2)."""
    pixels = np.asarray(pixels)
    if pixels.ndim != 2 or pixels.shape[1] != PIXELS_PER_IMAGE:
        raise DataError(
            f"preprocess: pixels shape {pixels.shape} (accepted: (N, {PIXELS_PER_IMAGE}))"
        )
    if type(img_size) is not int or not 1 <= img_size <= IMAGE_SIDE:  # (no bool)
        raise DataError(
            f"img_size: {img_size!r} is not accepted (accepted: integers 1..{IMAGE_SIDE})"
        )
    out = torch.empty((len(pixels), img_size * img_size), dtype=torch.float32)
    for i0 in range(0, len(pixels), 4096):  # bounds the float copy of the 48x48 images
        x = torch.from_numpy(np.ascontiguousarray(pixels[i0 : i0 + 4096])).to(torch.float32)
        x = x.div_(255.0).view(-1, 1, IMAGE_SIDE, IMAGE_SIDE)
        if img_size != IMAGE_SIDE:
            x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", antialias=True)
            x = x.clamp_(0.0, 1.0)  # the filter weights sum to 1 only up to rounding
        out[i0 : i0 + len(x)] = x.reshape(len(x), -1).sub_(0.5).div_(0.5)
    return out


def prepare(table: FaceTable, *, img_size: int = 24, split_seed: int = 13) -> PreparedData:
    """Preprocess every image once, then cut the stratified train/validation/test splits."""
    if len(table) == 0:
        raise DataError(f"data: '{table.source}' has no rows (accepted: at least one face)")
    bins, x = age_to_bin(table.age), preprocess(table.pixels, img_size)
    columns = (bins, table.ethnicity, table.gender)
    labels = [torch.as_tensor(np.asarray(a, np.int64)) for a in columns]

    def take(idx: np.ndarray) -> TensorSplit:
        t = torch.from_numpy(idx)
        return TensorSplit(x[t], *(lab[t] for lab in labels))

    train, val, test = stratified_split(bins, seed=split_seed)
    return PreparedData(take(train), take(val), take(test), img_size, table.source, table.digest)
