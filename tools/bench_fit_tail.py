#!/usr/bin/env python3
"""Seconds per epoch with and without tf.data's autotuning thread, side by side in one process.

The trainer runs one Keras ``fit`` per epoch (``autotransfer/train/executor.py``); each ``fit``
destroys its iterators as it returns, and a tf.data iterator's destructor waits for its
autotuning thread. Before the trainer's inputs turned it off (``TrainingInputs``'
``autotune_thread``, ``False`` unless a caller such as this benchmark asks), that wait
was the "tail" of each epoch: 0.3–12 s after the last callback (docs/benchmarks/fit_tail.md).

For each dataset (mobilenet_v2 with ImageNet weights from ../shared/weights; the dataset's
train folder split 80/20 by the trainer's own splitter) and each depth (``head``: only the head
trains, on cached pooled features; ``partial``: fine-tuning from a group whose input is cached),
one phase of ``--epochs`` epochs runs through :class:`~autotransfer.train.executor.PhaseExecutor`
with the trainer's TensorBoard callback, first with the thread (``before``), then without
(``after``), from the same seed. Reported per run: ``PhaseRecord.epoch_seconds`` (each epoch's
wall seconds, ``fit`` included whole), the tail (``fit``'s return less its callbacks'
``on_train_end``), the feature cache's build seconds (its ``predict`` passes end the same way),
the seconds to build each epoch's dataset from the cached arrays (outside ``epoch_seconds``),
and the largest difference between the two runs' per-epoch logs (the same training: 0, up to
float rounding).

With ``--alternate`` each dataset runs one partial phase whose epochs alternate between the two
(with the thread on even epochs, without on odd ones; the first epoch traces and is left out),
so that both see the same load — on a shared machine the load moves more between two runs than
the tail is long.

    python tools/bench_fit_tail.py [--datasets eurosat_rgb_3k hymenoptera] [--epochs 3]
        [--alternate] [--out docs/benchmarks/fit_tail.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))
from _shared_weights import SHARED, use_shared_weights  # noqa: E402

#: the group a partial fine-tune starts from, and the input size (eurosat's 64 px images at the
#: quick preset's 128 px: the 400 MiB-a-view activations of the issue)
PARTIAL = {"eurosat_rgb_3k": (1, 128)}
DEFAULT_PARTIAL = (3, 224)
AUGMENTATION = {"horizontal_flip": True, "vertical_flip": True, "rotate90": True, "zoom": 0.12,
                "translation": 0.06, "brightness": 0.12, "contrast": 0.12}


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def tail_spy() -> Any:
    """A callback (put first, so the trainer's TensorBoard callback ends after it) that marks
    ``on_train_end``; ``fit`` is wrapped to time its return. ``tails``: seconds between them."""
    import keras

    class Spy(keras.callbacks.Callback):
        def __init__(self) -> None:
            super().__init__()
            self.ended = 0.0
            self.tails: list[float] = []

        def on_train_end(self, logs: Any = None) -> None:
            self.ended = time.perf_counter()

    spy = Spy()
    original = keras.Model.fit

    def fit(model: Any, *args: Any, **kwargs: Any) -> Any:
        spy.ended = 0.0
        try:
            return original(model, *args, **kwargs)
        finally:
            if spy.ended:
                spy.tails.append(time.perf_counter() - spy.ended)

    keras.Model.fit = fit  # this benchmark's process only

    from autotransfer.train.feature_cache import FrozenFeatures

    spy.builds = []
    epoch_data = FrozenFeatures.train_epoch

    def train_epoch(self: Any, *args: Any, **kwargs: Any) -> Any:  # the epoch's dataset, built
        started = time.perf_counter()
        try:
            return epoch_data(self, *args, **kwargs)
        finally:
            spy.builds.append(time.perf_counter() - started)

    FrozenFeatures.train_epoch = train_epoch
    return spy


def recipe_for(depth: str, trainable_from: int, size: int, epochs: int) -> Any:
    from autotransfer.recipe.schema import Recipe

    lr = 1e-3 if depth == "head" else 2e-4
    return Recipe.model_validate({
        "name": f"fit-tail-{depth}", "seed": 0,
        "backbone": {"name": "mobilenet_v2", "input_size": size, "weights": "imagenet"},
        "data": {"batch_size": 32, "val_fraction": 0.2},
        "head": {"pooling": "avg", "dropout": 0.2}, "bn_policy": "frozen",
        "precision": "float32",
        "phases": [{"name": depth, "epochs": epochs, "trainable_from": trainable_from,
                    "optimizer": "adamw", "learning_rate": lr, "schedule": "cosine",
                    "warmup_epochs": 0.0}],
        "augmentation": AUGMENTATION,
        "early_stopping": {"patience": 1000, "restore_best_weights": False}})


def one_run(recipe: Any, inputs: Any, spy: Any, logs: Path,
            extra: tuple[Any, ...] = ()) -> dict[str, Any]:
    import keras

    from autotransfer.train.executor import PhaseExecutor
    from autotransfer.train.model import build_classifier
    from autotransfer.train.phases import ExecState
    from autotransfer.train.tensorboard import RunLog

    keras.backend.clear_session()
    keras.utils.set_random_seed(recipe.seed)
    clf = build_classifier(recipe, inputs.n_classes)
    run_log = RunLog(logs)
    spy.tails.clear()
    spy.builds.clear()
    load_before = _load()
    started = time.perf_counter()
    try:
        executor = PhaseExecutor(recipe, clf, inputs,
                                 callbacks=[spy, *extra, run_log.callback])
        state = executor.run(ExecState(batch_size=recipe.data.batch_size))
    finally:
        run_log.close()
    record = state.phases[0]
    seconds = list(record.epoch_seconds)
    return {"epoch_seconds": [round(s, 2) for s in seconds],
            "steady_s": round(statistics.median(seconds[1:] or seconds), 2),
            "tails_s": [round(t, 2) for t in spy.tails[-len(seconds):]],
            "cache_build_s": round(record.features.build_seconds, 2),
            "epoch_data_s": [round(t, 2) for t in spy.builds],
            "cache": record.features.reason,
            "history": {k: list(v) for k, v in record.history.items()},
            "wall_s": round(time.perf_counter() - started, 1),
            "load_before": load_before, "load_after": _load()}


def run_dataset(name: str, epochs: int, work: Path) -> dict[str, Any]:
    from autotransfer.data.profile import profile_dataset
    from autotransfer.data.splits import make_splits
    from autotransfer.train.data import TrainingInputs

    partial_from, size = PARTIAL.get(name, DEFAULT_PARTIAL)
    profile = profile_dataset(SHARED / "datasets" / name / "train", check="header")
    splits = make_splits(profile, val_fraction=0.2, seed=0)
    spy = tail_spy()
    out: dict[str, Any] = {"dataset": name, "n_train": len(splits.train),
                           "n_val": len(splits.val), "rows": []}
    for depth, start in (("head", 5), ("partial", partial_from)):
        recipe = recipe_for(depth, start, size, epochs)
        inputs = TrainingInputs(splits, size)
        for split in ("train", "val"):  # decode once, before either run
            for _ in inputs.eval_set(split, 64):
                pass
        runs = {}
        for variant, thread in (("before", True), ("after", False)):
            inputs.autotune_thread = thread  # the same decoded images, the one switch
            runs[variant] = one_run(recipe, inputs, spy, work / name / depth / variant)
            print(f"{name} {depth} {variant}: " + json.dumps(
                {k: v for k, v in runs[variant].items() if k != "history"}), flush=True)
        b, a = runs["before"]["history"], runs["after"]["history"]
        diff = max((abs(x - y) for k in b for x, y in zip(b[k], a.get(k, []))), default=None)
        out["rows"].append({"depth": depth, "trainable_from": start, "input_size": size,
                            "before": runs["before"], "after": runs["after"],
                            "max_log_difference": diff})
    return out


def alternating(name: str, epochs: int, work: Path) -> dict[str, Any]:
    """One partial fine-tuning phase whose epochs alternate: odd epochs without the thread,
    even ones (after the first, which traces) with it — both under the same load."""
    import keras

    from autotransfer.data.profile import profile_dataset
    from autotransfer.data.splits import make_splits
    from autotransfer.train.data import TrainingInputs

    start, size = PARTIAL.get(name, DEFAULT_PARTIAL)
    profile = profile_dataset(SHARED / "datasets" / name / "train", check="header")
    splits = make_splits(profile, val_fraction=0.2, seed=0)
    spy = tail_spy()
    inputs = TrainingInputs(splits, size)
    for split in ("train", "val"):  # decode once, before the run
        for _ in inputs.eval_set(split, 64):
            pass
    inputs.autotune_thread = True  # the first epoch's (it traces, and is left out)

    class Toggle(keras.callbacks.Callback):  # the next epoch's dataset: the other variant
        def on_train_end(self, logs: Any = None) -> None:
            inputs.autotune_thread = not inputs.autotune_thread

    run = one_run(recipe_for("partial", start, size, epochs), inputs, spy,
                  work / name / "alternating", extra=(Toggle(),))
    variants = ["before" if e % 2 == 0 else "after" for e in range(len(run["epoch_seconds"]))]
    out: dict[str, Any] = {"dataset": name, "n_train": len(splits.train), "trainable_from": start,
                           "input_size": size, "variants": variants} | run
    for v in ("before", "after"):
        picks = [e for e, w in enumerate(variants) if w == v and e > 0]
        out[v] = {"epoch_seconds": [run["epoch_seconds"][e] for e in picks],
                  "tails_s": [run["tails_s"][e] for e in picks],
                  "epoch_data_s": [run["epoch_data_s"][e] for e in picks]}
    print(f"{name} alternating: " + json.dumps({k: v for k, v in out.items() if k != "history"}),
          flush=True)
    return out


def alternating_markdown(results: list[dict[str, Any]]) -> str:
    lines = ["| dataset | phase | epochs with the thread: seconds (tail) | without | "
             "median with → without | epoch's dataset built in | load before → after |",
             "|" + "---|" * 7]
    for r in results:
        b, a = r["before"], r["after"]
        lines.append(
            f"| {r['dataset']} ({r['n_train']} images) | from group {r['trainable_from']}, "
            f"{r['input_size']} px, {r['cache']} | "
            + ", ".join(f"{s:.1f} ({t:.1f})" for s, t in zip(b["epoch_seconds"], b["tails_s"]))
            + " | "
            + ", ".join(f"{s:.1f} ({t:.1f})" for s, t in zip(a["epoch_seconds"], a["tails_s"]))
            + f" | **{statistics.median(b['epoch_seconds']):.1f} → "
            f"{statistics.median(a['epoch_seconds']):.1f} s** | "
            f"{_median(r['epoch_data_s'][1:])} | {r['load_before']} → {r['load_after']} |")
    return "\n".join(lines)


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s" if values else "–"


def markdown(results: list[dict[str, Any]]) -> str:
    lines = ["| dataset | depth | cache | epoch seconds before | after | steady before → after | "
             "tails before | after | cache build before → after | epoch's dataset built in | "
             "logs differ by | load before → after |", "|" + "---|" * 12]
    for r in results:
        for row in r["rows"]:
            b, a = row["before"], row["after"]
            lines.append(
                f"| {r['dataset']} | {row['depth']} (from {row['trainable_from']}, "
                f"{row['input_size']} px) | {b['cache']} | "
                f"{', '.join(f'{s:.1f}' for s in b['epoch_seconds'])} | "
                f"{', '.join(f'{s:.1f}' for s in a['epoch_seconds'])} | "
                f"**{b['steady_s']:.1f} → {a['steady_s']:.1f} s** | "
                f"{', '.join(f'{s:.2f}' for s in b['tails_s'])} | "
                f"{', '.join(f'{s:.2f}' for s in a['tails_s'])} | "
                f"{b['cache_build_s']:.1f} → {a['cache_build_s']:.1f} s | "
                f"{_median(b['epoch_data_s'] + a['epoch_data_s'])} | "
                f"{row['max_log_difference']:.2g} | {b['load_before']} → {a['load_after']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["eurosat_rgb_3k", "hymenoptera"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--alternate", action="store_true",
                        help="one partial phase per dataset, its epochs alternating with and "
                             "without the thread (the first, tracing, epoch left out)")
    parser.add_argument("--out", type=Path, default=None, help="JSON of the rows (optional)")
    args = parser.parse_args()
    use_shared_weights()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-fit-tail-") as work:
        for name in args.datasets:
            results.append(alternating(name, args.epochs, Path(work)) if args.alternate
                           else run_dataset(name, args.epochs, Path(work)))
    print(alternating_markdown(results) if args.alternate else markdown(results))
    if args.out is not None:
        from autotransfer._io import atomic_write_text

        atomic_write_text(args.out, json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
