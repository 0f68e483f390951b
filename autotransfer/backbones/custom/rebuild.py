"""Rebuilding a registered backbone: copies of the user's layers as top-level layers after a
built-in ``Rescaling`` (its preprocessing), cut at the feature layer, then pooling
(:func:`CustomBackbone`, the constructor a custom :class:`BackboneSpec` names)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from autotransfer.backbones.custom.loading import _SOURCES, _load
from autotransfer.backbones.preprocessing import PreprocessingMode
from autotransfer.errors import InvalidConfigError, InvalidParameterError

if TYPE_CHECKING:  # pragma: no cover
    import keras


def _up_to(model: Any, feature_layer: str | None) -> Any:
    """``model`` cut at its top-level layer ``feature_layer``, so that a classifier after it (a
    ``Flatten`` + ``Dense`` of a fixed input size) does not stop other input sizes; a nested
    layer is cut after flattening instead."""
    import keras

    if feature_layer is None or not any(l.name == feature_layer for l in model.layers):
        return model
    try:
        return keras.Model(model.inputs, model.get_layer(feature_layer).output, name=model.name)
    except Exception:  # noqa: BLE001 - e.g. a Sequential without an Input: cut after flattening
        return model


def _clone_layer(layer: Any) -> Any:
    """A fresh copy of ``layer`` (same name and settings) that follows the global dtype policy
    when the original used plain float32, so mixed precision applies to it as to the catalog's."""
    config = layer.get_config()
    dtype = config.get("dtype")
    if isinstance(dtype, dict) and dtype.get("config", {}).get("name") == "float32":
        config.pop("dtype")
    elif dtype == "float32":
        config.pop("dtype")
    try:
        return type(layer).from_config(config)
    except Exception as exc:  # noqa: BLE001 - a custom layer's own get_config/from_config
        raise InvalidParameterError(
            f"Layer '{layer.name}' ({type(layer).__name__}) cannot be copied from its config "
            f"({' '.join(str(exc).split())[:200]}): give it a get_config() that returns every "
            "argument of its __init__.") from None


def _rebuild(model: Any, x: Any, pairs: list[tuple[Any, Any]]) -> Any:
    """Apply copies of ``model``'s layers to ``x``, flattening nested models, so that every layer
    is a top-level layer of the result (the layer groups select them by name)."""
    import keras

    if isinstance(model, keras.Sequential):
        for layer in model.layers:
            nested = isinstance(layer, keras.Model)
            x = _rebuild(layer, x, pairs) if nested else _call(layer, x, pairs)
        return x
    if not hasattr(model, "_run_through_graph"):
        raise InvalidParameterError(
            f"Backbone model '{model.name}' is a subclassed keras.Model; autotransfer needs a "
            "functional or Sequential model to find its layers by name.")
    if len(model.inputs) != 1:
        raise InvalidParameterError(f"Backbone model '{model.name}' has {len(model.inputs)} "
                                    "inputs; a backbone takes one image input.")

    def operation_fn(op: Any) -> Any:
        if isinstance(op, keras.Model):
            return lambda inner, *args, **kwargs: _rebuild(op, inner, pairs)
        if isinstance(op, keras.layers.Layer):
            new = _clone_layer(op)
            pairs.append((op, new))
            return new
        try:  # a bare operation (x + y): a copy too, so that its first call is in this graph
            return type(op).from_config(op.get_config())
        except Exception:  # noqa: BLE001 - an operation Keras cannot copy: share it (no state)
            return op

    return model._run_through_graph(x, operation_fn=operation_fn)


def _call(layer: Any, x: Any, pairs: list[tuple[Any, Any]]) -> Any:
    new = _clone_layer(layer)
    pairs.append((layer, new))
    return new(x)


def _rescale(x: Any, mode: PreprocessingMode) -> Any:
    import keras
    import numpy as np

    if mode.bgr:
        x = keras.ops.flip(x, axis=-1)
    if mode.scale == (1.0,) * 3 and mode.offset == (0.0,) * 3:
        return x
    uniform = len(set(mode.scale)) == 1 and len(set(mode.offset)) == 1
    scale: Any = mode.scale[0] if uniform else np.asarray(mode.scale, dtype="float32")
    offset: Any = mode.offset[0] if uniform else np.asarray(mode.offset, dtype="float32")
    return keras.layers.Rescaling(scale, offset, name="preprocess")(x)


def CustomBackbone(  # noqa: N802 - Keras Applications signature
    input_shape: tuple[int, ...] | None = None,
    include_top: bool = False,
    weights: str | None = None,
    input_tensor: Any = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    *,
    backbone: str,
    feature_layer: str | None = None,
    bgr: bool = False,
    scale: tuple[float, ...] = (1.0, 1.0, 1.0),
    offset: tuple[float, ...] = (0.0, 0.0, 0.0),
) -> keras.Model:
    """Build the registered backbone ``backbone`` (the constructor its spec names).

    The result takes RGB in [0, 255] (its preprocessing is a built-in ``Rescaling`` layer), holds
    copies of the user's layers up to ``feature_layer`` as top-level layers, then pooling.
    ``weights``: ``None`` (fresh initialisation), the registered ``.keras`` file or
    ``"imagenet"`` (the model's own weights), or another weights file of the same architecture.
    """
    import keras

    from autotransfer.backbones.layers import classifier_or_pooling, model_input

    if include_top:
        raise InvalidParameterError(f"Custom backbone '{backbone}' has no ImageNet classifier; "
                                    "build it with include_top=False.")
    source = _SOURCES.get(backbone)
    if source is None:
        raise InvalidConfigError(f"Custom backbone '{backbone}' is not registered in this "
                                 "process; register it (or pass its --backbone-file) again.")
    original = _up_to(_load(backbone, source), feature_layer)
    x, inputs = model_input(input_shape, input_tensor)
    x = _rescale(x, PreprocessingMode(bgr, tuple(scale), tuple(offset)))  # type: ignore[arg-type]
    pairs: list[tuple[Any, Any]] = []
    x = _rebuild(original, x, pairs)
    flat = keras.Model(inputs, x, name=backbone)
    if feature_layer is not None:
        flat = keras.Model(inputs, flat.get_layer(feature_layer).output, name=backbone)
    if weights is not None:
        for old, new in pairs:
            if old.weights:
                new.set_weights(old.get_weights())
        own = (isinstance(source, (str, os.PathLike))
               and os.path.realpath(weights) == os.path.realpath(source))
        if weights != "imagenet" and not own:
            flat.load_weights(weights)
    out = classifier_or_pooling(flat.output, include_top=False, pooling=pooling, classes=classes,
                                classifier_activation=classifier_activation, dropout=0.0)
    return keras.Model(inputs, out, name=backbone)
