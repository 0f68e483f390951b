#!/usr/bin/env python3
"""float32 vs mixed_bfloat16 on this CPU, side by side in one process: forward and training step.

    python tools/bench_precision.py [--backbone mobilenet_v2] [--size 224] [--batch 32]
                                    [--rounds 5] [--weights imagenet|none] [--no-write]

Both models are built first (the backbone through autotransfer's own builders, under
:func:`autotransfer.probes.precision.policy_scope`), then timed in alternating rounds on the same
random batch, so that a change of the machine's load affects both precisions alike: per round,
one forward pass of the backbone (batch ``--batch``, inference mode) and one training step of
the whole classifier (every layer trainable, AdamW, softmax in float32) in each precision.
Reports milliseconds per image (median over the rounds, after two untimed warm-up calls) and the
load average before and after; appends the result to docs/benchmarks/precision.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

from _shared_weights import use_shared_weights  # noqa: E402

POLICIES = ("float32", "mixed_bfloat16")


def _load() -> str:
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--weights", choices=["imagenet", "none"], default="imagenet")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "precision.md")
    args = parser.parse_args()
    use_shared_weights()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    load_before = _load()

    import keras
    import numpy as np
    import tensorflow as tf

    from autotransfer.backbones.build import build_backbone
    from autotransfer.probes.precision import policy_scope
    from autotransfer.recipe.schema import BackboneChoice, Phase, Recipe
    from autotransfer.train.model import build_classifier, set_trainable

    rng = np.random.default_rng(0)
    x = tf.convert_to_tensor(rng.integers(0, 256, (args.batch, args.size, args.size, 3),
                                          dtype=np.uint8))
    y = tf.convert_to_tensor(np.eye(10, dtype=np.float32)[rng.integers(0, 10, args.batch)])
    weights = None if args.weights == "none" else "imagenet"
    recipe = Recipe(backbone=BackboneChoice(name=args.backbone, input_size=args.size,
                                            weights=args.weights),
                    phases=[Phase(name="finetune", epochs=1, trainable_from=0,
                                  learning_rate=1e-4)])
    forward, step, dtypes = {}, {}, {}
    for policy in POLICIES:
        with policy_scope(policy):
            backbone = build_backbone(args.backbone, args.size, weights=weights)
            clf = build_classifier(recipe, 10)
            set_trainable(clf, 0)
            clf.model.compile(optimizer=keras.optimizers.AdamW(1e-4),
                              loss=keras.losses.CategoricalCrossentropy())
        fn = tf.function(lambda t, m=backbone: m(t, training=False))
        forward[policy] = lambda fn=fn: fn(x).numpy()
        step[policy] = lambda m=clf.model: m.train_on_batch(x, y)
        probs = clf.model(x[:2], training=False)
        dtypes[policy] = (f"variables {sorted({v.dtype for v in clf.model.weights})}, "
                          f"compute {clf.model.layers[5].compute_dtype}, "
                          f"probabilities {probs.dtype}")
    for policy in POLICIES:  # warm-up: tracing and oneDNN's first-call work
        for _ in range(2):
            forward[policy]()
            step[policy]()
    times: dict[str, dict[str, list[float]]] = {p: {"forward": [], "step": []} for p in POLICIES}
    started = time.perf_counter()
    for _ in range(args.rounds):
        for policy in POLICIES:
            for kind, call in (("forward", forward[policy]), ("step", step[policy])):
                t0 = time.perf_counter()
                call()
                times[policy][kind].append((time.perf_counter() - t0) * 1000 / args.batch)
    wall = time.perf_counter() - started
    load_after = _load()
    ms = {p: {k: statistics.median(v) for k, v in t.items()} for p, t in times.items()}
    f32, bf16 = ms["float32"], ms["mixed_bfloat16"]
    for policy in POLICIES:
        print(f"{policy:15s} forward {ms[policy]['forward']:7.2f} ms/image   training step "
              f"{ms[policy]['step']:7.2f} ms/image   ({dtypes[policy]})")
    print(f"speed-up: forward {f32['forward'] / bf16['forward']:.2f}×, training step "
          f"{f32['step'] / bf16['step']:.2f}×; load average {load_before} before, "
          f"{load_after} after ({os.cpu_count()} cores); {wall:.0f} s timed")
    flags = ", ".join(f for f in ("avx512_bf16", "amx_bf16", "avx512f") if f in _cpu_flags())
    row = (f"| {time.strftime('%Y-%m-%d %H:%M', time.gmtime())} | {args.backbone} {args.size} px, "
           f"batch {args.batch}, weights {args.weights} | {f32['forward']:.2f} | "
           f"{bf16['forward']:.2f} | {f32['forward'] / bf16['forward']:.2f}× | "
           f"{f32['step']:.2f} | {bf16['step']:.2f} | {f32['step'] / bf16['step']:.2f}× | "
           f"{load_before} → {load_after} | {os.cpu_count()} cores, {flags or 'no bf16 flags'}, "
           f"TF {tf.__version__}, Python {platform.python_version()} |")
    print(row)
    if args.no_write:
        return
    if not args.out.exists():
        args.out.write_text(HEADER)
    with args.out.open("a") as handle:
        handle.write(row + "\n")


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((l for l in text.splitlines() if l.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


HEADER = """# float32 vs mixed_bfloat16 on the CPU

`python tools/bench_precision.py`: milliseconds per image, median of the alternating rounds
(forward: the backbone in inference mode; training step: the whole classifier trainable, AdamW,
one `train_on_batch`). Load average (1/5/15 min) before → after the run.

## Runs

| when (UTC) | model | forward f32 | forward bf16 | speed-up | step f32 | step bf16 | speed-up | load | machine |
|---|---|---:|---:|---:|---:|---:|---:|---|---|
"""


if __name__ == "__main__":
    main()
