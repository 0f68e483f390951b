#!/usr/bin/env python3
"""Recipe executor benchmark: the Keras guide recipe against a tuned recipe, and feature caching.

For each dataset (default: hymenoptera and eurosat_rgb_3k from ../shared) with MobileNetV2 and
its ImageNet weights from ../shared/weights, in one process:

1. **speed**: one phase trained 2 epochs with and without feature caching, for a head-only phase
   (backbone frozen: pooled features cached) and a partial fine-tuning phase (first groups frozen:
   activations at the group boundary cached). Seconds per epoch are steady-state (the last epoch,
   after the images are decoded and in memory); the cache's one-time build time is reported apart.
2. **equivalence**: a head-only phase with augmentation trained for the same epochs with and
   without caching: held-out accuracy and loss side by side.
3. **recipes**: (a) the official Keras transfer-learning guide (frozen base + new head with Adam at
   its default rate 1e-3, then everything unfrozen at 1e-5, BN in inference mode, flip + rotation
   augmentation, dropout 0.2) and (b) a hand-written recipe in the advisor's format (no advisor
   yet): AdamW, warm-up + cosine, label smoothing, partial fine-tuning with discriminative rates,
   and for the far-from-ImageNet EuroSAT: AdaBN and satellite-friendly flips/rotations.

No early stopping and no best-epoch restore (the val split is the held-out split: nothing is
selected on it). Writes docs/benchmarks/train.{md,json}.

    python tools/bench_train.py [--datasets hymenoptera eurosat_rgb_3k] [--size 160]
                                [--limit N] [--epochs-scale X]
"""

from __future__ import annotations

import argparse
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




NO_SELECTION = {"patience": 1000, "restore_best_weights": False}


def keras_guide(dataset: str, size: int, scale: float) -> dict[str, Any]:
    """https://keras.io/guides/transfer_learning/ (fine-tuning example), as a recipe.

    The guide trains the head for 20 epochs and fine-tunes for 10; a CPU budget allows fewer
    (5 + 5 on hymenoptera, 5 + 3 on EuroSAT, whose full fine-tuning epochs are 8x longer).
    """
    unfreeze = 3 if dataset.startswith("eurosat") else 5
    return {
        "name": "keras_guide", "backbone": {"name": "mobilenet_v2", "input_size": size},
        "data": {"batch_size": 32},
        "head": {"pooling": "avg", "dropout": 0.2},
        "bn_policy": "frozen",
        "augmentation": {"horizontal_flip": True, "rotation": 0.1, "zoom": 0.0,
                         "translation": 0.0},
        "phases": [
            {"name": "frozen_base", "epochs": _e(5, scale), "trainable_from": 5,
             "optimizer": "adam", "learning_rate": 1e-3, "schedule": "constant",
             "weight_decay": 0.0},
            {"name": "unfreeze_all", "epochs": _e(unfreeze, scale), "trainable_from": 0,
             "optimizer": "adam", "learning_rate": 1e-5, "schedule": "constant",
             "weight_decay": 0.0},
        ],
        "early_stopping": NO_SELECTION,
    }


def tuned(dataset: str, size: int, scale: float) -> dict[str, Any]:
    """A recipe in the advisor's spirit (hand-written until the advisor exists)."""
    far = dataset.startswith("eurosat")
    recipe: dict[str, Any] = {
        "name": f"tuned_{dataset}", "backbone": {"name": "mobilenet_v2", "input_size": size},
        "data": {"batch_size": 32},
        "head": {"pooling": "avg", "dropout": 0.2},
        "bn_policy": "frozen",
        "regularization": {"label_smoothing": 0.1},
        "early_stopping": NO_SELECTION,
    }
    if far:  # satellite tiles: no canonical orientation; far domain: adapt BN, train deeper
        recipe["augmentation"] = {"horizontal_flip": True, "vertical_flip": True,
                                  "rotate90": True, "zoom": 0.0, "translation": 0.05}
        recipe["domain_adaptation"] = {"method": "adabn", "before_phase": 0}
        recipe["phases"] = [
            {"name": "head", "epochs": _e(4, scale), "trainable_from": 5, "optimizer": "adamw",
             "learning_rate": 2e-3, "schedule": "cosine", "weight_decay": 1e-4},
            {"name": "fine_tune_s8", "epochs": _e(6, scale), "trainable_from": 2,
             "optimizer": "adamw", "learning_rate": 1e-3, "warmup_epochs": 1.0,
             "schedule": "cosine", "min_lr_ratio": 0.01, "weight_decay": 1e-4,
             "group_lr_multipliers": [0.0, 0.0, 0.2, 0.4, 0.7]},
        ]
    else:  # near ImageNet: a light touch on the last stages
        recipe["augmentation"] = {"horizontal_flip": True, "zoom": 0.1, "translation": 0.1}
        recipe["phases"] = [
            {"name": "head", "epochs": _e(5, scale), "trainable_from": 5, "optimizer": "adamw",
             "learning_rate": 2e-3, "schedule": "cosine", "weight_decay": 1e-4},
            {"name": "fine_tune_s16", "epochs": _e(4, scale), "trainable_from": 3,
             "optimizer": "adamw", "learning_rate": 2e-4, "warmup_epochs": 0.5,
             "schedule": "cosine", "weight_decay": 1e-4,
             "group_lr_multipliers": [0.0, 0.0, 0.0, 0.3, 1.0]},
        ]
    return recipe


