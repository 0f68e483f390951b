"""Shipping the trained model: ``.keras`` (always), SavedModel, TFLite and ONNX (on request).

What is shipped is *self-contained* and made of Keras' built-in layers only, so it loads with
plain ``keras.saving.load_model`` (safe mode, no custom objects, no autotransfer):

``image`` (RGB, uint8 or float in [0, 255], any height and width)
→ ``resize``: ``keras.layers.Resizing`` to the training size, antialiased bilinear, centre crop to
the square first when the run cropped (``crop_to_aspect_ratio``)
→ ``classifier``: the trained network at its fixed size, which starts with the backbone's
normalisation (``Rescaling``) and ends in softmax probabilities.

The SavedModel's ``serving_default`` signature takes encoded images (a batch of JPEG/PNG/GIF/BMP
bytes, input ``image_bytes``: what TF Serving and Vertex AI send), decodes them as autotransfer's
reader does (:mod:`.tf_decode`: EXIF orientation, alpha on white) and returns ``probabilities``
and ``classes``; its ``serve`` endpoint takes decoded images as the ``.keras`` model does.
TFLite and ONNX hold the fixed-size ``classifier``: neither converter takes the antialiased
resize (TensorFlow's ``ScaleAndTranslate``), so their users resize to :func:`input_size` first.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import keras

from autotransfer._io import atomic_write_bytes
from autotransfer.errors import InvalidParameterError

#: names of the two parts of a shipped model
RESIZE_LAYER = "resize"
CLASSIFIER_LAYER = "classifier"
#: the SavedModel serving signature's input (Vertex AI decodes base64 for names ending in _bytes)
BYTES_INPUT = "image_bytes"


def inference_copy(model: keras.Model, name: str | None = None) -> keras.Model:
    """The same graph and weights, without optimizer or compile state (renamed to ``name``)."""
    config = model.get_config()
    if name is not None:
        config["name"] = name
    copy = keras.Model.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def is_self_contained(model: keras.Model) -> bool:
    """Whether ``model`` is a shipped model (resize + classifier), not a bare classifier."""
    names = {layer.name for layer in model.layers}
    return RESIZE_LAYER in names and CLASSIFIER_LAYER in names


def classifier_part(model: keras.Model) -> keras.Model:
    """The fixed-size classifier of a shipped model (a bare classifier is returned as it is)."""
    return model.get_layer(CLASSIFIER_LAYER) if is_self_contained(model) else model


def resize_part(model: keras.Model) -> keras.layers.Resizing | None:
    """The ``Resizing`` layer of a shipped model; ``None`` for a bare (fixed-size) classifier."""
    return model.get_layer(RESIZE_LAYER) if is_self_contained(model) else None


def input_size(model: keras.Model) -> tuple[int, int]:
    """``(height, width)`` that the classifier of ``model`` computes on."""
    shape = classifier_part(model).input_shape
    return int(shape[1]), int(shape[2])


def serving_model(model: keras.Model, *, crop: bool = True) -> keras.Model:
    """The self-contained model of a trained fixed-size classifier (see the module docstring).

    ``crop`` is the run's ``data.crop``: centre crop to the square (aspect kept) or squash.
    The resize computes in float32 whatever the precision policy of the run.
    """
    if is_self_contained(model):
        return model
    height, width = input_size(model)
    classifier = inference_copy(model, name=CLASSIFIER_LAYER)
    image = keras.Input(shape=(None, None, 3), name="image")
    resized = keras.layers.Resizing(height, width, interpolation="bilinear",
                                    crop_to_aspect_ratio=crop, antialias=True, dtype="float32",
                                    name=RESIZE_LAYER)(image, training=False)
    # training=False is recorded in the graph: Keras' preprocessing layers default to
    # training=True, which a direct call model(x) would pass on to BatchNormalization.
    return keras.Model(image, classifier(resized), name=model.name)


def save_keras(model: keras.Model, path: str | os.PathLike[str], *, crop: bool = True) -> Path:
    """Save the self-contained model of ``model`` as ``.keras``, atomically."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.tmp.keras")
    serving_model(model, crop=crop).save(tmp)
    os.replace(tmp, target)
    return target


def load_model(path: str | os.PathLike[str]) -> keras.Model:
    """Load a model saved by autotransfer (Keras' safe mode; older files need the legacy layer)."""
    import autotransfer.backbones.layers  # noqa: F401 - registers the legacy 'Preprocess' layer

    return keras.models.load_model(path, compile=False, safe_mode=True)  # never runs code


