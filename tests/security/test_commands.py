"""``train``, ``evaluate``, ``predict`` and ``tune`` on the bad-input corpus (the ``test_tiny``
backbone at 32 px): exit 0 or 2, no traceback, every file left out named, the data unchanged."""

from __future__ import annotations

import json
import os

import pytest
import yaml

from tests.security.conftest import output_texts, unnamed
from tests.security.corpus import tiny_recipe_data

pytest.importorskip("tensorflow")

TRAINABLE = ["mixed", "manifest"]
UNUSABLE = ["empty", "one_class"]


def _target(corpus, name):
    ds = corpus.datasets[name]
    return ds.path / "labels.csv" if name == "manifest" else ds.path


@pytest.fixture
def recipe(tmp_path):
    """The tiny recipe, in a folder of its own ('tune' writes its refined recipe beside it)."""
    path = tmp_path / "recipes" / "tiny.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(tiny_recipe_data()), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def model(corpus, tmp_path_factory):
    """A model trained on the clean part of the corpus (for evaluate and predict)."""
    from autotransfer.recipe.schema import Recipe
    from autotransfer.train.run import train
    from tests.security.corpus import _good

    clean = tmp_path_factory.mktemp("clean")
    _good(clean / "cat", 0, 8)
    _good(clean / "dog", 1, 8)
    out = tmp_path_factory.mktemp("model") / "run"
    train(clean, Recipe.model_validate(tiny_recipe_data()), out)
    return out


@pytest.mark.parametrize("name", TRAINABLE)
def test_train_names_every_file_it_leaves_out(cli, corpus, recipe, tmp_path, name):
    ds = corpus.datasets[name]
    out = tmp_path / "run"
    result = cli("train", _target(corpus, name), "-r", recipe, "-o", out)
    assert result.code == 0, result.text
    assert not unnamed(ds.excluded, result.err, *output_texts(out)), result.err
    if name == "mixed":  # the link out of the root is named, the images behind it never read
        assert "OUTSIDE_" not in "\n".join([result.text, *output_texts(out)])


@pytest.mark.parametrize("name", UNUSABLE)
def test_train_refuses_an_unusable_dataset(cli, corpus, recipe, tmp_path, name):
    result = cli("train", corpus.datasets[name].path, "-r", recipe, "-o", tmp_path / "run")
    assert result.code == 2, result.text
    assert str(corpus.datasets[name].path) in result.err
    assert not (tmp_path / "run").exists()


def test_train_names_an_empty_class_folder(cli, corpus, recipe, tmp_path):
    ds = corpus.datasets["empty_class"]
    result = cli("train", ds.path, "-r", recipe, "-o", tmp_path / "run")
    texts = output_texts(tmp_path / "run") if result.code == 0 else []
    assert not unnamed(ds.excluded, result.err, *texts), result.err


@pytest.mark.parametrize("name", TRAINABLE)
def test_evaluate_names_every_file_it_leaves_out(cli, corpus, model, name):
    ds = corpus.datasets[name]
    result = cli("evaluate", model, _target(corpus, name), "--split", "all")
    assert result.code == 0, result.text
    assert not unnamed(ds.excluded, result.text), result.text
    json_result = cli("evaluate", model, _target(corpus, name), "--split", "all", "--json")
    data = json.loads(json_result.out)
    assert not unnamed(ds.excluded, json.dumps(data)), data


@pytest.mark.parametrize("name", UNUSABLE)
def test_evaluate_refuses_an_unusable_dataset(cli, corpus, model, name):
    assert cli("evaluate", model, corpus.datasets[name].path, "--split", "all").code == 2


def _entries(corpus, name):
    """Every entry of a class folder dataset, links and folders included, as command arguments."""
    root = corpus.datasets[name].path
    return sorted(os.path.join(folder, f) for folder, dirs, files in os.walk(root)
                  for f in dirs + files if not f.startswith("."))


def test_predict_names_every_bad_file_and_predicts_the_others(cli, corpus, model):
    ds = corpus.datasets["mixed"]
    args = _entries(corpus, "mixed")
    result = cli("predict", model, *args, "--json")
    assert not unnamed(ds.excluded, result.text), result.text
    if result.out.strip():
        predictions = json.loads(result.out)  # valid JSON, non-UTF-8 names included
        named = json.dumps(predictions)
        assert "good_00.png" in named and "latin1_caf" in named and "with space.png" in named


def test_predict_on_a_folder_is_not_called_missing(cli, corpus, model):
    folder = corpus.datasets["mixed"].path / "dog"
    result = cli("predict", model, folder)
    assert "not found" not in result.err.lower(), result.err
    if result.code == 0:
        assert "good_00.png" in result.out


def test_predict_json_is_valid_for_a_non_utf8_name(cli, corpus, model):
    odd = next(p for p in _entries(corpus, "mixed") if "latin1_caf" in p)
    result = cli("predict", model, odd, "--json")
    assert result.code == 0, result.text
    (prediction,) = json.loads(result.out)
    assert "latin1_caf" in prediction["path"]


def test_tune_names_every_file_it_leaves_out(cli, corpus, recipe, tmp_path):
    ds = corpus.datasets["mixed"]
    out = tmp_path / "tuning"
    result = cli("tune", ds.path, "-r", recipe, "-o", out, "--trials", "1",
                 "--backbones", "none")
    assert result.code == 0, result.text
    assert not unnamed(ds.excluded, result.err, *output_texts(out)), result.err


@pytest.mark.parametrize("name", UNUSABLE)
def test_tune_refuses_an_unusable_dataset(cli, corpus, recipe, tmp_path, name):
    result = cli("tune", corpus.datasets[name].path, "-r", recipe, "-o", tmp_path / "tuning",
                 "--trials", "1", "--backbones", "none")
    assert result.code == 2, result.text


@pytest.mark.parametrize("command", ["tune", "auto", "advise"])
def test_an_empty_time_budget_is_refused(cli, corpus, tmp_path, command):
    result = cli(command, corpus.datasets["mixed"].path, "--time-budget", "", "-o",
                 tmp_path / "out")
    assert result.code == 2 and "empty" in result.err, result.text


@pytest.fixture(scope="module")
def hostile_models(model, tmp_path_factory):
    """Run folders whose model.keras is cut short, or holds a Lambda layer (Python code)."""
    import shutil

    import keras

    root = tmp_path_factory.mktemp("hostile_models")
    truncated = shutil.copytree(model, root / "truncated")
    data = (model / "model.keras").read_bytes()
    (truncated / "model.keras").write_bytes(data[: len(data) // 2])
    lambda_run = shutil.copytree(model, root / "lambda")
    inputs = keras.Input((32, 32, 3))
    outputs = keras.layers.Dense(2, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(keras.layers.Lambda(lambda x: x * 2.0)(inputs)))
    keras.Model(inputs, outputs).save(lambda_run / "model.keras")
    return {"truncated": truncated, "lambda": lambda_run}


@pytest.mark.parametrize("kind", ["truncated", "lambda"])
def test_a_damaged_or_hostile_model_is_refused_by_evaluate_and_predict(cli, corpus,
                                                                        hostile_models, kind):
    run = hostile_models[kind]
    image = corpus.datasets["mixed"].path / "cat" / "good_00.png"
    for args in (["evaluate", run, corpus.datasets["mixed"].path], ["predict", run, image]):
        result = cli(*args)
        assert result.code == 2, result.text
        assert str(run / "model.keras") in result.err, result.err
