#!/usr/bin/env python3
"""Build the demo dataset: scikit-learn's bundled handwritten digits as class folders of PNGs.

The 1,797 digits (8×8, 17 gray levels; UCI "Optical Recognition of Handwritten Digits") install
with scikit-learn, so the demo needs no download. Each image is scaled to 0–255 and enlarged to
32×32 so that it looks like an ordinary small image file.

    python tools/make_demo_dataset.py build/demo_digits [--size 32] [--per-class N]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def build(out: Path, size: int = 32, per_class: int | None = None) -> Path:
    """Write ``out/digit_<k>/<index>.png``; the folder appears whole (built aside, then renamed)."""
    digits = load_digits()
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    written: dict[int, int] = {}
    for index, (pixels, label) in enumerate(zip(digits.images, digits.target)):
        label = int(label)
        if per_class is not None and written.get(label, 0) >= per_class:
            continue
        gray = np.clip(np.rint(pixels * (255.0 / 16.0)), 0, 255).astype(np.uint8)
        img = Image.fromarray(gray, mode="L").resize((size, size), Image.Resampling.BICUBIC)
        folder = staging / f"digit_{label}"
        folder.mkdir(exist_ok=True)
        img.save(folder / f"{index:04d}.png")
        written[label] = written.get(label, 0) + 1
    staging.rename(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="folder to create (replaced if it exists)")
    parser.add_argument("--size", type=int, default=32, help="side of the written images")
    parser.add_argument("--per-class", type=int, default=None, help="at most this many per class")
    args = parser.parse_args()
    out = build(args.out, args.size, args.per_class)
    n = sum(1 for _ in out.rglob("*.png"))
    print(f"Wrote {n} images in {len(list(out.iterdir()))} classes to {out}")


if __name__ == "__main__":
    main()
