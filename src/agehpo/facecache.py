"""The face-table cache: a second load of the same CSV or synthetic set is near-instant.

Each entry is ``<cache_dir>/<stem>-<key>-<content digest>.npy``, one flat uint8 array
(pixels, age, ethnicity, gender); writing an entry removes older ones of the same stem.

- A CSV file: stem ``csv-<path hash>``; the key hashes the file's size, its mtime in ns and
  sampled blocks (first and last MiB plus eight 64 KiB blocks spread between; files under
  4 MiB whole): hashing all ~200 MB would cost more than loading the cache, and real edits
  change size or mtime. It misses only a same-size edit that restores the mtime and
  touches no sampled block.
- Synthetic faces: stem ``synthetic-<seed>-<n_samples>``; the key hashes the generator's
  source files and numpy's version (:func:`code_key`).

Writes go to a temporary file then ``os.replace``, so concurrent loaders see whole files
or none; an unreadable or unwritable cache falls back to parsing or generating.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from agehpo.faces import PIXELS_PER_IMAGE, FaceTable, table_digest

__all__ = ["code_key", "file_key", "load_cached", "store_cached"]

_CACHE_VERSION = "1"

log = logging.getLogger(__name__)


def load_cached(cache: Path, key: str, source: str) -> FaceTable | None:
    """The table of a cache entry whose name starts with ``key``, if a sound one exists.

    Args:
        cache: The cache folder.
        key: ``<stem>-<key>``.
        source: The table's source (the CSV's resolved path, or the synthetic set's name).

    Returns:
        The cached table, or None on a miss or a damaged entry (the caller makes it).
    """
    for hit in sorted(cache.glob(key + "-*.npy")):
        with contextlib.suppress(OSError, ValueError):  # replaced or damaged: parse instead
            flat = np.array(np.load(hit, mmap_mode="r", allow_pickle=False))
            n = flat.size // (PIXELS_PER_IMAGE + 3)
            if flat.dtype == np.uint8 and flat.shape == (n * (PIXELS_PER_IMAGE + 3),):
                pixels = flat[: n * PIXELS_PER_IMAGE].reshape(n, PIXELS_PER_IMAGE)
                age, eth, gender = flat[n * PIXELS_PER_IMAGE :].reshape(3, n).astype(np.int64)
                return FaceTable(pixels, age, eth, gender, source, hit.stem.rsplit("-", 1)[1])
    return None


def file_key(path: Path, size: int, mtime_ns: int) -> str:
    """Hash of the file's size, mtime and sampled blocks: the part of a cache entry's name
    that changes when the file does.

    Args:
        path: The CSV file.
        size: Its size in bytes.
        mtime_ns: Its modification time in ns.

    Returns:
        16 hex digits.
    """
    h = hashlib.blake2b(f"{_CACHE_VERSION}|{size}|{mtime_ns}".encode(), digest_size=8)
    blocks = [(0, size)]  # small files whole; else head, tail and eight blocks between
    if size > 4 << 20:
        blocks = [(0, 1 << 20), (size - (1 << 20), 1 << 20)]
        blocks += [(size * k // 9, 1 << 16) for k in range(1, 9)]
    with path.open("rb") as f:
        for offset, length in blocks:
            f.seek(offset)
            h.update(f.read(length))
    return h.hexdigest()


def code_key(*sources: Path) -> str:
    """Hash of the code that makes a table: source files, numpy's version, the cache format.

    Args:
        sources: The Python files whose code decides the table's content.

    Returns:
        16 hex digits; they change whenever one of those inputs does.
    """
    h = hashlib.blake2b(f"{_CACHE_VERSION}|{np.__version__}".encode(), digest_size=8)
    for source in sources:
        h.update(source.read_bytes())
    return h.hexdigest()


def store_cached(cache: Path, stem: str, key: str, arrays: Sequence[np.ndarray]) -> str:
    """Write the cache entry atomically, hashing the content meanwhile.

    Args:
        cache: The cache folder (created if missing).
        stem: ``csv-<path hash>`` or ``synthetic-<seed>-<n_samples>``: older entries of
            the same stem are removed.
        key: ``<stem>-<key>``.
        arrays: Pixels (uint8), then age, ethnicity and gender.

    Returns:
        The table's content digest (returned even when the cache cannot be written).
    """
    tmp = None
    with ThreadPoolExecutor(1) as pool:  # hashing and writing both release the GIL
        digest = pool.submit(table_digest, *arrays)
        try:
            cache.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=cache, prefix=".tmp-", suffix=".npy")
            with os.fdopen(fd, "wb") as f:
                shape = (sum(a.size for a in arrays),)
                np.lib.format.write_array_header_1_0(
                    f, {"descr": "|u1", "fortran_order": False, "shape": shape}
                )
                for arr in arrays:  # one flat uint8 array, without a concatenated copy
                    f.write(np.ascontiguousarray(arr, dtype=np.uint8).data)
            name = f"{key}-{digest.result()}.npy"
            os.replace(tmp, cache / name)
            tmp = None
            for stale in cache.glob(stem + "-*.npy"):  # entries of older versions of the file
                if stale.name != name:
                    with contextlib.suppress(OSError):
                        stale.unlink()
        except OSError as exc:
            log.warning("not caching the face table in %s: %s", cache, exc)
        finally:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
        return digest.result()
