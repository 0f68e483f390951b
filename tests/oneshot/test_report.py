"""``report.md`` of an ``auto`` run, section by section (the whole report: test_run_outputs)."""

from __future__ import annotations

from types import SimpleNamespace

from autotransfer.data.profile import profile_dataset
from autotransfer.oneshot import report
from tests.data.builders import make_class_folders


def _cells(row: str) -> list[str]:
    """A Markdown table row's cells (an escaped ``\\|``, shown here as ``¦``, stays inside)."""
    return [c.strip() for c in row.strip().strip("|").replace("\\|", "¦").split("|")]


def test_a_class_named_with_a_pipe_keeps_the_data_table_in_shape(tmp_path):
    root = make_class_folders(tmp_path / "ds", {"cat|dog": 3, "bird": 3}, size=8)
    profile = profile_dataset(root, workers=1)
    lines = report._data(SimpleNamespace(advice=SimpleNamespace(facts={}, warnings=[])), profile)
    table = [ln for ln in lines if ln.startswith("|")]
    assert len(table) == 3  # header, rule, one split
    assert {len(_cells(row)) for row in table} == {2 + len(profile.classes)}
    assert "cat¦dog" in _cells(table[0])


def test_class_names_and_the_dataset_path_are_never_markdown(tmp_path):
    """A class named ``*x*`` is not shown in italics, in the data table or the final model's."""
    root = make_class_folders(tmp_path / "my_*data*", {"*x*": 3, "__init__": 3}, size=8)
    profile = profile_dataset(root, workers=1)
    lines = report._data(SimpleNamespace(advice=SimpleNamespace(facts={}, warnings=[])), profile)
    header = next(ln for ln in lines if ln.startswith("| split |"))
    assert _cells(header)[2:] == ["\\*x\\*", "\\_\\_init\\_\\_"]
    per_class = {name: {"precision": 1.0, "recall": 0.5, "f1": 0.667, "support": 2}
                 for name in profile.classes}
    val = {"n_images": 4, "accuracy": 0.5, "balanced_accuracy": 0.5, "macro_f1": 0.5,
           "loss": 1.0, "per_class": per_class}
    result = SimpleNamespace(metrics={"val": val, "phases": []}, budget={"note": "Done."},
                             forecast=None, adaptation=None, exports=[])
    rows = [ln for ln in report._final(result) if ln.startswith("| \\")]
    assert [_cells(r)[0] for r in rows] == ["\\*x\\*", "\\_\\_init\\_\\_"]
    title = report._headline(SimpleNamespace(
        tuning=None, budget={"total": 60.0}, seconds=30.0, linear_probe=None,
        metrics={"val": val}), SimpleNamespace(backbone=SimpleNamespace(
            name="net._v2_", input_size=96)), profile)[0]
    assert title.endswith("my\\_\\*data\\*") and "*" not in title.replace("\\*", "")


def _refined_line(tuning) -> str:
    lines = report._tuned(SimpleNamespace(tuning=tuning, budget={}), tuning.refined)
    return next(ln for ln in lines if ln.startswith("The refined recipe"))


def test_the_refined_recipe_names_the_rule_that_chose_it(tmp_path):
    from autotransfer.tuning import adapting
    from autotransfer.tuning.results import TrialRecord, TuneResult
    from autotransfer.tuning.space import apply, search_space
    from tests.train.helpers import tiny_recipe

    recipe = tiny_recipe(domain_adaptation={"method": "coral", "weight": 1.0})
    space = search_space(recipe, include=["dropout", adapting.DIMENSION])

    def row(trial_id, score, **changed):
        values = {"dropout": 0.0, adapting.DIMENSION: 1.0, **changed}
        return TrialRecord(trial_id, "COMPLETED", values, changed, val_accuracy=0.9,
                           val_loss=0.5, score=score)

    # an adapting search (DA11): the reasons rest on the target criterion, not TUNE01's test
    da11 = adapting.summarise(tmp_path, recipe, space, [row("0", -0.4), row("1", -0.3,
                              dropout=0.1)], role_name="local", stopped="", seconds=1.0,
                              algorithm="random", name="dev")
    path = da11.changes[0]["path"]
    assert da11.refined.reasons[path].rule == "DA11"
    line = _refined_line(da11)
    assert "DA11 reason: the best dev score on the target images" in line
    assert "TUNE01" not in line
    # a search ranked by validation accuracy: TUNE01's
    refined = apply(recipe, {"dropout": 0.1}, space)
    tune01 = TuneResult(tmp_path, "local", recipe, space, [row("0", None), row("1", None,
                        dropout=0.1)], refined, "0", "1", 0.05,
                        [{"path": "dropout", "before": 0.0, "after": 0.1}],
                        selection={"rule": "TUNE01", "candidate": "1", "replace": True,
                                   "test": {"p": 0.01}})
    line = _refined_line(tune01)
    assert "TUNE01 reason: the best validation accuracy, tested against trial 0" in line
    assert "DA11" not in line
