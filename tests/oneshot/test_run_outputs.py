"""What one small ``auto`` run writes besides its model: the forecast against what it measured
(issue 18), the ONNX export inside the run's "evaluate and export" step (``--onnx`` on the
command line), and its probing line counting the backbones as ``advise`` does."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from autotransfer.errors import InvalidParameterError
from autotransfer.oneshot import auto
from tests.train.helpers import make_colour_dataset

COUNTS = {"red": 8, "green": 8, "blue": 8}
HAS_ONNX = all(importlib.util.find_spec(m) is not None for m in ("tf2onnx", "onnx"))


@pytest.fixture(scope="module")
def command_line(tmp_path_factory):
    """The run, made by the command line: ``autotransfer auto DATASET -o OUT --time-budget 2m
    --preset quick -b test_tiny --json`` (and ``--onnx`` with the extra). The tiny backbone has
    no ImageNet weights, so the command's ``auto()`` is called with ``weights=None``, and with a
    ``progress`` that records what it says. Returns the result, the texts, the keyword arguments
    the command passed to ``auto()``, the JSON it printed and OUT."""
    import contextlib
    import io

    import autotransfer.oneshot
    from autotransfer.cli import main

    root = tmp_path_factory.mktemp("auto_outputs")
    dataset = root / "colours"
    make_colour_dataset(dataset, COUNTS, split="train")
    make_colour_dataset(dataset, {k: 4 for k in COUNTS}, split="test", seed=1)
    said: list[str] = []
    heard: list[dict] = []
    results = []

    def untrained(*args, **kwargs):
        heard.append(kwargs)
        results.append(auto(*args, **kwargs | {"weights": None, "progress": said.append}))
        return results[-1]

    out, printed = root / "run", io.StringIO()
    with pytest.MonkeyPatch.context() as mp:  # a cache of its own: other tests probe the same
        mp.setenv("AUTOTRANSFER_CACHE", str(root / "cache"))  # images, and cached, none is said
        mp.setattr(autotransfer.oneshot, "auto", untrained)
        with contextlib.redirect_stdout(printed):
            code = main(["auto", str(dataset), "-o", str(out), "--time-budget", "2m", "--preset",
                         "quick", "-b", "test_tiny", "--json", *(["--onnx"] if HAS_ONNX else [])])
    assert code == 0 and len(results) == 1
    return results[0], said, heard[0], json.loads(printed.getvalue()), out


@pytest.fixture(scope="module")
def run(command_line):
    result, said, *_ = command_line
    return result, said


def test_summary_and_report_set_the_forecast_against_what_was_measured(run):
    result, _ = run
    forecast = result.advice.forecast
    assert forecast is not None  # recipes/forecast.yaml is fitted
    summary = json.loads((result.out / "summary.json").read_text())
    lp = summary["forecast"]["linear_probe"]
    assert lp["expected"] == pytest.approx(forecast.linear_probe)
    assert lp["interval"] == pytest.approx(list(forecast.linear_probe_interval))
    # the tiny data is advised a head-only recipe: the final model is the linear probe, on test
    assert lp["measured"] == pytest.approx(result.test_accuracy) and lp["split"] == "test"
    assert lp["within"] == (lp["interval"][0] <= lp["measured"] <= lp["interval"][1])
    assert summary["forecast"]["advised"] is None and forecast.advised is None
    report = (result.out / "report.md").read_text()
    assert "### Forecast against measured" in report
    assert f"| linear probe | {forecast.linear_probe:.1%} |" in report
    assert "Forecast against measured" in (result.out / "report.html").read_text()


def test_probing_counts_the_backbones_under_autos_step(run):
    _, said = run
    probing = [t for t in said if t.startswith("[1/6] Probing")]
    assert any(t.startswith("[1/6] Probing test_tiny (1/1 backbones): ") for t in probing), probing


@pytest.mark.skipif(not HAS_ONNX, reason="needs autotransfer[onnx] (tf2onnx, onnx)")
def test_the_onnx_export_is_a_step_of_the_run_counted_in_its_time(run):
    result, said = run
    assert (result.out / "model" / "model.onnx").is_file()
    assert "model.onnx" in json.loads((result.out / "model" / "run.json").read_text())["files"]
    summary = json.loads((result.out / "summary.json").read_text())
    assert summary["exports"][0] == "model/model.keras" and "model/model.onnx" in summary["exports"]
    steps = {s["step"]: s["seconds"] for s in summary["budget"]["steps"]}
    assert steps["ONNX export (tf2onnx)"] > 0
    onnx_s = summary["budget"]["onnx_seconds"]
    assert onnx_s == pytest.approx(steps["ONNX export (tf2onnx)"], abs=0.1)
    assert any(t.startswith("[5/6] Converting the final model to ONNX") for t in said)
    assert "- ONNX export:" in (result.out / "report.md").read_text()


def test_without_the_onnx_extra_auto_refuses_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # as if not installed
    dataset = make_colour_dataset(tmp_path / "colours", COUNTS)
    with pytest.raises(InvalidParameterError, match=r"'onnx' extra.*pip install"):
        auto(dataset, tmp_path / "run", export_onnx=True, backbones=["test_tiny"], weights=None,
             verbose=0)
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


@pytest.mark.skipif(not HAS_ONNX, reason="needs autotransfer[onnx] (tf2onnx, onnx)")
def test_auto_onnx_on_the_command_line_converts_inside_the_run(command_line):
    result, _, heard, summary, out = command_line  # autotransfer auto ... --onnx --json
    assert result.out == out
    assert heard["export_onnx"] is True  # converted inside auto(), not after it
    assert "model/model.onnx" in summary["exports"] and (out / "model" / "model.onnx").is_file()
    assert "ONNX export (tf2onnx)" in [s["step"] for s in summary["budget"]["steps"]]
