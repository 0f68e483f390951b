"""Per-epoch checkpoints that are whole or absent, and resuming from the last sound one.

A checkpoint is a folder ``checkpoints/epoch-NNNN/`` holding the model's weights (including the
BatchNorm statistics), the optimizer's variables (moments, iteration count), the phase's best
weights so far (for early stopping's restore), ``state.json`` (phase, epoch, batch size,
early-stopping counters, history, timings) and, written last, ``manifest.json``: a sequence
number and the size and SHA-256 of every other file. It is written into a hidden temporary
folder, synced, renamed into place, and only then does ``checkpoints/latest.json`` point to it.

The checkpoint before it is kept too: the newest checkpoint whose files all match its manifest
is the one a run resumes from, so a checkpoint damaged after it was written (a truncated file, a
full disk, a copy cut short) costs one epoch instead of the run. The fallback is recorded in the
state's ``notes`` (and so in ``metrics.json``) and issued as a :class:`CheckpointWarning`; when
no checkpoint is sound, resuming stops with a clear error instead of starting over silently.

The random state needs no saving: every epoch derives its seeds (shuffle, augmentation, dropout)
from the recipe's seed, the phase and the epoch (:func:`autotransfer.train.data.epoch_seed`).
So an epoch's checkpoint may be skipped (:class:`CheckpointPolicy`, rule CKPT01): a run
interrupted after skipped ones resumes from the last one written and runs the epochs after it
again, with the same seeds, to the same result.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autotransfer._io import atomic_write_json, ensure_dir, file_sha256
from autotransfer.errors import ModelFileError, RunDirectoryError

STATE = "state.json"
WEIGHTS = "model.weights.h5"
BEST = "best_weights.npz"
OPTIMIZER = "optimizer.npz"
MANIFEST = "manifest.json"
POINTER = "latest.json"


@dataclass(frozen=True)
class CheckpointPolicy:
    """When an epoch's checkpoint is written (rule CKPT01): once at least ``min_interval_s``
    seconds, and ``1 / max_share`` times the last checkpoint's own cost, passed since the last
    one was written. Phase ends are always written (by the caller)."""

    min_interval_s: float = 30.0
    max_share: float = 0.05

    @classmethod
    def from_rules(cls) -> CheckpointPolicy:
        """Rule CKPT01's parameters from ``recipes/rules.yaml``."""
        from autotransfer.advisor.rules import rule_params

        params = rule_params("CKPT01")
        return cls(float(params["min_interval_s"]), float(params["max_share"]))

    def interval(self, last_cost_s: float) -> float:
        """The seconds that must pass after a checkpoint that took ``last_cost_s`` to write."""
        share = self.max_share if self.max_share > 0 else 1.0
        return max(self.min_interval_s, last_cost_s / share)


@dataclass
class CheckpointClock:
    """Whether an epoch's checkpoint is due under ``policy``, and the seconds spent writing."""

    policy: CheckpointPolicy
    clock: Callable[[], float] = time.perf_counter
    #: seconds spent writing checkpoints, and how many were written and skipped
    seconds: float = 0.0
    written: int = 0
    skipped: int = 0
    _last: float = field(default=0.0, init=False)
    _cost: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._last = self.clock()  # the run's start counts as a checkpoint (resume goes there)

    def due(self) -> bool:
        return self.clock() - self._last >= self.policy.interval(self._cost)

    def skip(self) -> None:
        self.skipped += 1

    def write(self, save: Callable[[], object]) -> None:
        """Run ``save`` and time it."""
        started = self.clock()
        save()
        self._last = self.clock()
        self._cost = self._last - started
        self.seconds += self._cost
        self.written += 1


