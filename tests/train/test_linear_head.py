"""The exact linear head: logistic regression by L-BFGS, its L2 strength by cross-validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from autotransfer.train import train
from autotransfer.train.linear_head import fit_linear_head, set_head_weights
from tests.train.helpers import make_colour_dataset, tiny_recipe


def blobs(n_per_class: int, n_classes: int, dim: int = 20, spread: float = 1.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, size=(n_classes, dim))
    y = np.repeat(np.arange(n_classes), n_per_class)
    x = np.abs(centres[y] + rng.normal(0, spread, size=(len(y), dim)))  # ReLU-like features
    return x, y


@pytest.mark.parametrize("n_classes", [2, 4])
def test_given_c_reproduces_scikit_learn(n_classes):
    x, y = blobs(30, n_classes, spread=3.0)
    fit = fit_linear_head([x], y, n_classes, c=0.05)
    reference = LogisticRegression(C=0.05, max_iter=5000, tol=1e-8).fit(x, y)
    assert fit.chosen_by == "given" and fit.c == 0.05 and fit.cv == []
    np.testing.assert_allclose(fit.predict_proba(x), reference.predict_proba(x), atol=2e-3)
    assert fit.kernel.shape == (20, n_classes) and fit.bias.shape == (n_classes,)


def test_cross_validation_regularises_noise_and_not_signal():
    rng = np.random.default_rng(1)
    noise = np.abs(rng.normal(size=(80, 50)))
    fit = fit_linear_head([noise], rng.integers(0, 2, 80), 2)
    assert fit.chosen_by == "cross-validation" and fit.folds == 5 and len(fit.cv) == 11
    assert fit.c == min(r["c"] for r in fit.cv)  # labels are noise: the strongest penalty
    x, y = blobs(40, 3, spread=1.5)
    clean = fit_linear_head([x], y, 3)
    assert clean.c > 0.01 and clean.cv_accuracy > 0.95
    assert clean.cv_accuracy == next(r["accuracy"] for r in clean.cv if r["c"] == clean.c)


def test_the_fast_cross_validation_chooses_what_exact_fits_would(monkeypatch):
    # the folds' fits run in float32: they rank the C values as float64 fits do; the fit
    # returned is float64 either way
    import autotransfer.train.linear_head as linear_head

    x, y = blobs(60, 5, dim=64, spread=4.0, seed=3)
    views = [x, np.abs(x + np.random.default_rng(4).normal(0, 1.0, x.shape))]
    fast = fit_linear_head(views, y, 5)
    monkeypatch.setattr(linear_head, "CV_DTYPE", np.float64)
    exact = fit_linear_head(views, y, 5)
    assert fast.c == exact.c and 0.001 < fast.c < 100.0  # a C inside the grid, not at its edge
    for a, b in zip(fast.cv, exact.cv, strict=True):
        assert a["accuracy"] == pytest.approx(b["accuracy"], abs=0.02)
    np.testing.assert_allclose(fast.kernel, exact.kernel)


@pytest.mark.parametrize("n_classes, weighted", [(5, False), (2, True)])
def test_folds_solved_in_parallel_choose_what_the_folds_in_turn_do(n_classes, weighted):
    # the default (folds in parallel threads, one BLAS thread each) against the straightforward
    # reference: the same folds, one after the other, with BLAS's default threads
    import contextlib

    import autotransfer.train.linear_head as linear_head

    x, y = blobs(20, n_classes, dim=16, spread=4.0, seed=5)
    views = [x, np.abs(x + np.random.default_rng(6).normal(0, 1.0, x.shape))]
    weights = np.where(y == 0, 2.0, 1.0) if weighted else None
    parallel = fit_linear_head(views, y, n_classes, sample_weight=weights, workers=2)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(linear_head, "_one_blas_thread", contextlib.nullcontext)
        in_turn = fit_linear_head(views, y, n_classes, sample_weight=weights, workers=1)
    assert parallel.c == in_turn.c and 0.001 < parallel.c < 100.0
    for a, b in zip(parallel.cv, in_turn.cv, strict=True):
        assert a["accuracy"] == pytest.approx(b["accuracy"], abs=0.02)
    np.testing.assert_allclose(parallel.predict_proba(x), in_turn.predict_proba(x), atol=1e-6)


def test_the_cross_validation_leaves_the_thread_limits_as_they_were():
    from threadpoolctl import threadpool_info

    before = [(i["internal_api"], i["num_threads"]) for i in threadpool_info()]
    x, y = blobs(20, 3)
    fit_linear_head([x], y, 3)
    assert [(i["internal_api"], i["num_threads"]) for i in threadpool_info()] == before


def test_views_of_one_image_stay_in_one_fold():
    # identical views of memorisable noise: if a view of a held-out image were fitted, the
    # cross-validated accuracy would be perfect instead of chance
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(60, 200)), rng.integers(0, 2, 60)
    fit = fit_linear_head([x, x, x], y, 2, grid=[100.0])
    assert fit.n_views == 3 and fit.cv_accuracy < 0.75


def test_a_class_too_small_to_fold_falls_back_to_a_stated_default():
    x, y = blobs(5, 3)
    y[:4] = 1  # class 0 keeps a single image
    fit = fit_linear_head([x], y, 3)
    assert fit.c == 1.0 and fit.folds == 0 and "too few" in fit.chosen_by


def test_a_class_absent_from_training_is_never_predicted():
    x, y = blobs(20, 2)
    fit = fit_linear_head([x], y, 3, c=1.0)
    assert fit.predict_proba(x)[:, 2].max() < 1e-6


def test_rows_of_every_view_are_checked():
    with pytest.raises(ValueError, match="one row per image"):
        fit_linear_head([np.zeros((4, 3)), np.zeros((5, 3))], np.array([0, 1, 0, 1]), 2)


def test_the_keras_head_predicts_what_was_fitted():
    import keras

    x, y = blobs(25, 3, dim=8)
    inputs = keras.Input((8,))
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax",
                                                   name="predictions")(inputs))
    fit = fit_linear_head([x], y, 3)
    set_head_weights(model, fit)
    np.testing.assert_allclose(model.predict(x, verbose=0), fit.predict_proba(x), atol=1e-5)
    with pytest.raises(ValueError, match="shape"):
        set_head_weights(model, fit_linear_head([x[:, :4]], y, 3, c=1.0))


def test_lbfgs_needs_a_linear_head():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="hidden_units"):
        tiny_recipe(head={"solver": "lbfgs", "hidden_units": 8})


@pytest.fixture(scope="module")
def colours(tmp_path_factory):
    return make_colour_dataset(tmp_path_factory.mktemp("lbfgs") / "ds",
                               {"red": 12, "green": 12, "blue": 12})


def lbfgs_recipe(**head):
    return tiny_recipe(
        head={"dropout": 0.2, "solver": "lbfgs", **head},
        augmentation={"horizontal_flip": True, "zoom": 0.1, "translation": 0.0},
        domain_adaptation={"method": "adabn", "before_phase": 0},
        phases=[{"name": "head", "epochs": 30, "trainable_from": 5, "learning_rate": 0.01},
                {"name": "fine_tune", "epochs": 2, "trainable_from": 3, "learning_rate": 1e-3}])


def test_trainer_fits_the_head_then_fine_tunes_from_it(colours, tmp_path):
    from autotransfer.train.export import load_model

    run = train(colours, lbfgs_recipe(), tmp_path / "run")
    metrics = json.loads((run.out / "metrics.json").read_text())
    head, fine = metrics["phases"]
    assert head["epochs_run"] == 1 and head["best_epoch"] == 0
    assert head["solver"]["solver"] == "lbfgs" and head["solver"]["chosen_by"] == "cross-validation"
    assert head["solver"]["n_views"] == 4 and head["solver"]["n_images"] == metrics["n_train"]
    assert head["history"]["val_accuracy"][0] >= 0.8
    assert fine["epochs_run"] == 2 and run.val_accuracy >= 0.8
    assert load_model(run.out / "model.keras") is not None
    assert "fitted the head exactly: logistic regression (L-BFGS)" in (
        run.out / "report.md").read_text()


def test_a_head_only_lbfgs_run_predicts_with_the_fitted_head(colours, tmp_path):
    recipe = lbfgs_recipe(lbfgs_c=0.5)
    recipe = recipe.model_copy(update={"phases": recipe.phases[:1]})
    run = train(colours, recipe, tmp_path / "run")
    metrics = json.loads((run.out / "metrics.json").read_text())
    (head,) = metrics["phases"]
    assert head["solver"]["c"] == 0.5 and head["solver"]["chosen_by"] == "given"
    # the model's own validation accuracy is the solver's (the head is what predicts)
    assert metrics["val"]["accuracy"] == pytest.approx(head["history"]["val_accuracy"][0])


def test_an_in_memory_trial_gives_the_trainers_numbers(colours, tmp_path):
    from autotransfer.data.profile import profile_dataset
    from autotransfer.data.splits import make_splits
    from autotransfer.tuning.trials import ActivationStore, run_trial

    recipe = lbfgs_recipe()
    recipe = recipe.model_copy(update={"phases": recipe.phases[:1]})
    splits = make_splits(profile_dataset(colours), val_fraction=0.25, seed=0)
    trained = train(splits, recipe, tmp_path / "run").metrics
    trial = run_trial(recipe, ActivationStore(splits), tmp_path / "trial")
    assert trial.phases[0].solver.c == trained["phases"][0]["solver"]["c"]
    assert trial.metrics["val"]["accuracy"] == pytest.approx(trained["val"]["accuracy"])
    assert trial.metrics["val"]["loss"] == pytest.approx(trained["val"]["loss"], rel=1e-3)
