"""The recipe's precision in the trainer: mixed_bfloat16 with float32 variables and outputs, the
GPU's own path, the --precision override, and no policy leaking from one run into the next."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

from autotransfer.cli import main
from autotransfer.recipe.io import load_recipe, save_recipe
from autotransfer.train import train
from autotransfer.train.export import classifier_part
from autotransfer.train.model import build_classifier
from autotransfer.train.precision import keras_policy, run_policy, with_precision
from tests.train.helpers import make_colour_dataset, tiny_recipe


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_colour_dataset(tmp_path_factory.mktemp("colours") / "ds",
                               {"red": 10, "green": 10, "blue": 10})


@pytest.mark.parametrize("precision, gpus, policy", [
    ("bfloat16", 0, "mixed_bfloat16"), ("float32", 0, "float32"), ("auto", 0, "float32"),
    ("bfloat16", 1, "mixed_float16"), ("auto", 1, "mixed_float16"), ("float32", 1, "float32")])
def test_policy_of_each_precision_on_a_cpu_and_a_gpu(precision, gpus, policy):
    assert keras_policy(precision, gpus) == policy


def test_the_policy_is_restored_after_a_run_even_when_it_fails():
    assert keras.mixed_precision.global_policy().name == "float32"
    with pytest.raises(RuntimeError):
        with run_policy("bfloat16", 0) as policy:
            assert policy == "mixed_bfloat16"
            assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
            raise RuntimeError("stopped")
    assert keras.mixed_precision.global_policy().name == "float32"


def test_bfloat16_training_keeps_variables_and_probabilities_in_float32(dataset, tmp_path):
    recipe = tiny_recipe(precision="bfloat16", phases=[
        {"name": "head", "epochs": 2, "trainable_from": 5, "learning_rate": 0.05},
        {"name": "all", "epochs": 1, "trainable_from": 0, "learning_rate": 0.001}])
    result = train(dataset, recipe, tmp_path / "bf16")
    assert result.metrics["precision"] == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"  # no leak into what follows
    assert all(np.isfinite(p["history"]["loss"]).all() for p in result.metrics["phases"])

    model = keras.models.load_model(result.model_path)
    assert {v.dtype for v in model.weights} == {"float32"}
    classifier = classifier_part(model)
    computed = {layer.compute_dtype for layer in classifier.layers if layer.weights}
    assert "bfloat16" in computed  # the backbone computes in bfloat16 ...
    assert classifier.get_layer("predictions").compute_dtype == "float32"  # ... the softmax not
    images = np.zeros((2, 32, 32, 3), dtype=np.uint8)
    probs = model(images, training=False)
    assert keras.backend.standardize_dtype(probs.dtype) == "float32"
    np.testing.assert_allclose(np.sum(np.asarray(probs), axis=1), 1.0, rtol=1e-5)

    # the next model built in this process is float32 again
    plain = build_classifier(tiny_recipe(), 3, weights=None)
    assert {layer.compute_dtype for layer in plain.model.layers if layer.weights} == {"float32"}


def test_exact_head_under_bfloat16_is_fitted_in_float(dataset, tmp_path):
    recipe = tiny_recipe(precision="bfloat16", head={"dropout": 0.0, "solver": "lbfgs"},
                         phases=[{"name": "head", "epochs": 1, "trainable_from": 5,
                                  "learning_rate": 0.01}])
    result = train(dataset, recipe, tmp_path / "lbfgs")
    assert result.metrics["precision"] == "mixed_bfloat16"
    model = keras.models.load_model(result.model_path)
    kernel, bias = classifier_part(model).get_layer("predictions").get_weights()
    assert kernel.dtype == np.float32 and np.isfinite(kernel).all() and np.isfinite(bias).all()
    assert 0.0 <= result.val_accuracy <= 1.0


def test_precision_override_on_the_command_line(dataset, tmp_path, capsys):
    path = tmp_path / "recipe.yaml"
    save_recipe(tiny_recipe(phases=[{"name": "head", "epochs": 1, "trainable_from": 5,
                                     "learning_rate": 0.01}]), path)
    out = tmp_path / "run"
    assert main(["train", str(dataset), "--recipe", str(path), "--out", str(out), "--precision",
                 "bfloat16", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["val_accuracy"] >= 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["precision"] == "mixed_bfloat16"
    executed = load_recipe(out / "recipe.yaml")
    assert executed.precision == "bfloat16" and executed.reasons["precision"].rule == "user"
    assert load_recipe(path).precision == "auto"  # the user's file is not changed

    assert main(["train", str(dataset), "--out", str(tmp_path / "r2"), "--resume",
                 "--precision", "float32"]) == 2
    assert "--precision" in capsys.readouterr().err
    assert main(["train", str(dataset), "--recipe", str(path), "--out", str(tmp_path / "r3"),
                 "--precision", "float16"]) == 2


def test_with_precision_records_the_users_choice_and_auto_keeps_the_recipes():
    recipe = tiny_recipe(precision="bfloat16")
    assert with_precision(recipe, "auto") is recipe
    changed = with_precision(recipe, "float32")
    assert changed.precision == "float32" and changed.reasons["precision"].rule == "user"


def test_tuning_trials_keep_activations_apart_by_precision():
    from autotransfer.train.executor import prefix_state_key
    from autotransfer.train.precision import run_policy

    recipe = tiny_recipe()
    with run_policy("bfloat16"):  # the key of shared activations reads the policy in force
        bfloat16 = prefix_state_key(recipe, None, None, 8)
    assert bfloat16 != prefix_state_key(recipe, None, None, 8)


def test_tune_trains_its_trials_in_the_precision_given(dataset, tmp_path, capsys):
    path = tmp_path / "my.yaml"
    save_recipe(tiny_recipe(phases=[{"name": "head", "epochs": 1, "trainable_from": 5,
                                     "learning_rate": 0.05}]), path)
    out = tmp_path / "tuning"
    assert main(["tune", str(dataset), "-r", str(path), "-o", str(out), "--trials", "1",
                 "--backbones", "none", "--precision", "bfloat16", "--json"]) == 0
    capsys.readouterr()
    assert load_recipe(out / "recipe.yaml").precision == "bfloat16"
    assert load_recipe(out / "recipe.tuned.yaml").precision == "bfloat16"
    trials = [json.loads(p.read_text()) for p in out.rglob("metrics.json")]
    assert trials and {t["precision"] for t in trials} == {"mixed_bfloat16"}
    assert keras.mixed_precision.global_policy().name == "float32"


def test_a_recipe_with_an_unknown_precision_is_refused_naming_the_field(tmp_path):
    from autotransfer.errors import AutoTransferError

    path = tmp_path / "r.yaml"
    save_recipe(tiny_recipe(), path)
    path.write_text(path.read_text().replace("precision: auto", "precision: float16"))
    with pytest.raises(AutoTransferError, match="precision"):
        load_recipe(path)
    old = path.read_text().replace("precision: float16\n", "")
    path.write_text(old)
    assert load_recipe(path).precision == "auto"  # recipes written before the field still load
