"""The forecast against what ``auto`` measured (issue 18): the advisor's expected held-out
accuracy of a linear probe and of the advised recipe (:mod:`autotransfer.advisor.forecast`), each
beside the accuracy the run measured for that candidate, and on which split.

The linear probe is measured where it is the final model (on the test split when there is one),
otherwise as rule SEL02's candidate (trained on the training split, on validation) or, in a run
that adapts to a target, as rule DA11's exact linear head that lost to the adapting model (the
same, on validation: without a search, or as the search's trial 'probe'); the advised
recipe as the final model when that fine-tunes (the refined recipe after a search), otherwise as
SEL02's fine-tuned candidate on validation. A candidate that was not measured says so.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autotransfer.advisor.forecast import Forecast
    from autotransfer.tuning.baseline import BaselineChoice, ProbeRun


@dataclass(frozen=True)
class Versus:
    """One forecast (accuracy, interval) beside what was measured (``None``: not measured)."""

    expected: float
    interval: tuple[float, float]
    measured: float | None
    split: str | None  # "test" or "validation"
    model: str  # which model was measured

    @property
    def within(self) -> bool | None:
        """Whether the measure lies in the interval (``None``: nothing measured)."""
        if self.measured is None:
            return None
        return self.interval[0] <= self.measured <= self.interval[1]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"interval": list(self.interval), "within": self.within}


@dataclass(frozen=True)
class ForecastCheck:
    """The forecast of both candidates against the run's measures (``summary.json``)."""

    linear_probe: Versus
    advised: Versus | None  # None: the forecast states none (the advised recipe is the probe)
    fitted_on: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"linear_probe": self.linear_probe.to_dict(),
                "advised": None if self.advised is None else self.advised.to_dict(),
                "fitted_on": list(self.fitted_on)}

    def markdown(self) -> list[str]:
        """The report's table and a sentence on how to read it."""
        lines = ["| | forecast | interval | measured | measured on | within the interval? |",
                 "|---|---|---|---|---|---|"]
        for name, v in (("linear probe", self.linear_probe), ("advised recipe", self.advised)):
            if v is None:
                continue
            seen = "–" if v.measured is None else f"{v.measured:.1%}"
            inside = ("–" if v.measured is None else "yes" if v.within else
                      f"no ({100 * (v.measured - v.expected):+.1f} points)")
            where = f"{v.split} split: {v.model}" if v.split else v.model
            lines.append(f"| {name} | {v.expected:.1%} | {v.interval[0]:.1%}–{v.interval[1]:.1%} "
                         f"| {seen} | {where} | {inside} |")
        return lines + ["", f"The forecast was stated before any training, from the probe's "
                        f"measurements, calibrated on {len(self.fitted_on)} datasets (leave one "
                        "out; `recipes/forecast.yaml`). A measure outside its interval says the "
                        "forecast missed on this data; a validation measure also chose the model "
                        "(early stopping, the search), so it leans high."]


def check(forecast: Forecast | None, metrics: dict[str, Any], *, final_fine_tunes: bool,
          probe: ProbeRun | None, choice: BaselineChoice | str | None,
          head: dict[str, Any] | None = None) -> ForecastCheck | None:
    """The forecast against the run's measures; ``None`` when the advice states no forecast.

    ``metrics``: the final model's; ``final_fine_tunes``: whether its recipe fine-tunes (else it is
    the linear probe); ``probe``/``choice``: rule SEL02's linear probe and comparison, if any;
    ``head``: rule DA11's exact linear head without a search (``Adaptation.linear_probe``).
    """
    if forecast is None:
        return None
    from autotransfer.tuning.baseline import FINE_TUNED

    test = metrics.get("test")
    final = (test["accuracy"], "test") if test else (metrics["val"]["accuracy"], "validation")
    compared = choice if choice is not None and not isinstance(choice, str) else None
    if not final_fine_tunes:
        lp = (*final, "the final model (the linear probe)")
    elif probe is not None:
        lp = (probe.metrics["val"]["accuracy"], "validation",
              "rule SEL02's linear probe, trained on the training split")
    elif head is not None and head.get("val_accuracy") is not None:
        lp = (float(head["val_accuracy"]), "validation",
              "rule DA11's exact linear head, trained on the training split (not kept)")
    else:
        lp = (None, None, "not trained in this run")
    advised = None
    if forecast.advised is not None and forecast.advised_interval is not None:
        if final_fine_tunes:
            ft = (*final, "the final model (the fine-tuned recipe)")
        elif compared is not None and FINE_TUNED in compared.scores:
            ft = (compared.scores[FINE_TUNED]["accuracy"], "validation",
                  "rule SEL02's fine-tuned candidate (not kept)")
        else:
            ft = (None, None, "not trained in this run")
        advised = Versus(forecast.advised, tuple(forecast.advised_interval), *ft)
    return ForecastCheck(Versus(forecast.linear_probe, tuple(forecast.linear_probe_interval), *lp),
                         advised, tuple(forecast.fitted_on))
