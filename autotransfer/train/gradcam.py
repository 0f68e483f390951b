"""Grad-CAM class-activation heat maps (Selvaraju et al., ICCV 2017) with ``tf.GradientTape``.

The heat map of class ``c`` on an image: the backbone's last convolutional feature map ``A``
(the last layer of the classifier with a spatial, 4-D output), each channel weighted by the mean
gradient of the class score over it, summed, passed through ReLU, scaled to [0, 1] and resized
to the image. The class score is the logit before the softmax (``predictions`` layer: its input
times its kernel plus its bias), as in the paper: the probability saturates and its gradient
vanishes on confident predictions. A model without that layer uses its output.

It needs the *full* model (backbone and head): a run whose head was trained on cached features
still saves the full model, which is what is explained here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from autotransfer.errors import InvalidParameterError

#: the dense softmax layer of autotransfer's classifiers
PREDICTIONS_LAYER = "predictions"


def feature_layer(classifier: Any) -> Any:
    """The last layer of ``classifier`` whose output is a spatial (4-D) feature map, before any
    final pooling (VGG's ``block5_pool`` halves the map that ``block5_conv3`` gives)."""
    import keras

    skipped = (keras.layers.InputLayer, keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
    for layer in reversed(classifier.layers):
        if isinstance(layer, keras.Model):  # its feature maps are not tensors of this graph
            raise InvalidParameterError(
                f"The model '{classifier.name}' holds its backbone as one nested model "
                f"('{layer.name}'), whose feature maps Grad-CAM cannot reach: build the "
                "classifier as one flat graph (as autotransfer's are).")
        if isinstance(layer, skipped):
            continue
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):  # a layer called more than once, or never
            continue
        if len(shape) == 4:
            return layer
    raise InvalidParameterError(
        f"The model '{classifier.name}' has no layer with a spatial feature map, so there is "
        "nothing for Grad-CAM to explain.")


def feature_map_size(classifier: Any) -> tuple[int, int]:
    """``(height, width)`` of the feature map :func:`grad_cam` weights (1 × 1: no location)."""
    shape = feature_layer(classifier).output.shape
    return int(shape[1]), int(shape[2])


def _explainer(classifier: Any) -> tuple[Any, Any]:
    """A model ``images -> (feature map, class scores)`` and how to turn its second output into
    logits (``None``: it already is the score)."""
    import keras

    fmap = feature_layer(classifier).output
    names = {layer.name for layer in classifier.layers}
    if PREDICTIONS_LAYER in names:
        dense = classifier.get_layer(PREDICTIONS_LAYER)
        if isinstance(dense, keras.layers.Dense):
            return keras.Model(classifier.input, [fmap, dense.input]), dense
    return keras.Model(classifier.input, [fmap, classifier.output]), None


def grad_cam(classifier: Any, images: np.ndarray, class_indices: Sequence[int]) -> np.ndarray:
    """Heat maps ``(n, H, W)`` in [0, 1] of class ``class_indices[i]`` on ``images[i]``.

    ``classifier`` is the fixed-size classifier (``LoadedModel.classifier``) and ``images`` the
    batch it takes (``(n, H, W, 3)``, what ``LoadedModel.load_images`` gives). A map whose
    weighted sum is nowhere positive is all zeros.
    """
    import tensorflow as tf

    images = np.asarray(images, np.float32)
    if images.ndim != 4 or len(images) != len(class_indices):
        raise InvalidParameterError(
            f"grad_cam needs a batch of images (n, H, W, 3) and one class per image; got shape "
            f"{images.shape} and {len(class_indices)} class(es).")
    model, dense = _explainer(classifier)
    x = tf.convert_to_tensor(images)
    onehot = tf.one_hot(list(class_indices), int(classifier.output_shape[-1]), dtype=tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)  # records the whole forward pass, frozen layers included
        fmap, scores = model(x, training=False)
        if dense is not None:
            scores = tf.matmul(tf.cast(scores, tf.float32), tf.cast(dense.kernel, tf.float32))
            if dense.bias is not None:
                scores = scores + tf.cast(dense.bias, tf.float32)
        score = tf.reduce_sum(tf.cast(scores, tf.float32) * onehot, axis=1)
    grads = tf.cast(tape.gradient(score, fmap), tf.float32)
    fmap = tf.cast(fmap, tf.float32)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * fmap, axis=-1))[..., None]
    cam = tf.image.resize(cam, images.shape[1:3], method="bilinear")
    cam = tf.math.divide_no_nan(cam, tf.reduce_max(cam, axis=(1, 2, 3), keepdims=True))
    return np.clip(cam.numpy()[..., 0], 0.0, 1.0)
