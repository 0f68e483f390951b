#!/usr/bin/env python3
"""How far an exactly fitted linear head on frozen features gets on a dataset's held-out split.

For each backbone and input size: pooled features of the training folder (split as the
benchmarks split it: a stratified, seeded 20% held out for validation) and of the held-out folder
(``val/`` or ``test/``), with their mirror images. Then the exact linear head
(:func:`autotransfer.train.linear_head.fit_linear_head`, C by 5-fold cross-validation) fitted on
train or train + validation, on the plain features or with the mirrored ones as extra rows, and
scored on the held-out images plain and with flip test-time augmentation (probabilities or
features averaged). Prints one line per variant: images right of the held-out split.

    python tools/linear_ceiling.py ../shared/datasets/hymenoptera --backbones mobilenet_v2 \
        --sizes 224 256 [--squash]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _shared_weights import use_shared_weights  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, help="a folder with train/ and val/ (or test/)")
    parser.add_argument("--backbones", default="mobilenet_v2")
    parser.add_argument("--sizes", type=int, nargs="+", default=[224])
    parser.add_argument("--squash", action="store_true", help="resize whole, no centre crop")
    args = parser.parse_args()
    use_shared_weights()
    from autotransfer.backbones.build import build_backbone
    from autotransfer.data.images import load_image
    from autotransfer.data.profile import profile_dataset
    from autotransfer.data.splits import make_splits
    from autotransfer.probes.extract import run_model
    from autotransfer.train.linear_head import fit_linear_head

    root = Path(tempfile.mkdtemp(prefix="linear-ceiling-")) / args.dataset.name
    root.mkdir()
    held = next(args.dataset / n for n in ("test", "val") if (args.dataset / n).is_dir())
    (root / "train").symlink_to((args.dataset / "train").resolve())
    (root / "test").symlink_to(held.resolve())
    splits = make_splits(profile_dataset(root), val_fraction=0.2, seed=0)
    classes = sorted({r.label for r in splits.train})
    parts = {"train": splits.train, "val": splits.val, "test": splits.test}
    labels = {k: np.array([classes.index(r.label) for r in v]) for k, v in parts.items()}
    for size in args.sizes:
        images = {k: np.stack([load_image(root / r.path, size, crop=not args.squash) for r in v])
                  for k, v in parts.items()}
        for name in args.backbones.split(","):
            started = time.time()
            model = build_backbone(name, size)
            plain = {k: run_model(model, v)[0] for k, v in images.items()}
            mirror = {k: run_model(model, np.ascontiguousarray(v[:, :, ::-1]))[0]
                      for k, v in images.items()}
            print(f"{name} at {size} px{' (squashed)' if args.squash else ''}: features in "
                  f"{time.time() - started:.0f} s", flush=True)
            y_test = labels["test"]
            for fit_on in ("train", "train+val"):
                keys = ["train"] if fit_on == "train" else ["train", "val"]
                x = np.concatenate([plain[k] for k in keys])
                xm = np.concatenate([mirror[k] for k in keys])
                y = np.concatenate([labels[k] for k in keys])
                for views_name, views in (("plain", [x]), ("plain+mirrored", [x, xm])):
                    fit = fit_linear_head(views, y, len(classes))
                    p = fit.predict_proba(plain["test"])
                    p_flip = (p + fit.predict_proba(mirror["test"])) / 2
                    f_flip = fit.predict_proba((plain["test"] + mirror["test"]) / 2)
                    right = [int((q.argmax(1) == y_test).sum()) for q in (p, p_flip, f_flip)]
                    print(f"  fit on {fit_on:9s} {views_name:14s} C={fit.c:<8.3g} right "
                          f"{right[0]}/{len(y_test)}, flip TTA (probabilities) {right[1]}, "
                          f"(features) {right[2]}", flush=True)


if __name__ == "__main__":
    main()
