#!/usr/bin/env python3
"""Does the probe rank backbones the way full frozen-feature training does, and how much faster?

For every backbone with weights on this machine and every shared dataset:

1. ``probe_dataset`` on the default sample (cold feature cache): LogME, k-NN, linear probe;
2. brute force: features of the *whole* training split and of the held-out split (val, else
   test), a logistic regression trained on all training features, accuracy on the held-out split.

Reports, per dataset, Kendall's τ between the probe's rankings and the held-out accuracy ranking,
and the probe's wall time against the brute force's. Writes docs/benchmarks/probe.{md,json}.

    python tools/bench_probe.py [--datasets hymenoptera eurosat_rgb_3k] [--backbones a,b]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from _shared_weights import use_shared_weights  # noqa: E402
SHARED = Path(os.environ.get("AUTOTRANSFER_SHARED", REPO.parent / "shared"))




def held_out_split(profile):  # type: ignore[no-untyped-def]
    """(training records, held-out records, name of the held-out split)."""
    from autotransfer.data.splits import make_splits

    splits = make_splits(profile, seed=0)
    if splits.val_source == "folder":
        return splits.train, splits.val, "val"
    if splits.test:
        return splits.train + splits.val, splits.test, "test"
    return splits.train, splits.val, "stratified 20% val"


def brute_force(spec, train, held, root, classes, decoded_cache):  # type: ignore[no-untyped-def]
    """Held-out accuracy of logistic regression on frozen features of the whole training split."""
    import keras
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from autotransfer.backbones.build import build_backbone
    from autotransfer.probes.extract import decode_sample

    size = spec.default_input_size
    started = time.perf_counter()
    if size not in decoded_cache:
        decoded_cache[size] = (decode_sample(train, root, size), decode_sample(held, root, size))
    x_train, x_held = decoded_cache[size]
    model = build_backbone(spec, size)
    f_train = model.predict(x_train, batch_size=32, verbose=0)
    f_held = model.predict(x_held, batch_size=32, verbose=0)
    y_train = np.asarray([classes.index(r.label) for r in train])
    y_held = np.asarray([classes.index(r.label) for r in held])
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    clf.fit(f_train, y_train)
    accuracy = float((clf.predict(f_held) == y_held).mean())
    keras.backend.clear_session(free_memory=True)
    return accuracy, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+",
                        default=["hymenoptera", "flowers5_small", "eurosat_rgb_3k", "chest_xray_224"])
    parser.add_argument("--backbones", default=None, help="comma-separated [default: available]")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "probe")
    args = parser.parse_args()
    use_shared_weights()

    from scipy.stats import kendalltau

    from autotransfer._io import atomic_write_json, atomic_write_text
    from autotransfer.backbones.catalog import get_backbone
    from autotransfer.data.profile import profile_dataset
    from autotransfer.probes.cache import FeatureCache
    from autotransfer.probes.probe import default_candidates, probe_dataset

    names = args.backbones.split(",") if args.backbones else default_candidates()
    results = []
    for dataset in args.datasets:
        root = SHARED / "datasets" / dataset
        profile = profile_dataset(root)
        train, held, held_name = held_out_split(profile)
        classes = list(profile.classes)
        with tempfile.TemporaryDirectory() as cold:
            started = time.perf_counter()
            report = probe_dataset(profile, names, cache=FeatureCache(cold))
            probe_s = time.perf_counter() - started
        decoded: dict = {}
        rows = []
        brute_s = 0.0
        for name in names:
            accuracy, seconds = brute_force(get_backbone(name), train, held, profile.root, classes, decoded)
            brute_s += seconds
            p = report.get(name)
            rows.append(dict(backbone=name, logme=p.transferability.logme,
                             knn=p.transferability.knn_accuracy,
                             linear_probe=p.transferability.linear_probe_accuracy,
                             bn_shift=p.bn_shift.overall,
                             entropy=p.imagenet.normalized_entropy if p.imagenet else None,
                             held_out_accuracy=accuracy, brute_force_s=round(seconds, 1)))
            print(f"{dataset:16} {name:20} LogME {p.transferability.logme:7.3f} "
                  f"held-out acc {accuracy:.3f} ({seconds:.0f}s)", flush=True)
        accuracy = [r["held_out_accuracy"] for r in rows]
        tau = {key: float(kendalltau([r[key] for r in rows], accuracy).statistic)
               for key in ("logme", "knn", "linear_probe")}
        results.append(dict(dataset=dataset, n_train=len(train), n_held_out=len(held),
                            held_out=held_name, n_probe_samples=report.n_samples,
                            probe_s=round(probe_s, 1), brute_force_s=round(brute_s, 1),
                            kendall_tau=tau, rows=rows))
        print(f"{dataset}: Kendall τ LogME {tau['logme']:.2f}, k-NN {tau['knn']:.2f}, linear "
              f"probe {tau['linear_probe']:.2f}; probe {probe_s:.0f}s vs brute force {brute_s:.0f}s",
              flush=True)

    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    lines = ["# Probe benchmark: probe rankings against full frozen-feature training", "",
             f"`python tools/bench_probe.py` on {machine}, CPU only. Probe: default sample "
             "(≤ 64 per class, ≤ 1000 in all), cold feature cache. Brute force: features of the "
             "whole training split, logistic regression, accuracy on the held-out split.", "",
             "| dataset | train / held-out | probe s | brute-force s | τ LogME | τ k-NN | τ linear probe |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for r in results:
        t = r["kendall_tau"]
        lines.append(f"| {r['dataset']} | {r['n_train']} / {r['n_held_out']} ({r['held_out']}) | "
                     f"{r['probe_s']:.0f} | {r['brute_force_s']:.0f} | {t['logme']:.2f} | "
                     f"{t['knn']:.2f} | {t['linear_probe']:.2f} |")
    for r in results:
        lines += ["", f"## {r['dataset']}", "",
                  "| backbone | LogME | k-NN (sample) | linear probe (sample) | BN shift | ImageNet entropy | held-out accuracy |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for row in sorted(r["rows"], key=lambda x: -x["held_out_accuracy"]):
            fmt = lambda v, d=3: "n/a" if v is None else f"{v:.{d}f}"  # noqa: E731
            lines.append(f"| {row['backbone']} | {fmt(row['logme'])} | {fmt(row['knn'])} | "
                         f"{fmt(row['linear_probe'])} | {fmt(row['bn_shift'])} | "
                         f"{fmt(row['entropy'], 2)} | {fmt(row['held_out_accuracy'])} |")
    atomic_write_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    atomic_write_json(args.out.with_suffix(".json"), {"machine": machine, "results": results})
    print(f"Wrote {args.out.with_suffix('.md')} and .json")


if __name__ == "__main__":
    main()
