#!/usr/bin/env python3
"""Four ways to train on the same data under the same CPU time budget, side by side.

For each dataset:

1. **linear probe**: the advised backbone frozen, a softmax head on its pooled features, no
   augmentation (the classic frozen-feature baseline), fitted exactly — logistic regression by
   L-BFGS, its L2 strength by 5-fold cross-validation on the training images (``head.solver:
   lbfgs``), the strongest form of this baseline (the linear-evaluation protocol);
2. **Keras guide**: the official Keras transfer-learning guide's recipe on the same backbone —
   head for 20 epochs at Adam's 1e-3 with flips and ±0.1-turn rotations and dropout 0.2, then the
   whole backbone unfrozen (BatchNorm kept in inference mode) for 10 epochs at 1e-5, no early
   stopping;
3. **advised**: the advisor's recipe, untuned, sized to the budget left after advising (rules
   BUD01/BUD02);
4. **auto**: ``autotransfer.auto`` (profile → probe → advise → tune → final training).

Held-out data: the dataset's own validation folder is used as a *test* split, seen by no method
while training or choosing (the runs see copies of ``train/`` and ``test/`` in a temporary
folder); every method holds out the same stratified 20% of ``train/`` as its validation split.
Each method runs under the same wall-clock budget (``--budget``): it includes reading the data
(and, for advised and auto, probing and advising); a run still training when the budget is spent
stops (every further epoch ends after one batch) and is marked "cut". Writes
docs/benchmarks/auto.{md,json}.

    python tools/bench_auto.py [--datasets hymenoptera eurosat_rgb_3k] [--budget 5m]
                               [--preset quick] [--backbones mobilenet_v2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from _shared_weights import use_shared_weights  # noqa: E402
SHARED = Path(os.environ.get("AUTOTRANSFER_SHARED", REPO.parent / "shared"))
METHODS = ("linear probe", "Keras guide", "advised", "auto")




def held_out_layout(name: str, work: Path) -> Path:
    """``work/name/{train,test}``: the dataset's train folder, and its val folder as test."""
    source = SHARED / "datasets" / name
    root = work / name
    root.mkdir(parents=True, exist_ok=True)
    held = next(source / n for n in ("test", "val") if (source / n).is_dir())
    # copies, not links: a link out of the dataset folder is never followed (data/walk.py)
    shutil.copytree(source / "train", root / "train")
    shutil.copytree(held, root / "test")
    return root


def budget_callback(deadline: float) -> Any:
    import keras

    class Budget(keras.callbacks.Callback):
        """Once the budget is spent, every further epoch ends after its first batch."""

        cut = False

        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            if time.time() > deadline:
                Budget.cut = True
                self.model.stop_training = True

    return Budget()


def linear_probe_recipe(advised: Any) -> Any:
    from autotransfer.recipe.schema import Recipe

    return Recipe.model_validate({
        "name": "linear probe", "seed": advised.seed, "backbone": advised.backbone.model_dump(),
        "data": advised.data.model_dump(), "head": {"dropout": 0.0, "solver": "lbfgs"},
        "augmentation": {"horizontal_flip": False, "zoom": 0.0, "translation": 0.0},
        "phases": [{"name": "head", "epochs": 30, "trainable_from": 5, "learning_rate": 1e-3,
                    "optimizer": "adam", "schedule": "constant", "weight_decay": 0.0}],
        "early_stopping": {"patience": 5}})


def keras_guide_recipe(advised: Any) -> Any:
    from autotransfer.recipe.schema import Recipe

    return Recipe.model_validate({
        "name": "Keras transfer-learning guide", "seed": advised.seed,
        "backbone": advised.backbone.model_dump(),
        "data": dict(advised.data.model_dump(), batch_size=32, class_weighting="none"),
        "head": {"dropout": 0.2}, "bn_policy": "frozen",
        "augmentation": {"horizontal_flip": True, "rotation": 0.1, "zoom": 0.0,
                         "translation": 0.0},
        "phases": [
            {"name": "head", "epochs": 20, "trainable_from": 5, "learning_rate": 1e-3,
             "optimizer": "adam", "schedule": "constant", "weight_decay": 0.0},
            {"name": "fine_tune", "epochs": 10, "trainable_from": 0, "learning_rate": 1e-5,
             "optimizer": "adam", "schedule": "constant", "weight_decay": 0.0,
             "group_lr_multipliers": [1.0] * 5}],
        "early_stopping": {"patience": 1000, "restore_best_weights": False}})


