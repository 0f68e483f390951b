#!/usr/bin/env python3
"""What should spare budget buy? The advised recipe against three ways of spending more time.

For each dataset, the advisor's recipe (preset ``quick``, no time budget: the schedule rule LR03's
length at the preset's scale) is trained, and three variants that each spend more time:

* **longer**: the deepest fine-tuning phase runs twice its epochs (same schedule shape);
* **deeper**: that phase trains one more layer group (``trainable_from`` − 1);
* **larger input**: the input size one step up (×1.5, rounded to 32 px, at most 320 px).

Each run trains on the dataset's ``train/`` folder (the recipe's stratified validation split held
out of it, early stopping as advised) and is tested on its ``val``/``test`` folder, which nothing
selects on. The probe features and the frozen activations are cached as in any run (the trainer's
feature cache), so the head phase and partial fine-tuning cost little beyond the trainable part.
Records test accuracy (with its 95% Wilson interval), training seconds, the median epoch of the
deepest phase, and the load average before and after each run. Writes
docs/benchmarks/budget_use_runs.{md,json} (rows of earlier runs for other datasets are kept;
docs/benchmarks/budget_use.md discusses them).

    python tools/bench_budget_use.py [--datasets eurosat_rgb_3k omniglot_scripts]
                                     [--variants advised longer deeper larger]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
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
from bench_auto import held_out_layout, wilson  # noqa: E402

VARIANTS = ("advised", "longer", "deeper", "larger")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def variant(recipe: Any, name: str) -> Any | None:
    """``recipe`` changed to spend more time as ``name`` says; None when it cannot."""
    from autotransfer.recipe.schema import Recipe

    d = recipe.to_dict()
    d.pop("reasons", None)
    tuned = [i for i, p in enumerate(d["phases"]) if p["trainable_from"] < 5]
    if name == "advised":
        return Recipe.model_validate(d)
    if name == "larger":
        size = int(d["backbone"]["input_size"])
        bigger = min(320, int(round(size * 1.5 / 32)) * 32)
        if bigger <= size:
            return None
        d["backbone"]["input_size"] = bigger
        return Recipe.model_validate(d)
    if not tuned:
        return None
    deepest = min(tuned, key=lambda i: d["phases"][i]["trainable_from"])
    phase = d["phases"][deepest]
    if name == "longer":
        phase["epochs"] = 2 * int(phase["epochs"])
    elif name == "deeper":
        if phase["trainable_from"] <= 0:
            return None
        phase["trainable_from"] -= 1
    return Recipe.model_validate(d)


def run_dataset(name: str, variants: list[str], work: Path) -> dict[str, Any]:
    import keras

    from autotransfer.advisor.advise import Advisor
    from autotransfer.advisor.cost import ESTIMATE_KEY, compare
    from autotransfer.data.profile import profile_dataset
    from autotransfer.data.splits import make_splits
    from autotransfer.train.run import train

    root = held_out_layout(name, work)
    profile = profile_dataset(root)
    advice = Advisor(backbones=["mobilenet_v2"], preset="quick", verbose=0).fit(profile).advice_
    step = advice.probes.get(advice.recipe.backbone.name).step
    print(f"  advised: {advice.recipe.backbone.input_size} px, "
          f"{[(p.epochs, p.trainable_from) for p in advice.recipe.phases]}; step: "
          f"{step.describe() if step else None}", flush=True)
    splits = make_splits(profile, val_fraction=advice.recipe.data.val_fraction,
                         seed=advice.recipe.seed, exclude_leaks=advice.recipe.data.exclude_leaks)
    rows: dict[str, Any] = {}
    for v in variants:
        recipe = variant(advice.recipe, v)
        if recipe is None:
            print(f"  {v}: not applicable", flush=True)
            continue
        load_before = _load()
        started = time.time()
        run = train(splits, recipe, work / "runs" / name / v)
        seconds = time.time() - started
        m = run.metrics
        phases = [p for p in m.get("phases", []) if p["trainable_from"] < 5 and p["epoch_seconds"]]
        deepest = min(phases, key=lambda p: p["trainable_from"]) if phases else None
        estimate = advice.recipe.reasons.get(ESTIMATE_KEY)
        rows[v] = {"epoch_time": compare(estimate.evidence if estimate else None,
                                         m.get("phases", []), len(splits.train), len(splits.val),
                                         recipe.backbone.input_size),
                   "test_accuracy": m["test"]["accuracy"], "n_test": len(splits.test),
                   "seconds": seconds, "input_size": recipe.backbone.input_size,
                   "phases": [(p.name, p.epochs, p.trainable_from) for p in recipe.phases],
                   "deepest_epochs_run": deepest["epochs_run"] if deepest else 0,
                   "deepest_epoch_s": statistics.median(deepest["epoch_seconds"][1:] or
                                                        deepest["epoch_seconds"])
                   if deepest else None,
                   "load_before": load_before, "load_after": _load()}
        print(f"  {v}: epoch {rows[v]['epoch_time']}", flush=True)
        print(f"  {v}: test {rows[v]['test_accuracy']:.4f} in {seconds:.0f} s "
              f"(load {load_before} → {rows[v]['load_after']})", flush=True)
        keras.backend.clear_session()
    return {"dataset": name, "n_train": len(splits.train), "n_val": len(splits.val),
            "n_test": len(splits.test), "variants": rows}


def markdown(results: list[dict[str, Any]], env: dict[str, Any]) -> str:
    lines = ["# What spare budget buys (`tools/bench_budget_use.py`)", "",
             f"{env['cpus']} CPU cores, no GPU; started {env['started']} at load average "
             f"{env['load']}; mobilenet_v2, preset quick. Test = the dataset's own held-out "
             "folder (nothing selects on it); the interval is the 95% Wilson interval.", ""]
    for r in results:
        lines += [f"## {r['dataset']} ({r['n_train']} train, {r['n_val']} validation, "
                  f"{r['n_test']} test)", "",
                  "| variant | phases (name, epochs, from group) | input | test accuracy (95%) | "
                  "training time | deepest phase: epochs run, s/epoch | epoch estimate (COST01) | "
                  "load before → after |",
                  "|---|---|---|---|---|---|---|---|"]
        for v, row in r["variants"].items():
            lo, hi = wilson(row["test_accuracy"], row["n_test"])
            ep = row["deepest_epoch_s"]
            lines.append(
                f"| {v} | {', '.join(f'{n} {e}×{t}' for n, e, t in row['phases'])} | "
                f"{row['input_size']} | {row['test_accuracy']:.4f} ({lo:.3f}–{hi:.3f}) | "
                f"{row['seconds']:.0f} s | {row['deepest_epochs_run']}, "
                f"{'–' if ep is None else f'{ep:.1f}'} | "
                f"{_estimate(row.get('epoch_time'))} | {row['load_before']} → "
                f"{row['load_after']} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def _estimate(t: dict[str, Any] | None) -> str:
    if not t:
        return "–"
    return f"{t['estimate_s']:.1f} s ({t['measured_s'] / t['estimate_s']:.2f}×, {t['source']})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["eurosat_rgb_3k", "omniglot_scripts"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "budget_use_runs")
    args = parser.parse_args()

    use_shared_weights()
    env = {"cpus": os.cpu_count(), "platform": platform.platform(), "load": _load(),
           "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    work = Path(tempfile.mkdtemp(prefix="bench-budget-use-"))
    run_datasets(args.datasets, lambda name: run_dataset(name, args.variants, work),
                 args.out, env, markdown, work)


if __name__ == "__main__":
    main()
