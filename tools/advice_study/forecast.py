"""The forecast before training, fitted and judged leave one dataset out with its choices nested."""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass
from typing import Any

from advice_study import store
from advice_study.paired import rate_in_force, rate_view
from advice_study.ranking import chosen_backbone
from advice_study.regret import regrets
from advice_study.store import by_dataset, load, machine, save


# ----------------------------------------------------------------------------- forecast
#: feature sets compared for the linear probe's forecast (the one with the smallest median
#: leave-one-dataset-out error is kept; the choice is reported with every set's error)
FEATURE_SETS = (("logit_cv",), ("logit_cv", "logit_knn"), ("logit_cv", "log_train_over_sample"),
                ("logit_cv", "logit_knn", "log_train_over_sample", "log_classes"))


#: points of mean absolute LODO error by which a gain slope must beat the mean gain to be kept
GAIN_SLOPE_MARGIN = 0.5

#: the advised recipe's forecast models compared leave one dataset out: (the linear-probe forecast
#: the gain is added to: "whole" training split or at the recipe's own training size "fit"; the
#: gain's inputs, () = the mean; whether the gain is fitted through the origin)
ADVISED_MODELS: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("whole", (), False), ("whole", ("logit_cv",), False), ("whole", ("headroom_cv",), True),
    ("fit", (), False), ("fit", ("logit_cv",), False), ("fit", ("headroom_cv",), True))


#: one forecast fixed in advance, no choice among models made on the study's datasets: every
#: probe feature for the linear probe, and for the advised recipe the linear probe at the
#: recipe's own training size (what the gain is measured against) plus the others' mean gain (no
#: slope: the fewest fitted numbers). Its leave-one-dataset-out errors are nested by construction.
FIXED_FEATURES = ("logit_cv", "logit_knn", "log_train_over_sample", "log_classes")
FIXED_ADVISED: tuple[str, tuple[str, ...], bool] = ("fit", (), False)


def advised_model_key(base: str, names: tuple[str, ...], origin: bool) -> str:
    """The report's name of one advised-forecast model."""
    gain = ",".join(names) or "mean"
    return f"{base}+{gain}{' (through 0)' if origin else ''}"


def figures_of(cell: dict[str, Any], n_fit: int | None = None) -> Any:
    from autotransfer.advisor.forecast import ProbeFigures

    p = cell["probe"]
    return ProbeFigures(linear_probe_accuracy=p["linear_probe_accuracy"],
                        knn_accuracy=p["knn_accuracy"], n_sample=cell["n_sample"],
                        n_train=cell["n_train"], n_classes=cell["n_classes"], n_fit=n_fit)


@dataclass(frozen=True)
class ForecastInputs:
    """What the forecast is fitted and judged on, from the recorded cells."""

    #: every ranking cell of a dataset with 3 backbones or more: (dataset, features, held-out acc.)
    rows: list[tuple[str, dict[str, float], float]]
    #: dataset → the ranking cell of the backbone BB01 chooses
    chosen: dict[str, dict[str, Any]]
    #: dataset → the grid's advised cell
    advised_cells: dict[str, dict[str, Any]]
    #: (dataset, features of the grid backbone's probe, advised − linear probe in points), where
    #: the advice fine-tunes
    gains: list[tuple[str, dict[str, float], float]]


def forecast_inputs(data: dict[str, Any]) -> ForecastInputs | None:
    """The forecast's data, or None with fewer than 3 ranked datasets."""
    by = by_dataset(data["ranking"])
    datasets = sorted(d for d, rows in by.items() if len(rows) >= 3)
    if len(datasets) < 3:
        return None
    rows = [(c["dataset"], features_of(c), c["truth"]["test_accuracy"])
            for c in data["ranking"] if c["dataset"] in datasets]
    chosen = {d: chosen_backbone(by[d]) for d in datasets}
    advised = {c["dataset"]: c for c in data["grid"] if c["cell"] == "advised"
               and c["dataset"] in chosen}
    gains = []
    for d, r in regrets(data["grid"]).items():
        if "finetune_gain" not in r or d not in advised:
            continue  # the gain against the probe of the backbone the grid ran (the advised one)
        cell = next((c for c in by[d] if c["backbone"] == advised[d]["backbone"]), None)
        if cell is not None:
            gains.append((d, features_of(cell), r["finetune_gain"]))
    return ForecastInputs(rows, chosen, advised, gains)


