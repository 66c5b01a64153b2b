"""The face-table cache: a second load of the same CSV or synthetic set is near-instant.

Entry ``<cache_dir>/<stem>-<key>-<content digest>.npy``: pixels, age, ethnicity and gender
as one flat uint8 array, then ``AGEHPO-SHA256`` and the array's SHA-256. A load checks the
header, length and checksum, and deletes a damaged entry (the caller rebuilds it). Writes
go to a temporary file, then ``os.replace``: concurrent loaders see whole files or none.
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

from agehpo.data.faces import PIXELS_PER_IMAGE, FaceTable, table_digest

_CACHE_VERSION = "2"  # 2: the SHA-256 trailer
_TRAILER_MAGIC = b"AGEHPO-SHA256"
_TRAILER_BYTES = len(_TRAILER_MAGIC) + 32

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
        try:
            flat = _read_entry(hit)
        except FileNotFoundError:  # replaced or removed by another process meanwhile
            continue
        except (OSError, ValueError, EOFError) as exc:
            log.warning("discarding the damaged face cache entry %s (%s); rebuilding it", hit, exc)
            with contextlib.suppress(OSError):
                hit.unlink()
            continue
        n = flat.size // (PIXELS_PER_IMAGE + 3)
        pixels = flat[: n * PIXELS_PER_IMAGE].reshape(n, PIXELS_PER_IMAGE)
        age, eth, gender = flat[n * PIXELS_PER_IMAGE :].reshape(3, n).astype(np.int64)
        return FaceTable(pixels, age, eth, gender, source, hit.stem.rsplit("-", 1)[1])
    return None


def _read_entry(path: Path) -> np.ndarray:
    """The flat uint8 array of a cache entry, once its header, length and checksum hold."""
    with path.open("rb") as f:
        version = np.lib.format.read_magic(f)
        if version != (1, 0):
            raise ValueError(f"npy format {version}, expected (1, 0)")
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        size = shape[0] if len(shape) == 1 else -1
        if dtype != np.uint8 or fortran or size < 0 or size % (PIXELS_PER_IMAGE + 3):
            raise ValueError(f"array {dtype} {shape}, expected flat uint8 rows")
        expected = f.tell() + size + _TRAILER_BYTES
        actual = os.fstat(f.fileno()).st_size
        if actual != expected:
            raise ValueError(f"{actual} bytes, expected {expected}")
        flat = np.empty(size, np.uint8)
        if f.readinto(flat.data) != size:
            raise ValueError("shorter than its header says")
        trailer = f.read(_TRAILER_BYTES)
    if trailer[: len(_TRAILER_MAGIC)] != _TRAILER_MAGIC:
        raise ValueError("no checksum trailer")
    if hashlib.sha256(flat.data).digest() != trailer[len(_TRAILER_MAGIC) :]:
        raise ValueError("checksum mismatch")
    return flat


def file_key(path: Path, size: int, mtime_ns: int) -> str:
    """The part of a CSV's cache entry name that changes when the file does.

    It hashes the size, the mtime and sampled blocks (files over 4 MiB: the first and last
    MiB and eight 64 KiB blocks between), as hashing 200 MB would cost more than the load.

    Args:
        path: The CSV file.
        size: Its size in bytes.
        mtime_ns: Its modification time in ns.

    Returns:
        16 hex digits.
    """
    h = hashlib.blake2b(f"{_CACHE_VERSION}|{size}|{mtime_ns}".encode(), digest_size=8)
    blocks = [(0, size)]
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
        16 hex digits.
    """
    h = hashlib.blake2b(f"{_CACHE_VERSION}|{np.__version__}".encode(), digest_size=8)
    for source in sources:
        h.update(source.read_bytes())
    return h.hexdigest()


def store_cached(cache: Path, stem: str, key: str, arrays: Sequence[np.ndarray]) -> str:
    """Write the cache entry atomically, hashing the content meanwhile.

    Args:
        cache: The cache folder (created if missing).
        stem: ``csv-<path hash>`` or ``synthetic-<seed>-<n>``; older entries of it go.
        key: ``<stem>-<key>``.
        arrays: Pixels (uint8), then age, ethnicity and gender.

    Returns:
        The table's content digest (even when the cache cannot be written).
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
                checksum = hashlib.sha256()
                for arr in arrays:  # one flat uint8 array, without a concatenated copy
                    chunk = np.ascontiguousarray(arr, dtype=np.uint8).data
                    f.write(chunk)
                    checksum.update(chunk)
                f.write(_TRAILER_MAGIC + checksum.digest())
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
