"""Losses on the target predictions alone: entropy minimisation and minimum class confusion.

* :func:`entropy_loss` — the mean Shannon entropy of the target predictions (entropy
  minimisation, Grandvalet & Bengio 2005; the "E" of many adaptation methods).
* :func:`mcc_loss` — Minimum Class Confusion (Jin et al. 2020): the temperature-rescaled target
  predictions form a class-correlation matrix, examples weighted by certainty (``1 + exp(-H)``,
  normalised to the batch size), rows normalised; the loss is the off-diagonal mass over the
  number of classes — 0 when every example is confidently one class, high when the batch's
  predictions confuse classes.

Predictions come as probabilities (the classifier ends in softmax); ``log p`` is used as logits,
which softmax maps back to ``p`` exactly.
"""

from __future__ import annotations

from typing import Any

from keras import ops

EPS = 1e-7


def entropy(probs: Any) -> Any:
    """Per-example entropy (nats) of ``(batch, classes)`` probabilities."""
    probs = ops.cast(probs, "float32")
    return -ops.sum(probs * ops.log(probs + EPS), axis=1)


def entropy_loss(probs: Any) -> Any:
    """Mean entropy of the target predictions."""
    return ops.mean(entropy(probs))


def mcc_loss(probs: Any, temperature: float = 2.5) -> Any:
    """Minimum class confusion of the ``(batch, classes)`` target probabilities."""
    probs = ops.cast(probs, "float32")
    n_classes = ops.cast(ops.shape(probs)[1], "float32")
    batch = ops.cast(ops.shape(probs)[0], "float32")
    scaled = ops.softmax(ops.log(probs + EPS) / temperature, axis=1)
    weight = 1.0 + ops.exp(-ops.stop_gradient(entropy(scaled)))
    weight = ops.expand_dims(batch * weight / ops.sum(weight), 1)
    confusion = ops.matmul(ops.transpose(scaled * weight), scaled)
    confusion = confusion / ops.sum(confusion, axis=1, keepdims=True)
    return (ops.sum(confusion) - ops.trace(confusion)) / n_classes
