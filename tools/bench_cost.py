#!/usr/bin/env python3
"""Is the epoch estimate right? Rule COST01's estimate against epochs the trainer measures.

For each dataset and each depth (``full``: every group trains; ``partial``: from the group the
advisor chose, or 3 when it trains the head alone; ``head``: the head alone, fitted exactly on
cached features), in one process: the advisor's recipe (preset ``quick``, mobilenet_v2) is cut to
one phase of that depth and ``--epochs`` epochs; one training step of it is timed as the advisor
times it (:func:`autotransfer.probes.probe.measure_step`, uncached, right before training, so
both see the same load), then the trainer runs it. For fine-tuning, the estimate is COST01's
(:func:`autotransfer.advisor.cost.compare`: the same numbers ``metrics.json`` reports as
``epoch_time``) against the median epoch after the first; the forward-pass-only estimate (the
model before COST01) is shown beside it. For the head, BUD03's head-only estimate (``head_views``
forward passes over the training images) against the phase's measured seconds (its feature
extraction included). The first epoch's excess over the steady ones (the phase's tracing, which
the trainer does once per phase and the estimate leaves out) is shown beside it, and a Keras
callback in every ``fit`` splits each steady epoch into its training batches, its validation
pass and the rest (``fit``'s set-up and wrap-up, timed around it), each against its term of the
estimate (the second table). The load average
is recorded before and after each run: rerun a row whose load changed a lot. Writes docs/benchmarks/cost_model_runs.{md,json} (other datasets' rows kept;
docs/benchmarks/cost_model.md discusses them).

    python tools/bench_cost.py [--datasets hymenoptera brain_mri clothing_small_lite
                                chest_xray_224] [--depths head partial full] [--epochs 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))
from _resumable import run_datasets  # noqa: E402
from _shared_weights import use_shared_weights  # noqa: E402
from bench_auto import held_out_layout  # noqa: E402

DEPTHS = ("head", "partial", "full")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def epoch_spy() -> Any:
    """A Keras callback that records, per ``fit`` (one epoch in the trainer), where its seconds
    go: the training batches (step and the input pipeline that feeds it), the validation pass,
    and the rest inside ``fit`` (set-up before the first batch, callbacks after the last)."""
    import keras

    class Spy(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.epochs: list[dict[str, float]] = []
            self.calls: list[tuple[float, float]] = []  # (start, return) of every fit call
            self.set_at = 0.0

        def set_model(self, model: Any) -> None:
            super().set_model(model)
            self.set_at = time.perf_counter()  # fit's callbacks are set up after its data

        def on_train_begin(self, logs: Any = None) -> None:
            self.t = {"begin": time.perf_counter(), "batches": 0.0, "n": 0, "val": 0.0,
                      "set": self.set_at}

        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            self.t["b"] = time.perf_counter()

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            self.t["batches"] += time.perf_counter() - self.t["b"]
            self.t["n"] += 1

        def on_test_begin(self, logs: Any = None) -> None:
            self.t["v"] = time.perf_counter()

        def on_test_end(self, logs: Any = None) -> None:
            self.t["val"] += time.perf_counter() - self.t["v"]

        def on_train_end(self, logs: Any = None) -> None:
            t = self.t
            inside = time.perf_counter() - t["begin"]
            self.epochs.append({"batches_s": round(t["batches"], 3), "val_s": round(t["val"], 3),
                                "rest_s": round(inside - t["batches"] - t["val"], 3),
                                "fit_s": round(inside, 3), "steps": t["n"],
                                "begin": t["begin"], "set": t["set"],
                                "end": time.perf_counter()})

    spy = Spy()
    original = keras.Model.fit

    def fit(model: Any, *args: Any, **kwargs: Any) -> Any:  # where fit's own seconds go
        started = time.perf_counter()
        try:
            return original(model, *args, **kwargs)
        finally:
            spy.calls.append((started, time.perf_counter()))

    keras.Model.fit = fit  # this benchmark's process only
    return spy


def breakdown(spy: Any, epoch_seconds: list[float] | None) -> dict[str, float] | None:
    """The median over the epochs after the first of the spy's parts, and what the trainer's
    epoch (``epoch_seconds``, timed around ``fit``) spent outside ``fit``'s callbacks."""
    import statistics

    eps = spy.epochs[1:] or spy.epochs
    if not eps:
        return None
    out = {k: round(statistics.median(e[k] for e in eps), 3)
           for k in ("batches_s", "val_s", "rest_s", "fit_s")}
    if epoch_seconds and len(epoch_seconds) == len(spy.epochs):
        outside = [s - e["fit_s"] for s, e in zip(epoch_seconds, spy.epochs)]
        out["outside_fit_s"] = round(statistics.median(outside[1:] or outside), 3)
    calls = spy.calls[-len(spy.epochs):]
    if len(calls) == len(spy.epochs):  # fit's set-up (data, then callbacks) and wrap-up
        parts = [(e["set"] - c0, e["begin"] - e["set"], c1 - e["end"])
                 for (c0, c1), e in zip(calls, spy.epochs)]
        parts = parts[1:] or parts
        for i, k in enumerate(("fit_data_setup_s", "fit_callback_setup_s", "fit_wrap_up_s")):
            out[k] = round(statistics.median(p[i] for p in parts), 3)
    return out


