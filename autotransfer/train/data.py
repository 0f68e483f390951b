"""Training and evaluation inputs: decoded once, then one freshly seeded pipeline per epoch.

Images are decoded by the dataset layer's reader (:func:`autotransfer.data.pipeline.make_dataset`)
and cached (in memory, or in a file under the run folder for large datasets); each epoch derives
a pipeline from that cache with its own seed — shuffle order, augmentation, MixUp/CutMix — so an
interrupted run resumed at epoch ``e`` sees exactly the data the uninterrupted run would have.

Elements are ``(float32 images in [0, 255], one-hot labels, sample weights)``; sample weights
carry the class weights (and are mixed along with the labels by MixUp/CutMix).

Every pipeline here runs without tf.data's autotuning thread (:func:`finish`): each epoch's
``fit`` makes fresh iterators, and destroying one (as ``fit`` returns) waited for that thread's
next wake-up, 10 ms × (2^k − 1) after the iterator started: a 16–20 s epoch took 20.5 s, a
3.3–4 s one 5.1 s (docs/benchmarks/fit_tail.md).
``AUTOTUNE`` arguments still work without it (TensorFlow then uses its defaults; no epoch got
slower), and the elements and their order do not depend on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from autotransfer.data.models import ImageRecord
from autotransfer.data.pipeline import make_dataset, set_autotune
from autotransfer.data.splits import DataSplits
from autotransfer.train.augment import compose, make_augmenter, make_mixer

#: decoded training images above this many bytes are cached on disk rather than in memory
MEMORY_CACHE_BYTES = 4 * 2**30


def finish(ds: tf.data.Dataset, *, autotune_thread: bool = False) -> tf.data.Dataset:
    """``ds`` with the trainer's tf.data options: without the autotuning thread (see the
    module's docstring; ``autotune_thread=True`` turns it back on, as
    ``tools/bench_fit_tail.py`` does to measure what it cost), sharded by data under a
    distribution strategy."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return set_autotune(ds.with_options(options), autotune_thread)


def epoch_seed(seed: int, phase: int, epoch: int) -> int:
    """The seed of one epoch of one phase (shuffle, augmentation, dropout)."""
    return (seed * 1_000_003 + phase * 10_007 + epoch * 101 + 17) % (2**31 - 1)


def class_weights(labels: Sequence[int], n_classes: int, kind: str) -> np.ndarray:
    """Per-class weights: ones, or ``'balanced'``: ``n / (k * count_c)`` (scikit-learn's rule)."""
    if kind == "none":
        return np.ones(n_classes, dtype=np.float32)
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes).astype(np.float64)
    weights = np.where(counts > 0, len(labels) / (n_classes * np.maximum(counts, 1)), 0.0)
    return weights.astype(np.float32)


class TrainingInputs:
    """The decoded train / val (/ test) sets of a run and the per-epoch pipelines built on them."""

    def __init__(self, splits: DataSplits, image_size: int, *, crop: bool = True,
                 class_weighting: str = "none", cache_dir: str | Path | None = None,
                 autotune_thread: bool = False) -> None:
        self.splits = splits
        #: tf.data's autotuning thread in the pipelines built on these inputs (:func:`finish`;
        #: off: the trainer's, see the module's docstring)
        self.autotune_thread = autotune_thread
        self.class_names = list(splits.class_names)
        self.n_classes = len(self.class_names)
        self.image_size = image_size
        self.crop = crop
        index = {c: i for i, c in enumerate(self.class_names)}
        self.train_labels = np.asarray([index[r.label] for r in splits.train], dtype=np.int32)
        self.val_labels = np.asarray([index[r.label] for r in splits.val], dtype=np.int32)
        self.test_labels = np.asarray([index[r.label] for r in splits.test], dtype=np.int32)
        self.class_weight = class_weights(self.train_labels, self.n_classes, class_weighting)
        cache: bool | str = True
        if cache_dir is not None and len(splits.train) * image_size**2 * 3 > MEMORY_CACHE_BYTES:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            cache = str(Path(cache_dir) / "train")
        self._train = self._decoded(splits.train, cache)
        self._val = self._decoded(splits.val, True)
        self._test = self._decoded(splits.test, True) if splits.test else None

    @property
    def n_train(self) -> int:
        return len(self.splits.train)

    def steps_per_epoch(self, batch_size: int) -> int:
        return max(1, math.ceil(self.n_train / batch_size))

    def _decoded(self, records: list[ImageRecord], cache: bool | str) -> tf.data.Dataset:
        ds = make_dataset(records, self.splits.root, self.class_names, self.image_size,
                          batch_size=64, shuffle=False, cache=cache, crop=self.crop)
        return ds.unbatch().apply(tf.data.experimental.assert_cardinality(len(records)))

    def _finish(self, ds: tf.data.Dataset) -> tf.data.Dataset:
        return finish(ds, autotune_thread=self.autotune_thread).prefetch(tf.data.AUTOTUNE)

    def _labelled(self, ds: tf.data.Dataset) -> tf.data.Dataset:
        weights = tf.constant(self.class_weight)
        n = self.n_classes
        return ds.map(lambda x, y: (x, tf.one_hot(y, n), tf.gather(weights, y)),
                      num_parallel_calls=tf.data.AUTOTUNE)

    def train_epoch(self, aug: Any, batch_size: int, seed: int, *, shuffle: bool = True,
                    augment: bool = True, mix: bool = True) -> tf.data.Dataset:
        """One epoch of training batches: shuffled by ``seed``, augmented, optionally mixed."""
        ds = self._labelled(self._train)
        if shuffle:
            ds = ds.shuffle(max(1, self.n_train), seed=seed, reshuffle_each_iteration=False)
        ds = ds.batch(batch_size)
        augmenter = make_augmenter(aug, seed) if augment else None
        mixer = make_mixer(aug, seed) if mix else None
        transform = compose(augmenter, mixer)

        # Keras' random layers draw from a stateful seed generator: batches transformed in parallel
        # would consume it in a racy order, so this map is sequential (its ops use every core).
        parallel = None if (augmenter is not None or mixer is not None) else tf.data.AUTOTUNE
        return self._finish(ds.map(transform, num_parallel_calls=parallel))

    def eval_set(self, split: str, batch_size: int) -> tf.data.Dataset:
        """``(float images, one-hot)`` batches of ``split`` ('train', 'val' or 'test'), in order."""
        base = {"train": self._train, "val": self._val, "test": self._test}[split]
        if base is None:
            raise ValueError(f"the dataset has no {split} split")
        n = self.n_classes
        ds = base.map(lambda x, y: (tf.cast(x, tf.float32), tf.one_hot(y, n)),
                      num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
        return self._finish(ds)

    def labels(self, split: str) -> np.ndarray:
        return {"train": self.train_labels, "val": self.val_labels, "test": self.test_labels}[split]
