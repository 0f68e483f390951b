"""Error analysis: predictions.csv, the most confused pairs, the gallery of the most confident
mistakes with Grad-CAM, the regularisation path of a head-only run, and ``evaluate``'s terminal
and ``--out`` outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from autotransfer.cli import main
from autotransfer.errors import InvalidParameterError
from autotransfer.train import evaluate, train
from autotransfer.train.analysis import (ErrorAnalysis, SplitPredictions, analyse_errors,
                                         most_confused_pairs, read_predictions_csv,
                                         write_predictions_csv)
from autotransfer.train.metrics import classification_metrics
from tests.train.helpers import make_colour_dataset, tiny_recipe

NAMES = ["blue", "green", "red"]


def _predictions(root, probabilities, labels, split="val"):
    paths = [f"img_{i}.png" for i in range(len(labels))]
    return SplitPredictions(split, str(root), paths, np.asarray(labels),
                            np.asarray(probabilities, dtype=np.float64), NAMES)


# ----------------------------------------------------------------------------- pure parts
def test_mistakes_are_the_wrong_predictions_most_confident_first(tmp_path):
    probs = [[0.9, 0.05, 0.05],   # 0: right
             [0.2, 0.7, 0.1],     # 1: wrong at 0.7
             [0.05, 0.05, 0.9],   # 2: wrong at 0.9
             [0.4, 0.35, 0.25],   # 3: wrong at 0.4
             [0.1, 0.8, 0.1],     # 4: right
             [0.1, 0.2, 0.7]]     # 5: wrong at 0.7 (ties go in path order)
    preds = _predictions(tmp_path, probs, [0, 0, 1, 2, 1, 0])
    assert preds.mistake_indices() == [2, 1, 5, 3]
    top = preds.mistakes(2)
    assert [(r.path, r.true_label, r.predicted_label) for r in top] == [
        ("img_2.png", "green", "red"), ("img_1.png", "blue", "green")]
    assert top[0].confidence == pytest.approx(0.9) and top[0].true_label_probability == 0.05
    assert _predictions(tmp_path, [[0.6, 0.3, 0.1]], [0]).mistakes() == []


def test_most_confused_pairs_are_the_largest_off_diagonal_cells():
    matrix = [[8, 1, 3], [0, 9, 0], [2, 5, 4]]
    pairs = most_confused_pairs(matrix, NAMES, limit=3)
    assert [(p.true_label, p.predicted_label, p.count) for p in pairs] == [
        ("red", "green", 5), ("blue", "red", 3), ("red", "blue", 2)]
    assert pairs[0].share == pytest.approx(5 / 11)
    assert most_confused_pairs([[3, 0], [0, 2]], ["a", "b"]) == []


def test_the_mistakes_section_shows_class_names_as_written():
    from autotransfer.train.analysis import analysis_markdown

    pairs = most_confused_pairs([[3, 2], [0, 4]], ["*x*", "a|b"])
    analysis = ErrorAnalysis("val", 9, 2, "predictions.csv", None, None, pairs, [])
    row = next(ln for ln in analysis_markdown(analysis) if ln.startswith("| \\"))
    assert row == "| \\*x\\* | a\\|b | 2 | 40.0% |"  # not italics, not an extra cell


def test_predictions_csv_reproduces_the_metrics(tmp_path):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1, 1, 1], size=40)
    labels = rng.integers(0, 3, size=40)
    val = _predictions(tmp_path, probs[:25], labels[:25])
    test = _predictions(tmp_path, probs[25:], labels[25:], split="test")
    path = write_predictions_csv(tmp_path / "predictions.csv", [val, test])
    rows = read_predictions_csv(path)
    assert [r.split for r in rows] == ["val"] * 25 + ["test"] * 15
    for split, (p, y) in {"val": (probs[:25], labels[:25]),
                          "test": (probs[25:], labels[25:])}.items():
        chosen = [r for r in rows if r.split == split]
        metric = classification_metrics(y, p, NAMES)["accuracy"]
        assert sum(r.correct for r in chosen) / len(chosen) == metric
        assert [r.predicted_label for r in chosen] == [NAMES[i] for i in p.argmax(axis=1)]
        np.testing.assert_allclose([r.confidence for r in chosen], p.max(axis=1), atol=1e-6)
    assert not list(tmp_path.glob(".*"))  # written atomically: no temporary file left


# ----------------------------------------------------------------------------- pictures
@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    """A tiny classifier at 64 px (a 2 × 2 feature map) as a shipped, loaded model."""
    import keras

    from autotransfer.train.export import serving_model
    from autotransfer.train.inference import LoadedModel
    from autotransfer.train.model import build_classifier

    keras.utils.set_random_seed(1)
    recipe = tiny_recipe(backbone={"name": "test_tiny", "input_size": 64, "weights": "none"})
    model = serving_model(build_classifier(recipe, 3).model)
    return LoadedModel(model, NAMES, 64, True, tmp_path_factory.mktemp("model"))


def _odd_images(root):
    """A normal, a grayscale, a tiny and a one-pixel-high image."""
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (80, 90, 3), dtype=np.uint8)).save(root / "img_0.png")
    Image.fromarray(rng.integers(0, 255, (40, 40), dtype=np.uint8), "L").save(root / "img_1.png")
    Image.fromarray(rng.integers(0, 255, (6, 5, 3), dtype=np.uint8)).save(root / "img_2.png")
    Image.fromarray(rng.integers(0, 255, (1, 30, 3), dtype=np.uint8)).save(root / "img_3.png")


def test_gallery_and_heat_maps_of_grayscale_and_tiny_images(loaded, tmp_path):
    _odd_images(tmp_path)
    probs = [[0.1, 0.1, 0.8], [0.2, 0.6, 0.2], [0.05, 0.9, 0.05], [0.7, 0.2, 0.1]]
    preds = _predictions(tmp_path, probs, [2, 0, 0, 1])  # 1, 2 and 3 are wrong
    out = tmp_path / "out"
    matrix = classification_metrics(preds.labels, preds.probabilities, NAMES)["confusion_matrix"]
    result = analyse_errors(out, loaded, [preds], matrix)
    assert result.n_mistakes == 3 and result.n_images == 4
    assert result.gallery == ["img_2.png", "img_3.png", "img_1.png"]  # most confident first
    assert {(p.true_label, p.predicted_label) for p in result.most_confused} == {
        ("blue", "green"), ("green", "blue")}
    for name in (result.mistakes_png, result.gradcam_png):
        with Image.open(out / name) as img:
            assert img.format == "PNG" and min(img.size) > 200
            pixels = np.asarray(img.convert("L"))
            assert pixels.std() > 10  # a picture, not a blank page
    assert sorted(p.name for p in out.iterdir()) == ["gradcam.png", "mistakes.png",
                                                     "predictions.csv"]
    assert ErrorAnalysis.from_dict(json.loads(json.dumps(result.to_dict()))) == result


def test_no_mistakes_no_pictures_and_says_so(loaded, tmp_path):
    _odd_images(tmp_path)
    preds = _predictions(tmp_path, [[0.1, 0.1, 0.8], [0.6, 0.3, 0.1]], [2, 0])
    result = analyse_errors(tmp_path / "out", loaded, [preds], [[1, 0, 0], [0, 0, 0], [0, 0, 1]])
    assert result.mistakes_png is None and result.gradcam_png is None and result.n_mistakes == 0
    assert "No mistakes on the 2 validation images" in result.notes[0]
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["predictions.csv"]


def test_an_image_gone_since_is_left_out_of_the_pictures_and_named(loaded, tmp_path):
    _odd_images(tmp_path)
    (tmp_path / "img_2.png").unlink()
    preds = _predictions(tmp_path, [[0.1, 0.1, 0.8], [0.2, 0.6, 0.2], [0.05, 0.9, 0.05]],
                         [2, 0, 0])
    result = analyse_errors(tmp_path / "out", loaded, [preds], [[0, 2, 0], [0, 0, 0], [0, 0, 1]])
    assert result.n_mistakes == 2 and result.gallery == ["img_1.png"]
    assert result.mistakes_png == "mistakes.png"
    assert any("img_2.png" in note and "could not be read" in note for note in result.notes)


# ----------------------------------------------------------------------------- a head-only run
@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_colour_dataset(tmp_path_factory.mktemp("analysis") / "ds",
                               {"red": 10, "green": 10, "blue": 10})


@pytest.fixture(scope="module")
def head_only(dataset, tmp_path_factory):
    """An exact (L-BFGS) head-only run at 64 px: no epoch, C chosen by cross-validation."""
    recipe = tiny_recipe(
        backbone={"name": "test_tiny", "input_size": 64, "weights": "none"},
        head={"dropout": 0.0, "solver": "lbfgs"},
        domain_adaptation={"method": "adabn", "before_phase": 0},
        phases=[{"name": "head", "epochs": 1, "trainable_from": 5, "learning_rate": 0.01}])
    return train(dataset, recipe, tmp_path_factory.mktemp("runs") / "head_only")


def test_a_head_only_run_plots_accuracy_against_c_not_epochs(head_only):
    names = {p.name for p in head_only.out.iterdir()}
    assert "regularization_path.png" in names and "learning_curves.png" not in names
    assert {"predictions.csv", "confusion_matrix.png"} <= names
    with Image.open(head_only.out / "regularization_path.png") as img:
        assert np.asarray(img.convert("L")).std() > 10
    solver = head_only.metrics["phases"][0]["solver"]
    assert solver["chosen_by"] == "cross-validation" and len(solver["cv"]) > 3
    report = (head_only.out / "report.md").read_text()
    assert "![cross-validated accuracy against C](regularization_path.png)" in report
    assert "learning_curves.png" not in report
    assert "[`predictions.csv`](predictions.csv)" in report and "## Mistakes" in report
    info = json.loads((head_only.out / "run.json").read_text())
    assert {"predictions.csv", "regularization_path.png"} <= set(info["files"])
    assert set(info["files"]) <= names


def test_the_runs_predictions_csv_matches_its_metrics(head_only):
    metrics = json.loads((head_only.out / "metrics.json").read_text())
    rows = read_predictions_csv(head_only.out / "predictions.csv")
    val = [r for r in rows if r.split == "val"]
    splits = json.loads((head_only.out / "splits.json").read_text())
    assert [r.path for r in val] == [r["path"] for r in splits["val"]]
    assert [r.true_label for r in val] == [r["label"] for r in splits["val"]]
    assert sum(r.correct for r in val) / len(val) == metrics["val"]["accuracy"]
    assert [int(r.correct) for r in val] == metrics["val"]["correct"]
    analysis = metrics["error_analysis"]
    assert analysis["n_mistakes"] == len(val) - sum(r.correct for r in val)
    assert (analysis["mistakes_png"] is None) == (analysis["n_mistakes"] == 0)


@pytest.fixture(scope="module")
def swapped(tmp_path_factory):
    """The same classes with the red and green images swapped: the model must confuse them."""
    return make_colour_dataset(tmp_path_factory.mktemp("swapped") / "ds",
                               {"green": 6, "red": 6, "blue": 6}, seed=5)


def test_evaluate_prints_the_confusion_matrix_and_most_confused_pairs(head_only, swapped,
                                                                      capsys):
    assert main(["evaluate", str(head_only.out), str(swapped), "--split", "all"]) == 0
    out = capsys.readouterr().out
    assert "Confusion matrix" in out and "rows: true class, columns: predicted" in out
    assert "Most confused pairs" in out
    m = evaluate(head_only.out, swapped, split="all").metrics
    matrix_part = out.split("Confusion matrix")[1].split("Most confused pairs")[0]
    for name, row in zip(m["class_names"], m["confusion_matrix"], strict=True):
        line = next(line for line in matrix_part.splitlines()
                    if line.replace("│", " ").split()[:1] == [name])
        assert [int(n) for n in line.replace("│", " ").split()[1:]] == row
    top = most_confused_pairs(m["confusion_matrix"], m["class_names"])[0]
    assert {top.true_label, top.predicted_label} == {"green", "red"}
    line = next(line for line in out.splitlines()
                if top.true_label in line and top.predicted_label in line and "%" in line)
    assert str(top.count) in line and f"{top.share:.1%}" in line


def test_evaluate_out_writes_predictions_and_pictures(head_only, swapped, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", str(head_only.out), str(swapped), "--split", "all", "--out",
                 str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["out"] == str(out)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(printed["files"])
    assert {"metrics.json", "predictions.csv", "confusion_matrix.png", "mistakes.png",
            "gradcam.png"} == set(names)
    metrics = json.loads((out / "metrics.json").read_text())
    rows = read_predictions_csv(out / "predictions.csv")
    assert len(rows) == 18 and {r.split for r in rows} == {"all"}
    assert sum(r.correct for r in rows) / len(rows) == metrics["accuracy"]
    assert metrics["error_analysis"]["gallery"][0] == rows[int(np.argmax(
        [(not r.correct) * r.confidence for r in rows]))].path


def test_evaluate_refuses_to_write_into_a_run_folder(head_only, swapped, capsys):
    assert main(["evaluate", str(head_only.out), str(swapped), "--out", str(head_only.out)]) == 2
    assert "is a run folder" in capsys.readouterr().err
    with pytest.raises(InvalidParameterError, match="run folder"):
        evaluate(head_only.out, swapped, split="all").write_analysis(head_only.out)


def test_class_names_are_drawn_as_written(loaded, tmp_path):
    """Folder names with mathtext, markup or very long text do not break the pictures."""
    from autotransfer.train.analysis import PredictionRow, plot_mistakes
    from autotransfer.train.plots import plot_confusion_matrix

    names = ["$\\frac{$", "a $x^$ [bold]b[/]", "a" * 80]  # mathtext errors unless drawn as text
    plot_confusion_matrix([[1, 2, 0], [0, 1, 0], [0, 0, 3]], names, tmp_path / "cm.png")
    row = PredictionRow("val", "x.png", names[0], names[2], 0.9, False, 0.05)
    plot_mistakes([row], np.zeros((1, 8, 8, 3)), tmp_path / "m.png")
    assert (tmp_path / "cm.png").stat().st_size > 1000 and (tmp_path / "m.png").is_file()


def test_a_gallery_of_photos_stays_small_and_legible(tmp_path):
    """16 photos at 224 px and 4 heat maps: 256-colour PNGs of at most ~300 KB each (they are
    embedded in report.html too), thumbnails about as large as the images, not upscaled."""
    from autotransfer.train.analysis import PredictionRow, plot_grad_cam, plot_mistakes
    from tests.conftest import shared_dataset

    files = sorted((shared_dataset("hymenoptera") / "val" / "ants").glob("*.jpg"))[:16]
    images = np.stack([np.asarray(Image.open(f).convert("RGB").resize((224, 224)))
                       for f in files]).astype("float32")
    rows = [PredictionRow("test", f.name, "ants", "bees", 0.9 - i / 40, False, 0.05)
            for i, f in enumerate(files)]
    yy, xx = np.mgrid[0:224, 0:224] / 224.0
    heat = np.stack([np.exp(-((yy - 0.5) ** 2 + (xx - c) ** 2) * 8) for c in (0.2, 0.4, 0.6, 0.8)])
    plot_mistakes(rows, images, tmp_path / "mistakes.png")
    plot_grad_cam(rows[:4], images[:4], heat, heat[::-1], tmp_path / "gradcam.png")
    for name, cells in (("mistakes.png", 4), ("gradcam.png", 3)):
        size = (tmp_path / name).stat().st_size
        assert size <= 300 * 1024, f"{name}: {size // 1024} KB"
        with Image.open(tmp_path / name) as img:
            assert img.mode == "P" and img.width / cells > 150  # thumbnails of > 150 px
            assert np.asarray(img.convert("L")).std() > 10