def one_phase(recipe: Any, trainable_from: int, epochs: int) -> Any:
    """``recipe`` with a single phase of ``epochs`` epochs from group ``trainable_from``."""
    from autotransfer.recipe.schema import Recipe

    d = recipe.to_dict()
    tuned = [p for p in d["phases"] if p["trainable_from"] < 5]
    phase = dict(tuned[-1] if tuned else d["phases"][-1])
    phase.update(name=f"from_{trainable_from}", epochs=epochs, trainable_from=trainable_from,
                 warmup_epochs=0.0)
    d["phases"] = [phase]
    d["early_stopping"] = {"patience": 1000, "restore_best_weights": False}
    d["domain_adaptation"] = {"method": "none"}
    return Recipe.model_validate(d)


def capped(splits: Any, cap: int | None, parts: tuple[str, ...] = ("train", "val")) -> Any:
    """``splits`` with at most ``cap`` training images, every k-th of the (shuffled) split, and
    the other ``parts`` in the same proportion (classes stay in about their proportions; a
    class with fewer than k images may drop out)."""
    if not cap or len(splits.train) <= cap:
        return splits
    k = -(-len(splits.train) // cap)
    return splits.model_copy(update={p: getattr(splits, p)[::k] for p in parts})


def run_dataset(name: str, depths: list[str], epochs: int, work: Path,
                cap: int | None = None) -> dict[str, Any]:
    import keras

    from autotransfer import budget as budget_floor
    from autotransfer.advisor.advise import Advisor
    from autotransfer.advisor.cost import compare, epoch_seconds, fit_and_eval
    from autotransfer.data.profile import profile_dataset
    from autotransfer.data.splits import make_splits
    from autotransfer.probes.probe import measure_step
    from autotransfer.train.run import train

    root = held_out_layout(name, work)
    profile = profile_dataset(root)
    advisor = Advisor(backbones=["mobilenet_v2"], preset="quick", verbose=0)
    advice = advisor.fit(profile).advice_
    recipe = advice.recipe
    splits = capped(make_splits(profile, val_fraction=recipe.data.val_fraction, seed=recipe.seed,
                                exclude_leaks=recipe.data.exclude_leaks), cap)
    n_fit, n_eval = len(splits.train), len(splits.val)
    facts = advice.facts
    tuned = [p.trainable_from for p in recipe.phases if p.trainable_from < 5]
    rows: dict[str, Any] = {}
    for depth in depths:
        start = {"head": 5, "full": 0, "partial": min(tuned) if tuned else 3}[depth]
        if depth == "partial" and start == 0:
            start = 3
        r = one_phase(recipe, start, epochs)
        load_before = _load()
        evidence = None
        if start < 5:  # time the step now, as the advisor does, under the load of the moment
            unmeasured = advice.probes.model_copy(update={"probes": [
                p.model_copy(update={"step": None}) for p in advice.probes.probes]})
            probes = measure_step(unmeasured, profile, r.backbone.name,
                                  input_size=r.backbone.input_size, trainable_from=start,
                                  batch_size=r.data.batch_size, bn_frozen=r.bn_policy == "frozen",
                                  mixes=False, per_class=advisor.per_class,
                                  total=advisor.max_total, cache=False,
                                  augmentation=r.augmentation,
                                  precision="bfloat16" if r.precision == "bfloat16"
                                  else "float32")  # as the advisor times it (_time_step)
            step = probes.get(r.backbone.name).step
            evidence = {"forward_ms": facts["forward_ms"], "probe_size": facts["probe_size"],
                        "input_size": r.backbone.input_size, "step_ms": step.step_ms,
                        "step_eval_ms": step.eval_ms, "step_from": step.trainable_from,
                        "step_size": step.input_size,
                        "step_overhead_s": step.overhead_s if step.overhead_s is not None
                        else float("nan")}
        started = time.time()
        spy = epoch_spy()
        run = train(splits, r, work / "runs" / name / depth, callbacks=[spy])
        seconds = time.time() - started
        phases = run.metrics.get("phases", [])
        row: dict[str, Any] = {"trainable_from": start, "input_size": r.backbone.input_size,
                               "precision": r.precision,
                               "n_fit": n_fit, "n_eval": n_eval, "seconds": seconds,
                               "load_before": load_before, "load_after": _load()}
        if start < 5:
            got = compare(evidence, phases, n_fit, n_eval, r.backbone.input_size)
            row.update(got or {})
            row["step_ms"], row["step_eval_ms"] = evidence["step_ms"], evidence["step_eval_ms"]
            # the same timing summarised otherwise, side by side: the mean of the timed batches,
            # and of the first two only (the summary before the median)
            row["batch_ms"] = list(step.batch_ms)
            row["step_timing_s"] = step.seconds  # what timing the step cost the advice
            bs = r.data.batch_size
            for key, batches in (("mean", step.batch_ms), ("first_two", step.batch_ms[:2])):
                if batches and got:
                    alt = compare({**evidence, "step_ms": sum(batches) / len(batches) / bs},
                                  phases, n_fit, n_eval, r.backbone.input_size)
                    if alt:
                        row[f"ratio_{key}"] = alt["ratio"]
            row["overhead_s"] = step.overhead_s
            row["epoch_seconds"] = phases[0].get("epoch_seconds") if phases else None
            if got and row["epoch_seconds"] and len(row["epoch_seconds"]) > 1:
                row["first_epoch_excess_s"] = round(row["epoch_seconds"][0] - got["measured_s"], 2)
            row["forward_only_s"] = round(epoch_seconds(
                sum(fit_and_eval(n_fit, n_eval)), facts["forward_ms"], r.backbone.input_size,
                facts["probe_size"], start), 2)
            row["cached"] = bool(phases and phases[0].get("feature_cache", {}).get("used"))
            row["breakdown"] = breakdown(spy, row["epoch_seconds"])
        else:
            params = budget_floor.rule_params()
            head = budget_floor.head_seconds(facts, r.backbone.input_size, params)
            p = phases[0] if phases else {}
            measured = float(p.get("seconds") or 0.0) + float(
                (p.get("feature_cache") or {}).get("build_seconds") or 0.0)
            estimate = None if head is None else head - float(params["fixed_s"])
            row.update({"estimate_s": None if estimate is None else round(estimate, 2),
                        "measured_s": round(measured, 2),
                        "ratio": None if not estimate else round(measured / estimate, 3),
                        "source": "BUD03: head_views forward passes"})
        rows[depth] = row
        print(f"  {depth}: {row}", flush=True)
        keras.backend.clear_session()
    return {"dataset": name, "backbone": recipe.backbone.name, "rows": rows,
            "forward_ms": facts["forward_ms"], "probe_size": facts["probe_size"]}


def markdown(results: list[dict[str, Any]], env: dict[str, Any]) -> str:
    lines = ["# Epoch estimate against measured epochs (`tools/bench_cost.py`)", "",
             f"{env['cpus']} CPU core(s), no GPU; started {env['started']} at load average "
             f"{env['load']}; mobilenet_v2, preset quick, {env['epochs']} epochs per run. "
             "Fine-tuning: COST01's estimate from the training step timed right before the "
             "run, against the median epoch after the first; 'forward only' is the model "
             "before COST01. The step is timed inside fit with the trainer's input pipeline "
             "(its ms/image include augmenting or feeding cached activations); 'fixed' is the "
             "rest of that fit, the epoch's fixed cost. Head: BUD03's estimate (head_views "
             "forward passes) against the phase's seconds, feature extraction included. "
             "Ratio = measured / estimate.", "",
             "Ratio (mean), ratio (first two): the same timing with the step's rate taken as "
             "the mean of its timed batches, or of the first two (the summary before the "
             "median, though here after two untimed batches, not one).", "",
             "| dataset | depth | from | px | images fit / eval | step ms/img (eval) | "
             "fixed | estimate | forward only | measured | ratio | ratio (mean) | "
             "ratio (first two) | first epoch − steady | load before → after |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for depth, row in r["rows"].items():
            step = (f"{row['step_ms']:.2f} ({row['step_eval_ms']:.2f})" if "step_ms" in row
                    else "–")
            fixed = row.get("overhead_s")
            feed = "–" if fixed is None else f"{fixed:.2f} s"
            first = row.get("first_epoch_excess_s")
            est, ratio = row.get("estimate_s"), row.get("ratio")
            fwd = row.get("forward_only_s")
            lines.append(
                f"| {r['dataset']} | {depth}{' (cached)' if row.get('cached') else ''} | "
                f"{row['trainable_from']} | {row['input_size']} | {row['n_fit']} / "
                f"{row['n_eval']} | {step} | {feed} | {'–' if est is None else f'{est:.1f} s'} | "
                f"{'–' if fwd is None else f'{fwd:.1f} s'} | "
                f"{row.get('measured_s', float('nan')):.1f} s | "
                f"{'–' if ratio is None else f'{ratio:.2f}'} | "
                f"{_fmt(row.get('ratio_mean'))} | {_fmt(row.get('ratio_first_two'))} | "
                f"{'–' if first is None else f'{first:.1f} s'} | {row['load_before']} → "
                f"{row['load_after']} |")
    lines += ["", "Where a steady epoch's seconds go (a Keras callback in every `fit`, the median "
              "of the epochs after the first), each against its term of the estimate: the "
              "training batches (steps and the input pipeline feeding them) against "
              "n_fit × step, the validation pass against n_eval × eval, "
              "and what is left inside and outside `fit` against the overhead term.", "",
              "| dataset | depth | training batches: measured / estimated | validation: "
              "measured / estimated | rest of fit + outside fit / overhead |",
              "|---|---|---|---|---|"]
    for r in results:
        for depth, row in r["rows"].items():
            b = row.get("breakdown")
            if not b or "step_ms" not in row:
                continue
            n_fit, n_eval = row["n_fit"], row["n_eval"]
            fit_est = n_fit * row["step_ms"] / 1000
            val_est = n_eval * row["step_eval_ms"] / 1000
            rest = b["rest_s"] + b.get("outside_fit_s", 0.0)
            lines.append(f"| {r['dataset']} | {depth} | {b['batches_s']:.2f} / {fit_est:.2f} s | "
                         f"{b['val_s']:.2f} / {val_est:.2f} s | {rest:.2f} / "
                         f"{row.get('overhead_s') or 1.0:.2f} s |")
    return "\n".join(lines + [""] + leave_one_out_lines(results)) + "\n"


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def leave_one_out(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each dataset, the factor fitted on the *other* datasets' fine-tuning rows (the median
    measured / estimate, :func:`autotransfer.advisor.cost.calibration`) and each of its rows'
    ratio before and after it: how a constant fitted on these datasets would do on one it
    never saw."""
    from autotransfer.advisor.cost import calibration

    pairs = {r["dataset"]: [(depth, row["estimate_s"], row["measured_s"])
                            for depth, row in r["rows"].items()
                            if "step_ms" in row and row.get("estimate_s") and row.get("measured_s")]
             for r in results}
    out = []
    for name, rows in pairs.items():
        others = [(e, m) for n, got in pairs.items() if n != name for _, e, m in got]
        if not others:
            continue
        factor = calibration(others)
        for depth, e, m in rows:
            out.append({"dataset": name, "depth": depth, "factor": round(factor, 3),
                        "ratio": round(m / e, 3), "calibrated": round(m / (e * factor), 3)})
    return out


def leave_one_out_lines(results: list[dict[str, Any]]) -> list[str]:
    rows = leave_one_out(results)
    if not rows:
        return []
    inside = sum(0.83 <= r["ratio"] <= 1.2 for r in rows)
    after = sum(0.83 <= r["calibrated"] <= 1.2 for r in rows)
    return ["Leave one dataset out: a factor fitted on the other datasets' rows (the median "
            "measured / estimate), judged on the held-out dataset's rows.", "",
            "| held-out dataset | depth | factor (others) | ratio | ratio × 1/factor |",
            "|---|---|---|---|---|",
            *[f"| {r['dataset']} | {r['depth']} | {r['factor']:.2f} | {r['ratio']:.2f} | "
              f"{r['calibrated']:.2f} |" for r in rows], "",
            f"Within ±20 % (0.83–1.20): {inside} of {len(rows)} rows as estimated, {after} of "
            f"{len(rows)} with the held-out factor."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+",
                        default=["hymenoptera", "brain_mri", "clothing_small_lite",
                                 "chest_xray_224"])
    parser.add_argument("--depths", nargs="+", default=list(DEPTHS), choices=DEPTHS)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--cap", type=int, default=None,
                        help="at most this many training images (every k-th; validation alike)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "cost_model_runs")
    args = parser.parse_args()

    use_shared_weights()
    env = {"cpus": len(os.sched_getaffinity(0)), "platform": platform.platform(), "load": _load(),
           "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "epochs": args.epochs,
           "cap": args.cap}
    work = Path(tempfile.mkdtemp(prefix="bench-cost-"))
    run_datasets(args.datasets,
                 lambda name: run_dataset(name, args.depths, args.epochs, work, args.cap),
                 args.out, env, markdown, work)


if __name__ == "__main__":
    main()
