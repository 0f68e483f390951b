"""What ``auto`` produced: :class:`AutoResult` (``summary.json``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autotransfer.train.run import RunMetrics

if TYPE_CHECKING:
    from autotransfer.advisor.advise import Advice
    from autotransfer.oneshot.adapt import Adaptation
    from autotransfer.oneshot.versus import ForecastCheck
    from autotransfer.tuning.baseline import BaselineChoice
    from autotransfer.tuning.results import TuneResult


@dataclass(frozen=True)
class AutoResult(RunMetrics):
    """What ``auto`` produced."""

    out: Path
    advice: Advice = field(repr=False)
    tuning: TuneResult | None = field(repr=False)  # None when no search ran (PLAN02, PLAN03)
    metrics: dict[str, Any] = field(repr=False)
    final: str
    budget: dict[str, Any]
    seconds: float
    #: rule SEL02: the linear probe against the fine-tuned recipe, or why they were not compared
    linear_probe: BaselineChoice | str | None = field(default=None, repr=False)
    #: issue 18: the advisor's forecast against what was measured (None: no forecast stated)
    forecast: ForecastCheck | None = field(default=None, repr=False)
    #: the final model's exported files, relative to ``out`` (model.keras first)
    exports: tuple[str, ...] = ()
    #: issue 19: the adaptation to a target (rules DA09/DA10) and the gap before and after
    adaptation: Adaptation | None = field(default=None, repr=False)

    @property
    def model_path(self) -> Path:
        return self.out / "model" / "model.keras"

    @property
    def report_path(self) -> Path:
        return self.out / "report.md"

    @property
    def html_report_path(self) -> Path:
        """``report.html``: the same story as one self-contained page."""
        return self.out / "report.html"

    def to_dict(self) -> dict[str, Any]:
        t = self.tuning
        tuning = {"skipped": self.budget.get("search_skipped"),
                  "rule": self.budget.get("rules", {}).get("search_skipped")} if t is None else {
            "trials": len(t.trials), "baseline_val_accuracy": t.baseline_accuracy,
            "best_val_accuracy": t.best_accuracy, "gain": t.gain, "best_trial": t.best_trial,
            "changes": t.changes, "selection": t.selection, "stopped_because": t.stopped_because}
        return {"out": str(self.out), "model": str(self.model_path),
                "report": str(self.report_path), "report_html": str(self.html_report_path),
                "final": self.final,
                "val_accuracy": self.val_accuracy, "test_accuracy": self.test_accuracy,
                "backbone": self.advice.recipe.backbone.name if t is None or t.refined is None
                else t.refined.backbone.name,
                "tuning": tuning, "linear_probe": _probe_summary(self.linear_probe),
                "forecast": None if self.forecast is None else self.forecast.to_dict(),
                "exports": list(self.exports),
                "adaptation": None if self.adaptation is None else self.adaptation.to_dict(),
                "budget": self.budget, "seconds": self.seconds}


def _probe_summary(value: BaselineChoice | str | None) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return {"compared": False, "why": value}
    return {"compared": True} | value.to_dict()
