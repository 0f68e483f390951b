"""In-memory trials: the trainer's executor and records, with frozen activations shared across
trials and with the final training."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from autotransfer.data.profile import profile_dataset
from autotransfer.data.splits import make_splits
from autotransfer.train import train
from autotransfer.tuning.trials import ActivationStore, run_trial
from tests.train.helpers import make_colour_dataset, tiny_recipe


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    dataset = make_colour_dataset(tmp_path_factory.mktemp("trials") / "ds",
                                  {"red": 8, "green": 8, "blue": 8})
    return make_splits(profile_dataset(dataset), val_fraction=0.25, seed=0)


def same_records(ours, theirs):
    """Equal phase records up to timings and float rounding."""
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert (a.name, a.trainable_from, a.epochs_planned, a.epochs_run, a.best_epoch,
                a.stopped_early, a.batch_size, dict(a.trainable_params)) == (
            b.name, b.trainable_from, b.epochs_planned, b.epochs_run, b.best_epoch,
            b.stopped_early, b.batch_size, dict(b.trainable_params))
        assert a.features.used == b.features.used and a.features.views == b.features.views
        assert sorted(a.history) == sorted(b.history)
        for key in a.history:
            assert a.history[key] == pytest.approx(b.history[key], rel=1e-3, abs=1e-4), key
        assert (a.solver is None) == (b.solver is None)
        if a.solver is not None:
            assert a.solver.c == b.solver.c and a.solver.chosen_by == b.solver.chosen_by


def test_an_in_memory_trial_gives_the_trainers_records_and_shares_activations(splits, tmp_path):
    recipe = tiny_recipe(domain_adaptation={"method": "adabn", "before_phase": 0}, phases=[
        {"name": "head", "epochs": 3, "trainable_from": 5, "learning_rate": 0.05},
        {"name": "fine_tune", "epochs": 2, "trainable_from": 3, "learning_rate": 0.002}])
    reference = train(splits, recipe, tmp_path / "run")
    store = ActivationStore(splits)
    trial = run_trial(recipe, store, tmp_path / "trial")
    assert trial.val_accuracy == pytest.approx(reference.val_accuracy)
    assert trial.metrics["val"]["loss"] == pytest.approx(reference.metrics["val"]["loss"],
                                                         rel=1e-3, abs=1e-4)
    same_records(trial.phases, reference.phases)
    assert trial.phases[0].seconds_per_epoch > 0 and trial.phases[1].trainable_params["head"] > 0
    assert store.misses == 2 and store.hits == 0
    # another trial that changes only what trains reuses AdaBN and both phases' activations
    faster = recipe.model_copy(update={"phases": [
        recipe.phases[0].model_copy(update={"learning_rate": 0.02}), recipe.phases[1]]})
    extractions = store.extractions
    second = run_trial(faster, store, tmp_path / "trial2")
    assert store.hits == 2 and store.misses == 2 and store.extractions == extractions
    assert all(p.features.shared for p in second.phases) and second.adabn.shared
    # the work it reused is charged to its cold duration: AdaBN and both phases' activations
    assert trial.metrics["seconds_reused"] == 0.0
    reused = sum(store.backbone_seconds.values()) + sum(p.features.reused_seconds
                                                        for p in second.phases)
    assert second.metrics["seconds_reused"] == pytest.approx(reused) and reused > 0
    assert (tmp_path / "trial2" / "recipe.yaml").is_file()
    # each trial records the keys of what it took, all still kept; once evicted, no longer
    keys = trial.metrics["store"]["keys"]
    assert len(keys) == 4 and second.metrics["store"]["keys"] == keys  # 2 × (views, validation)
    assert store.resident(keys)
    store.max_bytes = 0
    store.evict()
    assert store.bytes() == 0 and not store.resident(keys)


def test_adabn_before_a_later_phase_runs_in_memory_as_in_the_trainer(splits, tmp_path):
    recipe = tiny_recipe(domain_adaptation={"method": "adabn", "before_phase": 1}, phases=[
        {"name": "head", "epochs": 2, "trainable_from": 5, "learning_rate": 0.05},
        {"name": "fine_tune", "epochs": 2, "trainable_from": 3, "learning_rate": 0.002}])
    reference = train(splits, recipe, tmp_path / "run")
    trial = run_trial(recipe, ActivationStore(splits), tmp_path / "trial")
    assert trial.adabn is not None and trial.adabn.before_phase == 1
    assert trial.adabn.n_layers == reference.metrics["adabn"]["n_layers"] > 0
    same_records(trial.phases, reference.phases)
    assert trial.val_accuracy == pytest.approx(reference.val_accuracy)


def test_the_final_training_reuses_the_searchs_activations(splits, tmp_path):
    recipe = tiny_recipe(augmentation={"horizontal_flip": True, "zoom": 0.1},
                         domain_adaptation={"method": "adabn", "before_phase": 0},
                         head={"dropout": 0.0, "solver": "lbfgs"}, phases=[
                             {"name": "head", "epochs": 1, "trainable_from": 5,
                              "learning_rate": 0.05},
                             {"name": "fine_tune", "epochs": 2, "trainable_from": 3,
                              "learning_rate": 0.002}])
    store = ActivationStore(splits)
    run_trial(recipe, store, tmp_path / "trial")
    extractions, hits = store.extractions, store.hits
    reused = train(splits, recipe, tmp_path / "final", feature_source=store)
    assert store.extractions == extractions and store.hits == hits + 2  # nothing computed again
    assert all(p.features.shared and p.features.reused_seconds > 0 for p in reused.phases)
    assert reused.metrics["adabn"]["shared"]  # the backbone AdaBN adapted in the trial
    fresh = train(splits, recipe, tmp_path / "fresh")
    assert not fresh.metrics["adabn"]["shared"]
    same_records(reused.phases, fresh.phases)
    assert reused.val_accuracy == pytest.approx(fresh.val_accuracy)
    assert reused.metrics["adabn"]["after"] == pytest.approx(fresh.metrics["adabn"]["after"])


def test_train_plus_val_reuses_the_tuning_images_batches_exactly(splits, tmp_path):
    """The final training on train + validation: validation features whole, and of each view the
    batches of tuning training images; the rest computed: the same arrays as computing all."""
    import keras

    from autotransfer.train.data import TrainingInputs
    from autotransfer.train.executor import prefix_state_key
    from autotransfer.train.feature_cache import FeatureRequest, compute_features
    from autotransfer.train.model import build_classifier, set_trainable

    recipe = tiny_recipe(augmentation={"horizontal_flip": True, "zoom": 0.2}, seed=3)
    merged = splits.model_copy(update={"train": [*splits.train, *splits.val]})
    keras.utils.set_random_seed(recipe.seed)
    clf = build_classifier(recipe, len(splits.class_names))
    set_trainable(clf, 5)
    store = ActivationStore(splits)

    def request(s, views):
        inputs = TrainingInputs(s, 32)
        return FeatureRequest(clf, 5, views, inputs, recipe.augmentation, recipe.seed, 0, 4,
                              state_key=prefix_state_key(recipe, inputs, None, 4),
                              shareable=True)

    store.frozen_features(request(splits, 2))
    before = store.extractions
    got = store.frozen_features(request(merged, 2))
    assert got.shared and store.extractions == before + 2  # only the two views' tails
    expected = compute_features(request(merged, 2))
    np.testing.assert_allclose(got.val, expected.val, rtol=1e-5, atol=1e-6)
    for a, b in zip(got.views, expected.views, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    assert not np.allclose(got.views[0], got.views[1])  # the views are augmented differently
    # a view the earlier run did not compute is computed whole
    third = store.frozen_features(dataclasses.replace(request(merged, 3)))
    assert len(third.views) == 3 and store.extractions == before + 3


def test_the_timed_checkpoint_is_written_as_the_trainers_on_a_best_epoch(splits, tmp_path,
                                                                          monkeypatch):
    """On cached features Keras compiles the suffix, not the whole model: the checkpoint timed
    for the final training's cost holds that optimizer's slots and a copy of the best weights,
    as the trainer's does after an improving epoch (train/_runner.py), not the weights alone."""
    from autotransfer.train.checkpoint import CheckpointManager

    saved = []
    original = CheckpointManager.save

    def spy(self, name, model, state, *, optimizer=None, best_model_weights=None,
            keep_best=False):
        saved.append((optimizer, best_model_weights, len(model.get_weights())))
        return original(self, name, model, state, optimizer=optimizer,
                        best_model_weights=best_model_weights, keep_best=keep_best)

    monkeypatch.setattr(CheckpointManager, "save", spy)
    recipe = tiny_recipe(phases=[{"name": "head", "epochs": 2, "trainable_from": 5,
                                  "learning_rate": 0.05}])
    trial = run_trial(recipe, ActivationStore(splits), tmp_path / "trial")
    assert trial.phases[0].features.used  # trained on cached features: a suffix compiled
    [(optimizer, best, n_weights)] = saved
    assert optimizer is not None and optimizer.built and len(optimizer.variables) > 1
    assert best is not None and len(best) == n_weights
    assert trial.metrics["checkpoint_seconds"] > 0
    assert not (tmp_path / "trial" / "checkpoint_timing").exists()
