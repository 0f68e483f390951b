"""Adversarial alignment: gradient reversal, the domain discriminator, DANN and CDAN.

* :func:`reverse_gradient` — identity forward, gradient multiplied by ``-coefficient`` backward
  (Ganin et al. 2016), written as ``stop_gradient(x·(1+c)) - c·x`` so that it is plain Keras ops.
* :func:`grl_coefficient` — the warm start ``2/(1+exp(-10 p)) - 1`` with ``p = step/ramp_steps``.
* :class:`DomainDiscriminator` — two hidden ReLU layers (dropout 0.5 as in the reference code)
  and one logit: source = 1, target = 0.
* DANN (:meth:`DomainDiscriminator.dann_loss`): the discriminator classifies reversed features;
  its binary cross-entropy is minimised by the discriminator and maximised by the features.
* CDAN (:func:`multilinear_map`, :meth:`DomainDiscriminator.cdan_loss`, Long et al. 2018): the
  discriminator sees the outer product of features and (gradient-stopped) class predictions,
  or its randomised form when ``d × classes`` exceeds :data:`RANDOMIZED_ABOVE`; with entropy
  conditioning (CDAN+E) certain examples weigh more: ``1 + exp(-H)``, normalised per domain.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from autotransfer.train.adaptation.confusion import entropy

#: above this many multilinear entries CDAN uses the randomised map (reference: 4096, dim 1024)
RANDOMIZED_ABOVE = 4096
RANDOMIZED_DIM = 1024


def reverse_gradient(x: Any, coefficient: Any) -> Any:
    """Identity forward; the gradient is multiplied by ``-coefficient``."""
    c = ops.cast(coefficient, x.dtype)
    return ops.stop_gradient(x * (1.0 + c)) - c * x


def grl_coefficient(step: Any, ramp_steps: int) -> Any:
    """``2 / (1 + exp(-10 p)) - 1`` with ``p = min(step / ramp_steps, 1)``; 1 when no ramp."""
    if ramp_steps <= 0:
        return ops.convert_to_tensor(1.0)
    p = ops.minimum(ops.cast(step, "float32") / float(ramp_steps), 1.0)
    return 2.0 / (1.0 + ops.exp(-10.0 * p)) - 1.0


def multilinear_map(features: Any, probs: Any, random: tuple[Any, Any] | None = None) -> Any:
    """``features ⊗ probs`` flattened (batch, d·C), or ``(f Rf) ⊙ (g Rg) / sqrt(dim)``."""
    if random is not None:
        rf, rg = random
        dim = float(rf.shape[1])
        return ops.matmul(features, rf) * ops.matmul(probs, rg) / np.sqrt(dim)
    outer = ops.expand_dims(probs, 2) * ops.expand_dims(features, 1)  # (batch, C, d)
    return ops.reshape(outer, (ops.shape(features)[0], -1))


def _bce(logits: Any, label: float) -> Any:
    labels = ops.full_like(logits, label)
    return ops.reshape(ops.binary_crossentropy(labels, logits, from_logits=True), (-1,))


class DomainDiscriminator(keras.layers.Layer):
    """Features (or CDAN's multilinear map) -> one domain logit; source 1, target 0."""

    def __init__(self, units: int = 256, dropout: float = 0.5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.hidden1 = keras.layers.Dense(units, activation="relu", dtype="float32")
        self.hidden2 = keras.layers.Dense(units, activation="relu", dtype="float32")
        self.drop1 = keras.layers.Dropout(dropout)
        self.drop2 = keras.layers.Dropout(dropout)
        self.out = keras.layers.Dense(1, dtype="float32")
        self.random: tuple[Any, Any] | None = None

    def build(self, input_shape: Any) -> None:
        self.hidden1.build(input_shape)
        self.hidden2.build((input_shape[0], self.hidden1.units))
        self.out.build((input_shape[0], self.hidden2.units))

    def call(self, x: Any, training: bool | None = None) -> Any:
        x = self.drop1(self.hidden1(x), training=training)
        x = self.drop2(self.hidden2(x), training=training)
        return self.out(x)

    # ------------------------------------------------------------------ losses
    def dann_loss(self, f_s: Any, f_t: Any, coefficient: Any, training: bool = True) -> Any:
        """Domain cross-entropy (mean of the two domains) on gradient-reversed features."""
        f = reverse_gradient(ops.concatenate([ops.cast(f_s, "float32"),
                                              ops.cast(f_t, "float32")], 0), coefficient)
        logits = self(f, training=training)
        n_s = ops.shape(f_s)[0]
        return 0.5 * (ops.mean(_bce(logits[:n_s], 1.0)) + ops.mean(_bce(logits[n_s:], 0.0)))

    def cdan_loss(self, f_s: Any, p_s: Any, f_t: Any, p_t: Any, coefficient: Any, *,
                  entropy_conditioning: bool = True, training: bool = True) -> Any:
        """CDAN(+E): domain cross-entropy on the reversed multilinear map of features and
        (gradient-stopped) predictions."""
        f = ops.concatenate([ops.cast(f_s, "float32"), ops.cast(f_t, "float32")], 0)
        p = ops.stop_gradient(ops.concatenate([ops.cast(p_s, "float32"),
                                               ops.cast(p_t, "float32")], 0))
        h = reverse_gradient(multilinear_map(f, p, self.random), coefficient)
        logits = self(h, training=training)
        n_s = ops.shape(f_s)[0]
        loss_s, loss_t = _bce(logits[:n_s], 1.0), _bce(logits[n_s:], 0.0)
        if not entropy_conditioning:
            return 0.5 * (ops.mean(loss_s) + ops.mean(loss_t))
        w = ops.stop_gradient(1.0 + ops.exp(-entropy(p)))
        w_s, w_t = w[:n_s], w[n_s:]
        # the reference normalises each domain's weights to sum to 1, then averages the domains
        return 0.5 * (ops.sum(w_s * loss_s) / ops.sum(w_s) + ops.sum(w_t * loss_t) / ops.sum(w_t))


def make_discriminator(units: int, feature_dim: int, n_classes: int | None, *,
                       seed: int = 0) -> DomainDiscriminator:
    """A built discriminator for DANN (``n_classes`` None) or CDAN (multilinear input)."""
    disc = DomainDiscriminator(units, name="domain_discriminator")
    if n_classes is None:
        disc.build((None, feature_dim))
        return disc
    if feature_dim * n_classes > RANDOMIZED_ABOVE:
        rng = np.random.default_rng(seed)
        disc.random = (ops.convert_to_tensor(rng.standard_normal(
                           (feature_dim, RANDOMIZED_DIM)).astype("float32")),
                       ops.convert_to_tensor(rng.standard_normal(
                           (n_classes, RANDOMIZED_DIM)).astype("float32")))
        disc.build((None, RANDOMIZED_DIM))
    else:
        disc.build((None, feature_dim * n_classes))
    return disc
