"""The face cache: ``<stem>-<key>-<digest>.npy``, flat uint8 pixels and labels, a SHA-256."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np

from agehpo.data.faces import PIXELS_PER_IMAGE, FaceTable, table_digest

_CACHE_VERSION = "2"  # 2: the SHA-256 trailer
_TRAILER_MAGIC = b"AGEHPO-SHA256"
_TRAILER_BYTES = len(_TRAILER_MAGIC) + 32

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$AGEHPO_CACHE_DIR`` if set, else ``~/.cache/agehpo``."""
    return Path(os.environ.get("AGEHPO_CACHE_DIR") or Path.home() / ".cache" / "agehpo")


def write_atomic(folder: Path, prefix: str, write: Callable[[BinaryIO], str]) -> None:
    """Run ``write`` on a temporary file of ``folder``, then rename it to the name it returns."""
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=prefix, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            name = write(f)
        os.replace(tmp, folder / name)  # readers see the whole file or none
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load_cached(cache: Path, key: str, source: str) -> FaceTable | None:
    """The table of a sound entry named ``<key>-*`` in ``cache``; None on a miss or damage."""
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
    """The flat uint8 array of an entry whose header, length and checksum hold."""
    with path.open("rb") as f:
        version = np.lib.format.read_magic(f)
        if version != (1, 0):
            raise ValueError(f"npy format {version}, expected (1, 0)")
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        size = shape[0] if len(shape) == 1 else -1
        if dtype != np.uint8 or fortran or size < 0 or size % (PIXELS_PER_IMAGE + 3):
            raise ValueError(f"array {dtype} {shape}, expected flat uint8 rows")
        expected = f.tell() + size + _TRAILER_BYTES
        if (actual := os.fstat(f.fileno()).st_size) != expected:
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


def content_key(stamp: str, *paths: Path) -> str:
    """16 hex digits hashing the cache format, ``stamp`` (a CSV's size and mtime, numpy's
    version) and the files' content (sampled blocks past 4 MiB)."""
    h = hashlib.blake2b(f"{_CACHE_VERSION}|{stamp}".encode(), digest_size=8)
    for path in paths:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            blocks = [(0, size)]
            if size > 4 << 20:  # hashing 200 MB would cost more than the load
                blocks = [(0, 1 << 20), (size - (1 << 20), 1 << 20)]
                blocks += [(size * k // 9, 1 << 16) for k in range(1, 9)]
            for offset, length in blocks:
                f.seek(offset)
                h.update(f.read(length))
    return h.hexdigest()


def store_cached(cache: Path, stem: str, key: str, arrays: Sequence[np.ndarray]) -> str:
    """Write the entry ``<key>-<digest>`` of pixels, age, ethnicity and gender, drop the
    stem's older ones, and return the digest (even when the cache cannot be written)."""
    with ThreadPoolExecutor(1) as pool:  # hashing and writing both release the GIL
        digest = pool.submit(table_digest, *arrays)

        def write(f: BinaryIO) -> str:
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
            return f"{key}-{digest.result()}.npy"

        try:
            cache.mkdir(parents=True, exist_ok=True)
            write_atomic(cache, ".tmp-", write)
            entry = cache / f"{key}-{digest.result()}.npy"
            for stale in set(cache.glob(stem + "-*.npy")) - {entry}:  # older versions of the file
                with contextlib.suppress(OSError):
                    stale.unlink()
        except OSError as exc:
            log.warning("not caching the face table in %s: %s", cache, exc)
        return digest.result()