def features_of(cell: dict[str, Any], n_fit: int | None = None) -> dict[str, float]:
    from autotransfer.advisor.forecast import features

    return features(figures_of(cell, n_fit))


def choose_features(rows: list[tuple[str, dict[str, float], float]]
                    ) -> tuple[tuple[str, ...], dict[str, dict[str, float]]]:
    """The linear probe's feature set with the least median absolute LODO error over the cells
    of ``rows``, and every set's errors."""
    import numpy as np

    compared = {}
    for names in FEATURE_SETS:
        per_cell = lodo_cells(rows, list(names))
        compared[",".join(names)] = {
            "median_abs": float(np.median([abs(e) for _, e in per_cell])),
            "max_abs": float(max(abs(e) for _, e in per_cell))}
    return min(FEATURE_SETS, key=lambda n: compared[",".join(n)]["median_abs"]), compared


def _fit_logit(rows: list[tuple[str, dict[str, float], float]], names: tuple[str, ...],
               without: set[str]) -> tuple[float, dict[str, float]]:
    from autotransfer.advisor.forecast import fit_linear

    kept = [r for r in rows if r[0] not in without]
    return fit_linear([x for _, x, _ in kept], [_logit(y) for _, _, y in kept], list(names))


def _predict(fit: tuple[float, dict[str, float]], x: dict[str, float]) -> float:
    c0, cw = fit
    return c0 + sum(cw[n] * x[n] for n in cw)


@dataclass(frozen=True)
class AdvisedLodo:
    """The advised forecast's models judged leave one dataset out on some datasets."""

    #: model key (``advised_model_key``) → dataset → forecast − measured (points)
    errors: dict[str, dict[str, float]]
    #: gain inputs (() = the mean) → dataset → gain forecast − measured gain (points)
    gain_errors: dict[tuple[str, ...], dict[str, float]]


def advised_lodo(inp: ForecastInputs, names: tuple[str, ...],
                 exclude: frozenset[str] = frozenset()) -> AdvisedLodo:
    """Every advised-forecast model (:data:`ADVISED_MODELS`) leave one dataset out, on the
    datasets outside ``exclude``: each one's forecast is fitted on the others less ``exclude``
    (the linear probe on their ranking cells with features ``names``, the gain on their grid)."""
    from autotransfer.advisor.forecast import fit_linear

    cells = {d: c for d, c in inp.advised_cells.items() if d not in exclude}
    gains = [g for g in inp.gains if g[0] not in exclude]
    base: dict[str, dict[str, float]] = {"whole": {}, "fit": {}}
    for d, c in cells.items():  # the linear probe's forecast without d: whole split, recipe's size
        fold = _fit_logit(inp.rows, names, {d, *exclude})
        base["whole"][d] = _sigmoid(_predict(fold, features_of(inp.chosen[d])))
        x = features_of(inp.chosen[d], n_fit=c["n_train"])
        x["log_train_over_sample"] = math.log(c["n_train"] / inp.chosen[d]["n_sample"])
        base["fit"][d] = _sigmoid(_predict(fold, x))
    gain_errors: dict[tuple[str, ...], dict[str, float]] = {}
    preds: dict[tuple[str, ...], dict[str, float]] = {}
    if len(gains) >= 2:
        for _, names_g, origin in ADVISED_MODELS:
            if (names_g and len(gains) < 4) or names_g in preds:
                continue
            preds[names_g], gain_errors[names_g] = {}, {}
            for d, x, g in gains:
                rest = [(xe, h) for e, xe, h in gains if e != d]
                fold = fit_linear([xe for xe, _ in rest], [h for _, h in rest], list(names_g),
                                  intercept=not origin)
                preds[names_g][d] = _predict(fold, x)
                gain_errors[names_g][d] = round(preds[names_g][d] - g, 2)
    errors: dict[str, dict[str, float]] = {}
    for base_name, names_g, origin in ADVISED_MODELS:
        if names_g not in preds:
            continue
        errs = {}
        for d, c in cells.items():
            tunes = any(p["trainable_from"] < 5 for p in c["phases"])
            if tunes and d not in preds[names_g]:
                continue
            g = preds[names_g][d] if tunes else 0.0
            errs[d] = round(100 * (base[base_name][d] + g / 100 - c["test_accuracy"]), 2)
        if errs:
            errors[advised_model_key(base_name, names_g, origin)] = errs
    return AdvisedLodo(errors, gain_errors)


