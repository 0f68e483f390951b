"""train(..., target=): the target is checked, handed to the recipe's adaptation, recorded."""

from __future__ import annotations

import json

import pytest

from autotransfer.errors import InvalidConfigError, TargetFolderError
from autotransfer.recipe.schema import Reason
from tests.data.builders import make_class_folders
from tests.train.helpers import make_colour_dataset, tiny_recipe

pytest.importorskip("keras")

from autotransfer.train.run import train  # noqa: E402


def _head_only(**da):
    return tiny_recipe(phases=[{"name": "head", "epochs": 1, "trainable_from": 5,
                                "learning_rate": 0.01}], domain_adaptation=da)


def test_a_method_that_needs_a_target_refuses_to_run_without_one(tmp_path):
    data = make_colour_dataset(tmp_path / "data", {"r": 6, "g": 6})
    with pytest.raises(InvalidConfigError, match="'coral'.*--target DIR"):
        train(data, _head_only(method="coral"), tmp_path / "run")
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


def test_a_bad_target_fails_before_anything_is_written(tmp_path):
    data = make_colour_dataset(tmp_path / "data", {"r": 6, "g": 6})
    (tmp_path / "empty").mkdir()
    with pytest.raises(TargetFolderError, match="holds no images"):
        train(data, _head_only(method="coral"), tmp_path / "run", target=tmp_path / "empty")
    assert not (tmp_path / "run.partial").exists()
    with pytest.raises(TargetFolderError, match="is the source dataset itself"):
        train(data, _head_only(), tmp_path / "run", target=data)
    assert not (tmp_path / "run.partial").exists()


def test_a_target_the_method_does_not_read_is_recorded_as_such(tmp_path):
    data = make_colour_dataset(tmp_path / "data", {"r": 6, "g": 6})
    target = make_class_folders(tmp_path / "target", {"r": 3, "g": 3}, seed=70)
    result = train(data, _head_only(), tmp_path / "run", target=target)
    record = json.loads((result.out / "metrics.json").read_text())["target"]
    assert record["n_images"] == 6 and record["path"] == str(target)
    assert not record["used"] and "'none' does not read" in record["note"]
    assert len(record["fingerprint"]) == 64
    report = (result.out / "report.md").read_text()  # recorded, not used: the report says so
    assert "Method **none**" in report and "'none' does not read target images" in report
    assert "| before (advisor" not in report  # a hand-written recipe carries no advisor's gap


def test_an_adapting_recipe_trains_with_the_target_and_records_what_it_did(tmp_path):
    data = make_colour_dataset(tmp_path / "data", {"r": 8, "g": 8})
    target = make_colour_dataset(tmp_path / "target", {"r": 4, "g": 4}, seed=9)
    recipe = _head_only(method="mcc")
    advised = Reason(rule="DA07", text="classes move", evidence={"gap_a": 1.25,
                                                                 "class_shift": 0.3})
    result = train(data, recipe.model_copy(update={
        "head": recipe.head.model_copy(update={"solver": "gradient"}),
        "reasons": {**recipe.reasons, "domain_adaptation.method": advised}}),
        tmp_path / "run", target=target)
    metrics = json.loads((result.out / "metrics.json").read_text())
    assert metrics["target"]["used"] and metrics["target"]["n_images"] == 8
    assert metrics["domain_adaptation"]["method"] == "mcc"
    # the report shows the gap before (the advisor's, from the recipe) and after (this model)
    assert metrics["domain_gap_before"]["a_distance"] == 1.25
    after = metrics["domain_gap"]
    report = (result.out / "report.md").read_text()
    assert "gap before and after" in report and "Method **mcc**, loss weight λ = 1 (rule DA07)" \
        in report
    assert "| before (advisor, frozen backbone) | 1.250 | 0.300 |" in report
    a = "–" if after["a_distance"] is None else f"{after['a_distance']:.3f}"
    assert f"| after (this model) | {a} | {after['class_tv']:.3f} |" in report
    assert "after (this model)" in (result.out / "report.html").read_text()