class CheckpointWarning(UserWarning):
    """A damaged checkpoint was skipped; the run resumes from an earlier one."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _describe(path: Path) -> dict[str, Any]:
    return {"size": path.stat().st_size, "sha256": file_sha256(path)}


class CheckpointManager:
    """Checkpoints of one run, under ``root``."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self._verdicts: dict[str, str | None] = {}  # folder name -> why it is damaged (None: sound)
        #: what was skipped on the way to the checkpoint in use, one line per damaged checkpoint
        self.skipped: list[str] = []
        self._noted = False

    # ------------------------------------------------------------------ finding
    def _manifest(self, folder: Path) -> dict[str, Any] | None:
        try:
            return json.loads((folder / MANIFEST).read_text("utf-8"))
        except (OSError, ValueError):
            return None

    def _candidates(self) -> list[Path]:
        """Checkpoint folders, newest first (by their manifest's sequence number)."""
        if not self.root.is_dir():
            return []
        found = []
        for folder in self.root.iterdir():
            if folder.name.startswith(".") or not folder.is_dir():
                continue
            manifest = self._manifest(folder)
            seq = manifest.get("seq") if isinstance(manifest, dict) else None
            found.append((seq if isinstance(seq, int) else -1, folder.name, folder))
        return [folder for _, _, folder in sorted(found, reverse=True)]

    def damage(self, folder: Path) -> str | None:
        """Why the checkpoint ``folder`` cannot be used, or ``None`` when every file is whole."""
        if folder.name in self._verdicts:
            return self._verdicts[folder.name]
        verdict = self._check(folder)
        self._verdicts[folder.name] = verdict
        return verdict

    def _check(self, folder: Path) -> str | None:
        manifest = self._manifest(folder)
        if manifest is None:
            if (folder / MANIFEST).exists():
                return f"{MANIFEST} is unreadable"
            # written before manifests existed: usable when its state reads
            return None if self._read_state(folder) is not None else f"{STATE} is unreadable"
        files = manifest.get("files") if isinstance(manifest, dict) else None
        if not isinstance(files, dict) or STATE not in files:
            return f"{MANIFEST} lists no {STATE}"
        for name, expected in sorted(files.items()):
            if not isinstance(expected, dict) or Path(name).name != name or name in ("", ".", ".."):
                return f"{MANIFEST} is malformed (its entry {name!r})"  # never a path elsewhere
            path = folder / name
            try:
                size = path.stat().st_size
            except OSError:
                return f"{name} is missing"
            if size != expected.get("size"):
                return f"{name} has {size} bytes instead of {expected.get('size')}"
            if file_sha256(path) != expected.get("sha256"):
                return f"{name} does not match its recorded SHA-256"
        return None if self._read_state(folder) is not None else f"{STATE} is unreadable"

    @staticmethod
    def _read_state(folder: Path) -> dict[str, Any] | None:
        try:
            state = json.loads((folder / STATE).read_text("utf-8"))
        except (OSError, ValueError):
            return None
        return state if isinstance(state, dict) else None

    def _sound(self) -> Iterator[Path]:
        """Sound checkpoints, newest first; damaged ones met on the way go to :attr:`skipped`."""
        for folder in self._candidates():
            why = self.damage(folder)
            if why is None:
                yield folder
                continue
            line = f"checkpoint '{folder.name}' is damaged ({why})"
            if line not in self.skipped:
                self.skipped.append(line)

    def latest_dir(self) -> Path | None:
        """The newest checkpoint whose files are all whole, or ``None``."""
        return next(self._sound(), None)

    def latest_state(self) -> dict[str, Any] | None:
        """The state saved with :meth:`latest_dir`, or ``None`` when there is no checkpoint.

        Raises:
            RunDirectoryError: there are checkpoints, but every one of them is damaged.
        """
        folder = self.latest_dir()
        if folder is None:
            if self.skipped:
                raise RunDirectoryError(
                    f"No checkpoint in '{self.root}' can be used: " + "; ".join(self.skipped)
                    + f". Delete '{self.root}' and resume again to rerun this run from its first "
                    "epoch (its recipe and splits are kept), or start a new run.")
            return None
        state = self._read_state(folder)
        assert state is not None  # checked by damage()
        if self.skipped and not self._noted:
            self._noted = True
            note = ("; ".join(self.skipped) + f": resumed from '{folder.name}' instead, the epochs "
                    "after it are run again.")
            note = note[0].upper() + note[1:]
            state.setdefault("notes", []).append(note)
            warnings.warn(note, CheckpointWarning, stacklevel=2)
        return state

    # ------------------------------------------------------------------ writing
    def save(self, name: str, model: Any, state: dict[str, Any], *, optimizer: Any = None,
             best_model_weights: list[np.ndarray] | None = None, keep_best: bool = False) -> Path:
        """Write checkpoint ``name``; ``keep_best`` carries the previous best weights over."""
        ensure_dir(self.root)
        final = self.root / name
        tmp = self.root / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        model.save_weights(tmp / WEIGHTS)
        if optimizer is not None and getattr(optimizer, "built", False):
            arrays = {f"v{i:05d}": np.asarray(v.numpy()) for i, v in enumerate(optimizer.variables)}
            np.savez(tmp / OPTIMIZER, **arrays)
        sound = self._sound()
        previous = next(sound, None)
        files: dict[str, dict[str, Any]] = {}
        if best_model_weights is not None:
            np.savez(tmp / BEST, *best_model_weights)
        elif keep_best and previous is not None and (previous / BEST).is_file():
            os.link(previous / BEST, tmp / BEST)
            recorded = (self._manifest(previous) or {}).get("files", {}).get(BEST)
            if recorded is not None:  # the same inode: its digest is known
                files[BEST] = recorded
        atomic_write_json(tmp / STATE, state)
        for path in sorted(tmp.iterdir()):
            if path.name not in files:
                files[path.name] = _describe(path)
        seq = 0 if previous is None else int((self._manifest(previous) or {}).get("seq", -1)) + 1
        atomic_write_json(tmp / MANIFEST, {"seq": seq, "files": files})
        _fsync_dir(tmp)
        # keep the newest sound checkpoint other than the one being replaced
        keep = previous if previous is None or previous.name != name else next(sound, None)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        self._verdicts[name] = None
        _fsync_dir(self.root)
        atomic_write_json(self.root / POINTER, {"dir": name})
        for old in self.root.iterdir():
            if old.is_dir() and old.name not in (name, keep.name if keep else None):
                shutil.rmtree(old, ignore_errors=True)
                self._verdicts.pop(old.name, None)
        return final

    # ------------------------------------------------------------------ restoring
    def _latest(self) -> Path:
        folder = self.latest_dir()
        if folder is None:
            raise RunDirectoryError(f"There is no usable checkpoint under '{self.root}'.")
        return folder

    def restore_model(self, model: Any) -> None:
        folder = self._latest()
        try:
            model.load_weights(folder / WEIGHTS)
        except (OSError, ValueError) as exc:
            raise ModelFileError(
                f"Cannot load the weights of checkpoint '{folder}': {exc}. The run's model does "
                f"not match them; delete '{self.root}' and resume again to rerun this run from "
                "its first epoch.") from exc

    def has_optimizer(self) -> bool:
        folder = self.latest_dir()
        return folder is not None and (folder / OPTIMIZER).is_file()

    def restore_optimizer(self, optimizer: Any) -> None:
        """Assign the saved optimizer variables (the optimizer must be built the same way)."""
        folder = self._latest()
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
