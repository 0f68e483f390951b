"""The forecast: least squares, leave one dataset out, the stated intervals and the data file."""

from __future__ import annotations

import json
import math

import pytest

from autotransfer.advisor.forecast import (
    FEATURES,
    ForecastModel,
    LinearModel,
    ProbeFigures,
    features,
    fit_linear,
    forecast,
    load_forecast,
    lodo,
)
from autotransfer.errors import InvalidConfigError


def figures(cv: float, knn: float = 0.8, n_sample: int = 100, n_train: int = 400,
            n_classes: int = 4) -> ProbeFigures:
    return ProbeFigures(linear_probe_accuracy=cv, knn_accuracy=knn, n_sample=n_sample,
                        n_train=n_train, n_classes=n_classes)


def model(gain: LinearModel | None = None) -> ForecastModel:
    zero = dict.fromkeys(FEATURES, 0.0)
    lp = LinearModel(intercept=0.0, weights={**zero, "logit_cv": 1.0}, half_width=2.0)
    return ForecastModel(fitted_on=["a", "b", "c"], source="test", linear_probe=lp, gain=gain)


def test_features_are_logits_and_log_ratios():
    x = features(figures(0.9, knn=0.5, n_sample=100, n_train=400, n_classes=4))
    assert x["logit_cv"] == pytest.approx(math.log(9))
    assert x["logit_knn"] == pytest.approx(0.0)
    assert x["log_train_over_sample"] == pytest.approx(math.log(4))
    assert x["log_classes"] == pytest.approx(math.log(4))


def test_forecast_of_the_identity_model_is_the_cv_accuracy_with_its_interval():
    f = forecast(model(), figures(0.9))
    assert f.linear_probe == pytest.approx(0.9)
    assert f.linear_probe_interval == pytest.approx((0.88, 0.92))
    assert f.advised is None and f.gain_points is None  # no gain model fitted
    assert "90.0%" in f.describe() and "3 datasets" in f.describe()


def test_the_gain_adds_points_and_widens_the_interval():
    gain = LinearModel(intercept=3.0, weights=dict.fromkeys(FEATURES, 0.0), half_width=1.0)
    f = forecast(model(gain), figures(0.8))
    assert f.gain_points == pytest.approx(3.0)
    assert f.advised == pytest.approx(0.83)
    assert f.advised_interval == pytest.approx((0.80, 0.86))
    assert forecast(model(gain), figures(0.8), fine_tunes=False).advised is None


def test_the_advised_interval_is_its_own_nested_half_width_when_the_file_states_one():
    gain = LinearModel(intercept=3.0, weights=dict.fromkeys(FEATURES, 0.0), half_width=1.0)
    f = forecast(model(gain).model_copy(update={"advised_half_width": 5.0}), figures(0.8))
    assert f.advised == pytest.approx(0.83)
    assert f.advised_interval == pytest.approx((0.78, 0.88))  # not 2 + 1 points
    assert f.linear_probe_interval == pytest.approx((0.78, 0.82))
    with pytest.raises(ValueError):
        model(gain).model_validate({**model(gain).model_dump(), "advised_half_width": -1.0})


def test_fit_linear_recovers_noiseless_coefficients():
    rows = [{"u": u, "v": v} for u in range(4) for v in (0.0, 1.0, 3.0)]
    y = [1.0 + 2.0 * r["u"] - 0.5 * r["v"] for r in rows]
    b0, w = fit_linear(rows, y, ["u", "v"], ridge=0.0)
    assert b0 == pytest.approx(1.0) and w["u"] == pytest.approx(2.0) and w["v"] == pytest.approx(-0.5)


def test_lodo_is_exact_for_an_exact_relation_and_biased_for_an_outlier_dataset():
    def row(d: str, cv: float, shift: float = 0.0) -> tuple[str, dict[str, float], float]:
        x = features(figures(cv))
        target = 1 / (1 + math.exp(-(x["logit_cv"] - 0.2))) + shift
        return d, x, target

    rows = [row(d, cv) for d, cv in (("a", 0.6), ("b", 0.7), ("c", 0.8), ("d", 0.9))]
    exact = lodo(rows, ["logit_cv"], logit_target=True, ridge=0.0)
    assert set(exact) == {"a", "b", "c", "d"}
    assert all(abs(e) < 1e-6 for e in exact.values())
    assert lodo(rows[:3] + [row("d", 0.9, shift=-0.05)], ["logit_cv"], logit_target=True,
                ridge=0.0)["d"] > 4.0  # forecast 5 points above what "d" measured


def test_no_file_means_no_forecast_and_a_bad_file_is_a_clear_error(tmp_path):
    assert load_forecast(tmp_path / "forecast.yaml") is None
    good = tmp_path / "good.yaml"
    good.write_text(model().model_dump_json())
    assert load_forecast(good) == model()
    bad = tmp_path / "bad.yaml"
    bad.write_text(json.dumps({"version": 1, "fitted_on": []}))
    with pytest.raises(InvalidConfigError, match=r"(?s)bad.yaml.*bench_advice"):
        load_forecast(bad)