def summarise(errs: dict[str, float]) -> dict[str, Any]:
    """Within ±3, mean and max absolute error and bias of forecast − measured errors."""
    import numpy as np

    v = list(errs.values())
    return {"errors": errs, "within_3": sum(abs(e) <= 3 for e in v), "n": len(v),
            "mean_abs": float(np.mean(np.abs(v))), "max_abs": float(max(abs(e) for e in v)),
            "bias": float(np.mean(v))}


def pick_advised(errors: dict[str, dict[str, float]]) -> str:
    """The advised model with the least mean absolute error, a fitted gain slope charged
    :data:`GAIN_SLOPE_MARGIN` points (first in :data:`ADVISED_MODELS` order on ties)."""
    slope = {advised_model_key(*m): bool(m[1]) for m in ADVISED_MODELS}
    return min(errors, key=lambda k: summarise(errors[k])["mean_abs"]
               + (GAIN_SLOPE_MARGIN if slope[k] else 0.0))


def nested_forecast(inp: ForecastInputs) -> dict[str, Any]:
    """The forecast's choices nested inside leave one dataset out: for each held-out dataset the
    linear probe's feature set and the advised model are chosen on the other datasets alone (the
    model by its leave-one-out errors among them, fitted without the held-out one), then the
    held-out dataset is forecast by what was chosen. These errors, untouched by any choice made
    on the dataset they judge, set the stated intervals."""
    lp: dict[str, Any] = {}
    cells: list[float] = []
    for h in sorted(inp.chosen):
        names, _ = choose_features([r for r in inp.rows if r[0] != h])
        fold = _fit_logit(inp.rows, names, {h})
        cells += [100 * (_sigmoid(_predict(fold, x)) - y) for d, x, y in inp.rows if d == h]
        lp[h] = {"features": list(names), "error": round(100 * (_sigmoid(_predict(
            fold, features_of(inp.chosen[h]))) - inp.chosen[h]["truth"]["test_accuracy"]), 2)}
    advised: dict[str, Any] = {}
    for h in sorted(inp.advised_cells):
        names = tuple(lp[h]["features"])
        inner = advised_lodo(inp, names, exclude=frozenset({h})).errors
        if not inner:
            continue
        key = pick_advised(inner)
        outer = advised_lodo(inp, names).errors.get(key, {})
        if h in outer:
            advised[h] = {"model": key, "features": list(names), "error": outer[h],
                          "inner_mean_abs": round(summarise(inner[key])["mean_abs"], 2)}
    return {"linear_probe": lp, "linear_probe_cells": [round(e, 2) for e in cells],
            "advised": advised}


