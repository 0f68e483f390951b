"""The recipe's augmentation as Keras preprocessing layers, and MixUp/CutMix as tf.data ops.

It lives in the data layer because it is part of the input pipeline: the trainer applies it to
every training batch (:mod:`autotransfer.train.data`), and the probe times it on this machine
for the epoch estimate (:mod:`autotransfer.probes.step_time`); :mod:`autotransfer.train.augment`
re-exports it.

Everything runs in the input pipeline on batches of float32 RGB in [0, 255] (training only), so
the trained model holds no augmentation and the feature cache can compute augmented views with
the same code. Magnitudes map to Keras' layers as follows:

=================  ==========================================================================
recipe field       Keras layer
=================  ==========================================================================
horizontal_flip    ``RandomFlip("horizontal")`` (``"horizontal_and_vertical"`` with vertical)
vertical_flip      ``RandomFlip("vertical")``
rotate90           random multiple of 90° per image (square inputs)
rotation r         ``RandomRotation(r)``: up to ``r`` of a full turn either way
zoom z             ``RandomZoom((-z, z))``: zoom in or out by up to ``z``
translation t      ``RandomTranslation(t, t)``: shift by up to ``t`` of the side
brightness b       ``RandomBrightness(b)``: add up to ``b * 255``
contrast c         ``RandomContrast(c)``: contrast factor in ``[1 - c, 1 + c]``
saturation s       ``RandomSaturation``: saturation multiplied by a factor in ``[1 - s, 1 + s]``
hue h              ``RandomHue(2 h)``: hue shifted by up to ``h`` of the colour circle
=================  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf


def is_identity(aug: Any) -> bool:
    """True when the augmentation changes no image (MixUp/CutMix aside)."""
    return not (aug.horizontal_flip or aug.vertical_flip or aug.rotate90 or aug.rotation
                or aug.zoom or aug.translation or aug.brightness or aug.contrast
                or aug.saturation or aug.hue)


def mixes(aug: Any) -> bool:
    return aug.mixup_alpha > 0 or aug.cutmix_alpha > 0


def augmentation_layers(aug: Any, seed: int) -> list[keras.layers.Layer]:
    """The Keras preprocessing layers of ``aug`` (geometric first, then photometric)."""
    layers: list[keras.layers.Layer] = []
    s = iter(range(seed * 101 + 1, seed * 101 + 100))
    if aug.horizontal_flip or aug.vertical_flip:
        mode = ("horizontal_and_vertical" if aug.horizontal_flip and aug.vertical_flip
                else "horizontal" if aug.horizontal_flip else "vertical")
        layers.append(keras.layers.RandomFlip(mode, seed=next(s)))
    if aug.rotation:
        layers.append(keras.layers.RandomRotation(aug.rotation, fill_mode="reflect", seed=next(s)))
    if aug.zoom:
        layers.append(keras.layers.RandomZoom((-aug.zoom, aug.zoom), fill_mode="reflect",
                                              seed=next(s)))
    if aug.translation:
        layers.append(keras.layers.RandomTranslation(aug.translation, aug.translation,
                                                     fill_mode="reflect", seed=next(s)))
    if aug.brightness:
        layers.append(keras.layers.RandomBrightness(aug.brightness, value_range=(0, 255),
                                                    seed=next(s)))
    if aug.contrast:
        layers.append(keras.layers.RandomContrast(aug.contrast, value_range=(0, 255),
                                                  seed=next(s)))
    if aug.saturation:
        # RandomSaturation multiplies saturation by f / (1 - f); [1 - s, 1 + s] -> f range below
        low, high = 1 - aug.saturation, 1 + aug.saturation
        layers.append(keras.layers.RandomSaturation((low / (1 + low), high / (1 + high)),
                                                    value_range=(0, 255), seed=next(s)))
    if aug.hue:
        layers.append(keras.layers.RandomHue(min(1.0, 2 * aug.hue), value_range=(0, 255),
                                             seed=next(s)))
    return layers


def random_rot90(images: tf.Tensor, seed: int) -> tf.Tensor:
    """Rotate each (square) image of a batch by a random multiple of 90°."""
    k = tf.random.uniform([tf.shape(images)[0]], 0, 4, dtype=tf.int32, seed=seed)
    options = tf.stack([tf.image.rot90(images, i) for i in range(4)], axis=0)
    return tf.gather(tf.transpose(options, [1, 0, 2, 3, 4]), k, batch_dims=1)


def make_augmenter(aug: Any, seed: int) -> Callable[[tf.Tensor], tf.Tensor]:
    """A function of a float32 image batch in [0, 255] that applies ``aug`` (training)."""
    layers = augmentation_layers(aug, seed)
    flips = [la for la in layers if isinstance(la, keras.layers.RandomFlip)]
    others = [la for la in layers if not isinstance(la, keras.layers.RandomFlip)]
    rot90 = bool(aug.rotate90)

    def apply(images: tf.Tensor) -> tf.Tensor:
        x = tf.cast(images, tf.float32)
        for layer in flips:
            x = layer(x, training=True)
        if rot90:
            x = random_rot90(x, seed)
        for layer in others:
            x = layer(x, training=True)
        return tf.clip_by_value(x, 0.0, 255.0)

    return apply


def _beta(alpha: float, shape: Any, seed: int) -> tf.Tensor:
    a = tf.random.gamma(shape, alpha, seed=seed)
    b = tf.random.gamma(shape, alpha, seed=seed + 1)
    return a / (a + b)


def mixup(images: tf.Tensor, labels: tf.Tensor, weights: tf.Tensor, alpha: float,
          seed: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """MixUp (Zhang et al. 2018): each image blended with a random partner of the batch."""
    n = tf.shape(images)[0]
    partner = tf.random.shuffle(tf.range(n), seed=seed)
    lam = _beta(alpha, [n], seed + 2)
    lam_x = tf.reshape(lam, [-1, 1, 1, 1])
    lam_y = tf.reshape(lam, [-1, 1])
    mixed = lam_x * images + (1 - lam_x) * tf.gather(images, partner)
    return (mixed, lam_y * labels + (1 - lam_y) * tf.gather(labels, partner),
            lam * weights + (1 - lam) * tf.gather(weights, partner))


def cutmix(images: tf.Tensor, labels: tf.Tensor, weights: tf.Tensor, alpha: float,
           seed: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """CutMix (Yun et al. 2019): a box from a random partner; labels mixed by the box's area."""
    shape = tf.shape(images)
    n, height, width = shape[0], shape[1], shape[2]
    partner = tf.random.shuffle(tf.range(n), seed=seed)
    lam = _beta(alpha, [], seed + 2)
    ratio = tf.sqrt(1.0 - lam)
    cut_h = tf.cast(tf.cast(height, tf.float32) * ratio, tf.int32)
    cut_w = tf.cast(tf.cast(width, tf.float32) * ratio, tf.int32)
    cy = tf.random.uniform([], 0, height, dtype=tf.int32, seed=seed + 3)
    cx = tf.random.uniform([], 0, width, dtype=tf.int32, seed=seed + 4)
    y0 = tf.clip_by_value(cy - cut_h // 2, 0, height)
    y1 = tf.clip_by_value(cy + cut_h // 2, 0, height)
    x0 = tf.clip_by_value(cx - cut_w // 2, 0, width)
    x1 = tf.clip_by_value(cx + cut_w // 2, 0, width)
    rows = tf.logical_and(tf.range(height) >= y0, tf.range(height) < y1)
    cols = tf.logical_and(tf.range(width) >= x0, tf.range(width) < x1)
    box = tf.cast(tf.logical_and(rows[:, None], cols[None, :]), images.dtype)[None, :, :, None]
    mixed = images * (1 - box) + tf.gather(images, partner) * box
    kept = 1.0 - tf.cast((y1 - y0) * (x1 - x0), tf.float32) / tf.cast(height * width, tf.float32)
    return (mixed, kept * labels + (1 - kept) * tf.gather(labels, partner),
            kept * weights + (1 - kept) * tf.gather(weights, partner))


def make_mixer(aug: Any, seed: int) -> Callable[..., Any] | None:
    """MixUp, CutMix, or (both asked) one of the two at random per batch; ``None`` if neither."""
    if not mixes(aug):
        return None

    def apply(images: tf.Tensor, labels: tf.Tensor, weights: tf.Tensor) -> Any:
        if aug.mixup_alpha > 0 and aug.cutmix_alpha > 0:
            coin = tf.random.uniform([], seed=seed + 7) < 0.5
            return tf.cond(coin, lambda: mixup(images, labels, weights, aug.mixup_alpha, seed),
                           lambda: cutmix(images, labels, weights, aug.cutmix_alpha, seed))
        if aug.mixup_alpha > 0:
            return mixup(images, labels, weights, aug.mixup_alpha, seed)
        return cutmix(images, labels, weights, aug.cutmix_alpha, seed)

    return apply


def compose(augmenter: Callable[[tf.Tensor], tf.Tensor] | None,
            mixer: Callable[..., Any] | None) -> Callable[..., Any]:
    """The trainer's per-batch transform of ``(images, one-hot, weights)``: the images as
    float32, through ``augmenter``, then ``mixer`` (MixUp/CutMix); either may be None."""

    def transform(x: tf.Tensor, y: tf.Tensor, w: tf.Tensor) -> Any:
        x = augmenter(x) if augmenter is not None else tf.cast(x, tf.float32)
        return mixer(x, y, w) if mixer is not None else (x, y, w)

    return transform
