"""auto's adaptation to a target: the loss weight λ chosen without target labels (rule DA09, or
DA10 when the budget cannot hold the candidates), and the gap before and after the final training.

The candidates are :func:`autotransfer.train.adaptation.choose_weight.choose_weight`'s runs (one
per λ of DA09's ``weights`` and λ = 0, scored by DA09's ``criterion``), kept in
``adaptation_weight/`` of the run folder. The gap "before" is the advisor's (frozen backbone), and,
when the source-only candidate (λ = 0) trained, that model's; the gap "after" is the final model's
(:mod:`autotransfer.train.adaptation.trained_gap`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotransfer.advisor.rules import rule_text
from autotransfer.recipe.schema import Reason, Recipe

CHOOSE, SKIP = "DA09", "DA10"
#: the candidates' folder inside the run folder
FOLDER = "adaptation_weight"
KEY = "domain_adaptation.weight"


@dataclass
class Adaptation:
    """What auto did about the target (``summary.json``'s ``adaptation``)."""

    method: str
    weight: float | None = None
    rule: str | None = None
    why: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    criterion: str | None = None
    seconds: float = 0.0
    #: the gap: ``before`` (advisor, frozen backbone), ``source_only`` (λ = 0 run), ``after``
    gap: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "weight": self.weight, "rule": self.rule, "why": self.why,
                "scores": self.scores, "criterion": self.criterion,
                "seconds": round(self.seconds, 2), "gap": self.gap}


def grid() -> tuple[str, tuple[float, ...]]:
    """DA09's criterion and λ candidates besides 0 (its params)."""
    from autotransfer.train.adaptation.choose_weight import rule_criterion, rule_weights

    return rule_criterion(), rule_weights()


def choose_in_budget(splits: Any, recipe: Recipe, target: Any, partial: Path, *,
                     seconds_left: Callable[[], float | None], sized_s: float | None,
                     factor: float, say: Callable[[str], None]) -> tuple[Recipe, Adaptation]:
    """``recipe`` with its λ chosen by DA09 (or kept, DA10), and the record of the choice.

    ``seconds_left()`` is the budget left for training (``None``: no budget), ``sized_s`` the
    time one training of ``recipe`` was sized to, ``factor`` the final training's over one run's.
    """
    from autotransfer.train.adaptation.choose_weight import choose_weight

    started = time.time()
    criterion, weights = grid()
    da = recipe.domain_adaptation
    record = Adaptation(method=da.method, weight=float(da.weight), criterion=criterion)
    left = seconds_left()
    if left is not None and sized_s is not None and left < (1 + factor) * sized_s:
        why = (f"the time left ({left:.0f} s) cannot hold the source-only candidate and the final "
               f"training ({1 + factor:.2f} × the {sized_s:.0f} s the recipe was sized to)")
        return _kept(recipe, record, why, {"seconds_left": round(left, 1),
                                           "sized_s": round(sized_s, 1)}, started)
    folder = partial / FOLDER
    say(f"Choosing the adaptation weight λ among 0, {', '.join(f'{w:g}' for w in weights)} by "
        f"{criterion}, without target labels (rule {CHOOSE}): training the source-only candidate")
    first = time.time()
    choose_weight(splits, recipe, target, folder, weights=(), criterion=criterion,
                  progress=False)  # λ = 0 alone: its time sizes the rest
    run_s = time.time() - first
    left = seconds_left()
    need = (len(weights) + factor) * run_s
    if left is not None and left < need:
        why = (f"after the source-only candidate ({run_s:.0f} s), the time left ({left:.0f} s) "
               f"cannot hold {len(weights)} more candidate(s) and the final training "
               f"({need:.0f} s)")
        return _kept(recipe, record, why, {"seconds_left": round(left, 1),
                                           "run_s": round(run_s, 1), "needed_s": round(need, 1)},
                     started)
    say(f"Training {len(weights)} more candidate(s) (λ = "
        f"{', '.join(f'{w:g}' for w in weights)})")
    choice = choose_weight(splits, recipe, target, folder, weights=weights, criterion=criterion,
                           progress=False)
    record.weight, record.rule = choice.weight, CHOOSE
    record.why = choice.recipe.reasons[KEY].text
    record.scores = {f"{w:g}": round(v, 5) for w, v in choice.scores.items()}
    record.seconds = time.time() - started
    say(f"λ = {choice.weight:g} ({CHOOSE}): {record.why}")
    return choice.recipe, record


