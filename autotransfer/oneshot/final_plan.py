"""Which recipe the final training runs, on which images, and the sentence that says so.

The decisions are rules: PLAN04 (train + validation with a test split, else the tuning splits),
FINAL01–FINAL03 (the rewrites of :mod:`.final`), SEL02 (the linear probe kept).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from autotransfer.oneshot.final import (FIT_IN_TIME, KEEP_C, LENGTHEN, final_recipe,
                                        merge_train_val, reuse_head_c, shortened_to_fit)
from autotransfer.recipe.schema import Recipe
from autotransfer.train.phases import PhaseRecord, phase_records

if TYPE_CHECKING:
    from autotransfer.data.splits import DataSplits
    from autotransfer.tuning.baseline import ProbeRun
    from autotransfer.tuning.results import TuneResult


@dataclass(frozen=True)
class FinalTraining:
    """The final training: its recipe, its images, what the step says and the report's note."""

    recipe: Recipe
    splits: DataSplits
    step: str
    note: str


def probe_final(probe: ProbeRun, mode: str, splits: DataSplits) -> FinalTraining:
    """The final training of the linear probe that SEL02 kept."""
    step = ("Final training of the linear probe (rule SEL02: fine-tuning did not beat it beyond "
            "chance)")
    if mode == "train+val":
        merged = merge_train_val(splits)
        recipe = reuse_head_c(probe.recipe, phase_records(probe.metrics), "linear probe",
                              source="the linear probe",
                              growth=len(merged.train) / max(1, len(splits.train)))
        return FinalTraining(recipe, merged, step, (
            f"The linear probe was kept (rule SEL02, section 4): trained on train + validation "
            f"({len(merged.train)} images) with the L2 strength its cross-validation chose "
            "(FINAL03); the validation numbers of this model are on images it trained on: the "
            "test split is the held-out measure."))
    recipe = reuse_head_c(probe.recipe, phase_records(probe.metrics), "linear probe",
                          source="the linear probe")
    return FinalTraining(recipe, splits, step, (
        "The linear probe was kept (rule SEL02, section 4): trained on the tuning splits (no test "
        "split: the validation images stay out of training, and compared it with fine-tuning), "
        "with the L2 strength its cross-validation chose."))


def probe_c(recipe: Recipe, probe: ProbeRun | None, growth: float = 1.0) -> Recipe:
    """``recipe`` with the L2 strength the linear probe cross-validated (FINAL03), when it
    trains the head alone, fitted exactly, on the same features as the probe (backbone, input
    size, data, augmentation, precision, AdaBN and seed: the same images, views and folds);
    else unchanged."""
    from autotransfer.tuning.baseline import fine_tunes, linear_probe_recipe

    if probe is None or fine_tunes(recipe) or recipe.head.solver != "lbfgs":
        return recipe
    keys = {"backbone", "data", "augmentation", "precision", "domain_adaptation", "seed", "head",
            "bn_policy"}
    if linear_probe_recipe(recipe).model_dump(include=keys) != \
            probe.recipe.model_dump(include=keys):
        return recipe
    return reuse_head_c(recipe, phase_records(probe.metrics), "linear probe",
                        source="the linear probe", growth=growth)


