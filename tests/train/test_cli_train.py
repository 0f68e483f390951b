"""``autotransfer train / evaluate / predict`` from the command line."""

from __future__ import annotations

import json

import pytest

from autotransfer.cli import EXIT_USER_ERROR, main
from autotransfer.recipe.io import save_recipe
from tests.train.helpers import make_colour_dataset, tiny_recipe


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = make_colour_dataset(root / "ds", {"cat": 8, "dog": 8})
    recipe = save_recipe(tiny_recipe(domain_adaptation={"method": "adabn", "before_phase": 0}),
                         root / "recipe.yaml")
    return root, data, recipe


def test_train_evaluate_predict_json(trained, capsys):
    root, data, recipe = trained
    out = root / "run"
    assert main(["train", str(data), "--recipe", str(recipe), "--out", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert summary["out"] == str(out) and len(summary["phases"]) == 2
    assert f"Wrote {out}" in captured.err

    assert main(["evaluate", str(out), str(data), "--json"]) == 0
    evaluation = json.loads(capsys.readouterr().out)
    assert evaluation["split"] == "val" and evaluation["accuracy"] == summary["val_accuracy"]
    assert set(evaluation["per_class"]) == {"cat", "dog"}

    image = sorted((data / "cat").iterdir())[0]
    assert main(["predict", str(out / "model.keras"), str(image), "--top-k", "2", "--json"]) == 0
    (prediction,) = json.loads(capsys.readouterr().out)
    assert prediction["path"] == str(image)
    assert [t["label"] for t in prediction["top"]] in (["cat", "dog"], ["dog", "cat"])

    assert main(["predict", str(out), str(image)]) == 0
    assert "cat" in capsys.readouterr().out


def test_user_errors_exit_2_with_a_message(trained, capsys):
    root, data, recipe = trained
    (root / "taken").mkdir()
    (root / "taken" / "x").write_text("x")
    assert main(["train", str(data), "-r", str(recipe), "-o", str(root / "taken")]) == EXIT_USER_ERROR
    assert "already exists" in capsys.readouterr().err
    assert main(["train", str(data), "-o", str(root / "fresh"), "--resume"]) == EXIT_USER_ERROR
    assert "no interrupted run" in capsys.readouterr().err
    assert main(["predict", str(root / "nope"), str(recipe)]) == EXIT_USER_ERROR
    assert "No model at" in capsys.readouterr().err
    assert main(["evaluate", str(root), str(data)]) == EXIT_USER_ERROR
    bad = root / "bad.yaml"
    bad.write_text("backbone: {name: test_tiny, input_size: 32}\nphases: []\n")
    assert main(["train", str(data), "-r", str(bad), "-o", str(root / "b")]) == EXIT_USER_ERROR
    assert "phases" in capsys.readouterr().err


def test_train_onnx_writes_a_model_that_predicts_as_the_keras_one(trained, capsys):
    pytest.importorskip("tf2onnx", reason="needs autotransfer[onnx]")
    ort = pytest.importorskip("onnxruntime", reason="needs autotransfer[onnx]")
    import numpy as np

    from autotransfer.data.images import load_image
    from autotransfer.train import export

    root, data, recipe = trained
    out = root / "run_onnx"
    assert main(["train", str(data), "-r", str(recipe), "-o", str(out), "--onnx", "--json"]) == 0
    assert f"Wrote {out}" in capsys.readouterr().err
    assert "model.onnx" in json.loads((out / "run.json").read_text())["files"]
    model = export.load_model(out / "model.keras")
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    images = [np.asarray(load_image(p), "float32") for p in sorted((data / "dog").iterdir())[:4]]
    resized = np.stack([np.asarray(model.get_layer(export.RESIZE_LAYER)(x)) for x in images])
    expected = np.concatenate([model.predict(x[None], verbose=0) for x in images])
    got = session.run(None, {"image": resized})[0]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_onnx_without_the_extra_names_it_before_training(trained, capsys, monkeypatch):
    import sys

    root, data, recipe = trained
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # as if not installed
    for command in (["train", str(data), "-r", str(recipe), "-o", str(root / "no_onnx")],
                    ["auto", str(data), "-o", str(root / "no_onnx")]):
        assert main([*command, "--onnx"]) == EXIT_USER_ERROR
        err = capsys.readouterr().err
        assert "'onnx' extra" in err and "pip install 'autotransfer[onnx]'" in err
        assert "tf2onnx" in err
    assert not (root / "no_onnx").exists() and not (root / "no_onnx.partial").exists()
