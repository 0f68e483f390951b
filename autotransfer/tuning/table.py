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
    records = []
    tuner_of = getattr(oracle, "tuner_of", {})
    for trial_id in sorted(oracle.trials):
        t = oracle.trials[trial_id]

        def metric(name: str, t: Any = t) -> float | None:
            return float(t.metrics.get_last_value(name)) if t.metrics.exists(name) else None

        values = {k: _py(v) for k, v in t.hyperparameters.values.items()}
        records.append(TrialRecord(
            trial_id=trial_id, status=str(t.status), values=values,
            changed=space.changed({k: v for k, v in values.items() if not k.startswith("tuner/")}),
            tuner_id=tuner_of.get(trial_id), val_accuracy=metric("val_accuracy"),
            val_loss=metric("val_loss"), seconds=metric("seconds"), epochs=metric("epochs"),
            message=_last_line(t.message) if str(t.status) != "COMPLETED" else ""))
    return records
