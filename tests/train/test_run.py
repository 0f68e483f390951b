"""A whole run: outputs, run folder discipline, reloading the model, evaluate and predict."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from autotransfer.errors import InvalidConfigError, RunDirectoryError
from autotransfer.train import evaluate, predict, train
from autotransfer.train import distribute
from autotransfer.train.run import partial_dir
from tests.train.helpers import make_colour_dataset, tiny_recipe


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("colours")
    return make_colour_dataset(root / "ds", {"red": 10, "green": 10, "blue": 10})


@pytest.fixture(scope="module")
def run(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "r1"
    # AdaBN gives the random tiny backbone sensible BN statistics (features of useful scale)
    recipe = tiny_recipe(domain_adaptation={"method": "adabn", "before_phase": 0}, phases=[
        {"name": "head", "epochs": 4, "trainable_from": 5, "learning_rate": 0.05,
         "schedule": "constant"},
        {"name": "fine_tune", "epochs": 2, "trainable_from": 3, "learning_rate": 0.002,
         "warmup_epochs": 0.5}])
    return train(dataset, recipe, out, export_savedmodel=True)


def test_run_writes_every_output_and_learns(run):
    names = {p.name for p in run.out.iterdir()}
    analysis = run.metrics["error_analysis"]  # a gallery only when there are mistakes
    assert names == {"model.keras", "labels.txt", "recipe.yaml", "splits.json", "metrics.json",
                     "learning_curves.png", "confusion_matrix.png", "report.md", "report.html",
                     "logs", "savedmodel", "run.json", "predictions.csv"} | {
                         f for f in (analysis["mistakes_png"], analysis["gradcam_png"]) if f}
    assert analysis["gradcam_png"] is None  # 32 px: the tiny backbone's feature map is 1 × 1
    assert not partial_dir(run.out).exists()
    assert (run.out / "labels.txt").read_text().split() == ["blue", "green", "red"]
    metrics = json.loads((run.out / "metrics.json").read_text())
    assert metrics["val"]["accuracy"] == run.val_accuracy >= 0.8
    assert set(metrics["val"]["per_class"]) == {"blue", "green", "red"}
    assert np.asarray(metrics["val"]["confusion_matrix"]).sum() == metrics["n_val"] == 8
    head, fine = metrics["phases"]
    assert head["epochs_run"] == 4 and fine["epochs_run"] == 2
    assert len(head["history"]["val_accuracy"]) == 4 and head["seconds"] > 0
    assert head["history"]["lr"] == pytest.approx([0.05] * 4)
    assert fine["trainable_params"]["stage_s8"] == 0 and fine["trainable_params"]["stage_s16"] > 0
    assert list(fine["feature_cache"]) and fine["feature_cache"]["used"] is True
    info = json.loads((run.out / "run.json").read_text())
    assert info["complete"] and info["class_names"] == ["blue", "green", "red"]
    assert any((run.out / "logs" / "train").iterdir())
    assert "Validation accuracy" in (run.out / "report.md").read_text()


def test_saved_model_loads_in_a_fresh_process_without_custom_objects(run):
    code = (
        "import sys, numpy as np, keras, autotransfer.backbones.layers\n"
        f"m = keras.models.load_model({str(run.model_path)!r})\n"
        "x = np.full((2, 32, 32, 3), 120.0, 'float32')\n"
        "np.save(sys.argv[1], m.predict(x, verbose=0))\n"
    )
    out = run.out.parent / "fresh.npy"
    done = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    from autotransfer.train.export import load_model

    here = load_model(run.model_path).predict(np.full((2, 32, 32, 3), 120.0, "float32"), verbose=0)
    np.testing.assert_allclose(np.load(out), here, rtol=1e-5)


def test_savedmodel_serves_the_same_predictions(run):
    loaded = tf.saved_model.load(str(run.out / "savedmodel"))
    x = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype("float32")
    from autotransfer.train.export import load_model

    np.testing.assert_allclose(loaded.serve(x).numpy(),
                               load_model(run.model_path).predict(x, verbose=0), rtol=1e-4,
                               atol=1e-6)


def test_tflite_export_runs_in_the_interpreter_with_the_same_predictions(run, tmp_path):
    from autotransfer.train.export import export_tflite, inference_copy, load_model

    model = load_model(run.model_path)
    path = export_tflite(inference_copy(model), tmp_path / "model.tflite")
    interpreter = tf.lite.Interpreter(model_path=str(path))
    x = np.random.default_rng(1).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    probs = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(probs, model.predict(x, verbose=0), rtol=1e-4, atol=1e-6)
    assert probs.shape == (1, 3) and not list(tmp_path.glob(".*"))  # no temporary file left


def test_evaluate_reproduces_the_runs_validation_metrics(run, dataset):
    result = evaluate(run.out, dataset)
    assert result.split == "val"
    assert result.accuracy == pytest.approx(run.val_accuracy)
    assert result.metrics["confusion_matrix"] == run.metrics["val"]["confusion_matrix"]
    everything = evaluate(run.model_path, dataset, split="all")
    assert everything.metrics["n_images"] == 30


def test_predict_top_k_with_class_names(run, dataset):
    files = sorted((dataset / "red").iterdir())[:2] + sorted((dataset / "blue").iterdir())[:1]
    preds = predict(run.out, files, top_k=2)
    assert [len(p.top) for p in preds] == [2, 2, 2]
    assert [p.top[0][0] for p in preds] == ["red", "red", "blue"]
    assert all(p.top[0][1] >= p.top[1][1] for p in preds)
    assert preds[0].to_dict()["top"][0]["label"] == "red"


def test_run_folder_rules(run, dataset, tmp_path):
    with pytest.raises(RunDirectoryError, match="already exists"):
        train(dataset, tiny_recipe(), run.out)
    with pytest.raises(RunDirectoryError, match="already complete"):
        train(dataset, None, run.out, resume=True)
    with pytest.raises(RunDirectoryError, match="no interrupted run"):
        train(dataset, None, tmp_path / "never", resume=True)
    with pytest.raises(InvalidConfigError, match="recipe is needed"):
        train(dataset, None, tmp_path / "new")


def test_out_of_memory_halves_the_batch_and_restarts_the_epoch(dataset, tmp_path):
    class OomOnce(keras.callbacks.Callback):
        fired = False

        def on_train_batch_begin(self, batch, logs=None):
            if not OomOnce.fired and self.model.name == "trainable_suffix":
                OomOnce.fired = True
                raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor")

    result = train(dataset, tiny_recipe(), tmp_path / "oom", callbacks=[OomOnce()])
    assert OomOnce.fired and result.metrics["batch_size"] == 4
    assert "batch size halved to 4" in result.metrics["notes"][0]
    assert [p["epochs_run"] for p in result.metrics["phases"]] == [2, 2]
    assert result.metrics["phases"][0]["batch_size"] == 4


def test_distribution_strategy_and_mixed_precision_paths_run_on_cpu(dataset, tmp_path,
                                                                    monkeypatch):
    assert distribute.precision_policy(0) == "float32"
    assert distribute.precision_policy(1) == "mixed_float16"
    assert isinstance(distribute.select_strategy(2), tf.distribute.MirroredStrategy)
    assert not isinstance(distribute.select_strategy(1), tf.distribute.MirroredStrategy)
    assert distribute.is_out_of_memory(tf.errors.ResourceExhaustedError(None, None, "x"))
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0"])
    monkeypatch.setattr(distribute, "precision_policy", lambda n=None: "mixed_float16")
    recipe = tiny_recipe(phases=[
        {"name": "head", "epochs": 1, "trainable_from": 5, "learning_rate": 0.01},
        {"name": "all", "epochs": 1, "trainable_from": 0, "learning_rate": 0.001,
         "group_lr_multipliers": [0.1, 0.1, 0.5, 0.5, 1.0]}])
    result = train(dataset, recipe, tmp_path / "mirrored", strategy=mirrored)
    assert result.metrics["device"]["strategy"] == "MirroredStrategy"
    assert result.metrics["precision"] == "mixed_float16"
    assert keras.mixed_precision.global_policy().name == "float32"  # restored afterwards
    assert all(np.isfinite(p["history"]["loss"]).all() for p in result.metrics["phases"])


def test_mixing_class_weights_smoothing_sgd_and_trainable_bn_run_together(tmp_path):
    from autotransfer.train.data import class_weights

    np.testing.assert_allclose(class_weights([0, 0, 0, 1], 2, "balanced"), [4 / 6, 2.0])
    np.testing.assert_allclose(class_weights([0, 1], 2, "none"), [1.0, 1.0])
    data = make_colour_dataset(tmp_path / "ds", {"a": 12, "b": 4})
    recipe = tiny_recipe(
        bn_policy="trainable",
        data={"batch_size": 4, "val_fraction": 0.25, "class_weighting": "balanced"},
        augmentation={"mixup_alpha": 0.4, "cutmix_alpha": 1.0, "rotate90": True},
        regularization={"label_smoothing": 0.1},
        phases=[{"name": "head", "epochs": 1, "trainable_from": 5, "learning_rate": 0.01,
                 "optimizer": "sgd", "schedule": "step"},
                {"name": "all", "epochs": 2, "trainable_from": 0, "learning_rate": 0.01,
                 "optimizer": "sgd", "schedule": "step", "warmup_epochs": 1}])
    result = train(data, recipe, tmp_path / "run")
    head, everything = result.metrics["phases"]
    assert not head["feature_cache"]["used"] and "MixUp" in head["feature_cache"]["reason"]
    assert everything["trainable_params"]["stem"] > 0
    assert np.isfinite(everything["history"]["loss"]).all()
    # 3 steps per epoch: Keras' warm-up is at 3/4 of the peak at step 2 (it reaches the peak at
    # step 3); the last step (5) is 2/3 into the decay, past the first drop (x0.1 at one half)
    assert everything["history"]["lr"] == pytest.approx([0.0075, 0.001])


def test_a_run_stopped_before_its_first_checkpoint_leaves_nothing(dataset, tmp_path):
    class Stop(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            raise KeyboardInterrupt

    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(dataset, tiny_recipe(), out, callbacks=[Stop()])
    assert not out.exists() and not partial_dir(out).exists()
    assert train(dataset, tiny_recipe(phases=[{"name": "h", "epochs": 1, "trainable_from": 5,
                                               "learning_rate": 0.01}]), out).out == out
