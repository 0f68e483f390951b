"""A forecast before training: the held-out accuracy of a linear probe and of the advised recipe.

From the probe's measurements of the chosen backbone on its sample (linear-probe cross-validated
accuracy, k-NN accuracy, sample size against training-set size, classes), the expected held-out
accuracy of the exact linear probe trained on the whole training split, and of the advised
recipe (the linear probe plus the expected gain of fine-tuning), each with an interval. The
advised recipe trains on its training split without the validation images (``n_fit``): its
forecast adds the gain to the linear probe's forecast at that size when the model says so
(``advised_base: fit``), since the study measures the gain against a linear probe on that split.

The coefficients are data (``recipes/forecast.yaml``, read with ``yaml.safe_load``), fitted by
``tools/bench_advice.py --part forecast`` on the study's datasets (every backbone's cell) and
judged leave one dataset out, every choice among models nested inside (made on the other
datasets only). The linear probe's interval half-width is the 90th percentile of the cells'
nested leave-one-dataset-out errors; the advised recipe's is the largest of its nested errors
(``advised_half_width``; a new dataset's error stays below the largest of n exchangeable ones
with probability n / (n + 1)). On new data each is an estimate, which a run's report compares
with what it measured (:func:`versus_measured`). The gain of fine-tuning is fitted on the study's
datasets where the advice fine-tunes (advised − linear probe on the same split): their mean, a
slope on the probe's linear CV accuracy, or a share of the probe's headroom (``headroom_cv`` =
points the linear CV on the sample misses; fine-tuning can only gain what the frozen features
miss), whichever forecasts the advised recipe best leave one dataset out (a fitted slope must beat
the mean clearly); its interval is the largest leave-one-dataset-out error. Choosing among models
on a few datasets costs accuracy, so one model fixed in advance (every feature; the mean gain on
the linear probe at the recipe's own training size) replaces the choice when its errors, nested
as they stand, beat the choice's nested errors; the file is the same either way.
Pure: no TensorFlow; :func:`fit_linear` is plain least squares in numpy.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field

from autotransfer.errors import InvalidConfigError

#: the inputs, in the order of the coefficients
FEATURES = ("logit_cv", "logit_knn", "log_train_over_sample", "log_classes")
#: further inputs a gain model may read (points of accuracy the probe's linear CV misses)
GAIN_FEATURES = ("headroom_cv",)
_EPS = 1e-3


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LinearModel(_Model):
    """``y = intercept + Σ weights[f] · x[f]`` over :data:`FEATURES` (on the logit scale for an
    accuracy), with the interval half-width (points of accuracy) it is stated with."""

    intercept: float
    weights: dict[str, float]
    half_width: float = Field(ge=0.0, description="Points of accuracy either side.")
    lodo_errors: dict[str, float] = Field(
        default_factory=dict, description="Dataset → forecast − measured (points), each dataset "
        "forecast by the model fitted without it.")


class ForecastModel(_Model):
    """What ``recipes/forecast.yaml`` holds."""

    version: int = 1
    fitted_on: list[str] = Field(description="The datasets of the study it was fitted on.")
    source: str = Field(description="Where the numbers come from (the study's file).")
    linear_probe: LinearModel = Field(description="logit of the linear probe's held-out accuracy.")
    gain: LinearModel | None = Field(
        default=None, description="Points gained by the advised fine-tuning over the linear "
        "probe; None where the study had too few fine-tuned datasets to fit it.")
    advised_base: Literal["whole", "fit"] = Field(
        default="whole", description="The linear-probe forecast the gain is added to: for the "
        "whole training split, or at the advised recipe's own training size (n_fit).")
    advised_half_width: float | None = Field(
        default=None, ge=0.0, description="Points either side of the advised recipe's forecast: "
        "the largest of its nested leave-one-dataset-out errors (each dataset forecast by the "
        "model chosen and fitted without it). None: the linear probe's and the gain's half-widths "
        "added.")


class ProbeFigures(_Model):
    """The measurements a forecast reads (the chosen backbone's probe and the dataset's size)."""

    linear_probe_accuracy: float = Field(ge=0.0, le=1.0, description="CV on the sample.")
    knn_accuracy: float = Field(ge=0.0, le=1.0)
    n_sample: int = Field(ge=2)
    n_train: int = Field(ge=2)
    n_classes: int = Field(ge=2)
    n_fit: int | None = Field(default=None, ge=2, description="Images the advised recipe trains "
                              "on (its training split less validation); None: n_train.")


class Forecast(_Model):
    """Expected held-out accuracies, each with its interval (accuracy, not points)."""

    linear_probe: float
    linear_probe_interval: tuple[float, float]
    advised: float | None = Field(description="None when the advised recipe is the linear probe "
                                  "or no gain model is fitted.")
    advised_interval: tuple[float, float] | None
    gain_points: float | None = Field(description="Expected advised − linear probe, in points.")
    fitted_on: list[str]

    def describe(self) -> str:
        lo, hi = self.linear_probe_interval
        text = (f"expected held-out accuracy of a linear probe {self.linear_probe:.1%} "
                f"({lo:.0%}–{hi:.0%})")
        if self.advised is not None and self.advised_interval is not None:
            lo, hi = self.advised_interval
            text += (f"; of the advised recipe {self.advised:.1%} ({lo:.0%}–{hi:.0%}), a gain "
                     f"of {self.gain_points:+.1f} points from fine-tuning")
        return text + f" (calibrated on {len(self.fitted_on)} datasets, leave one out)"


def _logit(p: float) -> float:
    p = min(max(p, _EPS), 1 - _EPS)
    return math.log(p / (1 - p))


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def features(f: ProbeFigures) -> dict[str, float]:
    """The model inputs of one probe."""
    return {"logit_cv": _logit(f.linear_probe_accuracy), "logit_knn": _logit(f.knn_accuracy),
            "log_train_over_sample": math.log(max(f.n_train, f.n_sample) / f.n_sample),
            "log_classes": math.log(f.n_classes),
            "headroom_cv": 100.0 * (1.0 - f.linear_probe_accuracy)}


def linear_probe_at_fit(model: LinearModel, f: ProbeFigures) -> float:
    """The linear probe's forecast at the advised recipe's training size ``n_fit`` (the size
    ratio to the sample is not floored at 1 here: the recipe may train on fewer images than the
    probe's sample held)."""
    x = features(f)
    if f.n_fit is not None:
        x["log_train_over_sample"] = math.log(f.n_fit / f.n_sample)
    return _sigmoid(_apply(model, x))


def _apply(model: LinearModel, x: Mapping[str, float]) -> float:
    return model.intercept + sum(w * x[name] for name, w in model.weights.items())


def forecast(model: ForecastModel, figures: ProbeFigures, *, fine_tunes: bool = True) -> Forecast:
    """The forecast for one probe; ``fine_tunes`` says whether the advised recipe fine-tunes."""
    x = features(figures)
    lp = _sigmoid(_apply(model.linear_probe, x))
    half = model.linear_probe.half_width / 100
    advised = interval = gain = None
    if fine_tunes and model.gain is not None:
        gain = _apply(model.gain, x)
        base = (linear_probe_at_fit(model.linear_probe, figures) if model.advised_base == "fit"
                else lp)
        advised = min(1.0, max(0.0, base + gain / 100))
        h = (model.advised_half_width / 100 if model.advised_half_width is not None
             else half + model.gain.half_width / 100)
        interval = (max(0.0, advised - h), min(1.0, advised + h))
    return Forecast(linear_probe=lp, linear_probe_interval=(max(0.0, lp - half), min(1.0, lp + half)),
                    advised=advised, advised_interval=interval, gain_points=gain,
                    fitted_on=list(model.fitted_on))


# ----------------------------------------------------------------------------- fitting
def fit_linear(x: Sequence[Mapping[str, float]], y: Sequence[float], names: Sequence[str], *,
               ridge: float = 1e-2, intercept: bool = True) -> tuple[float, dict[str, float]]:
    """Least squares (a small ridge on the weights, not the intercept) of ``y`` on the named
    inputs: (intercept, weights); ``intercept=False`` fits through the origin (intercept 0)."""
    a = np.asarray([[row[n] for n in names] for row in x], dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if not intercept:
        w = np.linalg.solve(a.T @ a + ridge * len(b) * np.eye(len(names)), a.T @ b)
        return 0.0, {n: float(v) for n, v in zip(names, w)}
    mean_a, mean_b = a.mean(axis=0), b.mean()
    ac = a - mean_a
    w = np.linalg.solve(ac.T @ ac + ridge * len(b) * np.eye(len(names)), ac.T @ (b - mean_b))
    return float(mean_b - mean_a @ w), {n: float(v) for n, v in zip(names, w)}


def lodo(rows: Sequence[tuple[str, Mapping[str, float], float]], names: Sequence[str], *,
         logit_target: bool, ridge: float = 1e-2) -> dict[str, float]:
    """Leave one dataset out: for each dataset, fit on the others' rows and forecast its rows;
    returns dataset → mean (forecast − measured) in points (targets are accuracies when
    ``logit_target``, else points)."""
    errors: dict[str, float] = {}
    for held in sorted({d for d, _, _ in rows}):
        train = [(x, y) for d, x, y in rows if d != held]
        test = [(x, y) for d, x, y in rows if d == held]
        if len({d for d, _, _ in rows if d != held}) < 2:
            continue
        b0, w = fit_linear([x for x, _ in train],
                           [_logit(y) if logit_target else y for _, y in train], names, ridge=ridge)
        model = LinearModel(intercept=b0, weights=w, half_width=0.0)
        if logit_target:
            diffs = [100 * (_sigmoid(_apply(model, x)) - y) for x, y in test]
        else:
            diffs = [_apply(model, x) - y for x, y in test]
        errors[held] = float(np.mean(diffs))
    return errors


# ----------------------------------------------------------------------------- the data file
def forecast_path() -> Path:
    """``recipes/forecast.yaml`` beside the rules (``$AUTOTRANSFER_RECIPES`` moves both)."""
    from autotransfer.advisor.rules import recipes_dir

    return recipes_dir() / "forecast.yaml"


def load_forecast(path: str | os.PathLike[str] | None = None) -> ForecastModel | None:
    """The fitted forecast, or None when the file does not exist (no forecast is stated)."""
    file = Path(path) if path is not None else forecast_path()
    if not file.is_file():
        return None
    try:
        return ForecastModel.model_validate(yaml.safe_load(file.read_text(encoding="utf-8")))
    except (ValueError, OSError, yaml.YAMLError) as e:
        raise InvalidConfigError(
            f"{file}: not a valid forecast model ({e}). Regenerate it with "
            "'python tools/bench_advice.py --part forecast', or delete it to advise without a "
            "forecast.") from e


def versus_measured(fc: Forecast, *, linear_probe: float | None = None,
                    advised: float | None = None, split: str = "test") -> list[str]:
    """Markdown lines comparing the forecast with the accuracies a run measured on ``split``
    (for a run's report; a measure outside its interval says the forecast missed here)."""
    rows = [("linear probe", fc.linear_probe, fc.linear_probe_interval, linear_probe),
            ("advised recipe", fc.advised, fc.advised_interval, advised)]
    lines = [f"| | forecast | interval | measured ({split}) | within the interval? |",
             "|---|---|---|---|---|"]
    for name, value, interval, measured in rows:
        if value is None or interval is None:
            continue
        seen = "–" if measured is None else f"{measured:.1%}"
        inside = ("–" if measured is None else
                  "yes" if interval[0] <= measured <= interval[1] else
                  f"no ({100 * (measured - value):+.1f} points)")
        lines.append(f"| {name} | {value:.1%} | {interval[0]:.1%}–{interval[1]:.1%} | {seen} | "
                     f"{inside} |")
    return lines
