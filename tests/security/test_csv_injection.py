"""CSV exports never hand a spreadsheet a formula (CSV injection): a class, file or manifest label
named ``=HYPERLINK(…)``, ``+cmd|…``, ``-2+3`` or ``@SUM(…)`` is written so that Excel or
LibreOffice shows it as text. Labels read back unchanged; a path stays a path to the same file."""

from __future__ import annotations

import csv
import io
from types import SimpleNamespace

import numpy as np

from autotransfer._io import spreadsheet_safe, spreadsheet_value
from autotransfer.cli.predict import _csv_text
from autotransfer.train.analysis import (SplitPredictions, read_predictions_csv,
                                         write_predictions_csv)

HOSTILE = ["=HYPERLINK(\"http://x\",\"y\")", "+cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0",
           "@SUM(1+1)*cmd|' /C calc'!A0", "\tx", "\uff1d1+1"]
SAFE = ["cat", "-1", "+2.5", "a=b", "café", "1e3"]
TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")


def _cells(text: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(text)) for cell in row]


def _formulas(cells: list[str]) -> list[str]:
    return [c for c in cells if c.startswith(TRIGGERS) and c not in SAFE]


def test_spreadsheet_safe_quotes_formulas_and_leaves_the_rest():
    for cell in HOSTILE:
        assert spreadsheet_safe(cell) == "'" + cell
        assert spreadsheet_value(spreadsheet_safe(cell)) == cell
        assert spreadsheet_safe(cell, path=True) == "./" + cell
    for cell in SAFE:  # plain text and numbers (a spreadsheet reads '-1' as a number) unchanged
        assert spreadsheet_safe(cell) == spreadsheet_value(cell) == cell
    assert spreadsheet_value("'quoted") == "'quoted"  # a quote that quotes no formula is data


def test_a_value_that_starts_with_a_quote_reads_back_as_given():
    for cell in ("'=x", "'-1", "'quoted", "'", "''"):
        assert spreadsheet_value(spreadsheet_safe(cell)) == cell


def test_predictions_csv_holds_no_formula_and_reads_back(tmp_path):
    names = [HOSTILE[0], HOSTILE[3], "-1"]
    paths = [f"{HOSTILE[1]}.png", "ok/b.png", f"{HOSTILE[2]}/c.png"]
    split = SplitPredictions("val", str(tmp_path), paths, np.array([0, 1, 2]),
                             np.array([[0.1, 0.8, 0.1], [0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]), names)
    path = write_predictions_csv(tmp_path / "predictions.csv", [split])
    text = path.read_text(encoding="utf-8")
    assert _formulas(_cells(text)) == []
    rows = read_predictions_csv(path)
    assert [(r.true_label, r.predicted_label) for r in rows] == [
        (names[0], names[1]), (names[1], names[0]), ("-1", "-1")]
    assert [r.path for r in rows] == ["./" + paths[0], paths[1], "./" + paths[2]]


def test_predict_csv_holds_no_formula():
    predictions = [
        SimpleNamespace(path=f"{HOSTILE[1]}.png", top=[(HOSTILE[0], 0.9), ("-1", 0.1)],
                        error=None),
        SimpleNamespace(path="@missing.png", top=[], error="@missing.png: no such file"),
    ]
    cells = _cells(_csv_text(predictions, 2))
    assert _formulas(cells) == []
    assert f"./{HOSTILE[1]}.png" in cells and f"'{HOSTILE[0]}" in cells and "-1" in cells
