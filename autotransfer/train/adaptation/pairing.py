"""Pair every source batch with a batch of unlabelled target examples.

The target set (decoded images or cached features, no labels) is shuffled, repeated and batched
at the source batch size (dropping a ragged last batch, so every target batch is full), then
zipped with the source epoch: elements become ``((x_source, x_target), y_source[, weights])``.
A target set smaller than an epoch is cycled; a larger one is sampled. The shuffle seed is the
epoch's seed, so a resumed run pairs the same batches.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf


def target_batches(target: tf.data.Dataset | np.ndarray, batch_size: int, seed: int, *,
                   transform: Callable[[tf.Tensor], tf.Tensor] | None = None) -> tf.data.Dataset:
    """Endless, shuffled, full batches of unbatched target examples (images or features)."""
    ds = target if isinstance(target, tf.data.Dataset) else \
        tf.data.Dataset.from_tensor_slices(np.asarray(target))
    n = int(ds.cardinality().numpy())
    if n == 0:
        raise ValueError("the target set is empty: there is nothing to adapt to")
    buffer = n if n > 0 else 10_000
    ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(min(batch_size, n) if n > 0 else batch_size, drop_remainder=True)
    ds = ds.map(lambda x: tf.cast(x, tf.float32))
    if transform is not None:
        ds = ds.map(transform)
    return ds


def pair_with_target(source: tf.data.Dataset, target: tf.data.Dataset | np.ndarray,
                     batch_size: int, seed: int, *,
                     transform: Callable[[tf.Tensor], tf.Tensor] | None = None
                     ) -> tf.data.Dataset:
    """``source`` batches ``(x, y[, w])`` -> ``((x, x_target), y[, w])``; ends with ``source``."""
    targets = target_batches(target, batch_size, seed, transform=transform)

    def join(batch: Any, x_t: tf.Tensor) -> Any:
        x, *rest = batch
        return ((x, x_t), *rest)

    return tf.data.Dataset.zip((source, targets)).map(join).prefetch(tf.data.AUTOTUNE)
