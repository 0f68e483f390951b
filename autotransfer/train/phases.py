"""Typed, frozen records of an executed recipe: one :class:`PhaseRecord` per phase, AdaBN's
:class:`AdaBNRecord`, and the executor's :class:`ExecState` (what a checkpoint saves).

Records are returned, never mutated: each epoch gives a new record (:meth:`PhaseRecord.after_epoch`,
``dataclasses.replace``). ``to_dict`` gives the JSON of ``metrics.json`` and of a checkpoint's
``state.json``; ``from_dict`` reads it back (also the dicts written before these records existed:
missing fields take their defaults). This module imports neither TensorFlow nor Keras, so the
readers of a run (``auto``'s final recipe, the tuner, reports) can use it cheaply.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


def _frozen_map(values: Mapping[str, Any] | None, convert: Any) -> Mapping[str, Any]:
    return MappingProxyType({str(k): convert(v) for k, v in (values or {}).items()})


#: rule ES01's tie-breaks (see :meth:`PhaseRecord.after_epoch`) and its default tolerance
TIE_BREAKS = ("earliest", "latest", "second_metric")
TIE_TOLERANCE = 1e-6
TIE_RULE = "ES01"


def tie_rule() -> tuple[str, float]:
    """Rule ES01's ``tie_break`` and ``tolerance`` (relative: values this close are tied)."""
    from autotransfer.advisor.rules import recipes_dir, rule_params
    from autotransfer.errors import InvalidConfigError

    params = rule_params(TIE_RULE)
    tie_break = str(params.get("tie_break", "earliest"))
    if tie_break not in TIE_BREAKS:
        raise InvalidConfigError(
            f"{recipes_dir() / 'rules.yaml'}: rule {TIE_RULE}'s tie_break is {tie_break!r}; "
            f"use one of {', '.join(TIE_BREAKS)}")
    tolerance = params.get("tolerance", TIE_TOLERANCE)
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not (
            0 <= tolerance < 1):
        raise InvalidConfigError(
            f"{recipes_dir() / 'rules.yaml'}: rule {TIE_RULE}'s tolerance is {tolerance!r}; "
            "use a number from 0 (exact ties only) to below 1 (a relative difference)")
    return tie_break, float(tolerance)


@dataclass(frozen=True)
class CVPoint:
    """One ``C`` of the exact head's cross-validation: mean fold accuracy and log loss."""

    c: float
    accuracy: float
    log_loss: float

    def to_dict(self) -> dict[str, float]:
        return {"c": self.c, "accuracy": self.accuracy, "log_loss": self.log_loss}


@dataclass(frozen=True)
class SolverRecord:
    """What the exact head solver (``head.solver: lbfgs``) fitted, and how ``C`` was chosen."""

    c: float
    chosen_by: str  # "cross-validation", "given" or "default (too few images per class ...)"
    folds: int
    cv: tuple[CVPoint, ...]
    n_images: int
    n_views: int
    train_accuracy: float
    train_loss: float
    seconds: float
    solver: str = "lbfgs"

    @property
    def cross_validated(self) -> bool:
        return self.chosen_by == "cross-validation"

    @property
    def cv_accuracy(self) -> float | None:
        return next((p.accuracy for p in self.cv if p.c == self.c), None)

    def to_dict(self) -> dict[str, Any]:
        return {"solver": self.solver, "c": self.c, "chosen_by": self.chosen_by,
                "folds": self.folds, "cv_accuracy": self.cv_accuracy,
                "cv": [p.to_dict() for p in self.cv], "n_images": self.n_images,
                "n_views": self.n_views, "train_accuracy": self.train_accuracy,
                "train_loss": self.train_loss, "seconds": self.seconds}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SolverRecord:
        return cls(c=float(d["c"]), chosen_by=str(d["chosen_by"]), folds=int(d["folds"]),
                   cv=tuple(CVPoint(float(p["c"]), float(p["accuracy"]), float(p["log_loss"]))
                            for p in d.get("cv") or ()),
                   n_images=int(d["n_images"]), n_views=int(d["n_views"]),
                   train_accuracy=float(d["train_accuracy"]), train_loss=float(d["train_loss"]),
                   seconds=float(d["seconds"]), solver=str(d.get("solver", "lbfgs")))


