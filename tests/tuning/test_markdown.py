"""``tuning.md``: the search space, the trial table and the changes, for people."""

from __future__ import annotations

from pathlib import Path

from autotransfer.tuning.markdown import markdown
from autotransfer.tuning.results import TrialRecord, TuneResult
from autotransfer.tuning.space import search_space
from tests.train.helpers import tiny_recipe


def _cells(row: str) -> list[str]:
    """A Markdown table row's cells (an escaped ``\\|``, shown here as ``¦``, stays inside)."""
    return [c.strip() for c in row.strip().strip("|").replace("\\|", "¦").split("|")]


def test_a_trial_whose_error_has_a_pipe_keeps_its_row_in_shape(tmp_path: Path):
    recipe = tiny_recipe()
    space = search_space(recipe)
    trials = [TrialRecord("0", "COMPLETED", {}, {}, val_accuracy=0.9, val_loss=0.3, seconds=4),
              TrialRecord("1", "FAILED", {"dropout": 0.3}, {"dropout": 0.3},
                          message="ValueError: shapes (8|16) and\n(3,) do not match")]
    text = markdown(TuneResult(tmp_path, "local", recipe, space, trials, recipe, "0", "0", 0.0))
    header = next(ln for ln in text.splitlines() if ln.startswith("| trial |"))
    failed = next(ln for ln in text.splitlines() if ln.startswith("| 1 |"))
    assert len(_cells(failed)) == len(_cells(header)) == 7
    assert _cells(failed)[-1] == "dropout=0.3 — ValueError: shapes (8¦16) and (3,) do not match"


def test_a_trial_message_naming_a_file_is_not_markdown(tmp_path: Path):
    """An error message quotes the user's file names: ``*x*`` and ``__init__`` stay as written."""
    recipe = tiny_recipe()
    trials = [TrialRecord("0", "COMPLETED", {}, {}, val_accuracy=0.9, val_loss=0.3, seconds=4),
              TrialRecord("1", "FAILED", {}, {}, tuner_id="worker_*1*",
                          message="cannot decode 'train/__init__/*x*.png'")]
    text = markdown(TuneResult(tmp_path, "local", recipe, search_space(recipe), trials, recipe,
                               "0", "0", 0.0))
    row = next(ln for ln in text.splitlines() if ln.startswith("| 1 |"))
    assert _cells(row)[1] == "worker\\_\\*1\\*"
    assert _cells(row)[-1].endswith("cannot decode 'train/\\_\\_init\\_\\_/\\*x\\*.png'")


def test_an_adapting_search_shows_its_score_as_a_column_and_only_then(tmp_path: Path):
    from autotransfer.tuning import adapting

    recipe = tiny_recipe(domain_adaptation={"method": "coral", "weight": 1.0})
    space = search_space(recipe, include=["dropout", adapting.DIMENSION])
    rows = [TrialRecord("0", "COMPLETED", {"dropout": 0.0}, {}, val_accuracy=0.9, val_loss=0.3,
                        seconds=4, score=-0.4123),
            TrialRecord("1", "COMPLETED", {"dropout": 0.1}, {"dropout": 0.1}, val_accuracy=0.8,
                        val_loss=0.4, seconds=5, score=-0.3001),
            TrialRecord("2", "FAILED", {"dropout": 0.2}, {"dropout": 0.2}, message="boom")]
    result = adapting.summarise(tmp_path, recipe, space, rows, role_name="local", stopped="",
                                seconds=9.0, algorithm="random", name="dev")
    lines = markdown(result).splitlines()
    header = next(ln for ln in lines if ln.startswith("| trial |"))
    assert _cells(header)[3] == "dev (target)"
    body = [ln for ln in lines if ln.startswith(("| 0 ", "| 1 ", "| 2 "))]
    assert len(_cells(header)) == 8 and {len(_cells(row)) for row in body} == {8}
    assert [_cells(row)[3] for row in body] == ["-0.4123", "-0.3001", "–"]
    assert _cells(body[1])[0] == "1 **best**"
    head = lines[:lines.index("## Trials")]  # the scores are no longer listed above the table
    assert not any("-0.3001" in ln or "-0.4123" in ln for ln in head)
    ranked = next(ln for ln in lines if ln.startswith("Trials ranked by"))
    assert "rule DA11" in ranked
    # ranked by validation accuracy: no score column, no ranking line
    plain = TuneResult(tmp_path, "local", recipe, space, rows, recipe, "0", "0", 0.0,
                       selection={"rule": "TUNE01", "candidate": "0"})
    text = markdown(plain)
    header = next(ln for ln in text.splitlines() if ln.startswith("| trial |"))
    assert len(_cells(header)) == 7 and "(target)" not in text
    assert "Trials ranked by" not in text and "-0.3001" not in text