def _kept(recipe: Recipe, record: Adaptation, why: str, evidence: dict[str, Any],
          started: float) -> tuple[Recipe, Adaptation]:
    text = rule_text(SKIP, {"weight": record.weight, "why": why})
    reason = Reason(rule=SKIP, text=text, evidence=evidence, thresholds={})
    record.rule, record.why, record.seconds = SKIP, text, time.time() - started
    return recipe.model_copy(update={"reasons": {**recipe.reasons, KEY: reason}}), record


def measure_gaps(record: Adaptation, advice: Any, model_dir: Path, splits: Any, target: Any,
                 recipe: Recipe, partial: Path) -> None:
    """Fill ``record.gap``: the advisor's gap, the source-only candidate's (when it trained) and
    the final model's, each the proxy A-distance and the predicted-class move (TV)."""
    from autotransfer.oneshot.folder import read_json
    from autotransfer.train.adaptation.trained_gap import run_gap
    from autotransfer.train.run import read_run_info

    measured = advice.probes.domain_gap
    if measured is not None:
        record.gap["before"] = {"a_distance": measured.a_distance,
                                "class_tv": measured.class_tv,
                                "measured_on": f"frozen {measured.backbone} features, source "
                                "probe sample against a target sample (the advisor's)"}
    def trained(folder: Path) -> dict[str, Any]:  # train(target=) measured it: metrics.json
        done = read_json(folder / "metrics.json") or {}
        return done.get("domain_gap") or run_gap(
            folder, splits, target, image_size=recipe.backbone.input_size,
            crop=recipe.data.crop).to_dict()

    zero = partial / FOLDER / "weight_0"
    if read_run_info(zero) is not None:
        record.gap["source_only"] = trained(zero)
    record.gap["after"] = trained(model_dir)


def markdown(record: Adaptation | None) -> list[str]:
    """The report's subsection: the adaptation, its weight and why, the gap before and after."""
    if record is None:
        return []
    out = ["", "### Adaptation to the target: the gap before and after", "",
           f"Method **{record.method}**"
           + (f", loss weight λ = {record.weight:g}" if record.weight is not None else "")
           + (f" (rule {record.rule}: {record.why})" if record.rule else "") + ".", ""]
    if record.scores:
        out += [f"Candidates scored by {record.criterion} (higher is better, no target label "
                "read): " + ", ".join(f"λ {k}: {v:.4f}" for k, v in record.scores.items())
                + f"; {record.seconds:.0f} s.", ""]
    rows = [("before (advisor, frozen backbone)", record.gap.get("before")),
            ("source-only trained (λ = 0)", record.gap.get("source_only")),
            ("after (final model)", record.gap.get("after"))]
    rows = [(name, g) for name, g in rows if g is not None]
    if rows:
        out += ["| gap | proxy A-distance | predicted classes move (TV) |", "|---|---|---|"]
        for name, g in rows:
            a = g.get("a_distance")
            out.append(f"| {name} | {'–' if a is None else f'{a:.3f}'} | {g['class_tv']:.3f} |")
        out += ["", "Proxy A-distance 2(1 − 2ε) of a cross-validated domain classifier (0: the "
                "domains look alike, 2: disjoint); TV: total variation between the predicted-class "
                "histograms on source and target. The trained models are measured on their "
                "penultimate features, source validation split against the target images."]
    return out
