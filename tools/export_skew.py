#!/usr/bin/env python3
"""How much the shipped model's own resize differs from the training-time transform.

Training decodes each image with Pillow (JPEGs at a reduced DCT scale when that still covers the
input size) and crops/resizes it with ``ImageOps.fit`` (bilinear, fractional crop box). The shipped
model takes the full image and resizes it with ``keras.layers.Resizing`` (antialiased bilinear,
integer centre crop). For every image of a folder, this compares the two inputs (grey levels) and
what an ImageNet classifier (``--backbone``, with its ImageNet head) predicts from them. With
``--train FOLDER`` (``<class>/<image>``) it also fits a logistic-regression head on the pooled
features of FOLDER's images (training transform) and scores the first folder (same layout) both
ways: what a fine-tuned model loses or gains by being served.

    python tools/export_skew.py ../shared/datasets/hymenoptera/val [--backbone mobilenet_v2] \
        [--size 224] [--squash] [--train ../shared/datasets/hymenoptera/train]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _shared_weights import use_shared_weights  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="a folder of images (searched recursively)")
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--squash", action="store_true", help="resize whole, no centre crop")
    parser.add_argument("--train", type=Path, help="fit a head on this folder's images")
    args = parser.parse_args()
    use_shared_weights()
    from autotransfer.backbones.build import build_backbone
    from autotransfer.data.formats import sniff_format
    from autotransfer.data.images import load_image
    from autotransfer.train.export import resize_part, serving_model

    paths = sorted(p for p in args.folder.rglob("*")
                   if p.is_file() and sniff_format(p.read_bytes()[:16]) is not None)
    model = build_backbone(args.backbone, args.size, include_top=True)
    shipped = serving_model(model, crop=not args.squash)
    resize = resize_part(shipped)
    assert resize is not None
    pixel_mean, pixel_max, trained, served = [], [], [], []
    for path in paths:
        a = load_image(path, args.size, crop=not args.squash).astype(np.float32)
        b = np.asarray(resize(load_image(path).astype(np.float32)))
        pixel_mean.append(float(np.abs(a - b).mean()))
        pixel_max.append(float(np.abs(a - b).max()))
        trained.append(a)
        served.append(b)
    p_train = model.predict(np.stack(trained), verbose=0, batch_size=32)
    p_serve = model.predict(np.stack(served), verbose=0, batch_size=32)
    top_train, top_serve = p_train.argmax(1), p_serve.argmax(1)
    rows = np.arange(len(paths))
    delta = np.abs(p_train[rows, top_train] - p_serve[rows, top_train])
    print(f"{len(paths)} images, {args.backbone} at {args.size} px, "
          f"{'squash' if args.squash else 'centre crop'}")
    print(f"pixels: mean |diff| {np.mean(pixel_mean):.2f} grey levels (per-image max "
          f"{np.max(pixel_mean):.2f}); largest single difference {np.max(pixel_max):.0f}")
    print(f"ImageNet top-1 agreement {np.mean(top_train == top_serve):.1%}; |delta p| of the "
          f"training-time top class: mean {delta.mean():.4f}, 95th percentile "
          f"{np.percentile(delta, 95):.4f}, max {delta.max():.4f}")
    if args.train is not None:
        _head_skew(args, paths, np.stack(trained), np.stack(served))


def _head_skew(args: argparse.Namespace, paths: list[Path], trained: np.ndarray,
               served: np.ndarray) -> None:
    from sklearn.linear_model import LogisticRegression

    from autotransfer.backbones.build import build_backbone
    from autotransfer.data.formats import sniff_format
    from autotransfer.data.images import load_image

    backbone = build_backbone(args.backbone, args.size)
    train_paths = sorted(p for p in args.train.rglob("*")
                         if p.is_file() and sniff_format(p.read_bytes()[:16]) is not None)
    images = np.stack([load_image(p, args.size, crop=not args.squash) for p in train_paths])
    head = LogisticRegression(C=1.0, max_iter=2000)
    head.fit(backbone.predict(images.astype(np.float32), verbose=0, batch_size=32),
             [p.parent.name for p in train_paths])
    truth = np.asarray([p.parent.name for p in paths])
    p_train = head.predict_proba(backbone.predict(trained, verbose=0, batch_size=32))
    p_serve = head.predict_proba(backbone.predict(served, verbose=0, batch_size=32))
    labels = head.classes_
    acc_train = np.mean(labels[p_train.argmax(1)] == truth)
    acc_serve = np.mean(labels[p_serve.argmax(1)] == truth)
    agree = np.mean(p_train.argmax(1) == p_serve.argmax(1))
    print(f"head fitted on {len(train_paths)} images: accuracy {acc_train:.1%} (training "
          f"transform) vs {acc_serve:.1%} (shipped model); decisions agree on {agree:.1%}; "
          f"mean |delta p| {np.abs(p_train - p_serve).max(1).mean():.4f}")


if __name__ == "__main__":
    main()
