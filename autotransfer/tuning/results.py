"""What a search produced: the trial table's rows (:class:`TrialRecord`) and :class:`TuneResult`
(``tuning.json``), and where a trial's files are."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotransfer.recipe.schema import Recipe
from autotransfer.train.phases import PhaseRecord, phase_records
from autotransfer.tuning.space import SearchSpace

#: KerasTuner's project folder inside a search's folder
PROJECT = "search"
TUNED_NAME = "recipe.tuned.yaml"


def trial_dir(out: Path, trial_id: str | None) -> Path:
    """The folder of trial ``trial_id`` of the search in ``out``."""
    return out / PROJECT / f"trial_{trial_id}"


def trial_phases(folder: Path) -> tuple[PhaseRecord, ...]:
    """The phase records of the trial in ``folder`` (its run's ``metrics.json``; ``()``: none)."""
    path = folder / "run" / "metrics.json"
    if not path.is_file():
        return ()
    return phase_records(json.loads(path.read_text(encoding="utf-8")))


@dataclass(frozen=True)
class TrialRecord:
    """One row of the trial table."""

    trial_id: str
    status: str
    values: dict[str, Any]
    changed: dict[str, Any]
    tuner_id: str | None = None
    val_accuracy: float | None = None
    val_loss: float | None = None
    seconds: float | None = None
    epochs: float | None = None
    message: str = ""
    #: the search's objective when it is not validation accuracy (DA11: DA09's criterion on
    #: the target, higher is better)
    score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class TuneResult:
    """What a search produced (on a worker of a distributed search: only its own trials)."""

    out: Path
    role: str
    recipe: Recipe
    space: SearchSpace
    trials: list[TrialRecord]
    refined: Recipe | None = None
    baseline_trial: str | None = None
    best_trial: str | None = None
    gain: float | None = None
    changes: list[dict[str, Any]] = field(default_factory=list)
    stopped_because: str = ""
    seconds: float = 0.0
    algorithm: str = "bayesian"
    #: how the kept trial was chosen (see :mod:`.selection`): the candidate, the test, why
    selection: dict[str, Any] = field(default_factory=dict)
    #: how trials were judged when not by validation accuracy (an adapting search: rule DA11,
    #: :mod:`.adapting`): the metric, its criterion, the rule and why; empty otherwise
    objective: dict[str, Any] = field(default_factory=dict)

    @property
    def refined_path(self) -> Path:
        return self.out / TUNED_NAME

    def trial(self, trial_id: str | None) -> TrialRecord | None:
        return next((t for t in self.trials if t.trial_id == trial_id), None)

    @property
    def baseline_accuracy(self) -> float | None:
        t = self.trial(self.baseline_trial)
        return None if t is None else t.val_accuracy

    @property
    def best_accuracy(self) -> float | None:
        t = self.trial(self.best_trial)
        return None if t is None else t.val_accuracy

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "role": self.role, "algorithm": self.algorithm,
                "recipe": str(self.out / "recipe.yaml"),
                "refined_recipe": str(self.refined_path) if self.refined is not None else None,
                "baseline_trial": self.baseline_trial, "best_trial": self.best_trial,
                "baseline_val_accuracy": self.baseline_accuracy,
                "best_val_accuracy": self.best_accuracy, "gain": self.gain,
                "changes": self.changes, "stopped_because": self.stopped_because,
                "selection": self.selection,
                "objective": self.objective or {"metric": "val_accuracy", "direction": "max"},
                "seconds": self.seconds, "space": self.space.to_dict(),
                "trials": [t.to_dict() for t in self.trials]}


def baseline_trial(done: list[TrialRecord]) -> TrialRecord | None:
    """The completed trial of the recipe as given (no field changed; of several, the one trained
    longest, as Hyperband's brackets repeat it), or ``None``."""
    baselines = [t for t in done if not t.changed]
    return (max(baselines, key=lambda t: float(t.values.get("tuner/epochs", 0)))
            if baselines else None)
