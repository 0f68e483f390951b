"""Keras building blocks of the backbone package (imports Keras: load only when building models).

Everything here builds from Keras' own layers and operations, so a model made of them saves and
loads with plain ``keras.saving.load_model``: no custom objects.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from autotransfer.backbones.preprocessing import get_mode


def preprocess(x: Any, mode: str, name: str = "preprocess") -> Any:
    """Apply preprocessing ``mode`` to RGB ``x`` in [0, 255] with Keras' built-in operations.

    The same arithmetic as :func:`~autotransfer.backbones.preprocessing.preprocess_input`: a
    channel flip (``keras.ops.flip``) for BGR modes, then ``Rescaling(scale, offset)`` (one number
    when the mode is uniform, one per channel otherwise). A model built on it saves and loads
    without custom objects.
    """
    spec = get_mode(mode)
    if spec.bgr:
        x = keras.ops.flip(x, axis=-1)
    uniform = len(set(spec.scale)) == 1 and len(set(spec.offset)) == 1
    scale: Any = spec.scale[0] if uniform else np.asarray(spec.scale, dtype="float32")
    offset: Any = spec.offset[0] if uniform else np.asarray(spec.offset, dtype="float32")
    return keras.layers.Rescaling(scale, offset, name=name)(x)


@keras.saving.register_keras_serializable(package="autotransfer")
class Preprocess(keras.layers.Layer):
    """The custom layer that earlier versions put where :func:`preprocess` now builds built-ins.

    Kept, registered, only so that :func:`autotransfer.train.export.load_model` still reads the
    model files of older runs; nothing builds it any more.
    """

    def __init__(self, mode: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode = mode
        spec = get_mode(mode)
        self._bgr = spec.bgr
        self._scale = np.asarray(spec.scale, dtype="float32")
        self._offset = np.asarray(spec.offset, dtype="float32")

    def call(self, inputs: Any) -> Any:
        x = keras.ops.cast(inputs, self.compute_dtype)
        if self._bgr:
            x = keras.ops.flip(x, axis=-1)
        return x * keras.ops.cast(self._scale, x.dtype) + keras.ops.cast(self._offset, x.dtype)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}


def model_input(input_shape: tuple[int, ...] | None, input_tensor: Any = None) -> tuple[Any, Any]:
    """``(tensor to build on, model inputs)``, following the Keras Applications convention."""
    if input_tensor is None:
        if input_shape is None:
            raise ValueError("input_shape is required when input_tensor is not given")
        tensor = keras.Input(shape=input_shape)
        return tensor, tensor
    return input_tensor, keras.utils.get_source_inputs(input_tensor)


def classifier_or_pooling(
    x: Any,
    *,
    include_top: bool,
    pooling: str | None,
    classes: int,
    classifier_activation: str | None,
    dropout: float,
) -> Any:
    """The Keras Applications head: pooled classifier, or optional pooling of the features."""
    if include_top:
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name="top_dropout")(x)
        return keras.layers.Dense(classes, activation=classifier_activation, name="predictions")(x)
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    if pooling is not None:
        raise ValueError(f"pooling must be 'avg', 'max' or None; got {pooling!r}")
    return x
