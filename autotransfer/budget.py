"""The time budget of ``auto``: its floor (rule BUD03), and where the time went.

A budget is kept or refused, never silently overrun by the fixed steps: :func:`floor_before_probing`
refuses, right after profiling, a budget below the fixed costs alone; :func:`floor_after_probing`
refuses, before any training, one below the cheapest training (the head alone), estimated from
the image count and the forward pass measured while probing. :class:`StepTime` rows say how much
of the budget each step used, for ``report.md`` and ``summary.json``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from autotransfer.durations import format_duration
from autotransfer.errors import TimeBudgetError

RULE = "BUD03"


@dataclass(frozen=True)
class StepTime:
    """Seconds one step of ``auto`` took, and its share of the budget (``None``: no budget)."""

    step: str
    seconds: float
    share: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "seconds": round(self.seconds, 1),
                "share": None if self.share is None else round(self.share, 4)}


def step_times(seconds: Sequence[tuple[str, float]], budget: float | None) -> list[StepTime]:
    """``(step, seconds)`` pairs as rows with their share of ``budget``."""
    return [StepTime(name, s, s / budget if budget else None) for name, s in seconds]


def use(budget: float | None, seconds: Sequence[tuple[str, float]], total_s: float
        ) -> dict[str, Any]:
    """For ``summary.json``'s budget: ``steps`` (step, seconds, share) and :func:`verdict`."""
    return {"steps": [row.to_dict() for row in step_times(seconds, budget)],
            **verdict(total_s, budget)}


def rule_params() -> dict[str, Any]:
    """Rule BUD03's parameters (``fixed_s``, ``head_views``) from ``recipes/rules.yaml``."""
    from autotransfer.advisor.rules import load_rules

    return dict(load_rules().get(RULE).params)


def verdict(total_s: float, budget: float | None) -> dict[str, Any]:
    """Whether the run kept its budget: ``used``, ``exceeded`` and ``over_seconds``."""
    over = 0.0 if budget is None else max(0.0, total_s - budget)
    return {"used_seconds": round(total_s, 1),
            "used_share": None if not budget else round(total_s / budget, 4),
            "exceeded": over > 0, "over_seconds": round(over, 1)}


def _at_least(seconds: float) -> float:
    """``seconds`` rounded up to a budget a person would type (10 s, then whole minutes)."""
    step = 10.0 if seconds < 300 else 60.0
    return math.ceil(seconds / step) * step


def floor_before_probing(budget: float, elapsed: float, params: dict[str, Any],
                         wrap_up_s: float) -> None:
    """Refuse a budget below what is needed before anything is measured: the time already
    spent (profiling), the fixed costs of one training (BUD03's ``fixed_s``) and the wrap-up."""
    floor = elapsed + float(params["fixed_s"]) + wrap_up_s
    if budget >= floor:
        return
    raise TimeBudgetError(
        f"The time budget of {format_duration(budget)} cannot be kept (rule {RULE}): profiling "
        f"took {format_duration(elapsed)}, one training has about {params['fixed_s']:g} s of "
        f"fixed costs, and {wrap_up_s:g} s are kept for evaluating, exporting and the report — "
        f"before probing the backbones and the training's own passes over the images. Give at "
        f"least --time-budget {format_duration(_at_least(floor))} (more for probing and "
        "training), or 'none' for no limit.")


def head_seconds(facts: dict[str, Any], input_size: int, params: dict[str, Any], *,
                 feature_dim: int | None = None) -> float | None:
    """Estimated seconds of the cheapest training (the head alone), from the probe's forward
    pass (as rule BUD03 computes it), plus, given the backbone's ``feature_dim``, the exact
    head's cross-validation of C (:func:`cv_seconds`); ``None`` when the forward pass was not
    timed."""
    from autotransfer.advisor.cost import forward_seconds

    forward = forward_seconds(facts.get("n_train", math.nan), facts.get("forward_ms", math.nan),
                              input_size, facts.get("probe_size", math.nan))
    if forward != forward:  # NaN: not measured
        return None
    cv = 0.0 if feature_dim is None else cv_seconds(
        facts.get("n_train", 0), facts.get("n_classes", 0), feature_dim, params)
    return float(params["fixed_s"]) + float(params["head_views"]) * forward + cv


def cv_seconds(n_train: float, n_classes: float, feature_dim: int, params: dict[str, Any]
               ) -> float:
    """Seconds of the exact head's L-BFGS fits (rule BUD03): ``cv_grid`` values of C on each of
    ``cv_folds`` folds ((folds − 1)/folds of the ``head_views`` views of every image), then the
    kept fit on all of them, which runs in float64 (counted twice); each fit's cost is
    proportional to rows × features × classes, at ``cv_s_per_gelem`` seconds per 10⁹
    (calibrated in the rule; the folds counted one after the other, as on a loaded machine)."""
    n_classes = max(2.0, float(n_classes or 0))
    folds, views = float(params["cv_folds"]), float(params["head_views"])
    rows = float(n_train or 0) * views
    per_row = feature_dim * n_classes / 1e9
    work = params["cv_grid"] * folds * rows * (folds - 1) / folds * per_row + 2 * rows * per_row
    return float(params["cv_s_per_gelem"]) * work


def floor_after_probing(budget: float, elapsed: float, head_s: float | None,
                        wrap_up_s: float, facts: dict[str, Any]) -> None:
    """Refuse, before any training, a budget below the time spent plus the cheapest training
    and the wrap-up; the probe results are cached, so a rerun with more time measures nothing
    again."""
    if head_s is None:
        return
    floor = elapsed + head_s + wrap_up_s
    if budget >= floor:
        return
    raise TimeBudgetError(
        f"The time budget of {format_duration(budget)} cannot be kept (rule {RULE}): profiling "
        f"and probing took {format_duration(elapsed)}, and the cheapest training (the head "
        f"alone on frozen features) needs about {format_duration(head_s)} for "
        f"{facts.get('n_train')} training images (from the forward pass measured while "
        f"probing, {facts.get('forward_ms', math.nan):.2f} ms per image), plus {wrap_up_s:g} s "
        f"for evaluating, exporting and the report. Give at least --time-budget "
        f"{format_duration(_at_least(floor))} (the probe results are cached: a rerun does not "
        "measure again), or 'none' for no limit.")


def markdown_table(budget: dict[str, Any]) -> list[str]:
    """The report's lines: step, seconds, share of the budget, and whether it was kept."""
    rows = budget.get("steps") or []
    if not rows:
        return []
    total = budget.get("total")
    lines = ["| step | time | share of the budget |", "|---|---|---|"]
    for row in rows:
        share = "–" if row.get("share") is None else f"{row['share']:.0%}"
        lines.append(f"| {row['step']} | {format_duration(row['seconds'])} | {share} |")
    used = budget.get("used_seconds")
    if used is not None:
        share = "–" if not total else f"{used / total:.0%}"
        lines.append(f"| **total** | **{format_duration(used)}** | **{share}** |")
    lines.append("")
    if total is None:
        lines.append("No time budget was set.")
    elif budget.get("exceeded"):
        lines.append(f"**The budget of {format_duration(total)} was exceeded by "
                     f"{format_duration(budget.get('over_seconds'))}.**")
    else:
        lines.append(f"The budget of {format_duration(total)} was kept.")
    return lines
