"""The final training's recipe: the FINAL rewrites of the refined recipe (rules FINAL01–FINAL04).

The search's best trial was measured on the validation split; the final model trains the refined
recipe again — on train + validation for the epochs at which that trial was best (FINAL01), its
last phase lengthened when it was still improving (FINAL02), or on the trials' own splits with the
head's L2 strength that trial cross-validated (FINAL03); either way shortened, when the trial's
measured cost says it would not end within the time left (FINAL04). Every rewritten field carries
its rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from autotransfer.advisor.rules import rule_params, rule_text
from autotransfer.recipe.schema import Reason, Recipe
from autotransfer.train.phases import PhaseRecord

BEST_EPOCHS, LENGTHEN, KEEP_C, FIT_IN_TIME = "FINAL01", "FINAL02", "FINAL03", "FINAL04"


def merge_train_val(splits: Any) -> Any:
    """``splits`` whose training images are train + validation (the final training's)."""
    return splits.model_copy(update={"train": [*splits.train, *splits.val],
                                     "val_source": splits.val_source + " (also trained on)"})


def final_recipe(refined: Recipe, phases: Sequence[PhaseRecord], *,
                 seconds_left: float | None = None, growth: float = 1.0,
                 cost: Any = None) -> Recipe:
    """``refined`` with each phase's epochs fixed at the best trial's best epoch, no early stop.

    When the best trial's last phase was still improving at its last epoch (best there, not
    stopped early) and ``seconds_left`` is given, that phase is lengthened — by at most as many
    epochs again — to what the time left affords, from the trial's measured seconds times
    ``growth`` (the final training set over the trial's): with ``cost`` (``cost(epochs)``: the
    final training's seconds by part for ``epochs`` per phase, the best trial's
    :meth:`~autotransfer.tuning.final_cost.MeasuredTrial.final_seconds` for the final training's
    images), the whole final training is counted — its fixed work, features, checkpoints and
    evaluation too — else the phases' seconds (FINAL02).
    With ``cost``, a final training that would not end within ``seconds_left`` is shortened
    until it does (FINAL04). The reasons say so.
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
    extra = _extra_epochs(phases, len(data["phases"]), seconds_left, growth, cost,
                          [p["epochs"] for p in data["phases"]])
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
    if cost is not None and seconds_left is not None:
        fit_in_time(data, reasons, cost, seconds_left)
    data["early_stopping"] = dict(data["early_stopping"], restore_best_weights=False,
                                  patience=max(p["epochs"] for p in data["phases"]) + 1)
    for key in ("early_stopping.patience", "early_stopping.restore_best_weights"):
        reasons[key] = Reason(rule=BEST_EPOCHS, text=rule_text(
            BEST_EPOCHS, {"epochs": data["early_stopping"]["patience"] - 1}), thresholds={})
    data["reasons"] = reasons
    data["name"] = refined.name + ", final"
    return Recipe.model_validate(data)


def reuse_head_c(refined: Recipe, phases: Sequence[PhaseRecord], trial: str | None, *,
                 source: str | None = None, growth: float = 1.0) -> Recipe:
    """``refined`` with ``head.lbfgs_c`` fixed at the L2 strength that the best trial's (or the
    linear probe's: ``source``) cross-validation chose, for the final training.

    On the trial's own splits the final model solves the same problem without cross-validating
    it again (the same images, views and folds would choose the same ``C``, and the
    cross-validation is most of the head's time). On train + validation (``growth``: its images
    over the trial's) the same ``C`` is kept, not scaled: scikit-learn's ``C`` weighs the
    *summed* loss, so the penalty per image already falls as images are added (rule FINAL03
    gives the evidence). A recipe that fixes ``C`` itself, or whose trial fitted no head
    exactly, is returned unchanged.
    """
    if refined.head.solver != "lbfgs" or refined.head.lbfgs_c is not None:
        return refined
    fits = [r.solver for r in phases if r.solver is not None and r.solver.cross_validated]
    if not fits:
        return refined
    fit = fits[-1]
    data = refined.model_dump()
    data["head"]["lbfgs_c"] = float(fit.c)
    evidence = {"trial": trial, "source": source or f"trial {trial}", "c": float(fit.c),
                "folds": fit.folds, "cv_accuracy": fit.cv_accuracy,
                "images": ("the same images" if growth == 1.0 else
                           f"{growth:.2f}× its images (train + validation)"),
                "growth": round(growth, 3)}
    data["reasons"] = dict(refined.reasons) | {"head.lbfgs_c": Reason(
        rule=KEEP_C, text=rule_text(KEEP_C, evidence), evidence=evidence, thresholds={})}
    return Recipe.model_validate(data)


def shortened_to_fit(recipe: Recipe, cost: Any, seconds_left: float | None) -> Recipe:
    """``recipe`` shortened by rule FINAL04 (:func:`fit_in_time`) to end within
    ``seconds_left``; unchanged without ``cost`` or ``seconds_left``, or when it fits."""
    if cost is None or seconds_left is None:
        return recipe
    data = recipe.model_dump()
    reasons = dict(recipe.reasons)
    fit_in_time(data, reasons, cost, seconds_left)
    if data["phases"] == recipe.model_dump()["phases"]:
        return recipe
    data["reasons"] = reasons
    return Recipe.model_validate(data)


def fit_in_time(data: dict[str, Any], reasons: dict[str, Reason], cost: Any,
                seconds_left: float) -> None:
    """Rule FINAL04, the last guard: shorten the phases of ``data`` (a recipe's dump), the last
    first and none below one epoch, until ``cost(epochs)`` — the final training's measured
    seconds by part — fits in ``seconds_left``; each shortened phase's reason says so."""
    phases = data["phases"]
    epochs = [int(p["epochs"]) for p in phases]
    before = list(epochs)
    planned = cost(epochs)
    for i in reversed(range(len(epochs))):
        while epochs[i] > 1 and cost(epochs)["total"] > seconds_left:
            epochs[i] -= 1
    if epochs == before:
        return
    now = cost(epochs)
    for i, (p, n, was) in enumerate(zip(phases, epochs, before, strict=True)):
        if n == was:
            continue
        p["epochs"], warmup = n, p["warmup_epochs"]
        p["warmup_epochs"] = round(warmup * n / was, 2)
        if p["warmup_epochs"] >= n:
            p["warmup_epochs"] = 0.0
        values = {"phase": p["name"], "before": was, "epochs": n,
                  "seconds_left": seconds_left, "planned_s": planned["total"],
                  "estimate_s": now["total"]}
        reasons[f"phases.{i}.epochs"] = Reason(
            rule=FIT_IN_TIME, text=rule_text(FIT_IN_TIME, values),
            evidence={"seconds_left": round(seconds_left, 1), "epochs_before": was,
                      "planned_s": round(planned["total"], 1),
                      **{f"{k}_s": round(v, 1) for k, v in now.items() if k != "total"},
                      "estimate_s": round(now["total"], 1)},
            thresholds={})
        if p["warmup_epochs"] != warmup:  # follows the epochs
            reasons[f"phases.{i}.warmup_epochs"] = reasons[f"phases.{i}.epochs"]


def _extra_epochs(phases: Sequence[PhaseRecord], n_phases: int, seconds_left: float | None,
                  growth: float, cost: Any = None, epochs: Sequence[int] = ()
                  ) -> dict[str, float] | None:
    """How many epochs the last phase can add in ``seconds_left``; ``None`` when it should not.

    With ``cost`` (the final training's measured seconds by part, for ``epochs`` per phase), the
    base is the whole final training at ``epochs`` and each added epoch costs its measured
    seconds × ``growth`` plus its checkpoint; else the phases' seconds × ``growth``."""
    import statistics

    if seconds_left is None or len(phases) != n_phases or not phases:
        return None
    record = phases[-1]
    run, measured = record.epochs_run, record.epoch_seconds
    if not record.still_improving or not measured:
        return None
    if cost is not None:
        base_s = cost(list(epochs))["total"]
        epoch_s = cost([*epochs[:-1], epochs[-1] + 1])["total"] - base_s
    else:
        epoch_s = statistics.median(measured) * growth
        base_s = sum(r.seconds for r in phases) * growth
    n = int((rule_params(LENGTHEN)["margin"] * seconds_left - base_s) // max(epoch_s, 1e-9))
    n = min(n, int(run))
    if n < 1:
        return None
    return {"epochs": n, "epoch_s": epoch_s, "base_s": base_s, "seconds_left": seconds_left}
