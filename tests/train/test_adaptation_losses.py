"""The adaptation losses: ~0 for identical source and target batches, larger for shifted ones."""

from __future__ import annotations

import numpy as np
import pytest

from autotransfer.train.adaptation.adversarial import (grl_coefficient, make_discriminator,
                                                       multilinear_map, reverse_gradient)
from autotransfer.train.adaptation.alignment import coral_loss, mmd_loss
from autotransfer.train.adaptation.confusion import entropy_loss, mcc_loss


def _batches(shift: float, n: int = 48, d: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    source = rng.normal(size=(n, d)).astype("float32")
    target = (rng.normal(size=(n, d)) * (1 + shift) + shift).astype("float32")
    return source, target


@pytest.mark.parametrize("loss", [coral_loss, mmd_loss])
def test_alignment_losses_are_zero_for_identical_batches_and_grow_with_shift(loss):
    source, _ = _batches(0.0)
    assert float(loss(source, source)) == pytest.approx(0.0, abs=1e-5)
    values = [float(loss(*_batches(shift))) for shift in (0.0, 0.5, 2.0)]
    assert values[0] < values[1] < values[2]
    assert values[2] > 10 * max(values[0], 1e-4)


def test_mmd_takes_batches_of_different_sizes():
    source, target = _batches(1.0)
    assert float(mmd_loss(source, target[:20])) > float(mmd_loss(source, source[:20]))


def test_mcc_and_entropy_are_small_for_confident_predictions_and_large_for_confused_ones():
    confident = np.eye(4, dtype="float32")[np.arange(32) % 4] * 0.9996 + 0.0001
    confused = np.full((32, 4), 0.25, dtype="float32")
    # MCC rescales by temperature 2.5 first, which softens even confident predictions
    assert float(mcc_loss(confident)) < 0.15 < 0.7 < float(mcc_loss(confused))
    assert float(mcc_loss(confident, temperature=1.0)) < 0.01
    assert float(entropy_loss(confident)) < 0.01
    assert float(entropy_loss(confused)) == pytest.approx(np.log(4), rel=1e-4)


def test_gradient_reversal_is_identity_forward_and_negated_backward():
    import tensorflow as tf

    x = tf.constant([[1.0, -2.0, 3.0]])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = reverse_gradient(x, 0.5)
        total = tf.reduce_sum(y * tf.constant([[1.0, 2.0, 3.0]]))
    np.testing.assert_allclose(y.numpy(), x.numpy(), rtol=1e-6)
    np.testing.assert_allclose(tape.gradient(total, x).numpy(), [[-0.5, -1.0, -1.5]], rtol=1e-6)
    assert float(grl_coefficient(0, 100)) == pytest.approx(0.0)
    assert float(grl_coefficient(100, 100)) == pytest.approx(1.0, abs=1e-4)
    assert float(grl_coefficient(3, 0)) == 1.0


def _trained_discriminator_loss(method: str, shift: float) -> float:
    """Domain loss after the discriminator trains (no reversal) on source vs target."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    source, target = _batches(shift, n=64)
    if shift == 0:
        target = source  # the very same images in both domains
    probs = np.full((64, 3), 1 / 3, dtype="float32")
    disc = make_discriminator(16, 8, 3 if method == "cdan" else None)
    opt = keras.optimizers.Adam(0.01)
    opt.build(disc.trainable_variables)

    @tf.function
    def step() -> None:
        with tf.GradientTape() as tape:
            if method == "dann":
                loss = disc.dann_loss(source, target, 0.0)
            else:
                loss = disc.cdan_loss(source, probs, target, probs, 0.0)
        grads = tape.gradient(loss, disc.trainable_variables)
        opt.apply(grads, disc.trainable_variables)

    for _ in range(150):
        step()
    if method == "dann":
        return float(disc.dann_loss(source, target, 0.0, training=False))
    return float(disc.cdan_loss(source, probs, target, probs, 0.0, training=False))


@pytest.mark.parametrize("method", ["dann", "cdan"])
def test_adversarial_losses_tell_shifted_domains_apart_but_not_identical_ones(method):
    # a discriminator cannot beat chance (ln 2) on identical domains; on shifted ones it can
    same = _trained_discriminator_loss(method, 0.0)
    shifted = _trained_discriminator_loss(method, 2.0)
    assert same > 0.6 and shifted < 0.35


def test_cdan_uses_the_randomised_map_for_wide_inputs():
    disc = make_discriminator(8, 512, 10)
    assert disc.random is not None
    f = np.ones((4, 512), "float32")
    p = np.full((4, 10), 0.1, "float32")
    assert tuple(multilinear_map(f, p, disc.random).shape) == (4, 1024)
    assert tuple(multilinear_map(f[:, :4], p).shape) == (4, 40)
