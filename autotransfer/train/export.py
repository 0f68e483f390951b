"""Shipping the trained model: ``.keras`` (always), SavedModel and TFLite (on request).

The ``.keras`` file holds an *uncompiled* copy of the classifier (same graph, same weights, no
optimizer), so it loads with plain ``keras.models.load_model`` wherever autotransfer is installed:
its only custom layer, ``autotransfer>Preprocess``, registers itself when
``autotransfer.backbones.layers`` is imported (:func:`load_model` does it).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import keras

from autotransfer._io import atomic_write_bytes


def inference_copy(model: keras.Model) -> keras.Model:
    """The same graph and weights, without optimizer or compile state."""
    copy = keras.Model.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def save_keras(model: keras.Model, path: str | os.PathLike[str]) -> Path:
    """Save an uncompiled copy of ``model`` as ``.keras``, atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.tmp.keras")
    inference_copy(model).save(tmp)
    os.replace(tmp, target)
    return target


def load_model(path: str | os.PathLike[str]) -> keras.Model:
    """Load a model saved by autotransfer (registers its custom layers first)."""
    import autotransfer.backbones.layers  # noqa: F401 - registers 'autotransfer>Preprocess'

    return keras.models.load_model(path, compile=False)


def export_savedmodel(model: keras.Model, path: str | os.PathLike[str]) -> Path:
    """A TensorFlow SavedModel (``serve`` endpoint: float RGB [0, 255] in, probabilities out)."""
    target = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    shutil.rmtree(tmp)
    model.export(str(tmp), format="tf_saved_model", verbose=False)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target


def export_tflite(model: keras.Model, path: str | os.PathLike[str]) -> Path:
    """A float32 TFLite flatbuffer of ``model`` (slow to convert: on request only)."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as folder:
        model.export(folder, format="tf_saved_model", verbose=False)
        converter: Any = tf.lite.TFLiteConverter.from_saved_model(folder)
        data = converter.convert()
    return atomic_write_bytes(path, data)
