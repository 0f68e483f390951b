"""The final training's recipe: the FINAL rewrites of the refined recipe (rules FINAL01–FINAL03).

The search's best trial was measured on the validation split; the final model trains the refined
recipe again — on train + validation for the epochs at which that trial was best (FINAL01), its
last phase lengthened when it was still improving (FINAL02), or on the trials' own splits with the
head's L2 strength that trial cross-validated (FINAL03). Every rewritten field carries its rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from autotransfer.advisor.rules import rule_params, rule_text
from autotransfer.recipe.schema import Reason, Recipe
from autotransfer.train.phases import PhaseRecord

BEST_EPOCHS, LENGTHEN, KEEP_C = "FINAL01", "FINAL02", "FINAL03"


def merge_train_val(splits: Any) -> Any:
    """``splits`` whose training images are train + validation (the final training's)."""
    return splits.model_copy(update={"train": [*splits.train, *splits.val],
                                     "val_source": splits.val_source + " (also trained on)"})


def final_recipe(refined: Recipe, phases: Sequence[PhaseRecord], *,
                 seconds_left: float | None = None, growth: float = 1.0) -> Recipe:
    """``refined`` with each phase's epochs fixed at the best trial's best epoch, no early stop.

    When the best trial's last phase was still improving at its last epoch (best there, not
    stopped early) and ``seconds_left`` is given, that phase is lengthened — by at most as many
    epochs again — to what the time left affords, from the trial's measured seconds (phases and
    epochs) times ``growth`` (the final training set over the trial's). The reason says so.
    """
    data = refined.model_dump()
    reasons = dict(refined.reasons)
    for i, (p, record) in enumerate(zip(data["phases"], phases, strict=False)):
        best = record.best_epoch
        run = record.epochs_run or p["epochs"]
        p["epochs"] = max(1, int(best) + 1 if best is not None else int(run))
        if p["warmup_epochs"] >= p["epochs"]:
            p["warmup_epochs"] = 0.0
        reasons[f"phases.{i}.epochs"] = Reason(
            rule=BEST_EPOCHS, text=rule_text(BEST_EPOCHS, {"epochs": p["epochs"]}),
            evidence={"best_epoch": best, "epochs_run": record.epochs_run}, thresholds={})
        if p["warmup_epochs"] != refined.phases[i].warmup_epochs:  # follows the epochs
            reasons[f"phases.{i}.warmup_epochs"] = reasons[f"phases.{i}.epochs"]
    extra = _extra_epochs(phases, len(data["phases"]), seconds_left, growth)
    if extra:
        last, record = len(data["phases"]) - 1, phases[-1]
        p = data["phases"][last]
        before = p["epochs"]
        p["epochs"] = before + extra["epochs"]
        p["warmup_epochs"] = round(p["warmup_epochs"] * p["epochs"] / before, 2)
        reasons[f"phases.{last}.epochs"] = Reason(
            rule=LENGTHEN,
            text=rule_text(LENGTHEN, {"phase": p["name"], "before": before} | extra),
            evidence={"best_epoch": record.best_epoch, "epochs_run": record.epochs_run,
                      "seconds_left": round(extra["seconds_left"], 1),
                      "epoch_s": round(extra["epoch_s"], 2), "base_s": round(extra["base_s"], 1),
                      "growth": round(growth, 3)},
            thresholds=rule_params(LENGTHEN))
        if p["warmup_epochs"] != refined.phases[last].warmup_epochs:
            reasons[f"phases.{last}.warmup_epochs"] = reasons[f"phases.{last}.epochs"]
    data["early_stopping"] = dict(data["early_stopping"], restore_best_weights=False,
                                  patience=max(p["epochs"] for p in data["phases"]) + 1)
    for key in ("early_stopping.patience", "early_stopping.restore_best_weights"):
        reasons[key] = Reason(rule=BEST_EPOCHS, text=rule_text(
            BEST_EPOCHS, {"epochs": data["early_stopping"]["patience"] - 1}), thresholds={})
    data["reasons"] = reasons
    data["name"] = refined.name + ", final"
    return Recipe.model_validate(data)


def reuse_head_c(refined: Recipe, phases: Sequence[PhaseRecord], trial: str | None) -> Recipe:
    """``refined`` with ``head.lbfgs_c`` fixed at the L2 strength that the best trial's
    cross-validation chose, for a final training on the trial's own splits.

    The final model then solves the same problem as the trial without cross-validating it again
    (the same images, views and folds would choose the same ``C``, and the cross-validation is
    most of the head's time). A recipe that fixes ``C`` itself, or whose
    trial fitted no head exactly, is returned unchanged.
    """
    if refined.head.solver != "lbfgs" or refined.head.lbfgs_c is not None:
        return refined
    fits = [r.solver for r in phases if r.solver is not None and r.solver.cross_validated]
    if not fits:
        return refined
    fit = fits[-1]
    data = refined.model_dump()
    data["head"]["lbfgs_c"] = float(fit.c)
    evidence = {"trial": trial, "c": float(fit.c), "folds": fit.folds,
                "cv_accuracy": fit.cv_accuracy}
    data["reasons"] = dict(refined.reasons) | {"head.lbfgs_c": Reason(
        rule=KEEP_C, text=rule_text(KEEP_C, evidence), evidence=evidence, thresholds={})}
    return Recipe.model_validate(data)


def _extra_epochs(phases: Sequence[PhaseRecord], n_phases: int, seconds_left: float | None,
                  growth: float) -> dict[str, float] | None:
    """How many epochs the last phase can add in ``seconds_left``; ``None`` when it should not."""
    import statistics

    if seconds_left is None or len(phases) != n_phases or not phases:
        return None
    record = phases[-1]
    run, epochs = record.epochs_run, record.epoch_seconds
    if not record.still_improving or not epochs:
        return None
    epoch_s = statistics.median(epochs) * growth
    base_s = sum(r.seconds for r in phases) * growth
    n = int((rule_params(LENGTHEN)["margin"] * seconds_left - base_s) // max(epoch_s, 1e-9))
    n = min(n, int(run))
    if n < 1:
        return None
    return {"epochs": n, "epoch_s": epoch_s, "base_s": base_s, "seconds_left": seconds_left}
