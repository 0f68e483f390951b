"""tf.data input pipelines: decode with the same reader as the profiler, resize, cache, batch.

Decoding goes through :func:`autotransfer.data.images.load_image` (Pillow), so every format,
EXIF orientation and colour mode is handled exactly as the profile saw it; Pillow releases the
GIL while decoding, so the parallel map keeps all cores busy.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from autotransfer.data.images import load_image
from autotransfer.data.models import ImageRecord
from autotransfer.data.splits import DataSplits


def set_autotune(ds: tf.data.Dataset, enabled: bool = False) -> tf.data.Dataset:
    """``ds`` with tf.data's autotuning thread off (or on). Every ``fit``, ``predict`` or loop over
    a dataset makes a fresh iterator, and destroying one waits for that thread's next wake-up,
    10 ms × (2^k − 1) after the iterator started: a 16–20 s epoch took 20.5 s
    (docs/benchmarks/fit_tail.md). ``AUTOTUNE`` arguments still work without it (TensorFlow
    then uses its defaults), and the elements and their order do not depend on it."""
    options = tf.data.Options()
    options.autotune.enabled = enabled
    return ds.with_options(options)


@dataclass(frozen=True)
class InputPipelines:
    """Batched datasets of ``(uint8 image [H, W, 3], int32 label)`` and their class order."""

    train: tf.data.Dataset
    val: tf.data.Dataset
    test: tf.data.Dataset | None
    class_names: list[str]
    splits: DataSplits


def make_dataset(
    records: list[ImageRecord],
    root: str | os.PathLike[str],
    class_names: list[str],
    image_size: int | tuple[int, int],
    *,
    batch_size: int = 32,
    shuffle: bool = False,
    seed: int = 0,
    cache: bool | str = True,
    crop: bool = True,
    drop_remainder: bool = False,
) -> tf.data.Dataset:
    """A batched dataset of ``records``; images are uint8 RGB of ``image_size``.

    ``cache=True`` keeps decoded images in memory after the first epoch, a string caches them in
    that file prefix; shuffling happens after the cache so every epoch sees a new order.
    """
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    index = {name: i for i, name in enumerate(class_names)}
    paths = [os.fsencode(Path(root, r.path)) for r in records]
    labels = np.asarray([index[r.label] for r in records], dtype=np.int32)

    def _decode(path: bytes) -> np.ndarray:
        return load_image(os.fsdecode(path), (height, width), crop=crop)

    def _load(path: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.numpy_function(_decode, [path], tf.uint8, stateful=False)
        image.set_shape((height, width, 3))
        return image, label

    ds = tf.data.Dataset.from_tensor_slices((tf.constant(paths, dtype=tf.string), labels))
    ds = ds.map(_load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if cache:
        ds = ds.cache("" if cache is True else str(cache))
    if shuffle:
        ds = ds.shuffle(max(1, len(records)), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    return set_autotune(ds).prefetch(tf.data.AUTOTUNE)


def make_pipelines(
    splits: DataSplits,
    image_size: int | tuple[int, int],
    *,
    batch_size: int = 32,
    seed: int = 0,
    cache: bool = True,
) -> InputPipelines:
    """Training (shuffled), validation and test pipelines for ``splits``."""
    common = dict(root=splits.root, class_names=splits.class_names, image_size=image_size,
                  batch_size=batch_size, cache=cache)  # fmt: skip
    return InputPipelines(
        train=make_dataset(splits.train, shuffle=True, seed=seed, **common),
        val=make_dataset(splits.val, **common),
        test=make_dataset(splits.test, **common) if splits.test else None,
        class_names=list(splits.class_names),
        splits=splits,
    )
