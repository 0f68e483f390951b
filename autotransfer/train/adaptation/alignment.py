"""Feature-alignment losses between a source and a target batch of features (Keras 3 ops).

* :func:`coral_loss` — Deep CORAL (Sun & Saenko 2016): the squared distance between the two
  batches' feature covariances, plus (as in the Transfer-Learning-Library) between their means.
  Both terms are averaged over the ``d`` (resp. ``d²``) entries, so the scale does not grow with
  the feature width.
* :func:`mmd_loss` — multi-kernel maximum mean discrepancy (Long et al. 2015, DAN): a sum of
  Gaussian kernels whose bandwidths are multiples ``2**k`` (k = -3..1) of the batch's mean squared
  pairwise distance. The biased (V-statistic) estimate is used: it is never negative and exactly
  0 when the two batches are equal, and batches may differ in size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from keras import ops

#: bandwidth multipliers of the MMD kernels (the reference implementation's ``2**k``, k=-3..1)
MMD_BANDWIDTHS = (0.125, 0.25, 0.5, 1.0, 2.0)


def _covariance(x: Any) -> tuple[Any, Any]:
    n = ops.cast(ops.shape(x)[0], x.dtype)
    mean = ops.mean(x, axis=0, keepdims=True)
    centred = x - mean
    return mean, ops.matmul(ops.transpose(centred), centred) / ops.maximum(n - 1.0, 1.0)


def coral_loss(source: Any, target: Any) -> Any:
    """``mean((μs-μt)²) + mean((Cs-Ct)²)`` of two ``(batch, d)`` feature batches."""
    source = ops.cast(source, "float32")
    target = ops.cast(target, "float32")
    mean_s, cov_s = _covariance(source)
    mean_t, cov_t = _covariance(target)
    return ops.mean(ops.square(mean_s - mean_t)) + ops.mean(ops.square(cov_s - cov_t))


def _squared_distances(x: Any) -> Any:
    norms = ops.sum(ops.square(x), axis=1, keepdims=True)
    return ops.maximum(norms + ops.transpose(norms) - 2.0 * ops.matmul(x, ops.transpose(x)), 0.0)


def mmd_loss(source: Any, target: Any,
             bandwidths: Sequence[float] = MMD_BANDWIDTHS) -> Any:
    """Squared multi-kernel MMD between two ``(batch, d)`` feature batches (biased estimate)."""
    source = ops.cast(source, "float32")
    target = ops.cast(target, "float32")
    n_s = ops.shape(source)[0]
    both = ops.concatenate([source, target], axis=0)
    d2 = _squared_distances(both)
    # the reference tracks the mean squared distance without gradient: the bandwidth is data
    scale = ops.stop_gradient(ops.mean(d2)) + 1e-8
    kernel = sum(ops.exp(-d2 / (2.0 * b * scale)) for b in bandwidths)
    k_ss = kernel[:n_s, :n_s]
    k_tt = kernel[n_s:, n_s:]
    k_st = kernel[:n_s, n_s:]
    return ops.maximum(ops.mean(k_ss) + ops.mean(k_tt) - 2.0 * ops.mean(k_st), 0.0)
