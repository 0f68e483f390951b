"""Read legacy (non-zip) PyTorch checkpoints with :mod:`pickle` and numpy alone — no torch.

The legacy format written by ``torch.save(..., _use_new_zipfile_serialization=False)`` is a
sequence of five pickles in one file — the magic number, the protocol version, a sys-info dict,
the object itself (tensors refer to storages by *persistent id*) and the list of storage keys —
then, for each key in that order, an 8-byte little-endian element count and the storage's bytes.

Nothing in the file can run code. Every record is first scanned opcode by opcode
(:func:`pickletools.genops`, which only parses) against an allowlist: the four header records may
only build plain data (numbers, strings, lists, tuples, dicts), and every length they declare must
fit in the file. Each record is then loaded by an :class:`pickle.Unpickler` whose ``find_class``
allows nothing (header records) or only the globals a state dict needs (``OrderedDict``, the
tensor rebuild functions, the storage type names), each mapped to a local stand-in, and whose
``persistent_load`` accepts only well-formed storage ids. Tensors are checked to lie inside their
storage and returned as read-only views of it, so memory is bounded by the file's size.
"""

from __future__ import annotations

import io
import math
import mmap
import os
import pickle
import pickletools
import reprlib
import struct
from collections import OrderedDict
from dataclasses import dataclass
from typing import IO, Any, cast

import numpy as np

from autotransfer.errors import WeightsFileError, WeightsUnavailableError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
#: records of a legacy checkpoint, in file order
RECORDS: tuple[str, ...] = ("magic number", "protocol version", "sys-info", "state dict",
                            "storage keys")
_ZIP_MAGIC = b"PK\x03\x04"
_MAX_NDIM = 32

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

#: opcodes that only build plain data (no import, no call, no persistent id, no out-of-band buffer)
_DATA_OPCODES = frozenset({
    "PROTO", "FRAME", "STOP", "MARK", "POP", "POP_MARK", "DUP",
    "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT", "BINFLOAT",
    "NONE", "NEWTRUE", "NEWFALSE",
    "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE",
    "BINUNICODE8", "BINBYTES", "SHORT_BINBYTES", "BINBYTES8", "BYTEARRAY8",
    "EMPTY_LIST", "APPEND", "APPENDS", "LIST", "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2",
    "TUPLE3", "EMPTY_DICT", "DICT", "SETITEM", "SETITEMS", "EMPTY_SET", "ADDITEMS", "FROZENSET",
    "GET", "BINGET", "LONG_BINGET", "PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE",
})
#: the state dict may also name globals (checked by find_class), call them, and refer to storages
_STATE_DICT_OPCODES = _DATA_OPCODES | {
    "GLOBAL", "STACK_GLOBAL", "REDUCE", "NEWOBJ", "BUILD", "PERSID", "BINPERSID",
}


_NOTHING_RUNS = "refused: nothing in a weights file is run"


def _short(value: Any) -> str:
    """A bounded ``repr`` of an untrusted value (depth, length and size limited)."""
    return reprlib.repr(value)


def _imports(name: str) -> str:
    return f"asks to import '{name}', which a plain state dict never does ({_NOTHING_RUNS})"


class _Refused(Exception):
    """The file is not a well-formed legacy checkpoint; the message says why."""


@dataclass(frozen=True, slots=True)
class _Storage:
    key: str
    dtype: np.dtype[Any]


@dataclass(frozen=True, slots=True)
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or len(value) > _MAX_NDIM:
        raise _Refused(f"holds a tensor {what} that is not a tuple of at most {_MAX_NDIM} integers")
    if not all(type(v) is int and v >= 0 for v in value):
        raise _Refused(f"holds a tensor {what} {_short(value)} with a value that is not an "
                       "integer >= 0")
    return tuple(value)


def _rebuild_tensor(storage: Any = None, offset: Any = None, size: Any = None, stride: Any = None,
                    *_: Any) -> _TensorRef:
    """Stand-in for ``torch._utils._rebuild_tensor[_v2]``: records the view, reads nothing."""
    if not isinstance(storage, _Storage):
        raise _Refused("holds a tensor that does not refer to a storage")
    if type(offset) is not int or offset < 0:
        raise _Refused(f"holds a tensor offset {_short(offset)} that is not an integer >= 0")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride):
        raise _Refused(f"holds a tensor whose size {size} and stride {stride} differ in length")
    return _TensorRef(storage, offset, size, stride)


