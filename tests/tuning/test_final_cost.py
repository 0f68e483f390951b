"""The final training's cost from a trial's measured seconds (tuning/final_cost.py, PLAN01)."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest

from autotransfer.train.phases import FeatureUse, PhaseRecord
from autotransfer.tuning.final_cost import MeasuredTrial
from autotransfer.tuning.results import trial_dir
from tests.tuning.test_oracle import oracle_for


def trial_metrics(*, n_train=250, head_epochs=(0.1,) * 20, tune_epochs=(5.0,) * 10,
                  head_features=49.0, tune_features=82.0, checkpoint=0.8, fixed=6.0,
                  reused=0.0):
    """A trial's metrics.json as trials.run_trial writes it: a head phase on pooled features
    (4 views) and a fine-tuning phase on a partial prefix's features, its wall seconds the sum
    of its parts (``reused``: features it took from the store, not in its own seconds)."""
    head = PhaseRecord("head", 5, len(head_epochs), epochs_run=len(head_epochs),
                       epoch_seconds=head_epochs,
                       features=FeatureUse(used=True, views=4, build_seconds=head_features - reused,
                                           reused_seconds=reused))
    tune = PhaseRecord("finetune", 4, len(tune_epochs), epochs_run=len(tune_epochs),
                       best_epoch=len(tune_epochs) - 1, epoch_seconds=tune_epochs,
                       features=FeatureUse(used=True, views=4, build_seconds=tune_features))
    wall = (sum(head_epochs) + sum(tune_epochs) + head_features - reused + tune_features
            + checkpoint + fixed)
    return {"phases": [head.to_dict(), tune.to_dict()], "n_train": n_train,
            "seconds_total": wall, "seconds_reused": reused, "checkpoint_seconds": checkpoint,
            "store": {"keys": []}}


def test_a_trial_is_split_into_the_parts_its_final_training_repeats():
    measured = MeasuredTrial.from_metrics(trial_metrics(reused=40.0), n_val=120)
    assert measured.epochs == (20, 10)
    assert measured.epoch_s == pytest.approx((0.1, 5.0))
    assert measured.features_s == pytest.approx(131.0)  # computed or reused
    assert measured.fixed_s == pytest.approx(6.0)
    assert measured.checkpoint_s == pytest.approx(0.8)
    # an image's evaluation: the slowest feature pass per image (here the fine-tuning prefix's)
    assert measured.forward_s == pytest.approx(82.0 / (4 * 250 + 120))


def test_the_final_training_counts_checkpoints_evaluation_and_the_added_features():
    measured = MeasuredTrial.from_metrics(trial_metrics(), n_val=120)
    same = measured.final_seconds(eval_images=240)  # on the tuning splits, features kept
    assert same["features"] == 0.0
    assert same["epochs"] == pytest.approx(52.0)
    assert same["checkpoints"] == pytest.approx(0.8 * (30 + 2))  # each epoch and phase
    assert same["evaluation"] == pytest.approx(240 * 82.0 / 1120)
    assert same["total"] == pytest.approx(6.0 + 52.0 + 25.6 + 240 * 82.0 / 1120)
    grown = measured.final_seconds([20, 12], growth=1.48, eval_images=240)
    assert grown["epochs"] == pytest.approx(1.48 * (2.0 + 60.0))
    # on train + validation the store's reuse still decodes and augments every image: counted
    # whole (a clothing_small_lite final training: 153 s of features its trial took 81 s for)
    assert grown["features"] == pytest.approx(1.48 * 131.0)
    evicted = measured.final_seconds(growth=1.48, features_kept=False)
    assert evicted["features"] == pytest.approx(1.48 * 131.0)
    assert measured.epoch_seconds(1, 1.48) == pytest.approx(1.48 * 5.0 + 0.8)


def test_without_phases_or_wall_seconds_nothing_is_measured():
    assert MeasuredTrial.from_metrics({"phases": []}, 10) is None
    assert MeasuredTrial.from_metrics({"seconds_total": 3.0}, 10) is None


def test_the_reserve_is_the_measured_final_training_not_the_trials_seconds(tmp_path):
    """The reserve once counted a trial's seconds less its features × the factor: the
    trainer's checkpoint after every epoch and the test split's evaluation were missing (a
    clothing_small_lite run: 57 s of a 240 s final training). Now they are counted."""
    oracle, _ = oracle_for(tmp_path, "random")
    splits = SimpleNamespace(val=[0] * 120, test=[0] * 120)
    oracle.feature_store = SimpleNamespace(splits=splits, evictions=0,
                                           resident=lambda keys: True)
    oracle.tuning_dir = tmp_path
    metrics = trial_metrics()
    trial = oracle.create_trial("tuner0")
    folder = trial_dir(tmp_path, trial.trial_id) / "run"
    folder.mkdir(parents=True)
    metrics["store"]["keys"] = ["k"]
    (folder / "metrics.json").write_text(json.dumps(metrics))
    seconds = metrics["seconds_total"]
    oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5, "seconds": seconds,
                                         "cold_seconds": seconds, "feature_seconds": 131.0})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)
    growth = 1.48
    oracle.keep_for_final(1.2 * growth, growth)
    final = MeasuredTrial.from_metrics(metrics, 120).final_seconds(
        growth=growth, eval_images=240)
    assert oracle.reserve == pytest.approx(1.2 * final["total"])
    # the old reserve: factor × (cold - features + features × added), short of the checkpoints
    # and the evaluation the final training pays
    old = 1.2 * growth * (seconds - 131.0 + 131.0 * (growth - 1) / growth)
    assert oracle.reserve > old + 1.2 * 25.0
    oracle.deadline = time.time() + oracle.reserve + 50.0  # a trial of ~190 s does not fit
    assert oracle.create_trial("tuner0").status == "STOPPED"
