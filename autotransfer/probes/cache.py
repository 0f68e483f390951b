"""On-disk cache of extracted features, keyed by what determines them.

The key hashes the sampled files' contents, the backbone, the identity of its weights, the input
size and the extraction code's version, so a second ``probe`` or ``advise`` on the same data is
near-instant and a change of any of these is a miss. Each entry stores a digest of its arrays;
an entry that fails to load or to verify is deleted and rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path

import numpy as np

from autotransfer._io import atomic_write_bytes

#: Bump when what extraction computes changes, to invalidate old entries.
EXTRACTION_VERSION = "1"
_DIGEST = "__digest__"


def cache_dir() -> Path:
    """``$AUTOTRANSFER_CACHE`` or ``$XDG_CACHE_HOME/autotransfer`` (``~/.cache/autotransfer``)."""
    explicit = os.environ.get("AUTOTRANSFER_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "autotransfer"


@lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_identity(path: str | os.PathLike[str] | None, fallback: str) -> str:
    """Content digest of a weights file, or ``fallback`` (e.g. the download URL, random init)."""
    if path is None:
        return fallback
    st = os.stat(path)
    return _file_digest(os.fspath(path), st.st_size, st.st_mtime_ns)


def feature_key(content_hashes: Iterable[str], backbone: str, weights_id: str, input_size: int,
                extra: str = "") -> str:
    """The cache key of one extraction."""
    h = hashlib.sha256()
    for part in (EXTRACTION_VERSION, backbone, weights_id, str(input_size), extra):
        h.update(part.encode() + b"\0")
    for content in content_hashes:
        h.update(content.encode() + b"\n")
    return h.hexdigest()


def _digest(arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{arr.dtype.str}|{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


class FeatureCache:
    """A folder of ``<key>.npz`` entries."""

    def __init__(self, folder: str | os.PathLike[str] | None = None) -> None:
        self.folder = Path(folder) if folder is not None else cache_dir() / "features"

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.npz"

    def load(self, key: str) -> dict[str, np.ndarray] | None:
        """The entry, or ``None`` when absent or corrupt (a corrupt entry is deleted)."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
            stored = str(arrays.pop(_DIGEST))
            if stored != _digest(arrays):
                raise ValueError("digest mismatch")
            return arrays
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            path.unlink(missing_ok=True)
            return None

    def save(self, key: str, arrays: Mapping[str, np.ndarray]) -> Path:
        """Store ``arrays`` atomically with their digest."""
        buffer = io.BytesIO()
        np.savez(buffer, **arrays, **{_DIGEST: np.asarray(_digest(arrays))})
        return atomic_write_bytes(self.path(key), buffer.getvalue())