def fixed_forecast(inp: ForecastInputs) -> dict[str, Any]:
    """The fixed forecast (:data:`FIXED_FEATURES`, :data:`FIXED_ADVISED`) judged leave one
    dataset out: nothing is chosen on the datasets, so these errors are nested as they stand."""
    names = FIXED_FEATURES
    lp = {d: round(100 * (_sigmoid(_predict(_fit_logit(inp.rows, names, {d}),
                                            features_of(inp.chosen[d])))
                          - inp.chosen[d]["truth"]["test_accuracy"]), 2)
          for d in sorted(inp.chosen)}
    judged = advised_lodo(inp, names)
    key = advised_model_key(*FIXED_ADVISED)
    return {"features": list(names), "model": key, "linear_probe": lp,
            "linear_probe_cells": [round(e, 2) for _, e in lodo_cells(inp.rows, list(names))],
            "advised": judged.errors.get(key, {}),
            "gain_errors": judged.gain_errors.get(FIXED_ADVISED[1], {})}


def fixed_beats_nested(fixed: dict[str, Any], nested: dict[str, Any]) -> bool:
    """Whether the fixed forecast replaces the nested choice among models: on the same datasets,
    within ±3 points on more of them, a lower mean absolute error and a worst error no larger."""
    f = [abs(e) for e in fixed["advised"].values()]
    n = [abs(v["error"]) for v in nested["advised"].values()]
    if not f or set(fixed["advised"]) != set(nested["advised"]):
        return False
    return (sum(x <= 3 for x in f) > sum(x <= 3 for x in n) and sum(f) < sum(n)
            and max(f) <= max(n))


def run_forecast(args: argparse.Namespace) -> None:
    """Fit recipes/forecast.yaml from the ranking (linear probe) and grid (gain) cells; judge it
    leave one dataset out, its choices nested (:func:`nested_forecast`)."""
    import numpy as np
    import yaml

    from autotransfer._io import atomic_write_text
    from autotransfer.advisor.forecast import ForecastModel, LinearModel, fit_linear

    t0 = time.perf_counter()
    data = load()
    rate = rate_in_force()  # LR01 × rate of the cells' ratios: its advised-x<rate> cells advised
    inp = forecast_inputs({**data, "grid": rate_view(data["grid"], rate)})
    if inp is None:
        print("the forecast needs ranking cells of 3 datasets or more")
        return
    datasets = sorted(inp.chosen)
    chosen_names, compared = choose_features(inp.rows)
    nested = nested_forecast(inp)
    fixed = fixed_forecast(inp)
    adopt_fixed = fixed_beats_nested(fixed, nested)
    names = FIXED_FEATURES if adopt_fixed else chosen_names
    b0, w = _fit_logit(inp.rows, names, set())
    lp_errors = {d: 100 * (_sigmoid(_predict(_fit_logit(inp.rows, names, {d}),
                                             features_of(inp.chosen[d])))
                           - inp.chosen[d]["truth"]["test_accuracy"]) for d in datasets}
    # the interval: the 90th percentile of the cells' errors, each dataset forecast by the
    # model whose features were chosen without it (or fixed)
    half = float(np.percentile(np.abs((fixed if adopt_fixed else nested)["linear_probe_cells"]),
                               90))
    linear = LinearModel(intercept=b0, weights=w, half_width=round(half, 2),
                         lodo_errors={d: round(e, 2) for d, e in lp_errors.items()})

    judged = advised_lodo(inp, names)
    advised_compared = {k: summarise(e) for k, e in judged.errors.items()}
    gain_compared = {",".join(g) or "mean": {
        "mean_abs": float(np.mean([abs(e) for e in errs.values()])),
        "max_abs": float(max(abs(e) for e in errs.values()))}
        for g, errs in judged.gain_errors.items()}
    gain_model, gain_lodo, advised_errors, advised_base = None, {}, {}, "whole"
    advised_half = None
    if judged.errors:
        key = advised_model_key(*FIXED_ADVISED) if adopt_fixed else pick_advised(judged.errors)
        advised_base, best_g, origin = next(m for m in ADVISED_MODELS
                                            if advised_model_key(*m) == key)
        advised_errors = judged.errors[key]
        gain_lodo = judged.gain_errors[best_g]
        c0, cw = fit_linear([x for _, x, _ in inp.gains], [g for _, _, g in inp.gains],
                            list(best_g), intercept=not origin)
        gain_model = LinearModel(intercept=round(c0, 3), weights={k: round(v, 4) for k, v in
                                                                  cw.items()},
                                 half_width=round(max(abs(e) for e in gain_lodo.values()), 2),
                                 lodo_errors=gain_lodo)
        nested_errors = (list(fixed["advised"].values()) if adopt_fixed
                         else [v["error"] for v in nested["advised"].values()])
        if nested_errors:  # the largest of n exchangeable errors: a new one stays below it with
            # probability n / (n + 1)
            advised_half = round(max(abs(e) for e in nested_errors), 2)
    model = ForecastModel(fitted_on=datasets, source="docs/benchmarks/advice.json (tools/"
                          "bench_advice.py)", linear_probe=linear, gain=gain_model,
                          advised_base=advised_base, advised_half_width=advised_half)
    path = store.REPO / "recipes" / "forecast.yaml"
    header = ("# The forecast's coefficients (autotransfer/advisor/forecast.py), fitted by\n"
              "# 'python tools/bench_advice.py --part forecast' on docs/benchmarks/advice.json;\n"
              "# see docs/benchmarks/advice.md for the leave-one-dataset-out errors. Data only.\n")
    atomic_write_text(path, header + yaml.safe_dump(model.model_dump(mode="json"),
                                                    sort_keys=False))
    import fcntl

    store.WORK.mkdir(parents=True, exist_ok=True)
    with open(store.WORK / "advice.lock", "w") as lock:  # the grid may be appending meanwhile
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = load()
        data["forecast"] = {"feature_sets": compared, "chosen_features": list(names),
                            "advised_lodo_errors": advised_errors,
                            "advised_models": advised_compared,
                            "advised_cells": {d: [c["n_test"], c["test_accuracy"]]
                                              for d, c in inp.advised_cells.items()},
                            "linear_probe_lodo_errors": lp_errors,
                            "chosen_backbones": {d: c["backbone"] for d, c in inp.chosen.items()},
                            "gain_lodo_errors": gain_lodo, "gain_models": gain_compared,
                            "gain_data": {d: g for d, _, g in inp.gains},
                            "nested": nested, "fixed": fixed,
                            "adopted": "fixed" if adopt_fixed else "nested choice",
                            "rate_in_force": rate, "at_recorded_rate": at_recorded_rate(data, rate),
                            "model": model.model_dump(mode="json"), "machine": machine(),
                            "seconds": round(time.perf_counter() - t0, 1)}
        save(data)
    print(f"wrote {path}: features {names}, LODO errors {lp_errors}, nested advised "
          f"{ {d: v['error'] for d, v in nested['advised'].items()} }")


