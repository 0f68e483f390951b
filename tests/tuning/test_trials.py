"""In-memory trials: the trainer's results, with frozen activations shared across trials."""

from __future__ import annotations

import pytest

from autotransfer.data.profile import profile_dataset
from autotransfer.data.splits import make_splits
from autotransfer.train import train
from autotransfer.tuning.trials import ActivationStore, run_trial
from tests.train.helpers import make_colour_dataset, tiny_recipe


def test_an_in_memory_trial_gives_the_trainers_numbers_and_shares_activations(tmp_path):
    dataset = make_colour_dataset(tmp_path / "ds", {"red": 8, "green": 8, "blue": 8})
    recipe = tiny_recipe(domain_adaptation={"method": "adabn", "before_phase": 0}, phases=[
        {"name": "head", "epochs": 3, "trainable_from": 5, "learning_rate": 0.05},
        {"name": "fine_tune", "epochs": 2, "trainable_from": 3, "learning_rate": 0.002}])
    splits = make_splits(profile_dataset(dataset), val_fraction=0.25, seed=0)
    reference = train(splits, recipe, tmp_path / "run").metrics
    store = ActivationStore(splits)
    trial = run_trial(recipe, store, tmp_path / "trial")
    assert trial["val"]["accuracy"] == pytest.approx(reference["val"]["accuracy"])
    assert trial["val"]["loss"] == pytest.approx(reference["val"]["loss"], rel=1e-3, abs=1e-4)
    for ours, theirs in zip(trial["phases"], reference["phases"], strict=True):
        assert ours["epochs_run"] == theirs["epochs_run"]
        assert ours["best_epoch"] == theirs["best_epoch"]
        assert ours["history"]["val_loss"] == pytest.approx(theirs["history"]["val_loss"],
                                                            rel=1e-3, abs=1e-4)
    assert store.misses == 2 and store.hits == 0
    # another trial that changes only what trains reuses both phases' activations
    faster = recipe.model_copy(update={"phases": [
        recipe.phases[0].model_copy(update={"learning_rate": 0.02}), recipe.phases[1]]})
    second = run_trial(faster, store, tmp_path / "trial2")
    assert store.hits == 2 and store.misses == 2
    assert all(p["feature_cache"]["shared"] for p in second["phases"])
    # the work it reused is charged to its cold duration: AdaBN and both phases' activations
    assert trial["seconds_reused"] == 0.0
    views = [p["feature_cache"]["views"] for p in second["phases"]]
    reused = sum(store.backbone_seconds.values()) + sum(
        e["val_seconds"] + sum(e["view_seconds"][:n])
        for e, n in zip(store.activations.values(), views, strict=True))
    assert second["seconds_reused"] == pytest.approx(reused) and reused > 0
    assert (tmp_path / "trial2" / "recipe.yaml").is_file()
