#!/usr/bin/env python3
"""Exact linear head: the cross-validation's old solver against the new one, side by side.

The problem is the demo's (``make demo``): scikit-learn's 1,797 handwritten digits written as
PNGs by tools/make_demo_dataset.py, the recipe ``autotransfer advise --preset quick`` gives them
(its input size and augmentation; its backbone replaced by ``--backbone``, EfficientNet-Lite0 by
default: the issue timed 1,797 × 4 views × 1,280 Lite0 features, and the advisor now picks
another backbone), and the pooled features of ``cache_views`` (4) augmented views of every image
computed as a head-only ``lbfgs`` phase computes them (AdaBN first where the recipe asks;
:class:`~autotransfer.train.feature_cache.FeatureCache` with the solver's augmentation). The
features are computed once and cached in build/bench_linear_head/ (``--rebuild`` recomputes
them); the advised recipe is saved beside them.

Then, in one process, ``fit_linear_head`` runs as it runs now (the folds in parallel threads, one
BLAS thread each), with the folds in turn and one BLAS thread, and as it ran before (folds in
turn, BLAS's default threads: the thread limit replaced by a null context), ``--repeats`` times,
and prints the chosen C, the fold accuracies, the seconds and the load average
(``os.getloadavg()``) before and after each fit. Writes docs/benchmarks/linear_head.md
(``--out``) after each fit.

    python tools/bench_linear_head.py [--repeats 1] [--rebuild] [--variants now before]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))
BUILD = REPO / "build" / "bench_linear_head"


def load() -> tuple[float, float, float]:
    return tuple(round(v, 2) for v in os.getloadavg())  # type: ignore[return-value]


# ----------------------------------------------------------------------------- features
def demo_recipe(dataset: Path, backbone: str | None) -> Any:
    """The recipe ``autotransfer advise DATASET --preset quick`` writes (saved in build/ and
    reused, so that the features stay the same), with ``backbone`` (at the advised input size)
    in place of the advised one when given."""
    from autotransfer.recipe.io import load_recipe, save_recipe

    path = BUILD / "recipe.yaml"
    if path.is_file():
        recipe = load_recipe(path)
    else:
        from autotransfer.advisor.advise import advise

        recipe = advise(dataset, preset="quick").recipe
        save_recipe(recipe, path)
    if backbone and backbone != recipe.backbone.name:
        recipe = recipe.model_copy(update={"backbone": recipe.backbone.model_copy(
            update={"name": backbone, "weights": "imagenet"})})
    return recipe


def build_features(backbone: str | None,
                   rebuild: bool) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``views`` (views × images × features), ``labels`` and how they were made."""
    cached = BUILD / f"features_{backbone or 'advised'}.npz"
    if cached.is_file() and not rebuild:
        with np.load(cached) as data:
            return data["views"], data["labels"], json.loads(str(data["meta"]))
    from _shared_weights import use_shared_weights
    from make_demo_dataset import build

    use_shared_weights()
    import keras

    from autotransfer.data.profile import profile_dataset
    from autotransfer.data.splits import DataSplits
    from autotransfer.backbones.adabn import adapt_batchnorm
    from autotransfer.train.data import TrainingInputs
    from autotransfer.train.feature_cache import DEFAULT_VIEWS, FeatureCache, plan_cache
    from autotransfer.train.linear_head import solver_views_augmentation
    from autotransfer.train.model import build_classifier, set_trainable

    started = time.perf_counter()
    dataset = BUILD / "digits"
    if not dataset.is_dir():
        build(dataset)
    recipe = demo_recipe(dataset, backbone)
    profile = profile_dataset(dataset)
    records = sorted(profile.records, key=lambda r: r.path)
    # every digit is a training image (the fit the issue timed); a few also stand in as the
    # validation split the cache computes too
    splits = DataSplits(root=profile.root, class_names=list(profile.classes), train=records,
                        val=records[:8], test=[], val_source="folder")
    inputs = TrainingInputs(splits, recipe.backbone.input_size, crop=recipe.data.crop,
                            class_weighting="none")
    keras.utils.set_random_seed(recipe.seed)
    clf = build_classifier(recipe, inputs.n_classes)
    da = recipe.domain_adaptation
    if da.method == "adabn" and da.before_phase == 0:  # as the trainer does before phase 0
        adapt_batchnorm(clf.model, inputs.eval_set("train", recipe.data.batch_size)
                        .map(lambda x, y: x))
    head = len(clf.groups)
    set_trainable(clf, head)
    aug = solver_views_augmentation(recipe)
    plan = plan_cache(clf, head, DEFAULT_VIEWS, aug, inputs.n_train, views=DEFAULT_VIEWS)
    cache = FeatureCache(clf, head, plan, inputs, aug, seed=recipe.seed, phase=0,
                         batch_size=recipe.data.batch_size)
    views = np.stack(cache.views).astype(np.float32)
    meta = {"backbone": recipe.backbone.name, "input_size": recipe.backbone.input_size,
            "augmentation": aug.model_dump(), "plan": plan.reason, "adabn": da.method == "adabn",
            "seconds": round(time.perf_counter() - started, 1), "load_after": load()}
    BUILD.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp.npz")
    np.savez(tmp, views=views, labels=inputs.train_labels.astype(np.int64),
             meta=json.dumps(meta))
    tmp.replace(cached)
    return views, inputs.train_labels.astype(np.int64), meta


