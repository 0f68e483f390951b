"""Augmentation layers from the recipe, and MixUp / CutMix on batches."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from autotransfer.recipe.schema import Augmentation
from autotransfer.train.augment import (augmentation_layers, cutmix, is_identity,
                                        make_augmenter, make_mixer, mixup, random_rot90)

NONE = Augmentation(horizontal_flip=False, zoom=0.0, translation=0.0)


def test_identity_and_layer_mapping():
    assert is_identity(NONE) and augmentation_layers(NONE, 0) == []
    full = Augmentation(horizontal_flip=True, vertical_flip=True, rotation=0.1, zoom=0.2,
                        translation=0.05, brightness=0.2, contrast=0.3, saturation=0.5, hue=0.1)
    layers = augmentation_layers(full, 0)
    kinds = [type(layer).__name__ for layer in layers]
    assert kinds == ["RandomFlip", "RandomRotation", "RandomZoom", "RandomTranslation",
                     "RandomBrightness", "RandomContrast", "RandomSaturation", "RandomHue"]
    assert layers[0].mode == "horizontal_and_vertical"
    assert layers[1].factor == (-0.1, 0.1) or tuple(layers[1].factor) == (-0.1, 0.1)
    # saturation multiplier f / (1 - f) spans [1 - s, 1 + s]
    low, high = layers[6].factor
    assert low / (1 - low) == pytest.approx(0.5) and high / (1 - high) == pytest.approx(1.5)
    assert layers[7].factor[1] == pytest.approx(0.2)  # RandomHue shifts by factor / 2


def test_identity_augmenter_returns_the_images_as_float():
    x = tf.constant(np.random.default_rng(0).integers(0, 256, (4, 8, 8, 3)), tf.uint8)
    np.testing.assert_array_equal(make_augmenter(NONE, 0)(x).numpy(), x.numpy().astype("float32"))


def test_augmenter_changes_images_and_stays_in_range():
    aug = Augmentation(horizontal_flip=True, rotation=0.2, zoom=0.2, brightness=0.3)
    x = tf.constant(np.random.default_rng(1).uniform(0, 255, (8, 16, 16, 3)), tf.float32)
    y = make_augmenter(aug, 3)(x).numpy()
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 255
    assert not np.allclose(y, x.numpy())


def test_rot90_rotates_each_image_by_a_multiple_of_90_degrees():
    x = tf.constant(np.random.default_rng(2).uniform(0, 255, (16, 6, 6, 3)), tf.float32)
    y = random_rot90(x, seed=1).numpy()
    for a, b in zip(x.numpy(), y):
        assert any(np.array_equal(np.rot90(a, k), b) for k in range(4))


@pytest.mark.parametrize("op", [mixup, cutmix])
def test_mixing_keeps_label_mass_and_mixes_weights_alike(op):
    n = 8
    x = tf.constant(np.arange(n, dtype="float32")[:, None, None, None] * np.ones((1, 8, 8, 3),
                                                                              "float32"))
    y = tf.one_hot(tf.range(n) % 4, 4)
    w = tf.constant(np.arange(1, n + 1, dtype="float32"))
    mx, my, mw = op(x, y, w, 1.0, seed=5)
    np.testing.assert_allclose(my.numpy().sum(axis=1), 1.0, rtol=1e-6)
    assert mw.shape == (n,) and mx.shape == x.shape
    assert not np.allclose(my.numpy(), y.numpy())


def test_cutmix_label_share_equals_pasted_area():
    x = tf.concat([tf.zeros((1, 10, 10, 3)), tf.ones((1, 10, 10, 3))], axis=0)
    y = tf.constant([[1.0, 0.0], [0.0, 1.0]])
    w = tf.ones(2)
    for seed in range(5):
        mx, my, _ = cutmix(x, y, w, 1.0, seed=seed)
        pasted = mx.numpy()[0, ..., 0].mean()  # share of image 0 covered by image 1's ones
        partner_is_other = my.numpy()[0, 1] > 0 or pasted > 0
        if partner_is_other:
            assert my.numpy()[0, 1] == pytest.approx(pasted, abs=1e-6)


def test_make_mixer_only_when_asked():
    assert make_mixer(NONE, 0) is None
    both = Augmentation(mixup_alpha=0.2, cutmix_alpha=1.0)
    mixer = make_mixer(both, 0)
    x = tf.random.uniform((4, 8, 8, 3))
    out = mixer(x, tf.one_hot([0, 1, 2, 3], 4), tf.ones(4))
    assert [t.shape for t in out] == [(4, 8, 8, 3), (4, 4), (4,)]
    keras.backend.clear_session()