def single_phase(size: int, trainable_from: int, epochs: int, lr: float) -> dict[str, Any]:
    return {
        "name": f"speed_from_{trainable_from}", "backbone": {"name": "mobilenet_v2",
                                                            "input_size": size},
        "augmentation": {"horizontal_flip": True, "zoom": 0.1, "translation": 0.1},
        "phases": [{"name": f"from_group_{trainable_from}", "epochs": epochs,
                    "trainable_from": trainable_from, "learning_rate": lr}],
        "early_stopping": NO_SELECTION,
    }


def _e(epochs: int, scale: float) -> int:
    return max(1, round(epochs * scale))


def _splits(name: str, limit: int | None):  # type: ignore[no-untyped-def]
    from autotransfer.data.profile import profile_dataset
    from autotransfer.data.splits import make_splits

    splits = make_splits(profile_dataset(SHARED / "datasets" / name, check="header"))
    if limit:
        def cut(records):  # type: ignore[no-untyped-def]
            kept, counts = [], {}
            for r in records:
                if counts.get(r.label, 0) < limit:
                    kept.append(r)
                    counts[r.label] = counts.get(r.label, 0) + 1
            return kept
        splits = splits.model_copy(update={"train": cut(splits.train), "val": cut(splits.val)})
    return splits


def _run(splits, recipe: dict[str, Any], work: Path, **kwargs: Any) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    from autotransfer.recipe.schema import Recipe
    from autotransfer.train import train

    r = Recipe.model_validate(recipe)
    out = work / f"{r.name}-{'cache' if kwargs.get('feature_cache', True) else 'nocache'}"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    result = train(splits, r, out, progress=lambda text: print("   ", text, flush=True), **kwargs)
    wall = time.perf_counter() - started
    m = result.metrics
    phases = [{
        "name": p["name"], "trainable_from": p["trainable_from"], "epochs": p["epochs_run"],
        "seconds": round(p["seconds"], 2), "epoch_seconds": [round(s, 2) for s in p["epoch_seconds"]],
        "steady_seconds_per_epoch": round(p["epoch_seconds"][-1], 2),
        "feature_cache": p["feature_cache"]["used"], "cache_views": p["feature_cache"]["views"],
        "cache_build_seconds": round(p["feature_cache"]["build_seconds"], 2),
        "val_accuracy_last_epoch": round(p["history"]["val_accuracy"][-1], 4),
    } for p in m["phases"]]
    return {"recipe": r.name, "val_accuracy": round(m["val"]["accuracy"], 4),
            "val_balanced_accuracy": round(m["val"]["balanced_accuracy"], 4),
            "val_loss": round(m["val"]["loss"], 4), "wall_seconds": round(wall, 1),
            "adabn": m["adabn"], "phases": phases}