def at_recorded_rate(data: dict[str, Any], rate: float | None) -> dict[str, Any] | None:
    """With LR01's rates × ``rate`` in force, the forecast's nested and fixed advised errors on the
    advised cells as recorded (× 1): how the forecast's error moves with the advised recipe."""
    if rate is None or math.isclose(rate, 1.0):
        return None
    inp = forecast_inputs(data)
    if inp is None:
        return None
    return {"nested": {d: v["error"] for d, v in nested_forecast(inp)["advised"].items()},
            "fixed": fixed_forecast(inp)["advised"]}


def lodo_cells(rows: list[tuple[str, dict[str, float], float]],
               names: list[str]) -> list[tuple[str, float]]:
    """(dataset, forecast − measured in points) of every cell, each forecast by the model
    fitted without its dataset."""
    from autotransfer.advisor.forecast import fit_linear

    out = []
    for d in sorted({r[0] for r in rows}):
        others = [r for r in rows if r[0] != d]
        b0, w = fit_linear([x for _, x, _ in others], [_logit(y) for _, _, y in others], names)
        out += [(d, 100 * (_sigmoid(b0 + sum(w[n] * x[n] for n in names)) - y))
                for e, x, y in rows if e == d]
    return out


def _logit(p: float) -> float:
    p = min(max(p, 1e-3), 1 - 1e-3)
    return math.log(p / (1 - p))


