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
the trainer does once per phase and the estimate leaves out) is shown beside it. The load average
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


def run_dataset(name: str, depths: list[str], epochs: int, work: Path) -> dict[str, Any]:
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
    splits = make_splits(profile, val_fraction=recipe.data.val_fraction, seed=recipe.seed,
                         exclude_leaks=recipe.data.exclude_leaks)
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
                                  total=advisor.max_total, cache=False)
            step = probes.get(r.backbone.name).step
            evidence = {"forward_ms": facts["forward_ms"], "probe_size": facts["probe_size"],
                        "input_size": r.backbone.input_size, "step_ms": step.step_ms,
                        "step_eval_ms": step.eval_ms, "step_from": step.trainable_from,
                        "step_size": step.input_size}
        started = time.time()
        run = train(splits, r, work / "runs" / name / depth)
        seconds = time.time() - started
        phases = run.metrics.get("phases", [])
        row: dict[str, Any] = {"trainable_from": start, "input_size": r.backbone.input_size,
                               "n_fit": n_fit, "n_eval": n_eval, "seconds": seconds,
                               "load_before": load_before, "load_after": _load()}
        if start < 5:
            got = compare(evidence, phases, n_fit, n_eval, r.backbone.input_size)
            row.update(got or {})
            row["step_ms"], row["step_eval_ms"] = evidence["step_ms"], evidence["step_eval_ms"]
            row["epoch_seconds"] = phases[0].get("epoch_seconds") if phases else None
            if got and row["epoch_seconds"] and len(row["epoch_seconds"]) > 1:
                row["first_epoch_excess_s"] = round(row["epoch_seconds"][0] - got["measured_s"], 2)
            row["forward_only_s"] = round(epoch_seconds(
                sum(fit_and_eval(n_fit, n_eval)), facts["forward_ms"], r.backbone.input_size,
                facts["probe_size"], start), 2)
            row["cached"] = bool(phases and phases[0].get("feature_cache", {}).get("used"))
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
             "before COST01. Head: BUD03's estimate (head_views forward passes) against the "
             "phase's seconds, feature extraction included. Ratio = measured / estimate.", "",
             "| dataset | depth | from | px | images fit / eval | step ms/img (eval) | "
             "estimate | forward only | measured | ratio | first epoch − steady | "
             "load before → after |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for depth, row in r["rows"].items():
            step = (f"{row['step_ms']:.2f} ({row['step_eval_ms']:.2f})" if "step_ms" in row
                    else "–")
            first = row.get("first_epoch_excess_s")
            est, ratio = row.get("estimate_s"), row.get("ratio")
            fwd = row.get("forward_only_s")
            lines.append(
                f"| {r['dataset']} | {depth}{' (cached)' if row.get('cached') else ''} | "
                f"{row['trainable_from']} | {row['input_size']} | {row['n_fit']} / "
                f"{row['n_eval']} | {step} | {'–' if est is None else f'{est:.1f} s'} | "
                f"{'–' if fwd is None else f'{fwd:.1f} s'} | "
                f"{row.get('measured_s', float('nan')):.1f} s | "
                f"{'–' if ratio is None else f'{ratio:.2f}'} | "
                f"{'–' if first is None else f'{first:.1f} s'} | {row['load_before']} → "
                f"{row['load_after']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+",
                        default=["hymenoptera", "brain_mri", "clothing_small_lite",
                                 "chest_xray_224"])
    parser.add_argument("--depths", nargs="+", default=list(DEPTHS), choices=DEPTHS)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "cost_model_runs")
    args = parser.parse_args()

    use_shared_weights()
    env = {"cpus": len(os.sched_getaffinity(0)), "platform": platform.platform(), "load": _load(),
           "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "epochs": args.epochs}
    work = Path(tempfile.mkdtemp(prefix="bench-cost-"))
    run_datasets(args.datasets,
                 lambda name: run_dataset(name, args.depths, args.epochs, work),
                 args.out, env, markdown, work)


if __name__ == "__main__":
    main()