@dataclass(frozen=True)
class FeatureUse:
    """Whether a phase trained on frozen features, why, and where they came from.

    The first six fields are the :class:`~autotransfer.train.feature_cache.CachePlan`;
    ``build_seconds`` is what this run spent computing them, ``shared`` says they came from a
    shared source (the search's activations) and ``reused_seconds`` what that saved;
    ``view_seconds`` and ``val_seconds`` time each pass on its own (each augmented view of the
    training images, the validation images), when it was computed, here or by the run that
    shared it: what the final training's cost is sized from (``tuning/final_cost.py``).
    """

    used: bool = False
    reason: str = ""
    views: int = 0
    boundary: str = ""
    feature_shape: tuple[int, ...] = ()
    bytes: int = 0
    build_seconds: float = 0.0
    shared: bool = False
    reused_seconds: float = 0.0
    view_seconds: tuple[float, ...] = ()
    val_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["feature_shape"] = list(self.feature_shape)
        d["view_seconds"] = list(self.view_seconds)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> FeatureUse:
        d = dict(d or {})
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in d.items() if k in names}
        values["feature_shape"] = tuple(int(v) for v in values.get("feature_shape") or ())
        values["view_seconds"] = tuple(float(v) for v in values.get("view_seconds") or ())
        return cls(**values)


