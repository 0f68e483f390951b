"""Write tests/backbones/data/efficientnet_lite_reference.npz: reference Lite logits.

The reference forward pass is written here independently of autotransfer's Keras port, with plain
``torch.nn.functional`` ops following the EfficientNet-PyTorch definitions (lukemelas, as used by
the ``efficientnet_lite_pytorch`` port the checkpoints come from): TensorFlow "same" padding
(``Conv2dStaticSamePadding``: total padding ``max((ceil(i/s) - 1) * s + k - i, 0)``, the extra
pixel bottom/right), BatchNorm in eval mode with eps 1e-3, ReLU6, no squeeze-excite, identity skip
when stride 1 and channels match. The checkpoints are read with ``torch.load`` (not with
autotransfer's pickle reader), so the reader is checked too.

Inputs: scikit-image's sample photos (chelsea, coffee, astronaut, rocket), centre-cropped and
resized to each variant's input size by ``autotransfer.backbones.preprocessing.center_crop_resize``
and mapped with ``(x - 127) / 128``. Saved per variant and photo: the 20 largest logits and their
class indices (a few KB in all).

Run once, in a throwaway environment that has torch (the project itself never needs torch)::

    python -m venv /tmp/torchref && /tmp/torchref/bin/pip install torch==2.13.0
    PYTHONPATH=/tmp/torchref/lib/python3.11/site-packages:. \\
        .venv/bin/python tools/make_lite_reference.py
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import skimage.data
import torch
import torch.nn.functional as F  # noqa: N812

from autotransfer.backbones.catalog import get_backbone
from autotransfer.backbones.preprocessing import center_crop_resize, preprocess_input
from autotransfer.backbones.weights import resolve_weights

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
TOP_K = 20
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "backbones" / "data" / "efficientnet_lite_reference.npz"


#: EfficientNet-B0 stages (repeats, stride of the first block); Lite keeps the repeats of the first
#: and last stage and multiplies the others by the depth coefficient (rounded up).
STAGES = ((1, 1), (2, 2), (2, 2), (3, 2), (3, 1), (4, 2), (1, 1))
DEPTH = {0: 1.0, 1: 1.1, 2: 1.2}


def block_strides(variant: int) -> list[int]:
    strides = []
    for i, (repeats, stride) in enumerate(STAGES):
        n = repeats if i in (0, len(STAGES) - 1) else math.ceil(DEPTH[variant] * repeats)
        strides += [stride] + [1] * (n - 1)
    return strides


def same_pad(x: torch.Tensor, kernel: int, stride: int) -> torch.Tensor:
    pads = []
    for size in (x.shape[3], x.shape[2]):  # width first, as F.pad wants
        out = math.ceil(size / stride)
        total = max((out - 1) * stride + kernel - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


def conv(x: torch.Tensor, w: torch.Tensor, stride: int = 1, groups: int = 1) -> torch.Tensor:
    return F.conv2d(same_pad(x, w.shape[-1], stride), w, stride=stride, groups=groups)


def bn(x: torch.Tensor, sd: dict, prefix: str) -> torch.Tensor:
    return F.batch_norm(x, sd[f"{prefix}.running_mean"], sd[f"{prefix}.running_var"],
                        sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], training=False, eps=1e-3)


def relu6(x: torch.Tensor) -> torch.Tensor:
    return F.hardtanh(x, 0.0, 6.0)


def forward(sd: dict, variant: int, x: torch.Tensor) -> torch.Tensor:
    x = relu6(bn(conv(x, sd["_conv_stem.weight"], 2), sd, "_bn0"))
    strides = block_strides(variant)
    n = len(strides)
    assert f"_blocks.{n}._bn2.weight" not in sd and f"_blocks.{n - 1}._bn2.weight" in sd
    for i, stride in enumerate(strides):
        p = f"_blocks.{i}."
        inputs = x
        if f"{p}_expand_conv.weight" in sd:
            x = relu6(bn(conv(x, sd[p + "_expand_conv.weight"]), sd, p + "_bn0"))
        w = sd[p + "_depthwise_conv.weight"]
        x = relu6(bn(conv(x, w, stride, groups=w.shape[0]), sd, p + "_bn1"))
        x = bn(conv(x, sd[p + "_project_conv.weight"]), sd, p + "_bn2")
        if stride == 1 and inputs.shape[1] == x.shape[1]:
            x = x + inputs
    x = relu6(bn(conv(x, sd["_conv_head.weight"]), sd, "_bn1"))
    return F.linear(x.mean(dim=(2, 3)), sd["_fc.weight"], sd["_fc.bias"])


def main() -> int:
    torch.set_grad_enabled(False)
    arrays: dict[str, np.ndarray] = {"photos": np.array(PHOTOS)}
    for variant in (0, 1, 2):
        spec = get_backbone(f"efficientnet_lite{variant}")
        path = resolve_weights(spec, "imagenet", include_top=True)
        sd = torch.load(path, map_location="cpu", weights_only=True)
        size = spec.default_input_size
        images = np.stack([center_crop_resize(getattr(skimage.data, p)(), size) for p in PHOTOS])
        x = torch.from_numpy(preprocess_input(images, "lite")).permute(0, 3, 1, 2).contiguous()
        logits = forward(sd, variant, x).numpy()
        top = np.argsort(-logits, axis=1)[:, :TOP_K]
        arrays[f"lite{variant}_index"] = top.astype(np.int16)
        arrays[f"lite{variant}_logit"] = np.take_along_axis(logits, top, 1).astype(np.float32)
        print(f"lite{variant}: top-1 {top[:, 0].tolist()} logits {logits.max(1).round(3).tolist()}")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"Wrote {OUT} ({OUT.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
