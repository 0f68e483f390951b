"""AdaBN (Li et al. 2016): re-estimate BatchNorm statistics on the target training data.

Every BatchNorm layer's moving mean and variance are replaced by the population statistics of its
input over the (unaugmented) training images, measured in one pass in which each BN layer
normalises with the statistics of the current batch (as during BN's own training) so that later
layers see inputs normalised by target statistics. Batch means and mean squares are averaged with
batch-size weights: the result is the exact mean and (biased) variance over the data for the
first BN layer and the standard population estimate for the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf



def batchnorm_layers(model: keras.Model) -> list[keras.layers.BatchNormalization]:
    """The model's BatchNormalization layers (top level: backbones are flat functional models)."""
    return [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]


@dataclass(frozen=True)
class AdaBNResult:
    n_layers: int
    n_images: int
    mean_abs_shift: float  # average |new mean - old mean| / sqrt(old variance), over channels

    def to_dict(self) -> dict[str, Any]:
        return {"n_layers": self.n_layers, "n_images": self.n_images,
                "mean_abs_shift": self.mean_abs_shift}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdaBNResult:
        return cls(int(data["n_layers"]), int(data["n_images"]), float(data["mean_abs_shift"]))


def adapt_batchnorm(model: keras.Model, images: tf.data.Dataset) -> AdaBNResult:
    """Set every BN layer's moving statistics to those of ``images`` (batches of images)."""
    layers = batchnorm_layers(model)
    if not layers:
        return AdaBNResult(0, 0, 0.0)
    saved = [layer.trainable for layer in layers]
    for layer in layers:  # trainable BN normalises with batch statistics when training=True
        layer.trainable = True
    try:
        probe = keras.Model(model.inputs, [layer.input for layer in layers])

        @tf.function
        def moments(x: tf.Tensor) -> list[tuple[tf.Tensor, tf.Tensor]]:
            outs = probe(x, training=True)
            result = []
            for layer, out in zip(layers, outs, strict=True):
                out = tf.cast(out, tf.float32)
                axes = [i for i in range(len(out.shape)) if i != (layer.axis % len(out.shape))]
                result.append((tf.reduce_mean(out, axes), tf.reduce_mean(tf.square(out), axes)))
            return result

        sums: list[list[np.ndarray]] | None = None
        total = 0
        for batch in images:
            n = int(batch.shape[0])
            stats = moments(batch)
            if sums is None:
                sums = [[np.zeros_like(m.numpy(), dtype=np.float64) for m in pair]
                        for pair in stats]
            for acc, (mean, square) in zip(sums, stats, strict=True):
                acc[0] += mean.numpy() * n
                acc[1] += square.numpy() * n
            total += n
        shifts = []
        assert sums is not None
        for layer, (mean_sum, square_sum) in zip(layers, sums, strict=True):
            mean = mean_sum / total
            var = np.maximum(square_sum / total - mean**2, 0.0)
            old_mean = np.asarray(layer.moving_mean.numpy(), dtype=np.float64)
            old_var = np.asarray(layer.moving_variance.numpy(), dtype=np.float64)
            scale = np.sqrt(old_var + layer.epsilon)
            shifts.append(float(np.mean(np.abs(mean - old_mean) / scale)))
            layer.moving_mean.assign(mean.astype(layer.moving_mean.dtype))
            layer.moving_variance.assign(var.astype(layer.moving_variance.dtype))
    finally:
        for layer, trainable in zip(layers, saved, strict=True):
            layer.trainable = trainable
    return AdaBNResult(len(layers), total, float(np.mean(shifts)))
