"""On-disk cache of extracted features, keyed by what determines them.

The key hashes the sampled files' contents, the backbone, the identity of its weights, the input
size, the extraction code's version and the versions of the libraries that compute features
(TensorFlow, Keras, Pillow, NumPy: read with :mod:`importlib.metadata`, without importing them),
so a second ``probe`` or ``advise`` on the same data is near-instant and a change of any of these
is a miss. Small typed records (the statistics measured on cached features) are kept as JSON
entries keyed by what computed them too (:func:`code_digest`), so a warm probe needs neither
TensorFlow nor the statistics again. Each entry stores a digest of its arrays; an entry that fails
to load or to verify is deleted and rebuilt, never trusted.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import zipfile
from collections.abc import Iterable, Mapping
from functools import lru_cache
from pathlib import Path

import numpy as np

from autotransfer._io import atomic_write_bytes

#: Bump when what extraction computes changes, to invalidate old entries.
EXTRACTION_VERSION = "2"  # 2: BN statistics on an evenly spread subset of the sample
_DIGEST = "__digest__"
_JSON = "json"

#: Distributions whose version can change extracted features (alternatives of one library are
#: all listed; the installed ones enter every key, so an upgrade is a miss).
FEATURE_LIBRARIES = ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tf-nightly", "keras",
                     "keras-nightly", "pillow", "numpy")


@lru_cache(maxsize=8)
def library_versions(names: tuple[str, ...] = FEATURE_LIBRARIES) -> str:
    """``"keras==3.15.1;numpy==2.4.6;…"`` for the installed distributions among ``names``
    (package metadata only: nothing is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    found = []
    for name in names:
        try:
            found.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            continue
    return ";".join(found)


def code_digest(*modules: str) -> str:
    """Digest of these modules' source files (and their names): a record computed by them is
    keyed by it, so any change to that code is a miss."""
    h = hashlib.blake2b(digest_size=16)
    for name in modules:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise ValueError(f"module {name!r} has no source file")
        h.update(name.encode() + b"\0")
        h.update(Path(spec.origin).read_bytes())
    return h.hexdigest()


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
    """The cache key of one extraction (the libraries' versions included)."""
    h = hashlib.sha256()
    for part in (EXTRACTION_VERSION, library_versions(), backbone, weights_id, str(input_size),
                 extra):
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

    def load_json(self, key: str) -> str | None:
        """The JSON text stored with :meth:`save_json`, or ``None`` (absent, corrupt, other)."""
        arrays = self.load(key)
        if arrays is None or set(arrays) != {_JSON} or arrays[_JSON].dtype.kind != "U":
            return None
        return str(arrays[_JSON])

    def save_json(self, key: str, text: str) -> Path:
        """Store a JSON text (a typed record's dump) as an entry of its own."""
        return self.save(key, {_JSON: np.asarray(text)})
