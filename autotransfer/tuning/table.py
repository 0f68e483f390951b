"""The trial table of a search: one :class:`~.results.TrialRecord` per trial of the oracle."""

from __future__ import annotations

from typing import Any

from autotransfer.tuning.results import TrialRecord
from autotransfer.tuning.space import SearchSpace


def _py(value: Any) -> Any:
    """Plain Python numbers (KerasTuner's Bayesian oracle proposes NumPy scalars)."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value


def _last_line(message: str | None) -> str:
    lines = [ln.strip() for ln in (message or "").strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def trial_records(oracle: Any, space: SearchSpace) -> list[TrialRecord]:
    """The trial table of a (chief or local) oracle, by trial id."""
    tuner_of = getattr(oracle, "tuner_of", {})
    objective = oracle.objective.name  # an adapting search's score (DA11), else val_accuracy
    return [trial_record(oracle.trials[trial_id], space, tuner_of.get(trial_id), objective)
            for trial_id in sorted(oracle.trials)]


def trial_record(t: Any, space: SearchSpace, tuner_id: str | None = None,
                 objective: str = "val_accuracy") -> TrialRecord:
    """One KerasTuner trial as a :class:`TrialRecord` (ended or not); ``score`` is the
    ``objective`` metric when it is not validation accuracy (rule DA11)."""

    def metric(name: str) -> float | None:
        return float(t.metrics.get_last_value(name)) if t.metrics.exists(name) else None

    values = {k: _py(v) for k, v in t.hyperparameters.values.items()}
    return TrialRecord(
        trial_id=t.trial_id, status=str(t.status), values=values,
        changed=space.changed({k: v for k, v in values.items() if not k.startswith("tuner/")}),
        tuner_id=tuner_id, val_accuracy=metric("val_accuracy"), val_loss=metric("val_loss"),
        seconds=metric("seconds"), epochs=metric("epochs"),
        message=_last_line(t.message) if str(t.status) != "COMPLETED" else "",
        score=None if objective == "val_accuracy" else metric(objective))
