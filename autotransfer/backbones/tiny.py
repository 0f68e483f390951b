"""``test_tiny``: a five-stage conv+BN+ReLU network for fast unit tests (random weights only)."""

from __future__ import annotations

from typing import Any

import keras

from autotransfer.backbones.layers import classifier_or_pooling, model_input
from autotransfer.backbones.spec import GROUP_NAMES

#: output channels of each stage (one stride-2 conv each)
WIDTHS: tuple[int, ...] = (8, 8, 16, 16, 32)


def TestTiny(  # noqa: N802 - Keras Applications naming
    input_shape: tuple[int, ...] | None = None,
    include_top: bool = False,
    weights: str | None = None,
    input_tensor: Any = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    name: str = "test_tiny",
) -> keras.Model:
    """Build the tiny test backbone; output stride 32 with ``WIDTHS[-1]`` features."""
    if weights is not None:
        raise ValueError("test_tiny has no pretrained weights; use weights=None")
    x, inputs = model_input(input_shape, input_tensor)
    for group, width in zip(GROUP_NAMES, WIDTHS, strict=True):
        x = keras.layers.Conv2D(width, 3, strides=2, padding="same", use_bias=False,
                                name=f"{group}_conv")(x)
        x = keras.layers.BatchNormalization(name=f"{group}_bn")(x)
        x = keras.layers.ReLU(name=f"{group}_relu")(x)
    x = classifier_or_pooling(x, include_top=include_top, pooling=pooling, classes=classes,
                              classifier_activation=classifier_activation, dropout=0.0)
    return keras.Model(inputs, x, name=name)