def refined_final(mode: str, refined: Recipe, tuning: TuneResult | None,
                  phases: Sequence[PhaseRecord], splits: DataSplits,
                  seconds_left: float | None, measured: Any = None,
                  features_kept: bool = True, probe: ProbeRun | None = None) -> FinalTraining:
    """The refined (or, without a search, the advised) recipe's final training (PLAN04).

    ``measured``: the best trial's :class:`~autotransfer.tuning.final_cost.MeasuredTrial`, which
    sizes the lengthening (FINAL02) and the last guard (FINAL04) to ``seconds_left``, the whole
    final training counted (``features_kept``: whether the search's store still keeps that
    trial's frozen features). ``probe``: the linear probe, whose cross-validated C a recipe
    that trains the same head alone keeps (FINAL03) when no search ran."""
    n_train, n_val = len(splits.train), len(splits.val)
    growth = (n_train + n_val) / max(1, n_train) if mode == "train+val" else 1.0
    if tuning is None:
        refined = probe_c(refined, probe, growth)
    cost = None if measured is None else (lambda epochs: measured.final_seconds(
        epochs, growth=growth, eval_images=n_val + len(splits.test), features_kept=features_kept))
    if mode == "train+val":
        recipe = final_recipe(refined, phases, seconds_left=seconds_left, growth=growth,
                              cost=cost)
        lengthened = list(dict.fromkeys(r.text for r in recipe.reasons.values()
                                        if r.rule in (LENGTHEN, FIT_IN_TIME)))
        which = ("the advised recipe, for its own epochs" if tuning is None else
                 f"the refined recipe, each phase for the epochs at which trial "
                 f"{tuning.best_trial} was best")
        step = (f"Final training on train + validation with {which} "
                f"({recipe.total_epochs} epochs"
                + (", the last phase lengthened: it was still improving"
                   if any(r.rule == LENGTHEN for r in recipe.reasons.values()) else "")
                + (", shortened to end within the time budget (FINAL04)"
                   if any(r.rule == FIT_IN_TIME for r in recipe.reasons.values()) else "")
                + ")")
        note = (f"Trained on train + validation ({n_train + n_val} images) with {which}; the "
                "validation numbers of this model are on images it trained on: the test split is "
                "the held-out measure." + "".join(f" {text}" for text in lengthened))
        kept = recipe.reasons.get("head.lbfgs_c")
        if tuning is None and kept is not None and kept.rule == KEEP_C:
            note += f" {kept.text}"
        return FinalTraining(recipe, merge_train_val(splits), step, note)
    recipe = shortened_to_fit(refined, cost, seconds_left)  # FINAL04
    if tuning is not None:
        recipe = reuse_head_c(recipe, phases, tuning.best_trial)
    kind = "advised" if tuning is None else "refined"
    kept_c = recipe.reasons.get("head.lbfgs_c")
    note = (f"Trained with the {kind} recipe on the tuning splits (no test split: the validation "
            "images stay out of training, and "
            + ("decided early stopping)." if tuning is None else "chose among the trials).")
            + (f" {kept_c.text}" if kept_c is not None and kept_c.rule == KEEP_C else "")
            + "".join(f" {t}" for t in dict.fromkeys(
                r.text for r in recipe.reasons.values() if r.rule == FIT_IN_TIME)))
    return FinalTraining(recipe, splits, f"Final training with the {kind} recipe", note)


def estimated_seconds(final: FinalTraining, splits: DataSplits, measured: Any,
                      features_kept: bool = True) -> dict[str, float] | None:
    """What ``measured`` (the best trial's
    :class:`~autotransfer.tuning.final_cost.MeasuredTrial`) says ``final`` will take, by part,
    before PLAN01's margin: set against the seconds it took in ``summary.json``. ``None``
    without a measurement or when ``final`` runs other phases than the trial."""
    if measured is None or len(final.recipe.phases) != len(measured.epochs):
        return None
    growth = len(final.splits.train) / max(1, len(splits.train))
    got = measured.final_seconds([p.epochs for p in final.recipe.phases], growth=growth,
                                 eval_images=len(final.splits.val) + len(final.splits.test),
                                 features_kept=features_kept)
    return {k: round(v, 1) for k, v in got.items()}


def advised_final(recipe: Recipe, splits: DataSplits) -> FinalTraining:
    """The advised recipe trained on the training split, already compared with the probe."""
    n_train = len(splits.train)
    return FinalTraining(recipe, splits, "", (
        f"Trained with the advised recipe on the training split ({n_train} images), with early "
        "stopping on the validation split, which then compared it with the linear probe (rule "
        "SEL02): no search ran, and the fine-tuned recipe was measured before the final model "
        "was chosen, so the validation images stay out of its training."))
