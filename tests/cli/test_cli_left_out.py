"""``train`` and ``evaluate`` name every file they leave out (issue 14): a count on stderr, the
list (path and why) in metrics.json, report.md and the JSON output."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from autotransfer.cli import main
from autotransfer.recipe.io import save_recipe
from tests.train.helpers import make_colour_dataset, tiny_recipe

BROKEN = {"train/cat/empty.png", "train/dog/cut.png", "val/dog/garbage.jpg"}
LEAKS = {"train/cat/copy_of_val.png", "train/dog/copy_of_val.png"}


@pytest.fixture(scope="module")
def flawed(tmp_path_factory):
    """Train and val folders with three broken files, two training copies of validation images
    and a link out of the dataset."""
    root = tmp_path_factory.mktemp("left_out")
    data = make_colour_dataset(root / "ds", {"cat": 6, "dog": 6}, split="train")
    make_colour_dataset(data, {"cat": 3, "dog": 3}, split="val", seed=1)
    (data / "train" / "cat" / "empty.png").write_bytes(b"")
    good = (data / "train" / "dog" / "dog_000.png").read_bytes()
    (data / "train" / "dog" / "cut.png").write_bytes(good[: len(good) // 2])
    (data / "val" / "dog" / "garbage.jpg").write_bytes(b"\xff\xd8\xff" + bytes(range(256)))
    for name in ("cat", "dog"):
        shutil.copy(data / "val" / name / f"{name}_000.png",
                    data / "train" / name / "copy_of_val.png")
    make_colour_dataset(root / "outside", {"cat": 4}, seed=2)
    os.symlink(root / "outside" / "cat", data / "train" / "cat" / "more")
    recipe = save_recipe(tiny_recipe(phases=[{"name": "head", "epochs": 1, "trainable_from": 5,
                                              "learning_rate": 0.01}]), root / "recipe.yaml")
    return root, data, recipe


def test_train_names_every_file_it_leaves_out(flawed, capsys):
    root, data, recipe = flawed
    out = root / "run"
    assert main(["train", str(data), "-r", str(recipe), "-o", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    # 12 + 6 generated images, 2 copies, 3 broken files and the link: 6 left out of 24
    assert ("Left out 6 of 24 files: 2 duplicate_of_held_out, 1 escapes_root, 1 truncated, "
            "1 undecodable, 1 zero_byte.") in captured.err
    assert str(out / "metrics.json") in captured.err and str(out / "report.md") in captured.err
    metrics = json.loads((out / "metrics.json").read_text())
    left = {p["path"]: p for p in metrics["left_out"]}
    assert set(left) == BROKEN | LEAKS | {"train/cat/more"}
    assert metrics["n_train"] == 12 and metrics["n_val"] == 6
    assert left["train/cat/more"]["code"] == "escapes_root"
    assert "val/cat/cat_000.png" in left["train/cat/copy_of_val.png"]["message"]
    assert all(p["message"] and p["hint"] for p in left.values())
    assert json.loads(captured.out)["left_out"] == metrics["left_out"]
    report = (out / "report.md").read_text()
    assert "Left out 6 of 24 files" in report
    for path in left:
        assert f"| `{path}` |" in report  # a code span: the name shows as written


def test_evaluate_names_every_file_it_leaves_out(flawed, capsys):
    root, data, recipe = flawed
    out = root / "run_eval"
    assert main(["train", str(data), "-r", str(recipe), "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out), str(data), "--split", "all", "--json"]) == 0
    captured = capsys.readouterr()
    result = json.loads(captured.out)
    assert {p["path"] for p in result["left_out"]} == BROKEN | {"train/cat/more"}
    assert result["n_images"] == 20  # leaks are evaluated: only training leaves them out
    assert ("Left out 4 file(s) of the dataset: 1 escapes_root, 1 truncated, 1 undecodable, "
            "1 zero_byte.") in captured.err
    assert main(["evaluate", str(out), str(data)]) == 0
    err = capsys.readouterr().err
    for path in BROKEN:
        assert path in err