def run_dataset(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    import keras

    from autotransfer.advisor.advise import Advisor
    from autotransfer.data.profile import profile_dataset
    from autotransfer.data.splits import make_splits
    from autotransfer.durations import parse_duration
    from autotransfer.train.run import train

    budget = parse_duration(args.budget)
    assert budget is not None
    root = held_out_layout(name, work)
    backbones = args.backbones.split(",") if args.backbones else None
    rows: dict[str, Any] = {}

    def record(method: str, started: float, metrics: dict[str, Any], cut: bool, **extra: Any) -> None:
        rows[method] = {"test_accuracy": metrics["test"]["accuracy"],
                        "test_balanced_accuracy": metrics["test"]["balanced_accuracy"],
                        "val_accuracy": metrics["val"]["accuracy"],
                        "seconds": time.time() - started, "cut": cut, **extra}
        print(f"  {method}: test accuracy {rows[method]['test_accuracy']:.4f} in "
              f"{rows[method]['seconds']:.0f} s{' (cut)' if cut else ''}", flush=True)
        keras.backend.clear_session()

    def advise(method: str, time_budget: float | None = None) -> Any:
        # a cold probe-feature cache for every timed advising, as on a first run
        os.environ["AUTOTRANSFER_CACHE"] = str(work / "cache" / name / method)
        profile = profile_dataset(root)
        advice = Advisor(backbones=backbones, preset=args.preset,
                         time_budget=time_budget).fit(profile).advice_
        return profile, advice

    # the advised recipe fixes the backbone and input size every method uses
    print(f"{name}: advising", flush=True)
    started = time.time()
    profile, advice = advise("setup")
    advise_seconds = time.time() - started
    advised = advice.recipe

    for method, make in (("linear probe", linear_probe_recipe), ("Keras guide", keras_guide_recipe)):
        if method not in args.methods:
            continue
        print(f"  {method} …", flush=True)
        started = time.time()
        splits = make_splits(profile_dataset(root), val_fraction=advised.data.val_fraction,
                             seed=advised.seed)
        guard = budget_callback(started + budget)
        recipe = make(advised)
        run = train(splits, recipe, work / "runs" / name / method.replace(" ", "_"),
                    callbacks=[guard])
        record(method, started, run.metrics, type(guard).cut, recipe=recipe.to_dict())

    if "advised" in args.methods:  # its training gets what advising (timed above) leaves
        run_advised(name, args, work, root, advise, record, budget, budget - advise_seconds)
    if "auto" in args.methods:
        run_auto(name, args, work, root, backbones, record, budget)
    splits = make_splits(profile, val_fraction=advised.data.val_fraction, seed=advised.seed,
                         exclude_leaks=advised.data.exclude_leaks)
    return {"dataset": name, "n_train": len(splits.train), "n_val": len(splits.val),
            "n_test": len(splits.test), "backbone": advised.backbone.name,
            "input_size": advised.backbone.input_size, "advise_seconds": advise_seconds,
            "methods": rows}


def run_advised(name: str, args: argparse.Namespace, work: Path, root: Path, advise: Any,
                record: Any, budget: float, training_budget: float) -> None:
    from autotransfer.data.splits import make_splits
    from autotransfer.train.run import train

    print("  advised …", flush=True)
    started = time.time()
    profile, advice = advise("advised", max(1.0, training_budget))
    splits = make_splits(profile, val_fraction=advice.recipe.data.val_fraction,
                         seed=advice.recipe.seed, exclude_leaks=advice.recipe.data.exclude_leaks)
    guard = budget_callback(started + budget)
    run = train(splits, advice.recipe, work / "runs" / name / "advised", callbacks=[guard])
    record("advised", started, run.metrics, type(guard).cut, recipe=advice.recipe.to_dict(),
           sizing=budget_sizing(advice, run.metrics, training_budget))


def budget_sizing(advice: Any, metrics: dict[str, Any], training_budget: float) -> dict[str, Any]:
    """The BUD01 estimate of a fine-tuning epoch against the epochs measured (steady state: the
    median epoch of the deepest fine-tuning phase)."""
    import statistics

    fired = {f.rule: f for f in advice.firings}
    phases = [p for p in metrics.get("phases", []) if p["trainable_from"] < 5 and p["epoch_seconds"]]
    deepest = min(phases, key=lambda p: p["trainable_from"]) if phases else None
    return {"training_budget_s": training_budget,
            "rules": sorted(r for r in fired if r.startswith("BUD")),
            "epoch_estimate_s": fired["BUD01"].set.get("epoch_estimate_s") if "BUD01" in fired else None,
            "epoch_measured_s": statistics.median(deepest["epoch_seconds"]) if deepest else None}


def run_auto(name: str, args: argparse.Namespace, work: Path, root: Path, backbones: Any,
             record: Any, budget: float) -> None:
    from autotransfer.oneshot import auto

    print("  auto …", flush=True)
    os.environ["AUTOTRANSFER_CACHE"] = str(work / "cache" / name / "auto")
    started = time.time()
    result = auto(root, work / "runs" / name / "auto", time_budget=budget, preset=args.preset,
                  backbones=backbones, trials=args.trials,
                  progress=lambda s: print("    " + s, flush=True) if args.verbose else None)
    t = result.tuning
    record("auto", started, result.metrics, result.seconds > budget * 1.02,
           trials=0 if t is None else len(t.trials),
           completed=0 if t is None else sum(x.status == "COMPLETED" for x in t.trials),
           gain_val=None if t is None else t.gain, changes=[] if t is None else t.changes,
           selection=None if t is None else t.selection,
           stopped=None if t is None else t.stopped_because, final=result.final,
           budget_split=result.budget)
    report = work / "runs" / name / "auto" / "report.md"
    if args.keep_reports:
        target = REPO / "docs" / "benchmarks" / f"auto_{name}_report.md"
        target.write_text("> `report.md` of the `auto` run in `tools/bench_auto.py` (see auto.md), "
                          "copied without the run folder: the plots it links are not kept here."
                          "\n\n" + report.read_text(encoding="utf-8"), encoding="utf-8")


def wilson(accuracy: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of an accuracy measured on ``n`` images."""
    if n <= 0:
        return (0.0, 1.0)
    centre = (accuracy + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((accuracy * (1 - accuracy) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["# `auto` against three baselines under one CPU budget", "",
             "Generated by `tools/bench_auto.py` (command per dataset below).", "",
             "- held-out: each dataset's own validation folder, used as a test split that no "
             "method trains or selects on; every method validates on the same stratified 20% of "
             "the training folder",
             "- budget: wall clock per method, reading the data (and, for advised and auto, "
             "probing and advising, with a cold probe-feature cache) included; a run still "
             "training when it is spent is cut (every further epoch ends after one batch)",
             "- every method uses the advised backbone and input size",
             "- the interval is the 95% Wilson score interval of each accuracy: methods whose "
             "intervals overlap widely are not told apart by this test split", ""]
    for r in results:
        lines += [f"## {r['dataset']}", ""]
        runs: dict[str, list[str]] = {}
        for method in METHODS:
            row = r["methods"].get(method)
            if row is not None:
                runs.setdefault(json.dumps(row["run"], sort_keys=True), []).append(method)
        for key, methods in runs.items():
            run = json.loads(key)
            a, env = run.get("args", {}), run.get("environment", {})
            lines.append(f"- {', '.join(methods)}: `python tools/bench_auto.py --datasets "
                         f"{r['dataset']} --budget {a.get('budget')} --preset {a.get('preset')} "
                         f"--backbones {a.get('backbones')}` — {env.get('cpus')} CPU cores, no "
                         f"GPU, load average {env.get('load')} at the start "
                         f"({env.get('started')}" + (f", commit {env['commit']}"
                                                      if env.get("commit") else "") + ")")
        lines += ["",
                  f"{r['n_train']} training, {r['n_val']} validation, {r['n_test']} test images; "
                  f"{r['backbone']} at {r['input_size']} px (the advised backbone, for every "
                  "method).", "",
                  "| method | test accuracy | right / test images (95% interval) | balanced | "
                  "wall time | notes |", "|---|---|---|---|---|---|"]
        for method in METHODS:
            m = r["methods"].get(method)
            if m is None:
                continue
            notes = "cut at the budget" if m["cut"] else ""
            z = m.get("sizing") or {}
            if method == "advised" and z.get("rules"):
                notes = (f"sized to {z['training_budget_s']:.0f} s of training by "
                         f"{'/'.join(z['rules'])}" + (
                             f": fine-tuning epoch estimated {z['epoch_estimate_s']:.0f} s, "
                             f"measured {z['epoch_measured_s']:.0f} s (median)"
                             if z.get("epoch_estimate_s") and z.get("epoch_measured_s") else "")
                         + ("; " + notes if notes else ""))
            if method == "auto":
                b = m["budget_split"]
                searched = ("no search (the budget binds the fine-tuning schedule: the advised "
                            "recipe got the whole budget)" if b.get("search_skipped") else
                            f"{m['trials']} trial(s) ({m['completed']} completed), validation gain "
                            f"{m['gain_val']:+.4f} over trial 0 (the advised recipe)"
                            + (f", {m['stopped']}" if str(m.get("stopped") or "").startswith(
                                "stopped after trial 0") else ""))
                notes = (f"{searched}; time: advise "
                         f"{b['advise_seconds']:.0f} s, tune {b['tune_seconds']:.0f} s, final "
                         f"training ({m['final']}) {b['final_seconds']:.0f} s"
                         + ("; " + notes if notes else ""))
                sel = m.get("selection") or {}
                if sel.get("replace") is False and sel.get("test"):
                    test = sel["test"]
                    notes += (f"; trial {sel['candidate']} was best on validation ({test['gained']} "
                              f"image(s) gained, {test['lost']} lost: McNemar p = "
                              f"{test['p']:.2g}), so the advised recipe was kept")
            n = int(r["n_test"])
            low, high = wilson(m["test_accuracy"], n)
            lines.append(f"| {method} | {m['test_accuracy']:.4f} | "
                         f"{round(m['test_accuracy'] * n)} / {n} ({low:.3f}–{high:.3f}) | "
                         f"{m['test_balanced_accuracy']:.4f} | {m['seconds']:.0f} s | {notes} |")
        auto_changes = r["methods"].get("auto", {}).get("changes") or []
        if auto_changes:
            lines += ["", "What tuning changed: " + "; ".join(
                f"`{c['path']}` {_fmt(c['before'])} → {_fmt(c['after'])}"
                for c in auto_changes) + "."]
        lines.append("")
    return "\n".join(lines) + "\n"


def _commit() -> str | None:
    """The checkout's commit (with ``+`` when the tree has changes), or None outside git."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, check=True,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + ("+" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["hymenoptera", "eurosat_rgb_3k"])
    parser.add_argument("--budget", default="5m", help="wall-clock budget per method and dataset")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--backbones", default="mobilenet_v2",
                        help="comma-separated candidates ('' for every backbone with weights)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS,
                        help="run only these (the others' earlier rows are kept)")
    parser.add_argument("--trials", type=int, default=30, help="auto's trial cap")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "auto")
    parser.add_argument("--keep-reports", action="store_true",
                        help="copy auto's report.md next to the results")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--render-only", action="store_true",
                        help="rewrite the Markdown from the JSON without running anything")
    args = parser.parse_args()
    if args.render_only:
        from autotransfer._io import atomic_write_text

        results = json.loads(args.out.with_suffix(".json").read_text())["results"]
        atomic_write_text(args.out.with_suffix(".md"), markdown(results))
        return
    use_shared_weights()
    env = {"cpus": os.cpu_count(), "platform": platform.platform(),
           "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
           "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "commit": _commit()}
    work = Path(tempfile.mkdtemp(prefix="bench-auto-"))
    results = []
    try:
        for name in args.datasets:
            if not (SHARED / "datasets" / name).is_dir():
                print(f"skipping {name}: not in {SHARED / 'datasets'}")
                continue
            results.append(run_dataset(name, args, work))
            write(results, args, env)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"Wrote {args.out.with_suffix('.md')} and {args.out.with_suffix('.json')}")


def write(results: list[dict[str, Any]], args: argparse.Namespace, env: dict[str, Any]) -> None:
    """Write the results; datasets run earlier (another invocation) are kept, with their settings."""
    from autotransfer._io import atomic_write_json, atomic_write_text

    args.out.parent.mkdir(parents=True, exist_ok=True)
    path = args.out.with_suffix(".json")
    run = {"environment": env, "args": {k: str(v) for k, v in vars(args).items()}}
    for r in results:
        r["run"] = run
    merged = json.loads(path.read_text())["results"] if path.is_file() else []
    for r in results:  # this run's rows replace the same dataset's and method's earlier ones
        old = next((o for o in merged if o["dataset"] == r["dataset"]), None)
        if old is None:
            merged.append(r)
            continue
        for method, row in r["methods"].items():
            row["run"] = r["run"]
            old["methods"][method] = row
    for r in merged:
        for row in r["methods"].values():
            row.setdefault("run", r.get("run", {}))
    atomic_write_json(path, {"results": merged})
    atomic_write_text(args.out.with_suffix(".md"), markdown(merged))


if __name__ == "__main__":
    main()