def test_a_forecast_file_cannot_run_code(tmp_path):
    evil = tmp_path / "forecast.yaml"
    evil.write_text("!!python/object/apply:os.system ['echo owned']\n")
    with pytest.raises(InvalidConfigError, match="not a valid forecast model"):
        load_forecast(evil)


def test_the_report_lines_say_whether_each_measure_fell_inside_its_interval():
    from autotransfer.advisor.forecast import versus_measured

    gain = LinearModel(intercept=3.0, weights=dict.fromkeys(FEATURES, 0.0), half_width=1.0)
    lines = versus_measured(forecast(model(gain), figures(0.8)), linear_probe=0.81, advised=0.75)
    assert lines[2] == "| linear probe | 80.0% | 78.0%–82.0% | 81.0% | yes |"
    assert lines[3] == "| advised recipe | 83.0% | 80.0%–86.0% | 75.0% | no (-8.0 points) |"


def test_decide_states_the_forecast_of_the_chosen_backbone(monkeypatch):
    from autotransfer.advisor import advise
    from tests.advisor.synthetic import probe, profile, report

    monkeypatch.setattr(advise, "load_forecast", lambda: model())
    advice = advise.decide(profile({"a": 60, "b": 60}),
                           report(probe("mobilenet_v2", 0.5, linear=0.8),
                                  probe("efficientnet_lite0", 0.3, linear=0.95)))
    assert advice.recipe.backbone.name == "mobilenet_v2"
    assert advice.forecast is not None
    assert advice.forecast.linear_probe == pytest.approx(0.8)  # the chosen one's, not the best
    monkeypatch.setattr(advise, "load_forecast", lambda: None)
    assert advise.decide(profile({"a": 60, "b": 60}),
                         report(probe("mobilenet_v2", 0.5))).forecast is None


def test_the_advised_forecast_can_start_from_the_probe_at_the_recipes_own_training_size():
    zero = dict.fromkeys(FEATURES, 0.0)
    lp = LinearModel(intercept=0.0, weights={**zero, "logit_cv": 1.0, "log_train_over_sample": 1.0},
                     half_width=2.0)
    gain = LinearModel(intercept=3.0, weights={}, half_width=1.0)
    whole = ForecastModel(fitted_on=["a", "b", "c"], source="test", linear_probe=lp, gain=gain)
    fit = whole.model_copy(update={"advised_base": "fit"})
    # the sample is the whole training split: the linear probe's forecast stays at the CV
    # accuracy, but the recipe trains on 80 of the 100 images (validation held out)
    f = figures(0.8, n_sample=100, n_train=100)
    at_fit = f.model_copy(update={"n_fit": 80})
    assert forecast(whole, at_fit).advised == pytest.approx(0.83)
    lp_80 = 1 / (1 + math.exp(-(math.log(4) + math.log(0.8))))  # logit(0.8) + log(80/100)
    assert forecast(fit, at_fit).linear_probe == pytest.approx(0.8)  # unchanged
    assert forecast(fit, at_fit).advised == pytest.approx(lp_80 + 0.03)
    assert forecast(fit, f).advised == pytest.approx(0.83)  # no n_fit: the whole split


def test_the_gain_may_read_the_probes_headroom_and_fit_through_the_origin():
    assert features(figures(0.85))["headroom_cv"] == pytest.approx(15.0)
    rows = [{"h": h} for h in (5.0, 10.0, 20.0)]
    b0, w = fit_linear(rows, [0.3 * r["h"] for r in rows], ["h"], ridge=0.0, intercept=False)
    assert b0 == 0.0 and w["h"] == pytest.approx(0.3)
    b0, w = fit_linear(rows, [1.0 + 0.3 * r["h"] for r in rows], ["h"], ridge=0.0)
    assert b0 == pytest.approx(1.0) and w["h"] == pytest.approx(0.3)


def test_decide_forecasts_the_advised_recipe_at_its_own_training_size(monkeypatch):
    from autotransfer.advisor import advise
    from tests.advisor.synthetic import probe, profile, report

    zero = dict.fromkeys(FEATURES, 0.0)
    lp = LinearModel(intercept=0.0, weights={**zero, "logit_cv": 1.0}, half_width=2.0)
    seen = []
    real = advise.forecast_accuracy

    def spy(m, figs, **kw):
        seen.append(figs)
        return real(m, figs, **kw)

    monkeypatch.setattr(advise, "forecast_accuracy", spy)
    monkeypatch.setattr(advise, "load_forecast", lambda: ForecastModel(
        fitted_on=["a", "b", "c"], source="t", linear_probe=lp, advised_base="fit"))
    advice = advise.decide(profile({"a": 60, "b": 60}), report(probe("mobilenet_v2", 0.5)))
    assert advice.forecast is not None
    frac = advice.recipe.data.val_fraction
    assert seen[-1].n_fit == round(seen[-1].n_train * (1 - frac))  # no val split: held out