def _sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def forecast_markdown(f: dict[str, Any]) -> list[str]:
    if not f:
        return []
    lp = f["model"]["linear_probe"]
    m = f.get("machine") or {}
    lines = ["## Forecast (leave one dataset out)", "",
             "Fitted by `python tools/bench_advice.py --part forecast`: arithmetic on the recorded "
             "cells, no training"
             + (f", {f['seconds']:.1f} s" if f.get("seconds") is not None else "")
             + (f" at {m['at']}, load {m['load']} (nice 10, beside the lanes)" if m else "")
             + ".", "",
             "The linear probe's held-out accuracy forecast from the probe's sample "
             f"(features {', '.join(f['chosen_features'])}; logit scale; fitted on every "
             f"backbone's cell), interval ±{lp['half_width']:.1f} points (90th percentile of the "
             "cells' leave-one-dataset-out errors, the feature set chosen without the dataset: "
             "**Nested** below). Error = forecast − measured, for the backbone "
             "BB01 chooses, by the model fitted without that dataset:", "",
             "| dataset | chosen backbone | LODO error (pts) | within ±3? |", "|---|---|---|---|"]
    errors = f["linear_probe_lodo_errors"]
    for d, e in errors.items():
        lines.append(f"| {d} | {f['chosen_backbones'][d]} | {e:+.1f} | "
                     f"{'yes' if abs(e) <= 3 else 'no'} |")
    within = sum(abs(e) <= 3 for e in errors.values())
    lines += ["", f"Within ±3 points on {within} of {len(errors)} datasets.", "",
              "Feature sets compared (median / max absolute LODO error over all cells, points): "
              + "; ".join(f"{k}: {v['median_abs']:.1f} / {v['max_abs']:.1f}"
                          for k, v in f["feature_sets"].items()) + ".", ""]
    gain = f["model"].get("gain")
    if gain:
        form = (f"{gain['intercept']:+.2f}" + "".join(
            f" {w:+.2f}·{k}" for k, w in gain["weights"].items()))
        data_g = f.get("gain_data", {})
        lines += [f"Gain of the advised fine-tuning over the linear probe, in points: {form} "
                  f"(fitted on {len(f['gain_lodo_errors'])} grid datasets where the advice "
                  f"fine-tunes: " + ", ".join(f"{d} {g:+.1f}" for d, g in data_g.items())
                  + f"), interval ±{gain['half_width']:.1f} (the largest LODO error); "
                  "LODO errors (forecast − measured): "
                  + ", ".join(f"{d} {e:+.1f}" for d, e in f["gain_lodo_errors"].items()) + ".", ""]
        if f.get("advised_lodo_errors"):
            e = f["advised_lodo_errors"]
            base = f["model"].get("advised_base", "whole")
            lines += ["The advised recipe's forecast (the linear probe's "
                      + ("at the recipe's own training size — the training split less the "
                         "validation images it holds out — " if base == "fit" else "")
                      + "plus, where the advice fine-tunes, the gain; both fitted without the "
                      "dataset) against the advised cell of the grid (forecast − measured, "
                      "points): " + ", ".join(f"{d} {v:+.1f}" for d, v in e.items())
                      + f"; within ±3 on {sum(abs(v) <= 3 for v in e.values())} of {len(e)}.",
                      ""]
        models = f.get("advised_models") or {}
        if models:
            lines += ["Advised-recipe forecasts compared, leave one dataset out (base: the linear "
                      "probe's forecast for the whole training split, or at the recipe's own "
                      "training size; gain: the mean, a slope on the probe's logit CV accuracy, or "
                      "a share of its headroom, 100 × (1 − CV), through 0). Kept: the least mean "
                      "absolute error, a fitted slope charged "
                      f"{GAIN_SLOPE_MARGIN} points; the gain is measured against the linear probe "
                      "on the grid's split, so a whole-split base forecasts the probe on more "
                      "images than the recipe trains on:", "",
                      "| model | within ±3 | mean abs | max abs | bias | errors (forecast − "
                      "measured, points) |", "|---|---|---|---|---|---|"]
            kept = (f"{base}+" + (",".join(f["model"]["gain"]["weights"]) or "mean"))
            for k, v in models.items():
                mark = " **(kept)**" if k.split(" (")[0] == kept else ""
                lines.append(f"| {k}{mark} | {v['within_3']} of {v['n']} | {v['mean_abs']:.2f} | "
                             f"{v['max_abs']:.2f} | {v['bias']:+.2f} | " + ", ".join(
                                 f"{d} {x:+.1f}" for d, x in v["errors"].items()) + " |")
            lines += ["", f"Noise ceiling: a forecast equal to each advised cell's true accuracy "
                      f"would fall within ±3 points of the measured one (Binomial(n, p)/n on the "
                      f"test images) on {advised_ceiling(f):.1f} of {len(e)} datasets in "
                      "expectation.", ""]
        lines += nested_markdown(f) + fixed_markdown(f)
        if f.get("gain_models"):
            lines += ["Gain models compared (mean / max absolute LODO error, points): " + "; ".join(
                f"{k}: {v['mean_abs']:.2f} / {v['max_abs']:.2f}"
                for k, v in f["gain_models"].items()) + f" (a slope is kept only when it beats "
                f"the mean by more than {GAIN_SLOPE_MARGIN} points).", ""]
    else:
        lines += ["No gain model: fewer than two datasets have both the advised recipe and the "
                  "linear probe in the grid, so `advise` forecasts the linear probe only.", ""]
    return lines


