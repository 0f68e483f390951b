"""Read legacy (non-zip) PyTorch checkpoints with :mod:`pickle` and numpy alone — no torch.

The legacy format written by ``torch.save(..., _use_new_zipfile_serialization=False)`` is a
sequence of pickles in one file: a magic number, the protocol version, a sys-info dict, the object
itself (tensors refer to storages by *persistent id*), the list of storage keys, and then, for each
key in that order, an 8-byte little-endian element count followed by the storage's raw bytes.

Only the globals a state dict needs are allowed (``collections.OrderedDict``, the tensor rebuild
functions and the storage types); anything else is refused, so reading a file never runs code.
"""

from __future__ import annotations

import os
import pickle
import struct
from collections import OrderedDict
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from autotransfer.errors import WeightsUnavailableError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

#: torch storage type name -> numpy dtype (little-endian, as the legacy format stores them)
STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "<f8",
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


@dataclass
class _Storage:
    key: str
    dtype: np.dtype[Any]
    data: np.ndarray | None = None


@dataclass
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def materialize(self) -> np.ndarray:
        assert self.storage.data is not None
        flat = self.storage.data[self.offset :]
        item = flat.dtype.itemsize
        if not self.size:
            return flat[:1].reshape(()).copy()
        view = np.lib.stride_tricks.as_strided(
            flat, shape=self.size, strides=tuple(s * item for s in self.stride)
        )
        return np.ascontiguousarray(view)


def _rebuild_tensor(storage: _Storage, offset: int, size: Any, stride: Any, *_: Any) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(size), tuple(stride))


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickler that resolves storages lazily and allows only state-dict globals."""

    def __init__(self, file: IO[bytes], storages: dict[str, _Storage]) -> None:
        super().__init__(file, encoding="latin1")
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in STORAGE_DTYPES:
            return name
        raise pickle.UnpicklingError(
            f"refusing to load global '{module}.{name}': not part of a plain state dict"
        )

    def persistent_load(self, pid: Any) -> _Storage:
        kind, storage_type, key, _location, _numel, *view = pid
        if kind != "storage":
            raise pickle.UnpicklingError(f"unknown persistent id kind {kind!r}")
        if view and view[0] is not None:
            raise pickle.UnpicklingError("storage views are not supported")
        if key not in self._storages:
            self._storages[key] = _Storage(key, np.dtype(STORAGE_DTYPES[storage_type]))
        return self._storages[key]


def _materialize(obj: Any) -> Any:
    if isinstance(obj, _TensorRef):
        return obj.materialize()
    if isinstance(obj, dict):
        return OrderedDict((k, _materialize(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(v) for v in obj)
    return obj


def load_state_dict(path: str | os.PathLike[str]) -> OrderedDict[str, np.ndarray]:
    """Read a legacy PyTorch checkpoint at ``path`` and return its state dict as numpy arrays.

    Raises :class:`WeightsUnavailableError` when the file is missing or not a legacy checkpoint.
    """
    try:
        with open(path, "rb") as handle:
            magic = pickle.load(handle)
            if magic != MAGIC_NUMBER:
                raise ValueError("no legacy PyTorch magic number (zip-format or other file)")
            protocol = pickle.load(handle)
            if protocol != PROTOCOL_VERSION:
                raise ValueError(f"unsupported legacy protocol version {protocol}")
            sys_info = pickle.load(handle)
            if not sys_info.get("little_endian", True):
                raise ValueError("big-endian checkpoints are not supported")
            storages: dict[str, _Storage] = {}
            result = _StateDictUnpickler(handle, storages).load()
            keys = pickle.load(handle)
            for key in keys:
                storage = storages[key]
                (count,) = struct.unpack("<q", handle.read(8))
                nbytes = count * storage.dtype.itemsize
                raw = handle.read(nbytes)
                if len(raw) != nbytes:
                    raise ValueError(f"file ends inside storage {key}")
                storage.data = np.frombuffer(raw, dtype=storage.dtype)
    except FileNotFoundError as exc:
        raise WeightsUnavailableError(
            f"PyTorch checkpoint {os.fspath(path)!r} does not exist. Check the path, or reinstall "
            "the package that provides it."
        ) from exc
    except (ValueError, KeyError, EOFError, struct.error, pickle.UnpicklingError) as exc:
        raise WeightsUnavailableError(
            f"Cannot read {os.fspath(path)!r} as a legacy PyTorch checkpoint: {exc}. Only the "
            "legacy (non-zip) torch.save format holding a plain state dict is supported."
        ) from exc
    if not isinstance(result, dict):
        raise WeightsUnavailableError(
            f"{os.fspath(path)!r} holds a {type(result).__name__}, not a state dict."
        )
    return _materialize(result)
