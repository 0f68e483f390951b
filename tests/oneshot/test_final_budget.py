"""The final training sized to the time left from its trial's measured cost (FINAL02, FINAL04)."""

from __future__ import annotations

import pytest

from autotransfer.oneshot.final import final_recipe, shortened_to_fit
from autotransfer.train.checkpoint import CheckpointPolicy
from autotransfer.train.phases import PhaseRecord
from autotransfer.tuning.final_cost import MeasuredTrial
from tests.train.helpers import tiny_recipe


def recipe_2_3():
    recipe = tiny_recipe()
    return recipe.model_copy(update={"phases": [
        recipe.phases[0].model_copy(update={"epochs": 2}),
        recipe.phases[-1].model_copy(update={"epochs": 3})]})


def phases(last_best=2):
    """The trial: head 2 epochs of 5 s, last phase 3 of 3 epochs at 5 s, still improving."""
    return [PhaseRecord("head", 5, 2, epochs_run=2, best_epoch=0, epoch_seconds=(5.0, 5.0)),
            PhaseRecord("fine_tune", 2, 3, epochs_run=3, best_epoch=last_best,
                        epoch_seconds=(5.0, 5.0, 5.0))]


# the same trial, measured as a whole: 20 s of fixed work, 1 s per checkpoint, written after
# every epoch (rule CKPT01 with no interval; a phase's last epoch is its phase end's), 100 images
# to evaluate at 0.1 s each (the parts the phases' seconds leave out)
MEASURED = MeasuredTrial(epochs=(2, 3), epoch_s=(5.0, 5.0), features_s=0.0, fixed_s=20.0,
                         checkpoint_s=1.0, forward_s=0.1,
                         policy=CheckpointPolicy(min_interval_s=0.0, max_share=1.0))


def cost(growth=1.0):
    return lambda epochs: MEASURED.final_seconds(epochs, growth=growth, eval_images=100)


def test_the_lengthening_counts_the_whole_final_training():
    # the phases alone: (0.85 × 75 − 25) / 5 = 7 epochs would fit, at most doubled: +3, and
    # 1 + 6 epochs would take 74 s of the 75; the whole final training of 1 + 3 epochs costs
    # 20 + 20 + 4 + 10 = 54 s, each more 6 s: (63.75 − 54) / 6: +1
    old = final_recipe(recipe_2_3(), phases(), seconds_left=75.0)
    assert old.phases[-1].epochs == 6
    final = final_recipe(recipe_2_3(), phases(), seconds_left=75.0, cost=cost())
    assert [p.epochs for p in final.phases] == [1, 4]
    reason = final.reasons["phases.1.epochs"]
    assert reason.rule == "FINAL02" and reason.evidence["base_s"] == pytest.approx(54.0)
    assert reason.evidence["epoch_s"] == pytest.approx(6.0)
    assert cost()([1, 4])["total"] <= 0.85 * 75.0


def test_a_final_training_that_would_overrun_is_shortened_to_end_in_time():
    # FINAL01 keeps 1 + 3 epochs: 54 s on the same images, 20 + 1.5 × 20 + 4 + 10 = 64 s on
    # train + validation; 50 s are left: the last phase is cut to what fits (49 s), its reason
    # says so
    final = final_recipe(recipe_2_3(), phases(), seconds_left=50.0, growth=1.5,
                         cost=cost(1.5))
    assert [p.epochs for p in final.phases] == [1, 1]
    assert cost(1.5)([1, 1])["total"] <= 50.0
    reason = final.reasons["phases.1.epochs"]
    assert reason.rule == "FINAL04" and "shortened from 3 to 1" in reason.text
    assert reason.evidence["planned_s"] == pytest.approx(64.0)
    assert reason.evidence["checkpoints_s"] == pytest.approx(2.0)  # the two phase ends
    assert final.early_stopping.patience > 1
    # with more time it is not touched
    kept = final_recipe(recipe_2_3(), phases(), seconds_left=80.0, growth=1.5, cost=cost(1.5))
    assert not any(r.rule == "FINAL04" for r in kept.reasons.values())


def test_shortening_goes_to_earlier_phases_never_below_one_epoch():
    recipe = recipe_2_3()
    short = shortened_to_fit(recipe, cost(), 50.0)  # 2 + 3 epochs: 20 + 25 + 5 + 10 = 60 s
    assert [p.epochs for p in short.phases] == [2, 1]  # 20 + 15 + 3 + 10 = 48 s
    assert short.reasons["phases.1.epochs"].rule == "FINAL04"
    assert "phases.0.epochs" not in short.reasons or \
        short.reasons["phases.0.epochs"].rule != "FINAL04"
    # then the head: 1 + 1 epochs cost 42 s
    assert [p.epochs for p in shortened_to_fit(recipe, cost(), 45.0).phases] == [1, 1]
    # one epoch each is the least, even when still over
    assert [p.epochs for p in shortened_to_fit(recipe, cost(), 30.0).phases] == [1, 1]
    assert shortened_to_fit(recipe, cost(), 1000.0) is recipe
    assert shortened_to_fit(recipe, None, 1.0) is recipe


def test_summary_sets_the_final_trainings_estimate_beside_its_phases():
    """``estimated_seconds``: the final training as run (its epochs, its images) against the
    best trial's measured parts, what summary.json sets against the seconds it took."""
    from autotransfer.oneshot.final import merge_train_val
    from autotransfer.oneshot.final_plan import FinalTraining, estimated_seconds
    from tests.oneshot.test_final_probe import _splits

    splits = _splits(n_train=8, n_val=2)
    final = FinalTraining(recipe_2_3(), merge_train_val(splits), "", "")
    got = estimated_seconds(final, splits, MEASURED)
    # 20 s fixed, (2 + 3) epochs × 5 s × 10/8, 5 checkpoints of 1 s, 3 images evaluated at 0.1 s
    assert got == pytest.approx({"fixed": 20.0, "features": 0.0, "epochs": 31.25,
                                 "checkpoints": 5.0, "evaluation": 0.3, "total": 56.55}, abs=0.06)
    assert estimated_seconds(final, splits, None) is None
    one_phase = FinalTraining(tiny_recipe().model_copy(update={"phases": [
        recipe_2_3().phases[0]]}), splits, "", "")
    assert estimated_seconds(one_phase, splits, MEASURED) is None