def export_savedmodel(model: keras.Model, path: str | os.PathLike[str], *,
                      class_names: list[str], crop: bool = True) -> Path:
    """A TensorFlow SavedModel with a bytes-in serving signature (see the module docstring).

    ``serving_default(image_bytes: string[batch])`` -> ``probabilities: float32[batch, classes]``,
    ``classes: string[batch, classes]`` (the class names, in output order); ``serve(images)``
    takes float RGB in [0, 255] of any size, like the ``.keras`` model.
    """
    import tensorflow as tf

    from autotransfer.train.tf_decode import decode

    shipped = serving_model(model, crop=crop)
    resize, classifier = resize_part(shipped), classifier_part(shipped)
    height, width = input_size(shipped)
    if len(class_names) != int(classifier.output_shape[-1]):
        raise InvalidParameterError(f"{len(class_names)} class names for a model with "
                                    f"{classifier.output_shape[-1]} outputs.")
    names = tf.constant(class_names, dtype=tf.string)

    def prepare(data: Any) -> Any:
        return resize(tf.cast(decode(data), tf.float32))

    @tf.function(input_signature=[tf.TensorSpec((None,), tf.string, name=BYTES_INPUT)])
    def from_bytes(image_bytes: Any) -> dict[str, Any]:
        images = tf.map_fn(prepare, image_bytes,
                           fn_output_signature=tf.TensorSpec((height, width, 3), tf.float32))
        probabilities = classifier(images, training=False)
        classes = tf.tile(names[tf.newaxis], [tf.shape(probabilities)[0], 1])
        return {"probabilities": probabilities, "classes": classes}

    @tf.function(input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32,
                                                name="images")])
    def from_pixels(images: Any) -> Any:
        return shipped(images, training=False)

    archive = keras.export.ExportArchive()
    archive.track(shipped)
    archive.add_endpoint("serving_default", from_bytes)
    archive.add_endpoint("serve", from_pixels)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    shutil.rmtree(tmp)
    try:
        archive.write_out(str(tmp), verbose=False)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def export_tflite(model: keras.Model, path: str | os.PathLike[str]) -> Path:
    """A float32 TFLite flatbuffer of the fixed-size classifier (slow to convert: on request).

    Input: RGB in [0, 255] already resized to :func:`input_size` the way the ``.keras`` model's
    ``resize`` layer does; output: probabilities. (TFLite has no antialiased resize.)
    """
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as folder:
        classifier_part(model).export(folder, format="tf_saved_model", verbose=False)
        converter: Any = tf.lite.TFLiteConverter.from_saved_model(folder)
        data = converter.convert()
    return atomic_write_bytes(path, data)


#: the packages of the ``onnx`` extra the export needs (module names)
ONNX_PACKAGES = ("tf2onnx", "onnx")
ONNX_FILE = "model.onnx"


def require_onnx(option: str = "ONNX export") -> None:
    """Raise :class:`InvalidParameterError` naming the ``onnx`` extra when its packages are
    missing: checked before a run starts, not after it trained for an hour."""
    import importlib.util

    missing = [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise InvalidParameterError(
            f"{option} needs the 'onnx' extra of autotransfer ({', '.join(missing)} not "
            "installed here): pip install 'autotransfer[onnx]', then run the command again.")


def export_onnx(model: keras.Model, path: str | os.PathLike[str], *, opset: int = 17) -> Path:
    """An ONNX model of the fixed-size classifier, converted by tf2onnx (``autotransfer[onnx]``).

    Input ``image``: float32 RGB in [0, 255], ``(batch, height, width, 3)`` already resized to
    :func:`input_size` as for TFLite; output: probabilities. ONNX's ``Resize`` has no
    counterpart of TensorFlow's antialiased ``ScaleAndTranslate``, which tf2onnx refuses.
    """
    import tensorflow as tf

    require_onnx()
    import tf2onnx
    classifier = classifier_part(model)
    height, width = input_size(model)
    spec = (tf.TensorSpec((None, height, width, 3), tf.float32, name="image"),)
    proto, _ = tf2onnx.convert.from_keras(classifier, input_signature=spec, opset=opset)
    return atomic_write_bytes(path, proto.SerializeToString())


def add_onnx(run_folder: str | os.PathLike[str]) -> Path:
    """Write ``model.onnx`` beside the ``model.keras`` of a finished run folder and list it in
    its ``run.json`` (``train --onnx``, ``auto --onnx``); returns the ONNX file."""
    from autotransfer._io import atomic_write_json
    from autotransfer.errors import OutputError
    from autotransfer.train.run import RUN_FILE, read_run_info

    require_onnx()
    folder = Path(run_folder)
    info = read_run_info(folder)  # a damaged run.json fails before the conversion, not after
    target = folder / ONNX_FILE
    try:
        export_onnx(load_model(folder / "model.keras"), target)
    except InvalidParameterError:
        raise
    except Exception as exc:  # the converter's own failure: the run itself is complete
        raise OutputError(f"Could not convert '{folder / 'model.keras'}' to ONNX with tf2onnx "
                          f"({type(exc).__name__}: {exc}); the run in '{folder}' is complete "
                          "without model.onnx.") from exc
    if info is not None and ONNX_FILE not in info.get("files", []):
        info.setdefault("files", []).append(ONNX_FILE)
        atomic_write_json(folder / RUN_FILE, info)
    return target