def bench_dataset(name: str, size: int, scale: float, limit: int | None, work: Path) -> dict[str, Any]:
    splits = _splits(name, limit)
    print(f"== {name}: {len(splits.train)} train / {len(splits.val)} val at {size} px", flush=True)
    result: dict[str, Any] = {"dataset": name, "n_train": len(splits.train),
                              "n_val": len(splits.val), "input_size": size}
    speed = []
    for k, lr in ((5, 1e-3), (3, 3e-4)):
        for cache in (False, True):
            print(f"-- speed: trainable_from={k} feature_cache={cache}", flush=True)
            speed.append(_run(splits, single_phase(size, k, 2, lr), work, feature_cache=cache,
                              cache_views=2) | {"feature_cache": cache})
    result["speed"] = speed
    equivalence = []
    for cache in (False, True):
        epochs = _e(3 if name.startswith("eurosat") else 6, scale)
        recipe = single_phase(size, 5, epochs, 1e-3) | {"name": "equivalence_head"}
        print(f"-- equivalence: head only, feature_cache={cache}", flush=True)
        equivalence.append(_run(splits, recipe, work, feature_cache=cache) | {"feature_cache": cache})
    result["equivalence"] = equivalence
    result["recipes"] = []
    for recipe in (keras_guide(name, size, scale), tuned(name, size, scale)):
        print(f"-- recipe {recipe['name']}", flush=True)
        result["recipes"].append(_run(splits, recipe, work) | {"recipe_body": recipe})
    return result


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    lines = [
        "# Training benchmark (`tools/bench_train.py`)",
        "",
        f"Command: `{report['command']}`. Machine: {env['cpus']} CPU cores, no GPU, "
        f"{env['platform']}; TensorFlow {env['tensorflow']}, Keras {env['keras']}. Started "
        f"{env['started']} with load average {env['load_before']}; total wall time "
        f"{report['wall_seconds'] / 60:.1f} min. MobileNetV2 with ImageNet weights from "
        "`../shared/weights`; held-out split = the datasets' `val` folders; no early stopping and "
        "no best-epoch restore (nothing is selected on the held-out split).",
        "",
    ]
    for d in report["datasets"]:
        lines += [f"## {d['dataset']} ({d['n_train']} train / {d['n_val']} val, "
                  f"{d['input_size']} px)", "",
                  "| recipe | held-out accuracy | balanced | wall time (s) | phases: epochs, s/epoch"
                  " (cache) |", "| --- | ---: | ---: | ---: | --- |"]
        for r in d["recipes"]:
            phases = "; ".join(
                f"{p['name']}: {p['epochs']} ep, {p['seconds'] / max(p['epochs'], 1):.1f} s/ep "
                f"({'cached, build ' + str(p['cache_build_seconds']) + ' s' if p['feature_cache'] else 'uncached'})"
                for p in r["phases"])
            lines.append(f"| {r['recipe']} | **{r['val_accuracy']:.4f}** | "
                         f"{r['val_balanced_accuracy']:.4f} | {r['wall_seconds']:.0f} | {phases} |")
            if r.get("adabn"):
                a = r["adabn"]
                lines.append(f"| ↳ AdaBN (before phase {a['before_phase']}) | val acc "
                             f"{a['before']['accuracy']:.4f} → {a['after']['accuracy']:.4f} | | | "
                             f"{a['n_layers']} BN layers, mean shift {a['mean_abs_shift']:.2f} std |")
        lines += ["", "Seconds per epoch, steady state (2 epochs, augmentation flip + zoom + "
                  "translation, 2 cached views):", "",
                  "| phase | uncached s/epoch | cached s/epoch | cache build (s) | speed-up per epoch |",
                  "| --- | ---: | ---: | ---: | ---: |"]
        speed = d["speed"]
        for i in range(0, len(speed), 2):
            plain, cached = speed[i]["phases"][0], speed[i + 1]["phases"][0]
            ratio = plain["steady_seconds_per_epoch"] / max(cached["steady_seconds_per_epoch"], 1e-9)
            lines.append(f"| trainable_from={plain['trainable_from']} | "
                         f"{plain['steady_seconds_per_epoch']:.2f} | "
                         f"{cached['steady_seconds_per_epoch']:.2f} | "
                         f"{cached['cache_build_seconds']:.1f} | {ratio:.1f}× |")
        plain, cached = d["equivalence"]
        lines += ["", f"Cached vs uncached head training ({plain['phases'][0]['epochs']} epochs, "
                  f"augmented; cached: {cached['phases'][0]['cache_views']} views): held-out accuracy "
                  f"{plain['val_accuracy']:.4f} uncached vs {cached['val_accuracy']:.4f} cached; "
                  f"loss {plain['val_loss']:.4f} vs {cached['val_loss']:.4f}; wall "
                  f"{plain['wall_seconds']:.0f} s vs {cached['wall_seconds']:.0f} s.", ""]
    lines += ["Reference (from `docs/benchmarks/probe.*` and the shared SOURCES): a frozen "
              "MobileNetV2 with a logistic-regression head reaches about 0.95 on hymenoptera val "
              "and 0.91 on eurosat_rgb_3k val on this machine.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["hymenoptera", "eurosat_rgb_3k"])
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--epochs-scale", type=float, default=1.0)
    parser.add_argument("--limit", type=int, default=None, help="At most N images per class and split.")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks")
    args = parser.parse_args()
    use_shared_weights()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras
    import tensorflow as tf

    from autotransfer._io import atomic_write_json, atomic_write_text

    load = os.getloadavg()
    started = time.perf_counter()
    report: dict[str, Any] = {
        "command": "python tools/bench_train.py " + " ".join(sys.argv[1:]),
        "environment": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "tensorflow": tf.__version__, "keras": keras.__version__,
                        "gpus": len(tf.config.list_physical_devices("GPU")),
                        "started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                        "load_before": [round(x, 2) for x in load]},
        "datasets": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench-train-") as work:
        for name in args.datasets:
            report["datasets"].append(bench_dataset(name, args.size, args.epochs_scale,
                                                    args.limit, Path(work)))
            report["wall_seconds"] = time.perf_counter() - started
            atomic_write_json(args.out / "train.json", report)
    report["wall_seconds"] = time.perf_counter() - started
    atomic_write_json(args.out / "train.json", report)
    atomic_write_text(args.out / "train.md", markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