def nested_markdown(f: dict[str, Any]) -> list[str]:
    """The forecast's leave-one-dataset-out errors with its choices nested (made without the
    dataset judged), beside the errors of the choice made on every dataset."""
    n = f.get("nested") or {}
    if not n.get("advised"):
        return []
    flat = f.get("advised_lodo_errors") or {}
    lp_flat = f.get("linear_probe_lodo_errors") or {}
    rows = []
    for d, v in n["advised"].items():
        lp = n["linear_probe"].get(d, {})
        rows.append(f"| {d} | {', '.join(v['features'])} | {v['model']} "
                    f"({v['inner_mean_abs']:.2f}) | {v['error']:+.1f} | "
                    + (f"{flat[d]:+.1f}" if d in flat else "–") + " | "
                    + (f"{lp['error']:+.1f}" if lp else "–") + " | "
                    + (f"{lp_flat[d]:+.1f}" if d in lp_flat else "–") + " |")
    e = [v["error"] for v in n["advised"].values()]
    lp_e = [v["error"] for v in n["linear_probe"].values()]
    half = (f["model"].get("advised_half_width"))
    return ["**Nested** (the figures the goal is judged on): for each held-out dataset, the "
            "linear probe's feature set and the advised model are chosen on the other datasets "
            "alone — the model by its leave-one-out errors among them (each fitted without the "
            "held-out dataset too; least mean absolute error, a slope charged "
            f"{GAIN_SLOPE_MARGIN} points) — then the held-out dataset is forecast by what was "
            "chosen. The table above chose the kept model on the same errors that judge it, so "
            "its count is optimistic.", "",
            "| held out | features chosen without it | advised model chosen without it (its "
            "mean abs error there) | nested error | error of the model kept on all | linear "
            "probe: nested | linear probe: kept features |",
            "|---|---|---|---|---|---|---|", *rows, "",
            f"Nested: the advised recipe within ±3 points on {sum(abs(x) <= 3 for x in e)} of "
            f"{len(e)} (mean absolute {sum(abs(x) for x in e) / len(e):.2f}, worst "
            f"{max(abs(x) for x in e):.2f}, bias {sum(e) / len(e):+.2f}); the linear probe on "
            f"{sum(abs(x) <= 3 for x in lp_e)} of {len(lp_e)}. The stated intervals come from the "
            "nested errors: the linear probe's ±"
            f"{f['model']['linear_probe']['half_width']:.1f} (90th percentile of every cell's "
            "nested error), the advised recipe's "
            + (f"±{half:.1f} (the largest nested error: a new dataset's error stays below the "
               f"largest of {len(e)} exchangeable ones with probability {len(e)}/{len(e) + 1})"
               if half is not None else "the two half-widths added") + ".", ""]


