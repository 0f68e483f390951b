"""The final training's cost from a trial's measured seconds (tuning/final_cost.py, PLAN01)."""

from __future__ import annotations

import dataclasses
import json
import time
from types import SimpleNamespace

import pytest

from autotransfer.train.checkpoint import CheckpointPolicy
from autotransfer.train.phases import FeatureUse, PhaseRecord
from autotransfer.tuning.final_cost import MeasuredTrial, read_measured, saved_share
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
    measured = dataclasses.replace(MeasuredTrial.from_metrics(trial_metrics(), n_val=120),
                                   policy=CheckpointPolicy(min_interval_s=30, max_share=0.05))
    same = measured.final_seconds(eval_images=240)  # on the tuning splits, features kept
    assert same["features"] == 0.0
    assert same["epochs"] == pytest.approx(52.0)
    # rule CKPT01: each phase's end, and one within the fine-tuning phase's 50 s of epochs
    assert same["checkpoints"] == pytest.approx(0.8 * 3)
    assert same["evaluation"] == pytest.approx(240 * 82.0 / 1120)
    assert same["total"] == pytest.approx(6.0 + 52.0 + 2.4 + 240 * 82.0 / 1120)
    grown = measured.final_seconds([20, 12], growth=1.48, eval_images=240)
    assert grown["epochs"] == pytest.approx(1.48 * (2.0 + 60.0))
    # on train + validation the store's reuse still decodes and augments every image: counted
    # whole (a clothing_small_lite final training: 153 s of features its trial took 81 s for)
    assert grown["features"] == pytest.approx(1.48 * 131.0)
    evicted = measured.final_seconds(growth=1.48, features_kept=False)
    assert evicted["features"] == pytest.approx(1.48 * 131.0)
    assert measured.epoch_seconds(1, 1.48) == pytest.approx(1.48 * 5.0 + 0.8 * 1.48 * 5.0 / 30)


def test_checkpoints_are_counted_as_the_trainer_spaces_them():
    """Rule CKPT01: at most one per epoch (a phase's last epoch is its phase end), one each
    interval, and the interval grows with a costly checkpoint (1 / max_share × its cost)."""
    base = MeasuredTrial.from_metrics(trial_metrics(), n_val=120)
    every = dataclasses.replace(base, policy=CheckpointPolicy(min_interval_s=0, max_share=1.0))
    assert every.checkpoints((20, 10)) == 2 + 2 + 9  # head: 2 s of epochs / 0.8 s; tune: all
    costly = dataclasses.replace(base, checkpoint_s=4.0,
                                 policy=CheckpointPolicy(min_interval_s=10, max_share=0.2))
    assert costly.interval() == pytest.approx(20.0)
    assert costly.checkpoints((20, 10), growth=2.0) == 1 + 1 + 5  # tune: 100 s / 20 s
    assert costly.final_seconds(growth=2.0)["checkpoints"] == pytest.approx(4.0 * 7)


def test_a_trials_record_is_read_once_for_the_reserve_and_the_final_guard(tmp_path):
    """read_measured: no folder, an unreadable record or a record whose ``store`` is not a
    mapping gives no error; the features count as kept without a store, and with one only
    while it keeps every key the trial recorded."""
    keeps = SimpleNamespace(resident=lambda keys: keys == ["k"])
    assert read_measured(None, 10, keeps) == (None, False)
    assert read_measured(None, 10, None) == (None, True)
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.json").write_text("[1, 2]")
    assert read_measured(run, 10, keeps) == (None, False)
    metrics = trial_metrics() | {"store": "not a mapping"}
    (run / "metrics.json").write_text(json.dumps(metrics))
    measured, kept = read_measured(run, 120, keeps)
    assert measured == MeasuredTrial.from_metrics(metrics, 120) and not kept
    (run / "metrics.json").write_text(json.dumps(metrics | {"store": {"keys": ["k"]}}))
    assert read_measured(run, 120, keeps)[1] and read_measured(run, 120, None)[1]
    (run / "metrics.json").write_text(json.dumps(metrics | {"store": {"keys": ["k", "j"]}}))
    assert not read_measured(run, 120, keeps)[1]


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


