"""``autotransfer predict``: run folders, image folders and globs in, every bad file named."""

from __future__ import annotations

import csv
import json
import os
import shutil

import keras
import numpy as np
import pytest

from autotransfer.cli import EXIT_OK, EXIT_USER_ERROR, main
from autotransfer.train import train
from autotransfer.train.inference import load_run_model
from tests.train.helpers import make_colour_dataset, tiny_recipe


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict")
    data = make_colour_dataset(root / "ds", {"cat": 6, "dog": 6})
    recipe = tiny_recipe(phases=[{"name": "head", "epochs": 1, "trainable_from": 5,
                                  "learning_rate": 0.01}])
    return train(data, recipe, root / "run").out, data


@pytest.fixture
def photos(run, tmp_path):
    """A folder as users have them: images in sub-folders, a note, a broken image, a name that
    is not UTF-8, and a link to a folder outside (never followed)."""
    _, data = run
    folder = tmp_path / "photos"
    (folder / "2024" / "june").mkdir(parents=True)
    shutil.copy(data / "cat" / "cat_000.png", folder / "a.png")
    shutil.copy(data / "dog" / "dog_000.png", folder / "2024" / "june" / "b.png")
    shutil.copy(data / "dog" / "dog_001.png", folder / "2024" / "no_extension")
    shutil.copy(data / "cat" / "cat_001.png", os.fsencode(folder) + b"/caf\xe9.png")
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    (folder / "outside").symlink_to(data, target_is_directory=True)
    return folder


def _run(args, capsys):
    code = main(["predict", *map(str, args)])
    return code, capsys.readouterr()


def test_folders_are_searched_recursively_and_every_bad_file_is_named(run, photos, capsys):
    out, _ = run
    code, captured = _run([out, photos, "--json", "-k", "2"], capsys)
    assert code == EXIT_USER_ERROR
    records = json.loads(captured.out)  # valid JSON, even with a file name that is not UTF-8
    by_name = {os.path.basename(r["path"]): r for r in records}
    assert set(by_name) == {"a.png", "b.png", "no_extension", "caf\\xe9.png", "broken.jpg"}
    for name in ("a.png", "b.png", "no_extension", "caf\\xe9.png"):
        top = by_name[name]["top"]
        assert by_name[name]["error"] is None and {t["label"] for t in top} == {"cat", "dog"}
        assert abs(sum(t["probability"] for t in top) - 1.0) < 1e-4
    assert by_name["broken.jpg"]["top"] == [] and "broken.jpg" in by_name["broken.jpg"]["error"]
    assert "1 of 5 image(s) could not be predicted" in captured.err
    assert "broken.jpg" in captured.err and "Traceback" not in captured.err
    assert "Passed over 1 file(s) of" in captured.err  # notes.txt, said, not silently dropped
    assert "outside" not in captured.out  # the link to a folder is not followed


def test_what_auto_and_train_print_globs_csv_and_json_files(run, tmp_path, capsys):
    out, data = run
    auto_run = tmp_path / "auto_run"
    shutil.copytree(out, auto_run / "model")  # auto's layout: <out>/model/model.keras
    csv_file, json_file = tmp_path / "p.csv", tmp_path / "res" / "p.json"
    pattern = str(data / "**" / "*_00[01].png")
    code, captured = _run([auto_run, pattern, "--csv", csv_file, f"--json={json_file}",
                           "--top-k", "5", "--batch-size", "3"], capsys)
    assert code == EXIT_OK, captured.err
    rows = list(csv.DictReader(csv_file.open(encoding="utf-8")))
    records = json.loads(json_file.read_text("utf-8"))
    expected = sorted(str(p) for p in data.glob("*/*_00[01].png"))
    assert [r["path"] for r in rows] == [r["path"] for r in records] == expected
    assert list(rows[0]) == ["path", "label_1", "probability_1", "label_2", "probability_2",
                             "error"]  # top-k is capped by the number of classes
    # the numbers are the model's own: the same as the Python API's forward pass
    loaded = load_run_model(out)
    probs = np.asarray(loaded.classifier(loaded.load_images(expected)))
    for row, record, p in zip(rows, records, probs, strict=True):
        best = int(np.argmax(p))
        assert row["label_1"] == record["top"][0]["label"] == loaded.class_names[best]
        assert float(row["probability_1"]) == pytest.approx(p[best], abs=1e-5)
    assert "image" in captured.out  # the table is still shown when outputs go to files


def test_outputs_never_replace_an_image(run, photos, capsys):
    out, _ = run
    image = photos / "a.png"
    before = image.read_bytes()
    code, captured = _run([out, "--json", image, photos / "2024"], capsys)  # --json ate a.png
    assert code == EXIT_USER_ERROR and "would replace" in captured.err
    assert "--json=FILE" in captured.err
    code, captured = _run([out, photos, "--csv", image], capsys)
    assert code == EXIT_USER_ERROR and image.read_bytes() == before


def test_missing_inputs_and_models(run, tmp_path, capsys):
    out, data = run
    code, captured = _run([out, tmp_path / "nope.png", str(tmp_path / "*.jpg")], capsys)
    assert code == EXIT_USER_ERROR and "No image to predict" in captured.err
    assert "no such file" in captured.err and "no file matches" in captured.err
    code, captured = _run([out, data / "cat" / "cat_000.png", tmp_path / "gone.png", "-q"], capsys)
    assert code == EXIT_USER_ERROR and "gone.png: no such file" in captured.err
    assert captured.out == ""  # quiet: no table
    code, captured = _run([tmp_path, data], capsys)
    assert code == EXIT_USER_ERROR and "holds no model.keras" in captured.err
    code, captured = _run([out.parent, data], capsys)  # one level too high: the run is suggested
    assert code == EXIT_USER_ERROR and f"Run folders inside it: '{out}'" in captured.err


def test_unsafe_or_damaged_models_are_refused_with_exit_2(run, tmp_path, capsys):
    out, data = run
    image = data / "cat" / "cat_000.png"
    inputs = keras.Input((32, 32, 3))
    lam = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(
        keras.layers.GlobalAveragePooling2D()(keras.layers.Lambda(lambda t: t * 2.0)(inputs))))
    hostile = tmp_path / "hostile"
    shutil.copytree(out, hostile)
    lam.save(hostile / "model.keras")
    code, captured = _run([hostile, image], capsys)
    assert code == EXIT_USER_ERROR and "holds Python code" in captured.err
    assert "Internal error" not in captured.err

    damaged = tmp_path / "damaged"
    shutil.copytree(out, damaged)
    data_bytes = (out / "model.keras").read_bytes()
    (damaged / "model.keras").write_bytes(data_bytes[: len(data_bytes) // 2])
    code, captured = _run([damaged, image], capsys)
    assert code == EXIT_USER_ERROR and "not a complete .keras file" in captured.err
