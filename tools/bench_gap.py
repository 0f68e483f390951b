#!/usr/bin/env python3
"""Does the measured gap grow with the corruption's severity, and does the advised method follow?

    python tools/bench_gap.py [--dataset ../shared/datasets/hymenoptera] [--backbone mobilenet_v2]
                              [--per-class 60] [--severities 1,3,5] [--no-write]

The source is the dataset's training split (the advisor's probe sample of it). Each target is a
folder of the *validation* images (never in the source sample) at 224 × 224, clean (severity 0,
the control: same distribution, other images) or corrupted as in ImageNet-C (Hendrycks &
Dietterich, ICLR 2019; their parameters for severities 1-5): Gaussian noise, Gaussian blur, JPEG,
contrast and fog (a diamond-square plasma fractal). The folders are generated in a temporary
directory, keeping the class folders, which only fill the evaluation field (the source linear
probe's accuracy on the target) and are never read by the rules.

For each target: the gap (autotransfer/probes/domain_gap.py) with the advisor's backbone, and the
advisor's decision on it (rules DA04-DA08, through :func:`autotransfer.advisor.advise.decide`, as
``advise --target`` takes it). Writes docs/benchmarks/adapt_gap.md and adapt_gap.json.
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

import numpy as np
from PIL import Image, ImageFilter

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))

from _shared_weights import SHARED, use_shared_weights  # noqa: E402

SIDE = 224
#: ImageNet-C's parameters, severities 1..5
NOISE = (0.08, 0.12, 0.18, 0.26, 0.38)
BLUR = (1, 2, 3, 4, 6)
JPEG = (25, 18, 15, 10, 7)
CONTRAST = (0.4, 0.3, 0.2, 0.1, 0.05)
FOG = ((1.5, 2.0), (2.0, 2.0), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))


def plasma_fractal(rng: np.random.Generator, mapsize: int = 256, decay: float = 3.0) -> np.ndarray:
    """A square height map in [0, 1] by the diamond-square algorithm."""
    grid = np.zeros((mapsize, mapsize))
    step, wibble = mapsize, 100.0

    def jitter(total: np.ndarray) -> np.ndarray:
        return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        corners = grid[0:mapsize:step, 0:mapsize:step]
        square = corners + np.roll(corners, -1, axis=0)
        square = square + np.roll(square, -1, axis=1)
        grid[half:mapsize:step, half:mapsize:step] = jitter(square)
        centres = grid[half:mapsize:step, half:mapsize:step]
        grid[0:mapsize:step, half:mapsize:step] = jitter(
            centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1))
        grid[half:mapsize:step, 0:mapsize:step] = jitter(
            centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0))
        step //= 2
        wibble /= decay
    grid -= grid.min()
    return grid / grid.max()


def corrupt(img: Image.Image, kind: str, severity: int, rng: np.random.Generator) -> Image.Image:
    """``img`` (RGB, SIDE × SIDE) corrupted as ImageNet-C does at ``severity`` (0: unchanged)."""
    if severity == 0:
        return img
    i = severity - 1
    if kind == "gaussian_blur":
        return img.filter(ImageFilter.GaussianBlur(radius=BLUR[i]))
    if kind == "jpeg":
        import io

        buffer = io.BytesIO()
        img.save(buffer, format="JPEG", quality=JPEG[i])
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    x = np.asarray(img, dtype=np.float64) / 255.0
    if kind == "gaussian_noise":
        x = x + rng.normal(0.0, NOISE[i], x.shape)
    elif kind == "contrast":
        mean = x.mean(axis=(0, 1), keepdims=True)
        x = (x - mean) * CONTRAST[i] + mean
    elif kind == "fog":
        strength, decay = FOG[i]
        top = x.max()
        x = x + strength * plasma_fractal(rng, decay=decay)[:SIDE, :SIDE, None]
        x = x * top / (top + strength)
    else:
        raise ValueError(kind)
    return Image.fromarray((np.clip(x, 0, 1) * 255).round().astype(np.uint8))


def write_target(records: list, root: Path, out: Path, kind: str, severity: int, seed: int) -> Path:
    """The held-out images, at SIDE × SIDE, corrupted, as PNG in their class folders."""
    from autotransfer.data.images import load_image

    rng = np.random.default_rng(seed)
    for r in records:
        img = Image.fromarray(load_image(root / r.path, SIDE))
        dest = out / r.label / (Path(r.path).stem + ".png")
        dest.parent.mkdir(parents=True, exist_ok=True)
        corrupt(img, kind, severity, rng).save(dest)
    return out


def _rules() -> object:
    """The rule base, loaded once for the whole run."""
    from autotransfer.advisor.rules import load_rules

    return load_rules()


def _load() -> str:
    return "/".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=SHARED / "datasets" / "hymenoptera")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--per-class", type=int, default=60)
    parser.add_argument("--severities", default="1,3,5")
    parser.add_argument("--corruptions", default="gaussian_noise,gaussian_blur,jpeg,contrast,fog")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "adapt_gap.md")
    args = parser.parse_args()
    use_shared_weights()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    load_before, started = _load(), time.time()

    from autotransfer.advisor.advise import decide
    from autotransfer.data.profile import profile_dataset
    from autotransfer.data.target import read_target
    from autotransfer.probes.cache import FeatureCache
    from autotransfer.probes.domain_gap import measure_domain_gap
    from autotransfer.probes.probe import probe_dataset

    rules = _rules()  # once: the rule base in force when the run starts
    profile = profile_dataset(args.dataset)
    held_out = [r for r in profile.records if r.split == "val"]
    if not held_out:
        raise SystemExit(f"{args.dataset} has no val split to draw the targets from")
    rng = np.random.default_rng(args.seed)
    chosen = []
    for label in sorted({r.label for r in held_out}):
        members = sorted((r for r in held_out if r.label == label), key=lambda r: r.path)
        take = min(args.per_class, len(members))
        chosen += [members[i] for i in sorted(rng.choice(len(members), take, replace=False))]
    total = args.per_class * len(profile.classes)
    work = Path(tempfile.mkdtemp(prefix="bench-gap-"))
    cache = FeatureCache()  # the user cache: a rerun (same seeded targets) is fast
    t0 = time.perf_counter()
    probes = probe_dataset(profile, [args.backbone], per_class=args.per_class, total=total,
                           seed=args.seed, cache=cache, measure_orientation_with="none")
    probe_s = time.perf_counter() - t0
    severities = [int(s) for s in args.severities.split(",")]
    targets = [("clean", 0)] + [(k, s) for k in args.corruptions.split(",") for s in severities]
    rows = []
    try:
        for kind, severity in targets:
            t0 = time.perf_counter()
            folder = write_target(chosen, Path(profile.root), work / f"{kind}-{severity}", kind,
                                  severity, args.seed + severity)
            target = read_target(folder, profile)
            gap = measure_domain_gap(profile, target, args.backbone, per_class=args.per_class,
                                     total=total, seed=args.seed, cache=cache)
            advice = decide(profile, probes.model_copy(update={"domain_gap": gap}),
                            precision="float32", rules=rules)
            fired = [f.rule for f in advice.firings if f.rule in
                     ("DA04", "DA05", "DA06", "DA07", "DA08")]
            facts = advice.facts
            rows.append({
                "corruption": kind, "severity": severity, "n_target": gap.n_target,
                "a_distance": gap.a_distance,
                "bn_early": None if gap.bn_overall is None else round(facts["gap_bn_early"], 4),
                "bn_deep": None if gap.bn_overall is None else round(facts["gap_bn_deep"], 4),
                "bn_between": gap.bn_overall, "class_tv": gap.class_tv,
                "source_pred_entropy": gap.source_pred_entropy,
                "target_pred_entropy": gap.target_pred_entropy,
                "imagenet_entropy": [gap.source_entropy, gap.target_entropy],
                "target_accuracy": (gap.evaluation.source_only_linear_accuracy
                                    if gap.evaluation else None),
                "target_accuracy_adabn": (gap.evaluation.adabn_linear_accuracy
                                          if gap.evaluation else None),
                "method": advice.recipe.domain_adaptation.method, "rule": ",".join(fired),
                "seconds": round(time.perf_counter() - t0, 1),
            })
            r = rows[-1]
            print(f"{kind:15s} s{severity}  A {r['a_distance']:.2f}  BN {r['bn_between'] or 0:.3f} "
                  f"(early {r['bn_early']}, deep {r['bn_deep']})  TV "
                  f"{r['class_tv']:.2f}  acc {r['target_accuracy']} adabn "
                  f"{r['target_accuracy_adabn']}  -> {r['method']} "
                  f"({r['rule']})  {r['seconds']}s  load {_load()}", flush=True)
            shutil.rmtree(folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "dataset": str(args.dataset.name), "backbone": args.backbone,
        "per_class": args.per_class, "n_source": probes.n_samples, "severities": severities,
        "probe_s": round(probe_s, 1), "seconds_total": round(time.time() - started, 1),
        "load_before": load_before, "load_after": _load(), "machine": platform.processor()
        or platform.machine(), "cpus": os.cpu_count(), "rows": rows,
        "summary": summarise(rows, severities),
    }
    print(json.dumps(result["summary"], indent=1))
    if not args.no_write:
        args.out.with_suffix(".json").write_text(json.dumps(result, indent=1) + "\n")
        args.out.write_text(render(result))
        print(f"Wrote {args.out}")


def summarise(rows: list[dict], severities: list[int]) -> dict:
    """Per corruption: does the A-distance grow with severity (clean first), and does the choice
    follow (no adaptation on the clean control; once adapting, never back to none)?"""
    clean = next(r for r in rows if r["corruption"] == "clean")
    out: dict = {"clean_method": clean["method"], "corruptions": {}}
    for kind in dict.fromkeys(r["corruption"] for r in rows if r["corruption"] != "clean"):
        chain = [clean] + [r for r in rows if r["corruption"] == kind]
        a = [r["a_distance"] for r in chain]
        acc = [r["target_accuracy"] for r in chain]
        methods = [r["method"] for r in chain]
        adapting = [m not in ("none", "adabn") for m in methods]
        out["corruptions"][kind] = {
            "a_distance": a,
            "grows": all(later >= earlier - 0.05 for earlier, later in zip(a, a[1:])),
            "strictly_above_clean": all(x > a[0] for x in a[1:]),
            "target_accuracy": acc,
            "methods": methods,
            "choice_follows": adapting == sorted(adapting),  # False... then True, never back
        }
    return out


def render(result: dict) -> str:
    s = result["summary"]
    lines = [
        "# The gap to a target, against ImageNet-C corruptions (tools/bench_gap.py)",
        "",
        f"Source: `{result['dataset']}` training split, the advisor's probe sample "
        f"({result['n_source']} images, {result['per_class']} per class). Targets: its validation "
        "images (never in the source sample) at 224 × 224, clean (severity 0, the control) or "
        "corrupted with ImageNet-C's parameters (Hendrycks & Dietterich, ICLR 2019) at severities "
        f"{', '.join(map(str, result['severities']))}. Backbone `{result['backbone']}` (ImageNet "
        "weights). The gap is autotransfer/probes/domain_gap.py's, the method the advisor's "
        "(rules DA04-DA08 via `decide`, as `advise --target` takes it). Target accuracy is the "
        "source-trained linear probe's on the target's class folders (after AdaBN: the probe "
        "trained on AdaBN'd source features, on AdaBN'd target features, odd-indexed half): "
        "evaluation only, no rule reads it. How the methods then do when trained, on real domain "
        "pairs: [adapt.md](adapt.md).",
        "",
        f"Machine: {result['cpus']} CPUs ({result['machine']}), shared with other jobs; load "
        f"average (1/5/15 min) {result['load_before']} before, {result['load_after']} after. "
        f"Probe {result['probe_s']} s, whole run {result['seconds_total']} s.",
        "",
        "| corruption | severity | proxy A-distance | BN shift between | early groups "
        "| deep groups | predicted classes TV | probe entropy src → tgt | target accuracy | after AdaBN "
        "| method | rule | s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        early = "-" if r["bn_early"] is None else f"{r['bn_early']:.3f}"
        deep = "-" if r["bn_deep"] is None else f"{r['bn_deep']:.3f}"
        bn = "-" if r["bn_between"] is None else f"{r['bn_between']:.3f}"
        acc = "-" if r["target_accuracy"] is None else f"{r['target_accuracy']:.1%}"
        acc2 = ("-" if r["target_accuracy_adabn"] is None
                else f"{r['target_accuracy_adabn']:.1%}")
        lines.append(
            f"| {r['corruption']} | {r['severity']} | {r['a_distance']:.2f} | "
            f"{bn} | {early} | {deep} | {r['class_tv']:.2f} | "
            f"{r['source_pred_entropy']:.2f} → {r['target_pred_entropy']:.2f} | {acc} | {acc2} | "
            f"{r['method']} | {r['rule']} | {r['seconds']} |")
    lines += ["", "## Does the gap grow, and does the choice follow?", "",
              f"Clean control: method `{s['clean_method']}`.", "",
              "| corruption | A-distance, severity 0 → max | grows (±0.05) | target accuracy | "
              "methods | choice follows |", "|---|---|---|---|---|---|"]
    for kind, c in s["corruptions"].items():
        accs = " → ".join("-" if a is None else f"{a:.0%}" for a in c["target_accuracy"])
        lines.append(f"| {kind} | {' → '.join(f'{a:.2f}' for a in c['a_distance'])} | "
                     f"{'yes' if c['grows'] else 'no'} | {accs} | {' → '.join(c['methods'])} | "
                     f"{'yes' if c['choice_follows'] else 'no'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