def test_without_a_shared_store_the_reserve_still_counts_the_evaluation(tmp_path):
    """shared_cache=False: no feature store, but the search's splits (``oracle.splits``, a
    callable as tune() sets it) still give the validation and test images to evaluate."""
    oracle, _ = oracle_for(tmp_path, "random")
    oracle.splits = lambda: SimpleNamespace(val=[0] * 120, test=[0] * 120)
    oracle.tuning_dir = tmp_path
    metrics = trial_metrics()
    trial = oracle.create_trial("tuner0")
    folder = trial_dir(tmp_path, trial.trial_id) / "run"
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5,
                                         "seconds": metrics["seconds_total"]})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)
    oracle.keep_for_final(1.2, 1.0)
    final = MeasuredTrial.from_metrics(metrics, 120).final_seconds(eval_images=240)
    assert final["evaluation"] > 0
    assert oracle.reserve == pytest.approx(1.2 * final["total"])


def timed_passes(*, views=(5.0, 4.0, 4.0, 4.0), val=1.68, n_train=250, n_val=120, batch=32):
    """A fine-tuning trial whose frozen-feature passes were timed one by one: per image 4 ms
    decoding (the first view's pass, and the validation pass), 6 ms augmenting (the views)
    and 10 ms of the prefix's forward pass."""
    metrics = trial_metrics(n_train=n_train)
    metrics["phases"] = metrics["phases"][1:]
    metrics["phases"][0]["feature_cache"].update(views=len(views), view_seconds=list(views),
                                                 val_seconds=val)
    metrics["phases"][0]["batch_size"] = batch
    return MeasuredTrial.from_metrics(metrics, n_val=n_val)


def test_features_on_train_and_validation_are_counted_pass_by_pass():
    """The store reuses the trial's whole batches and its validation features: the final
    training decodes (once) and augments all 370 images per view, and runs the forward pass only
    on the rows after the 224 reused ones (the timings' own split: 4 + 4×6 + 4×10 ms); what the
    validation pass took beyond its forward pass (here decoding, 0.48 s; in a real trial
    mostly the prefix's tracing, which the final training does in its first view) is added."""
    measured = timed_passes()
    (passes,) = measured.passes
    assert passes.forward_s() == pytest.approx(0.010)
    assert passes.decode_s() == pytest.approx(0.004)
    grown = measured.final_seconds(growth=1.48, eval_images=240)
    true = 370 * 0.004 + 4 * 370 * 0.006 + 4 * (370 - 224) * 0.010
    # counted as saved: PLAN01's saved_share of the reused rows' forward pass (the estimate may
    # hold augmentation), so the estimate stays above the passes' own split
    expected = 1.48 * 17.0 - saved_share() * 4 * 224 * 0.010 + 120 * 0.004
    assert grown["features"] == pytest.approx(expected)
    assert true + 120 * 0.004 <= expected
    assert grown["features"] < 1.48 * 17.0  # the old term: every pass × growth
    # on the trial's own images, kept: nothing; evicted: every pass again, on every image
    assert measured.final_seconds(growth=1.0)["features"] == 0.0
    assert measured.final_seconds(growth=1.48, features_kept=False)["features"] == \
        pytest.approx(1.48 * 17.0 + 1.68)


def test_a_forward_pass_that_cannot_be_told_apart_is_not_counted_as_saved():
    """One view (no augmentation): decoding and the forward pass are one figure, so nothing is
    counted as saved (every pass × growth); a first view no slower than the later ones (the
    images decoded before) saves the forward pass as the validation pass times it."""
    one = timed_passes(views=(5.0,), val=1.68)
    assert one.passes[0].forward_s() == 0.0
    assert one.final_seconds(growth=1.48)["features"] == pytest.approx(1.48 * 5.0 + 1.68)
    decoded = timed_passes(views=(4.0, 4.0), val=1.2)
    assert decoded.passes[0].forward_s() == pytest.approx(0.010)
    # decoded before (AdaBN): the first view shows no decoding; the forward pass is at most a
    # view's 16 ms per image, and the validation pass's 0.28 s beyond that (tracing,
    # decoding) the final training's first view pays on all its 370 images
    traced = timed_passes(views=(4.0, 4.0), val=2.2)
    assert traced.passes[0].forward_s() == pytest.approx(0.016)
    assert traced.final_seconds(growth=1.48)["features"] == pytest.approx(
        1.48 * 8.0 - saved_share() * 2 * 224 * 0.016 + (2.2 - 120 * 0.016) * 370 / 120)
    # a record without the passes timed one by one keeps the whole term
    assert MeasuredTrial.from_metrics(trial_metrics(), n_val=120).passes == ()