class _RecordUnpickler(pickle.Unpickler):
    """Loads one record; allows the globals in ``allowed`` only, and no persistent ids."""

    def __init__(self, data: bytes, allowed: dict[tuple[str, str], Any] | None = None) -> None:
        super().__init__(io.BytesIO(data), encoding="latin1")
        self._allowed = allowed or {}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._allowed[(module, name)]
        except (KeyError, TypeError):
            raise _Refused(_imports(f"{module}.{name}")) from None

    def persistent_load(self, pid: Any) -> Any:
        raise _Refused(f"refers to an external object (persistent id), which only the state "
                       f"dict may ({_NOTHING_RUNS})")


class _StateDictUnpickler(_RecordUnpickler):
    """Loads the state-dict record: storages become :class:`_Storage` placeholders."""

    def __init__(self, data: bytes, storages: dict[str, _Storage]) -> None:
        allowed: dict[tuple[str, str], Any] = {("collections", "OrderedDict"): OrderedDict}
        allowed.update({("torch._utils", n): _rebuild_tensor
                        for n in ("_rebuild_tensor", "_rebuild_tensor_v2")})
        allowed.update({("torch", n): n for n in STORAGE_DTYPES})
        super().__init__(data, allowed)
        self._storages = storages

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise _Refused(f"holds an unknown persistent id {_short(pid)}")
        _kind, storage_type, key, _location, _numel, *view = pid
        if not isinstance(storage_type, str) or storage_type not in STORAGE_DTYPES:
            raise _Refused(f"holds an unknown storage type {_short(storage_type)}")
        if not isinstance(key, str):
            raise _Refused(f"holds a storage key {_short(key)} that is not a string")
        if view and view[0] is not None:
            raise _Refused("holds a storage view, which is not supported")
        dtype = np.dtype(STORAGE_DTYPES[storage_type])
        storage = self._storages.setdefault(key, _Storage(key, dtype))
        if storage.dtype != dtype:
            raise _Refused(f"uses storage {_short(key)} with two element types")
        return storage


def _scan(mm: mmap.mmap, start: int, allowed: frozenset[str], record: str) -> int:
    """Check the pickle at ``start`` opcode by opcode without running it; return its end."""
    mm.seek(start)
    strings = ["", ""]  # the last two strings: the operands of a STACK_GLOBAL
    try:
        for opcode, arg, _pos in pickletools.genops(cast(IO[bytes], mm)):  # reads clamp at EOF
            if opcode.name in ("GLOBAL", "INST") and opcode.name not in allowed:
                raise _Refused(f"the {record} record {_imports(str(arg).replace(' ', '.'))}")
            if opcode.name == "STACK_GLOBAL" and opcode.name not in allowed:
                raise _Refused(f"the {record} record {_imports('.'.join(strings))}")
            if opcode.name not in allowed:
                raise _Refused(f"the {record} record uses pickle opcode {opcode.name}, which "
                               f"plain data never needs ({_NOTHING_RUNS})")
            if isinstance(arg, str) and "UNICODE" in opcode.name:
                strings = [strings[1], arg[:100]]
    except ValueError as exc:  # genops: truncated data, bad opcode, length beyond the file
        raise _Refused(f"the {record} record is not a valid pickle ({exc})") from None
    return mm.tell()


def _record(mm: mmap.mmap, start: int, record: str, storages: dict[str, _Storage] | None = None
            ) -> tuple[Any, int]:
    """Scan, then load, the record at ``start``; return ``(object, end)``."""
    allowed = _DATA_OPCODES if storages is None else _STATE_DICT_OPCODES
    end = _scan(mm, start, allowed, record)
    data = mm[start:end]
    unpickler = (_RecordUnpickler(data) if storages is None
                 else _StateDictUnpickler(data, storages))
    try:
        return unpickler.load(), end
    except _Refused as exc:
        raise _Refused(f"the {record} record {exc}") from None
    except (pickle.UnpicklingError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            EOFError, OverflowError, RecursionError, MemoryError) as exc:
        raise _Refused(f"the {record} record cannot be decoded ({type(exc).__name__}: "
                       f"{str(exc)[:200]})") from None


def _header(mm: mmap.mmap) -> int:
    """Check the magic number, protocol and sys-info records; return where the state dict starts."""
    if mm[:4] == _ZIP_MAGIC:
        raise _Refused("it is a zip-format checkpoint (the torch.save default since PyTorch 1.6), "
                       "and only the legacy format is read; re-save it with torch.save(state_dict, "
                       "path, _use_new_zipfile_serialization=False)")
    magic, pos = _record(mm, 0, RECORDS[0])
    if type(magic) is not int or magic != MAGIC_NUMBER:
        raise _Refused("it does not start with the legacy PyTorch magic number")
    protocol, pos = _record(mm, pos, RECORDS[1])
    if type(protocol) is not int or protocol != PROTOCOL_VERSION:
        raise _Refused(f"unsupported legacy protocol version {_short(protocol)}")
    sys_info, pos = _record(mm, pos, RECORDS[2])
    if not isinstance(sys_info, dict):
        raise _Refused("the sys-info record is not a dict")
    if sys_info.get("little_endian", True) is not True:
        raise _Refused("big-endian checkpoints are not supported")
    return pos


