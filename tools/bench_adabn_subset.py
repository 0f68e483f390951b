#!/usr/bin/env python3
"""Does re-estimating AdaBN's statistics on a subset of the probe's sample change the decision?

    python tools/bench_adabn_subset.py [--datasets a,b,...] [--backbone mobilenet_v2]
                                       [--subsets 0,256,128]

For each dataset: the probe's default sample (64 per class, 1000 in all), its ImageNet-statistics
linear probe (the probe's own, cached), then the AdaBN check (:mod:`autotransfer.probes.adabn_check`)
with the BatchNorm statistics re-estimated on the whole sample (``0``) and on each subset size,
the features of the whole sample extracted after each, side by side in one process. Prints one
Markdown row per dataset: the BN shift, the linear probe with ImageNet's statistics, the gain of
AdaBN (adapted minus ImageNet linear-probe accuracy, the figure DA02/DA03 compare with 0) per
subset, whether DA02/DA03's decision is the same as with the whole sample, and the seconds of
each AdaBN pass plus extraction.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("AUTOTRANSFER_SHARED", REPO.parent / "shared"))
DATASETS = ("eurosat_rgb_3k", "chest_xray_224", "brain_mri", "animal_silhouette_28",
            "omniglot_scripts", "clothing_small_lite", "flowers5_small", "hymenoptera")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--subsets", default="0,256,128",
                        help="images the statistics are re-estimated on; 0: the whole sample")
    args = parser.parse_args()
    if "KERAS_HOME" not in os.environ and (SHARED / "weights").is_dir():
        import tempfile

        home = Path(tempfile.mkdtemp(prefix="bench-keras-home-"))
        (home / "models").mkdir()
        for f in (SHARED / "weights").iterdir():
            (home / "models" / f.name).symlink_to(f.resolve())
        os.environ["KERAS_HOME"] = str(home)

    from autotransfer.backbones.catalog import get_backbone
    from autotransfer.data.profile import profile_dataset
    from autotransfer.probes.adabn_check import adapted_features, compare
    from autotransfer.probes.extract import plan_extraction
    from autotransfer.probes.precision import policy_scope
    from autotransfer.probes.probe import _sample, probe_dataset
    from autotransfer.probes.sample import forget_sample_images, sample_images

    subsets = [int(s) for s in args.subsets.split(",")]
    print(f"load {os.getloadavg()[0]:.1f}")
    print("| dataset | BN shift | linear, ImageNet BN | " + " | ".join(
        f"gain, stats on {s or 'all'}" for s in subsets) + " | same decision | seconds |")
    print("|---|---:|---:|" + "---:|" * len(subsets) + "---|---|")
    for name in args.datasets.split(","):
        profile = profile_dataset(SHARED / "datasets" / name)
        report = probe_dataset(profile, [args.backbone], measure_orientation_with="none")
        probe = report.get(args.backbone)
        records, _, labels, _ = _sample(profile, 64, 1000, 0)
        images = sample_images(records, profile.root).at(probe.input_size)
        plan = plan_extraction(get_backbone(args.backbone), probe.input_size)
        t = probe.transferability
        gains, seconds = [], []
        for size in subsets:
            t0 = time.perf_counter()
            with policy_scope("float32"):
                features = adapted_features(plan, images, adapt_images=size or len(images))
            seconds.append(time.perf_counter() - t0)
            check = compare(features, labels, imagenet_linear=t.linear_probe_accuracy,
                            imagenet_knn=t.knn_accuracy, seed=0, seconds=seconds[-1])
            gains.append(check.gain)
        same = all((g > 0) == (gains[0] > 0) for g in gains)
        shift = probe.bn_shift.overall
        print(f"| {name} | {'-' if shift is None else f'{shift:.2f}'} | "
              f"{t.linear_probe_accuracy:.4f} | " + " | ".join(f"{g:+.4f}" for g in gains)
              + f" | {'yes' if same else '**no**'} | "
              + " / ".join(f"{s:.1f}" for s in seconds) + " |", flush=True)
        forget_sample_images()
    print(f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
