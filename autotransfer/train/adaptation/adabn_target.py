"""AdaBN towards the target (Li et al. 2016): the source-trained network with the target's
BatchNorm statistics.

The model trains on the source as usual; afterwards every BN layer's moving mean and variance are
replaced by the population statistics of the unlabelled target images (one pass, see
:func:`autotransfer.backbones.adabn.adapt_batchnorm`), so the shipped model normalises target
images by their own statistics.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

try:  # the AdaBN code lives with the backbones (older trees: in train/)
    from autotransfer.backbones.adabn import AdaBNResult, adapt_batchnorm
except ImportError:  # pragma: no cover
    from autotransfer.train.adabn import AdaBNResult, adapt_batchnorm  # type: ignore[no-redef]


def adapt_to_target(model: keras.Model, target: tf.data.Dataset, batch_size: int) -> AdaBNResult:
    """Set ``model``'s BN statistics to those of the unbatched target images ``target``."""
    return adapt_batchnorm(model, target.batch(batch_size).prefetch(tf.data.AUTOTUNE))


def describe(result: Any) -> str:
    return (f"AdaBN on the target: {result.n_layers} BatchNorm layers re-estimated on "
            f"{result.n_images} target images (mean shift {result.mean_abs_shift:.3f} s.d.)")
