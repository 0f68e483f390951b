"""Adaptation through the one phase executor: ``train(..., objective=objective_for(recipe,
target))`` on the tiny backbone — the loss applied where the recipe says, target labels unread."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from autotransfer.data.target import read_target
from autotransfer.errors import InvalidConfigError
from autotransfer.train.adaptation import objective_for
from autotransfer.recipe.io import load_recipe
from autotransfer.train.run import train
from tests.train.helpers import make_colour_dataset, make_shifted_target, tiny_recipe

COUNTS = {"red": 10, "green": 10, "blue": 10}


def _target(root, shift: int = 60):
    """Class folders of brighter copies (a domain shift); the folders are evaluation labels."""
    return make_shifted_target(root, {k: 6 for k in COUNTS}, shift=shift)


def _recipe(method: str, **da):
    return tiny_recipe(
        domain_adaptation={"method": method, **da},
        phases=[{"name": "head", "epochs": 2, "trainable_from": 5, "learning_rate": 0.01}])


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    base = tmp_path_factory.mktemp("adapt")
    return make_colour_dataset(base / "source", COUNTS), _target(base / "target")


@pytest.fixture(scope="module")
def coral_candidates(folders, tmp_path_factory):
    """choose_weight's first call on a head-only coral recipe: λ 0 and 1 and the exact head
    trained into a folder, and that folder. Its runs are reused by a later call in the same
    folder: the tests call again in a copy of it."""
    from autotransfer.train.adaptation import choose_weight as cw

    source, target_dir = folders
    folder = tmp_path_factory.mktemp("coral_candidates") / "sel"
    choice = cw.choose_weight(source, _recipe("coral", weight=1.0), read_target(target_dir),
                              folder, weights=(1.0,), criterion="dev")
    return choice, folder


def _copy_of(folder, tmp_path):
    import shutil

    return shutil.copytree(folder, tmp_path / "sel")


def _weights(run):
    model = keras.saving.load_model(run.model_path, compile=False)
    return model.get_weights()


def test_coral_runs_on_cached_features_and_ignores_the_target_labels(folders, tmp_path):
    source, target_dir = folders
    recipe = _recipe("coral", weight=1.0)
    target = read_target(target_dir)
    assert target.labelled  # class folders: evaluation labels exist
    poisoned = target.model_copy(update={"eval_labels": {k: "red" for k in target.eval_labels}})
    run = train(source, recipe, tmp_path / "a", target=target_dir)  # the folder, as --target
    run_poisoned = train(source, recipe, tmp_path / "b",
                         objective=objective_for(recipe, poisoned))
    plain = train(source, tiny_recipe(phases=recipe.model_dump()["phases"],
                                      head={"dropout": 0.0, "hidden_units": 256}),
                  tmp_path / "c")
    history = run.phases[0].history
    assert "adapt_loss" in history and history["adapt_loss"][-1] > 0
    assert "adapt_loss" not in plain.phases[0].history
    assert run.metrics["domain_adaptation"]["phases"][0]["on"] == "cached features"
    assert run.metrics["domain_adaptation"]["target_images"] == 18
    for a, b in zip(_weights(run), _weights(run_poisoned), strict=True):
        np.testing.assert_array_equal(a, b)
    # the shipped model is the plain classifier (a bottleneck head, no discriminator), with the
    # same weight shapes as source-only training's and a head the loss moved
    shipped, source_only = _weights(run), _weights(plain)
    assert [a.shape for a in shipped] == [b.shape for b in source_only]
    assert any(not np.allclose(a, b) for a, b in zip(shipped, source_only, strict=True))


def test_mcc_trains_on_images_when_features_are_not_cached(folders, tmp_path):
    source, target_dir = folders
    recipe = _recipe("mcc", weight=0.5)
    objective = objective_for(recipe, read_target(target_dir))
    run = train(source, recipe, tmp_path / "run", objective=objective, feature_cache=False)
    assert objective.record["phases"][0]["on"] == "images"
    assert run.phases[0].history["adapt_loss"][-1] > 0


def test_adabn_target_ships_the_target_statistics(folders, tmp_path):
    source, target_dir = folders
    recipe = _recipe("adabn_target")
    objective = objective_for(recipe, read_target(target_dir))
    train(source, recipe, tmp_path / "run", objective=objective)
    record = objective.record["adabn_target"]
    assert record["n_images"] == 18 and record["n_layers"] > 0 and record["mean_abs_shift"] > 0


def test_a_method_that_needs_target_images_without_them_is_a_clear_error():
    with pytest.raises(InvalidConfigError, match="--target DIR"):
        objective_for(_recipe("dann"), None)
    assert objective_for(_recipe("none"), None) is None
    assert objective_for(tiny_recipe(domain_adaptation={"method": "adabn"}), None) is None


def test_the_weight_is_chosen_without_target_labels_and_explained(folders, tmp_path):
    from autotransfer.train.adaptation.choose_weight import choose_weight

    source, target_dir = folders
    recipe = _recipe("entropy", weight=1.0)
    target = read_target(target_dir)
    choice = choose_weight(source, recipe, target, tmp_path / "sel", weights=(1.0,),
                           exact_head=False)
    poisoned = target.model_copy(update={"eval_labels": {k: "blue" for k in target.eval_labels}})
    again = choose_weight(source, recipe, poisoned, tmp_path / "sel", weights=(1.0,),
                          exact_head=False)  # reused
    assert set(choice.scores) == {0.0, 1.0} and choice.weight in (0.0, 1.0)
    assert choice.exact_score is None and "exact_head" not in choice.named_scores
    assert again.scores == choice.scores
    assert choice.recipe.domain_adaptation.weight == choice.weight
    reason = choice.recipe.reasons["domain_adaptation.weight"]
    assert reason.rule == "DA09" and "without target labels" in reason.text


def test_a_head_only_recipe_also_scores_the_exact_head_without_target_labels(
        folders, coral_candidates, tmp_path):
    """Every phase trains a linear head alone: the source-only exact head (L-BFGS) is one more
    candidate, trained and scored by the same criterion, target labels unread."""
    from autotransfer.train.adaptation import choose_weight as cw

    source, target_dir = folders
    recipe = _recipe("coral", weight=1.0)
    assert cw.exact_head_fits(recipe)
    assert not cw.exact_head_fits(tiny_recipe(domain_adaptation={"method": "coral"}))  # tunes
    target = read_target(target_dir)
    choice, trained = coral_candidates  # choose_weight(source, recipe, target, ...) trained them
    _copy_of(trained, tmp_path)
    poisoned = target.model_copy(update={"eval_labels": {k: "blue" for k in target.eval_labels}})
    again = cw.choose_weight(source, recipe, poisoned, tmp_path / "sel", weights=(1.0,),
                             criterion="dev")  # reused runs, the same scores
    assert set(choice.named_scores) == {"0", "1", "exact_head"}
    assert again.named_scores == choice.named_scores
    exact = load_recipe(tmp_path / "sel" / "exact_head" / "recipe.yaml")
    assert exact.head.solver == "lbfgs" and exact.domain_adaptation.method == "none"
    metrics = json.loads((tmp_path / "sel" / "exact_head" / "metrics.json").read_text())
    assert metrics["phases"][0]["solver"]["c"] > 0  # fitted exactly, not by gradient
    reason = choice.recipe.reasons["domain_adaptation.weight"]
    assert "dev@exact_head" in reason.evidence and "exact head" in reason.text
    best = max(choice.named_scores, key=choice.named_scores.get)
    assert choice.exact_head == (best == "exact_head")
    assert choice.chosen_run.name == ("exact_head" if choice.exact_head else f"weight_{best}")


def test_the_exact_head_is_chosen_when_it_scores_best(folders, coral_candidates, tmp_path,
                                                     monkeypatch):
    """The criterion ranks the exact head first: the chosen recipe is the source-only recipe with
    the exact head, and DA09's reason says why (the candidates trained, then scored again here:
    a copy of the fixture's folder, whose finished runs choose_weight reuses)."""
    from autotransfer.train.adaptation import choose_weight as cw
    from autotransfer.train.adaptation import validate

    real = validate.scores

    def exact_first(c, criteria, *args, **kwargs):  # the real score, the exact head's lifted
        measured = real(c, criteria, *args, **kwargs)
        return {k: v + (100.0 if c.name == "exact_head" else 0.0) for k, v in measured.items()}

    monkeypatch.setattr(validate, "scores", exact_first)
    source, target_dir = folders
    recipe = _recipe("coral", weight=1.0)
    _copy_of(coral_candidates[1], tmp_path)
    choice = cw.choose_weight(source, recipe, read_target(target_dir), tmp_path / "sel",
                              weights=(1.0,), criterion="dev")
    assert choice.exact_head and choice.chosen_run == tmp_path / "sel" / "exact_head"
    assert choice.named_scores["exact_head"] == max(choice.named_scores.values())
    final = choice.recipe
    assert final.domain_adaptation.method == "none" and final.head.solver == "lbfgs"
    assert final.name == recipe.name and final.phases == recipe.phases
    for key in ("domain_adaptation.weight", "domain_adaptation.method", "head.solver"):
        assert final.reasons[key].rule == "DA09"
    assert "no adaptation" in final.reasons["head.solver"].text
    assert "exact" in final.reasons["head.solver"].text
