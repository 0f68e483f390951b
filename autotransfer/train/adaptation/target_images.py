"""Decoded target images for training: the unlabelled records of a
:class:`~autotransfer.data.target.TargetSet`, read as the training images are read.

Only ``records`` (paths) are read; the target's ``eval_labels`` are never touched here.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from autotransfer.data.pipeline import make_dataset


def target_images(target: Any, image_size: int, *, crop: bool = True) -> tf.data.Dataset:
    """Unbatched float32 images in [0, 255] of every target image, in record order (cached)."""
    records = list(target.records)
    if not records:
        raise ValueError(f"the target folder '{target.root}' holds no images")
    # the records carry the empty label: one dummy class, dropped right away
    ds = make_dataset(records, target.root, [""], image_size, batch_size=64, cache=True,
                      crop=crop)
    ds = ds.unbatch().map(lambda x, y: tf.cast(x, tf.float32))
    return ds.apply(tf.data.experimental.assert_cardinality(len(records)))
