"""auto's forecast against what it measured (issue 18): which measure faces which forecast."""

from __future__ import annotations

import pytest

from autotransfer.advisor.forecast import Forecast
from autotransfer.oneshot.versus import check
from autotransfer.tuning.baseline import FINE_TUNED, PROBE, BaselineChoice, ProbeRun

FORECAST = Forecast(linear_probe=0.80, linear_probe_interval=(0.756, 0.844), advised=0.82,
                    advised_interval=(0.751, 0.889), gain_points=2.0, fitted_on=["a", "b", "c"])


def metrics(val: float, test: float | None) -> dict:
    return {"val": {"accuracy": val}, "test": None if test is None else {"accuracy": test}}


def probe_run(val: float) -> ProbeRun:
    return ProbeRun(recipe=None, metrics={"val": {"accuracy": val}},  # type: ignore[arg-type]
                    seconds=1.0)


def choice(winner: str, probe: float, finetuned: float) -> BaselineChoice:
    scores = {PROBE: {"accuracy": probe, "balanced_accuracy": probe, "seconds": 1.0},
              FINE_TUNED: {"accuracy": finetuned, "balanced_accuracy": finetuned, "seconds": 9.0}}
    return BaselineChoice(winner=winner, metric="accuracy", scores=scores, test={"p": 0.5},
                          alpha=0.05, imbalance=None, imbalance_ratio=1.0, time_saved_s=8.0,
                          why="tie")


def test_a_fine_tuned_final_model_faces_the_advised_forecast_on_the_test_split():
    got = check(FORECAST, metrics(0.95, 0.87), final_fine_tunes=True, probe=probe_run(0.78),
                choice=choice(FINE_TUNED, 0.78, 0.9))
    assert got is not None
    assert (got.advised.measured, got.advised.split, got.advised.within) == (0.87, "test", True)
    lp = got.linear_probe
    assert (lp.measured, lp.split, lp.within) == (0.78, "validation", True)
    summary = got.to_dict()
    assert summary["advised"]["expected"] == 0.82
    assert summary["advised"]["interval"] == [0.751, 0.889]
    assert summary["linear_probe"]["within"] is True and summary["fitted_on"] == ["a", "b", "c"]
    table = "\n".join(got.markdown())
    assert "| advised recipe | 82.0% | 75.1%–88.9% | 87.0% | test split: the final model" in table
    assert "(the fine-tuned recipe) | yes |" in table


def test_a_kept_linear_probe_is_measured_as_the_final_model_and_a_miss_is_said():
    got = check(FORECAST, metrics(0.99, 0.70), final_fine_tunes=False, probe=probe_run(0.9),
                choice=choice(PROBE, 0.9, 0.91))
    assert (got.linear_probe.measured, got.linear_probe.split) == (0.70, "test")
    assert got.linear_probe.within is False
    assert (got.advised.measured, got.advised.split) == (0.91, "validation")  # SEL02's candidate
    assert "no (-10.0 points)" in "\n".join(got.markdown())


def test_what_was_not_measured_says_so_and_no_forecast_means_no_section():
    got = check(FORECAST, metrics(0.9, None), final_fine_tunes=True, probe=None,
                choice="the linear probe failed")
    assert got.linear_probe.measured is None and got.linear_probe.within is None
    assert (got.advised.measured, got.advised.split) == (0.9, "validation")
    row = "| linear probe | 80.0% | 75.6%–84.4% | – | not trained in this run | – |"
    assert row in got.markdown()
    assert check(None, metrics(0.9, None), final_fine_tunes=True, probe=None, choice=None) is None


def test_a_head_only_advice_has_no_advised_row():
    head_only = FORECAST.model_copy(update={"advised": None, "advised_interval": None,
                                            "gain_points": None})
    got = check(head_only, metrics(0.9, 0.85), final_fine_tunes=False, probe=None, choice=None)
    assert got.advised is None and got.to_dict()["advised"] is None
    assert pytest.approx(got.linear_probe.measured) == 0.85
    assert not any(line.startswith("| advised recipe") for line in got.markdown())


def test_da11s_exact_linear_head_that_lost_to_adaptation_is_the_measured_linear_probe():
    """An adapting run has no SEL02 probe; the exact linear head rule DA11 scored beside the
    adapting model (and did not keep) was measured on validation: it faces the forecast."""
    head = {"rule": "DA11", "kept": False, "score": -0.4, "val_accuracy": 0.79}
    got = check(FORECAST, metrics(0.9, None), final_fine_tunes=True, probe=None,
                choice="the advised recipe adapts", head=head)
    assert (got.linear_probe.measured, got.linear_probe.split) == (0.79, "validation")
    assert "DA11's exact linear head" in got.linear_probe.model
    unscored = {"rule": "DA11", "kept": False, "why": "not scored: skipped"}
    got = check(FORECAST, metrics(0.9, None), final_fine_tunes=True, probe=None,
                choice="the advised recipe adapts", head=unscored)
    assert got.linear_probe.measured is None