# ----------------------------------------------------------------------------- timing
#: what is timed: (name, folds solved by this many threads, one BLAS thread per fit or not)
VARIANTS = {
    "before": (1, False),  # the implementation before: folds in turn, BLAS's default threads
    "one-blas-thread": (1, True),  # folds in turn, one BLAS thread (the thread limit alone)
    "now": (None, True),  # the default now: folds in parallel threads, one BLAS thread each
}


def timed_fit(views: np.ndarray, labels: np.ndarray, variant: str) -> dict[str, Any]:
    """One ``fit_linear_head`` (C by 5-fold cross-validation), timed, with the load around it."""
    import contextlib

    import autotransfer.train.linear_head as linear_head

    workers, limited = VARIANTS[variant]
    saved = linear_head._one_blas_thread
    if not limited:  # the code before: no thread limit anywhere
        linear_head._one_blas_thread = contextlib.nullcontext  # type: ignore[assignment]
    before = load()
    try:
        started = time.perf_counter()
        fit = linear_head.fit_linear_head(list(views), labels, int(labels.max()) + 1,
                                          workers=workers)
        seconds = time.perf_counter() - started
    finally:
        linear_head._one_blas_thread = saved
    return {"variant": variant, "workers": workers or linear_head._cores(), "c": fit.c,
            "cv_accuracy": fit.cv_accuracy, "seconds": round(seconds, 1),
            "load_before": before, "load_after": load(),
            "cv": [{k: round(v, 4) for k, v in r.items()} for r in fit.cv],
            "train_accuracy": round(fit.train_accuracy, 4)}


def render(meta: dict[str, Any], shape: tuple[int, ...], runs: list[dict[str, Any]]) -> str:
    grid = [r["c"] for r in runs[0]["cv"]]
    lines = [
        "# Benchmark: the exact linear head's cross-validation",
        "",
        f"Generated by `tools/bench_linear_head.py` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} ({os.cpu_count()} CPU cores, "
        "shared with other jobs: the load average, 1/5/15 min, is given before and after "
        "each fit).",
        "",
        f"Problem: the demo's {shape[1]:,} digits × {shape[0]} views × {shape[2]:,} features "
        f"({meta['backbone']} at {meta['input_size']} px, the solver's augmentation of the "
        "advised `--preset quick` recipe), 10 classes; `fit_linear_head` with C chosen from "
        f"{len(grid)} values by 5-fold cross-validation, then the kept float64 fit.",
        "",
        "| variant | fold threads | chosen C | CV accuracy | seconds | load before | load after |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(f"| {r['variant']} | {r['workers']} | {r['c']:.3g} | "
                     f"{r['cv_accuracy']:.4f} | {r['seconds']:.1f} | {r['load_before']} | "
                     f"{r['load_after']} |")
    lines += ["", "Mean fold accuracy (log loss) per C:", "",
              "| C | " + " | ".join(r["variant"] for r in runs) + " |",
              "|---|" + "---|" * len(runs)]
    for i, c in enumerate(grid):
        lines.append(f"| {c:.3g} | " + " | ".join(
            f"{r['cv'][i]['accuracy']:.4f} ({r['cv'][i]['log_loss']:.4f})" for r in runs) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="efficientnet_lite0",
                        help="backbone in place of the advised one ('' keeps the advised one); "
                             "efficientnet_lite0's 1,280 features are the issue's problem")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--rebuild", action="store_true", help="recompute the cached features")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS),
                        default=["now", "one-blas-thread", "before"])
    parser.add_argument("--out", type=Path,
                        default=REPO / "docs" / "benchmarks" / "linear_head.md")
    args = parser.parse_args()
    from autotransfer._io import atomic_write_text

    views, labels, meta = build_features(args.backbone or None, args.rebuild)
    print(f"features: {views.shape} ({meta})", flush=True)
    runs = []
    for _ in range(args.repeats):
        for variant in args.variants:
            run = timed_fit(views, labels, variant)
            print(json.dumps({k: v for k, v in run.items() if k != "cv"}), flush=True)
            print("  fold-mean accuracy per C:", [r["accuracy"] for r in run["cv"]], flush=True)
            runs.append(run)
            atomic_write_text(args.out, render(meta, views.shape, runs))  # each run as it ends
    print(f"Wrote {args.out}")


if __name__ == "__main__":
    main()