def _read_storages(mm: mmap.mmap, pos: int, keys: Any,
                   storages: dict[str, _Storage]) -> dict[str, np.ndarray]:
    """The raw data of every storage, in the order of ``keys``; checked against the file size."""
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise _Refused("the storage keys record is not a list of strings")
    if len(set(keys)) != len(keys):
        raise _Refused("the storage keys record names a storage twice")
    data: dict[str, np.ndarray] = {}
    for key in keys:
        if key not in storages:
            raise _Refused(f"storage {_short(key)} is listed but no tensor uses it")
        if pos + 8 > len(mm):
            raise _Refused(f"the file ends before storage {_short(key)}")
        (count,) = struct.unpack_from("<q", mm, pos)
        nbytes = count * storages[key].dtype.itemsize
        if count < 0 or pos + 8 + nbytes > len(mm):
            raise _Refused(f"storage {_short(key)} claims {count} elements, more than the file "
                           "holds")
        data[key] = np.frombuffer(mm, storages[key].dtype, count, pos + 8).copy()
        data[key].flags.writeable = False
        pos += 8 + nbytes
    missing = sorted(set(storages) - set(data))
    if missing:
        raise _Refused(f"no data for storage {_short(missing[0])} (the file is truncated?)")
    return data


def _view(name: str, ref: _TensorRef, data: dict[str, np.ndarray]) -> np.ndarray:
    """The tensor ``ref`` as a read-only view of its storage, after checking its bounds."""
    base = data[ref.storage.key]
    numel = math.prod(ref.size)
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride)) if numel else 0
    if numel > base.size or (numel and last >= base.size) or ref.offset > base.size:
        raise _Refused(f"tensor {_short(name)} (size {ref.size}, stride {ref.stride}, offset "
                       f"{ref.offset}) reaches outside its storage of {base.size} elements")
    item = base.dtype.itemsize
    return np.lib.stride_tricks.as_strided(
        base[ref.offset:], shape=ref.size, strides=tuple(s * item for s in ref.stride),
        writeable=False)


def _parse(mm: mmap.mmap) -> OrderedDict[str, np.ndarray]:
    pos = _header(mm)
    storages: dict[str, _Storage] = {}
    result, pos = _record(mm, pos, RECORDS[3], storages)
    if not isinstance(result, dict):
        raise _Refused(f"it holds a {type(result).__name__}, not a state dict")
    bad = next((k for k, v in result.items()
                if not isinstance(k, str) or not isinstance(v, _TensorRef)), None)
    if bad is not None:
        raise _Refused(f"state dict entry {_short(bad)} is not a named tensor")
    keys, pos = _record(mm, pos, RECORDS[4])
    data = _read_storages(mm, pos, keys, storages)
    return OrderedDict((name, _view(name, ref, data)) for name, ref in result.items())


def load_state_dict(path: str | os.PathLike[str]) -> OrderedDict[str, np.ndarray]:
    """Read a legacy PyTorch checkpoint at ``path`` and return its state dict as numpy arrays.

    The arrays are read-only (views of the checkpoint's storages). Raises
    :class:`WeightsUnavailableError` when the file is missing, and :class:`WeightsFileError` when
    it is not a legacy checkpoint holding a plain state dict (including any attempt to import or
    call something); nothing in the file is ever run.
    """
    where = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            if os.fstat(handle.fileno()).st_size == 0:
                raise _Refused("the file is empty")
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                return _parse(mm)
    except FileNotFoundError as exc:
        raise WeightsUnavailableError(
            f"PyTorch checkpoint '{where}' does not exist. Check the path, or reinstall the "
            "package that provides it."
        ) from exc
    except OSError as exc:
        raise WeightsFileError(
            f"Cannot read PyTorch checkpoint '{where}': {exc.strerror or exc}. Check that it is "
            "a readable file."
        ) from None
    except _Refused as exc:
        raise WeightsFileError(
            f"Cannot use '{where}' as weights: {exc}. Only legacy (non-zip) PyTorch checkpoints "
            "holding a plain state dict of tensors are read, as written by torch.save(state_dict, "
            "path, _use_new_zipfile_serialization=False). Re-export the checkpoint, or use the "
            "catalog's weights (weights: imagenet)."
        ) from None