def fixed_markdown(f: dict[str, Any]) -> list[str]:
    """The fixed forecast's errors (nested by construction) beside the nested choice's, and
    which of the two ``advise`` states."""
    fx, n = f.get("fixed") or {}, (f.get("nested") or {}).get("advised") or {}
    if not fx.get("advised"):
        return []
    e = fx["advised"]
    rows = [f"| {d} | {v:+.1f} | " + (f"{n[d]['error']:+.1f}" if d in n else "–") + " | "
            + (f"{fx['linear_probe'][d]:+.1f}" if d in fx["linear_probe"] else "–") + " |"
            for d, v in e.items()]
    ne = [v["error"] for v in n.values()]
    lp = list(fx["linear_probe"].values())

    def summary(v: list[float]) -> str:
        return (f"within ±3 on {sum(abs(x) <= 3 for x in v)} of {len(v)}, mean absolute "
                f"{sum(abs(x) for x in v) / len(v):.2f}, worst {max(abs(x) for x in v):.2f}")

    return ["**One fixed forecast** (no choice among models on these datasets, so its "
            f"leave-one-dataset-out errors are nested as they stand): the linear probe on every "
            f"probe feature ({', '.join(fx['features'])}), the advised recipe as {fx['model']} "
            "(the linear probe at the recipe's own training size, plus the other datasets' mean "
            "gain). It replaces the nested choice only with more datasets within ±3, a lower mean "
            "absolute error and a worst error no larger. It was picked as the simplest candidate "
            "(every feature, no slope), not by its errors, but after the table of flat errors "
            "above was known: not free of hindsight.", "",
            "| held out | fixed: advised error | nested choice: advised error | fixed: linear "
            "probe error |", "|---|---|---|---|", *rows, "",
            f"Fixed: advised {summary(list(e.values()))}; linear probe {summary(lp)}. "
            + (f"Nested choice: advised {summary(ne)}. " if ne else "")
            + f"**`advise` states the {f.get('adopted', 'nested choice')}'s forecast.**", ""] + (
                rate_markdown(f))


def rate_markdown(f: dict[str, Any]) -> list[str]:
    """How the forecast's errors moved when LR01's rates changed (the advised cells with them)."""
    before = f.get("at_recorded_rate")
    if not before:
        return []

    def summary(v: list[float]) -> str:
        return (f"within ±3 on {sum(abs(x) <= 3 for x in v)} of {len(v)}, mean absolute "
                f"{sum(abs(x) for x in v) / len(v):.2f}, worst {max(abs(x) for x in v):.2f}")

    now_n = [v["error"] for v in (f.get("nested") or {}).get("advised", {}).values()]
    now_f = list(((f.get("fixed") or {}).get("advised") or {}).values())
    return [f"With LR01's rates × {f['rate_in_force']:g} in force the advised cells are the "
            f"advised-x{f['rate_in_force']:g} cells, and the forecast above is fitted and judged "
            "on them. On the × 1 cells as recorded the same forecasts erred: nested choice "
            f"{summary(list(before['nested'].values()))}; fixed "
            f"{summary(list(before['fixed'].values()))} (now: nested choice {summary(now_n)}; "
            f"fixed {summary(now_f)}).", ""]


def advised_ceiling(f: dict[str, Any], draws: int = 20000, seed: int = 0) -> float:
    """Expected number of datasets on which a perfect forecast of the advised cell falls within
    ±3 points of its measured accuracy (test noise only, Binomial(n, p)/n, p = the measured)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    total = 0.0
    for n, p in f.get("advised_cells", {}).values():
        total += float(np.mean(np.abs(rng.binomial(n, p, draws) / n - p) <= 0.03 + 1e-9))
    return total