@dataclass(frozen=True)
class PhaseRecord:
    """One phase of an executed recipe: what ran, how it ended, what it cost."""

    name: str
    trainable_from: int
    epochs_planned: int
    monitor: str = "val_loss"
    epochs_run: int = 0
    best_value: float | None = None
    best_epoch: int | None = None
    wait: int = 0  # epochs since the monitor last improved (the patience counter)
    stopped_early: bool = False
    history: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    epoch_seconds: tuple[float, ...] = ()
    trainable_params: Mapping[str, int] = field(default_factory=dict)
    batch_size: int | None = None
    features: FeatureUse = field(default_factory=FeatureUse)
    solver: SolverRecord | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "history", _frozen_map(self.history, lambda v: tuple(
            float(x) for x in v)))
        object.__setattr__(self, "trainable_params", _frozen_map(self.trainable_params, int))
        object.__setattr__(self, "epoch_seconds", tuple(float(s) for s in self.epoch_seconds))

    # ------------------------------------------------------------------ derived
    @property
    def seconds(self) -> float:
        """Seconds of the phase's epochs (or solve) plus computing its frozen features."""
        return float(sum(self.epoch_seconds)) + self.features.build_seconds

    @property
    def seconds_per_epoch(self) -> float:
        if not self.epoch_seconds:
            return 0.0
        return float(sum(self.epoch_seconds)) / len(self.epoch_seconds)

    @property
    def finished(self) -> bool:
        return self.stopped_early or self.epochs_run >= self.epochs_planned

    @property
    def still_improving(self) -> bool:
        """Best at its last epoch, which was the last one planned (not stopped early), and the
        monitored value strictly improved there: an epoch that only won a tie (rule ES01) is
        restored, but a plateau is not "still improving" (FINAL02 lengthens only a rise)."""
        return (self.best_epoch is not None and self.epochs_run > 0 and self.wait == 0
                and self.best_epoch == self.epochs_run - 1 and not self.stopped_early
                and self.epochs_run >= self.epochs_planned)

    def last(self, metric: str) -> float | None:
        values = self.history.get(metric)
        return values[-1] if values else None

    # ------------------------------------------------------------------ new records
    def after_epoch(self, logs: Mapping[str, float], seconds: float, *, patience: int,
                    tie_break: str | None = None) -> tuple[PhaseRecord, bool]:
        """The record after one more epoch with ``logs``; and whether this epoch is now the best
        one (its weights are the ones to restore).

        Patience counts epochs since the monitored value last strictly improved (higher
        ``val_accuracy``, lower anything else), as Keras' ``EarlyStopping`` does. Which of the
        epochs tied at the best value is *the* best is rule ES01's ``tie_break`` (``None``: the
        rule's): ``earliest`` (Keras' and fastai's strict comparison), ``latest``, or
        ``second_metric`` (the lowest ``val_loss`` among epochs tied on ``val_accuracy``, the
        highest ``val_accuracy`` among ties on ``val_loss``; the earliest when it is missing).
        """
        value = logs.get(self.monitor)
        if value is None:  # the schema only allows metrics that fit() logs
            raise RuntimeError(f"early_stopping.monitor '{self.monitor}' not in {list(logs)}")
        if tie_break is not None and tie_break not in TIE_BREAKS:
            raise ValueError(f"tie_break {tie_break!r} is not one of {TIE_BREAKS}")
        rule = tie_rule() if tie_break is None else (tie_break, TIE_TOLERANCE)
        sign = 1.0 if self.monitor == "val_accuracy" else -1.0
        epoch = self.epochs_run
        tied = self.best_value is not None and abs(value - self.best_value) <= rule[1] * max(
            1.0, abs(self.best_value))
        improved = self.best_value is None or (not tied and sign * (value - self.best_value) > 0)
        best = improved or (tied and self._wins_tie(logs, rule[0]))
        history = {k: tuple(v) for k, v in self.history.items()}
        for key, v in logs.items():
            history[key] = history.get(key, ()) + (float(v),)
        best_value = float(value) if improved else self.best_value
        best_epoch = epoch if best else self.best_epoch
        wait = 0 if improved else self.wait + 1
        stopped = wait >= patience and epoch + 1 < self.epochs_planned
        return dataclasses.replace(
            self, epochs_run=epoch + 1, history=history, best_value=best_value,
            best_epoch=best_epoch, wait=wait, stopped_early=stopped,
            epoch_seconds=self.epoch_seconds + (float(seconds),)), best

    def _wins_tie(self, logs: Mapping[str, float], tie_break: str) -> bool:
        """Whether an epoch tied with the best one on the monitor replaces it (rule ES01)."""
        if tie_break == "latest":
            return True
        if tie_break != "second_metric":
            return False
        other, sign = (("val_loss", -1.0) if self.monitor == "val_accuracy"
                       else ("val_accuracy", 1.0))
        values = self.history.get(other, ())
        if other not in logs or self.best_epoch is None or self.best_epoch >= len(values):
            return False
        return sign * (float(logs[other]) - values[self.best_epoch]) > 0

    def solved(self, solver: SolverRecord, logs: Mapping[str, float]) -> PhaseRecord:
        """The record of a phase whose head was solved exactly: one 'epoch' with ``logs``."""
        return dataclasses.replace(
            self, epochs_run=1, stopped_early=False, best_epoch=0,
            best_value=float(logs[self.monitor]), wait=0,
            history={k: (float(v),) for k, v in logs.items()},
            epoch_seconds=(solver.seconds,), solver=solver)

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        """The JSON of ``metrics.json`` and ``state.json`` (``solver`` only where one ran)."""
        d = {"name": self.name, "trainable_from": self.trainable_from,
                "epochs_planned": self.epochs_planned, "epochs_run": self.epochs_run,
                "stopped_early": self.stopped_early, "monitor": self.monitor,
                "best_value": self.best_value, "best_epoch": self.best_epoch, "wait": self.wait,
                "seconds": self.seconds, "epoch_seconds": list(self.epoch_seconds),
                "seconds_per_epoch": self.seconds_per_epoch,
                "history": {k: list(v) for k, v in self.history.items()},
                "feature_cache": self.features.to_dict(),
                "trainable_params": dict(self.trainable_params), "batch_size": self.batch_size}
        return d if self.solver is None else d | {"solver": self.solver.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PhaseRecord:
        best_epoch, best_value, batch = (d.get("best_epoch"), d.get("best_value"),
                                         d.get("batch_size"))
        return cls(
            name=str(d["name"]), trainable_from=int(d["trainable_from"]),
            epochs_planned=int(d.get("epochs_planned") or d.get("epochs_run") or 0),
            monitor=str(d.get("monitor", "val_loss")), epochs_run=int(d.get("epochs_run") or 0),
            best_value=None if best_value is None else float(best_value),
            best_epoch=None if best_epoch is None else int(best_epoch),
            wait=int(d.get("wait") or 0), stopped_early=bool(d.get("stopped_early")),
            history=d.get("history") or {}, epoch_seconds=tuple(d.get("epoch_seconds") or ()),
            trainable_params=d.get("trainable_params") or {},
            batch_size=None if batch is None else int(batch),
            features=FeatureUse.from_dict(d.get("feature_cache")),
            solver=SolverRecord.from_dict(d["solver"]) if isinstance(d.get("solver"), Mapping)
            else None)


def phase_records(metrics: Mapping[str, Any] | None) -> tuple[PhaseRecord, ...]:
    """The typed phase records of a run's or a trial's ``metrics.json`` content (none: ``()``)."""
    return tuple(PhaseRecord.from_dict(p) for p in (metrics or {}).get("phases") or ())


@dataclass(frozen=True)
class Measure:
    accuracy: float
    loss: float

    def to_dict(self) -> dict[str, float]:
        return {"accuracy": self.accuracy, "loss": self.loss}


@dataclass(frozen=True)
class AdaBNRecord:
    """AdaBN as run: before which phase, its BN layers and images, the mean statistics shift,
    and the validation accuracy and loss before and after it (when measured)."""

    before_phase: int
    n_layers: int
    n_images: int
    mean_abs_shift: float
    before: Measure | None = None
    after: Measure | None = None
    shared: bool = False  # the adapted weights came from an earlier trial of the same search

    def to_dict(self) -> dict[str, Any]:
        return {"before_phase": self.before_phase, "n_layers": self.n_layers,
                "n_images": self.n_images, "mean_abs_shift": self.mean_abs_shift,
                "before": None if self.before is None else self.before.to_dict(),
                "after": None if self.after is None else self.after.to_dict(),
                "shared": self.shared}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> AdaBNRecord | None:
        if not d:
            return None

        def measure(m: Any) -> Measure | None:
            return None if not m else Measure(float(m["accuracy"]), float(m["loss"]))

        return cls(int(d.get("before_phase", 0)), int(d["n_layers"]), int(d["n_images"]),
                   float(d["mean_abs_shift"]), measure(d.get("before")),
                   measure(d.get("after")), bool(d.get("shared", False)))


@dataclass(frozen=True)
class ExecState:
    """Where an execution stands: the next phase, epochs so far, batch size, records so far."""

    batch_size: int
    phase: int = 0
    global_epoch: int = 0
    phases: tuple[PhaseRecord, ...] = ()
    adabn: AdaBNRecord | None = None

    def with_record(self, index: int, record: PhaseRecord) -> ExecState:
        """This state with phase ``index``'s record set (appended when it is the next one)."""
        phases = list(self.phases)
        if index < len(phases):
            phases[index] = record
        elif index == len(phases):
            phases.append(record)
        else:
            raise IndexError(f"phase {index} follows {len(phases)} recorded phase(s)")
        return dataclasses.replace(self, phases=tuple(phases))

    def to_dict(self) -> dict[str, Any]:
        return {"phase": self.phase, "global_epoch": self.global_epoch,
                "batch_size": self.batch_size, "phases": [p.to_dict() for p in self.phases],
                "adabn": None if self.adabn is None else self.adabn.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ExecState:
        return cls(batch_size=int(d["batch_size"]), phase=int(d.get("phase", 0)),
                   global_epoch=int(d.get("global_epoch", 0)),
                   phases=tuple(PhaseRecord.from_dict(p) for p in d.get("phases") or ()),
                   adabn=AdaBNRecord.from_dict(d.get("adabn")))


def total_epochs(records: Sequence[PhaseRecord]) -> int:
    return sum(r.epochs_run for r in records)
