"""Per-epoch checkpoints that are whole or absent, and resuming from the last complete one.

A checkpoint is a folder ``checkpoints/epoch-NNNN/`` holding the model's weights (including the
BatchNorm statistics), the optimizer's variables (moments, iteration count), the phase's best
weights so far (for early stopping's restore) and ``state.json`` (phase, epoch, batch size,
early-stopping counters, history, timings). It is written into a hidden temporary folder, synced,
renamed into place, and only then does ``checkpoints/latest.json`` point to it; older checkpoints
are removed afterwards. A process killed at any instant leaves the previous checkpoint intact.

The random state needs no saving: every epoch derives its seeds (shuffle, augmentation, dropout)
from the recipe's seed, the phase and the epoch (:func:`autotransfer.train.data.epoch_seed`).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from autotransfer._io import atomic_write_json

STATE = "state.json"
WEIGHTS = "model.weights.h5"
BEST = "best_weights.npz"
OPTIMIZER = "optimizer.npz"
POINTER = "latest.json"


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class CheckpointManager:
    """Checkpoints of one run, under ``root``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def latest_dir(self) -> Path | None:
        pointer = self.root / POINTER
        if not pointer.is_file():
            return None
        folder = self.root / json.loads(pointer.read_text(encoding="utf-8"))["dir"]
        return folder if (folder / STATE).is_file() else None

    def latest_state(self) -> dict[str, Any] | None:
        folder = self.latest_dir()
        return None if folder is None else json.loads((folder / STATE).read_text("utf-8"))

    def save(self, name: str, model: Any, state: dict[str, Any], *, optimizer: Any = None,
             best_model_weights: list[np.ndarray] | None = None, keep_best: bool = False) -> Path:
        """Write checkpoint ``name``; ``keep_best`` carries the previous best weights over."""
        self.root.mkdir(parents=True, exist_ok=True)
        final = self.root / name
        tmp = self.root / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        model.save_weights(tmp / WEIGHTS)
        if optimizer is not None and getattr(optimizer, "built", False):
            arrays = {f"v{i:05d}": np.asarray(v.numpy()) for i, v in enumerate(optimizer.variables)}
            np.savez(tmp / OPTIMIZER, **arrays)
        previous = self.latest_dir()
        if best_model_weights is not None:
            np.savez(tmp / BEST, *best_model_weights)
        elif keep_best and previous is not None and (previous / BEST).is_file():
            os.link(previous / BEST, tmp / BEST)
        atomic_write_json(tmp / STATE, state)
        _fsync_dir(tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        _fsync_dir(self.root)
        atomic_write_json(self.root / POINTER, {"dir": name})
        for old in self.root.iterdir():
            if old.is_dir() and old.name != name:
                shutil.rmtree(old, ignore_errors=True)
        return final

    def restore_model(self, model: Any) -> None:
        folder = self.latest_dir()
        if folder is None:
            raise FileNotFoundError(f"no checkpoint under {self.root}")
        model.load_weights(folder / WEIGHTS)

    def has_optimizer(self) -> bool:
        folder = self.latest_dir()
        return folder is not None and (folder / OPTIMIZER).is_file()

    def restore_optimizer(self, optimizer: Any) -> None:
        """Assign the saved optimizer variables (the optimizer must be built the same way)."""
        folder = self.latest_dir()
        assert folder is not None
        with np.load(folder / OPTIMIZER) as data:
            values = [data[k] for k in sorted(data.files)]
        variables = optimizer.variables
        if len(values) != len(variables):
            raise ValueError(f"checkpoint has {len(values)} optimizer variables, the optimizer "
                             f"{len(variables)}: the phase was set up differently")
        for variable, value in zip(variables, values, strict=True):
            variable.assign(value)

    def best_weights(self) -> list[np.ndarray] | None:
        folder = self.latest_dir()
        path = None if folder is None else folder / BEST
        if path is None or not path.is_file():
            return None
        with np.load(path) as data:
            return [data[f"arr_{i}"] for i in range(len(data.files))]
