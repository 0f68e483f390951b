"""Do not pay for the frozen part of the network every epoch.

While the groups before ``trainable_from`` are frozen (their BatchNorm in inference mode), their
output depends only on the input image. The classifier is split at that boundary into a *prefix*
(frozen) and a *suffix* (what trains, sharing the classifier's layers); the prefix's output is
computed once per augmented *view* of every training image (``views`` views, each with its own
augmentation seed; one view when the recipe augments nothing) and once for the validation images.
Epoch ``e`` of the phase trains the suffix on view ``e % views``, shuffled by the epoch's seed.

``trainable_from == 5`` (only the head trains) caches the pooled features: a tiny array per
image. Smaller ``trainable_from`` caches feature maps at the group boundary, which is only done
while they fit in ``max_bytes``. MixUp/CutMix mix *images*, which mixed features cannot imitate,
so phases that mix are never cached.

Without augmentation the cached and uncached paths see the same batches in the same order and
give the same weights (up to float rounding); with augmentation the cached path sees ``views``
fixed draws instead of a fresh one per epoch.

Where the features come from is a :class:`FeatureSource`: the trainer's own
(:class:`FreshFeatures`, computed for the run) or the search's shared activations
(:class:`autotransfer.tuning.activations.ActivationStore`), which hands back what an earlier trial
computed for the same prefix, images, augmentation and seeds.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import keras
import numpy as np
import tensorflow as tf

from autotransfer.train.augment import is_identity, mixes
from autotransfer.train.data import TrainingInputs, epoch_seed, finish
from autotransfer.train.model import Classifier

#: default number of augmented views cached per training image
DEFAULT_VIEWS = 4
#: default limit on the memory the cached arrays may take
DEFAULT_MAX_BYTES = 2 * 2**30


@dataclass(frozen=True)
class CachePlan:
    """Whether a phase trains on cached activations, and why (recorded in ``metrics.json``)."""

    used: bool
    reason: str
    views: int = 0
    boundary: str = ""
    feature_shape: tuple[int, ...] = ()
    bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_cache(clf: Classifier, trainable_from: int, epochs: int, aug: Any, n_train: int, *,
               enabled: bool = True, views: int = DEFAULT_VIEWS,
               max_bytes: int = DEFAULT_MAX_BYTES) -> CachePlan:
    """Decide whether (and with how many views) a phase trains on cached activations."""
    if not enabled:
        return CachePlan(False, "feature caching is turned off")
    if trainable_from <= 0:
        return CachePlan(False, "every layer group trains: nothing is frozen")
    if mixes(aug):
        return CachePlan(False, "MixUp/CutMix mix images, which cached features cannot reproduce")
    boundary = clf.boundary(trainable_from)
    shape = tuple(int(d) for d in boundary.shape[1:])
    per_view = n_train * math.prod(shape) * 4
    wanted = 1 if is_identity(aug) else max(1, min(views, epochs))
    fitting = min(wanted, max_bytes // max(per_view, 1))
    name = "pooled features" if trainable_from >= len(clf.groups) else (
        f"output of group '{clf.groups[trainable_from - 1].name}'")
    if fitting < 1:
        why = (f"the {name} of the training set take {per_view / 2**30:.1f} GiB per view, above "
               f"the cache limit of {max_bytes / 2**30:.1f} GiB")
        return CachePlan(False, why, 0, name, shape)
    why = "no augmentation: one view is exact" if is_identity(aug) else (
        f"{fitting} augmented view(s) per image" + ("" if fitting == wanted else " (memory limit)"))
    return CachePlan(True, why, int(fitting), name, shape, int(per_view * fitting))


@dataclass(frozen=True)
class FeatureRequest:
    """What one phase asks of a :class:`FeatureSource`.

    ``state_key`` names everything the prefix's weights depend on besides the training images
    (backbone, weights, input size, pooling, crop, precision, seed, whether AdaBN ran before this
    phase); ``shareable`` is false when an earlier phase trained part of the prefix (the weights
    are then this run's own, and a source must compute the features afresh).
    """

    clf: Classifier
    trainable_from: int
    views: int
    inputs: TrainingInputs
    augmentation: Any
    seed: int
    phase: int
    batch_size: int
    state_key: str = ""
    shareable: bool = False
    verbose: int = 0
    #: the run's callbacks; a source may pass some of them to its ``predict`` passes (a search's
    #: store its trial deadlines), never all (``predict`` would rebind them to the prefix)
    callbacks: tuple[Any, ...] = ()

    def prefix(self) -> keras.Model:
        return keras.Model(self.clf.model.input, self.clf.boundary(self.trainable_from),
                           name="frozen_prefix")

    def view_data(self, view: int) -> tf.data.Dataset:
        """The training images of augmented view ``view``, in split order (its own seed)."""
        ds = self.inputs.train_epoch(self.augmentation, self.batch_size,
                                     epoch_seed(self.seed, self.phase, 10_000 + view),
                                     shuffle=False, augment=not is_identity(self.augmentation),
                                     mix=False)
        return ds.map(lambda x, y, w: x)

    def val_data(self) -> tf.data.Dataset:
        return self.inputs.eval_set("val", self.batch_size).map(lambda x, y: x)


def predict_features(prefix: keras.Model, ds: tf.data.Dataset, verbose: int = 0,
                     callbacks: Sequence[Any] = ()) -> np.ndarray:
    """``prefix``'s outputs on ``ds``; ``callbacks`` see the pass (a trial's deadline stops it)."""
    # float32 even under mixed_bfloat16 (exact: bfloat16 values are float32 values), so that
    # the exact head's statistics are not accumulated in bfloat16
    return np.asarray(prefix.predict(ds, verbose=verbose, callbacks=list(callbacks)),
                      dtype=np.float32)


class FrozenFeatures:
    """The frozen prefix's activations for one phase: ``views`` (one array per augmented view of
    the training images) and ``val``; and the datasets an epoch trains and validates on."""

    def __init__(self, views: Sequence[np.ndarray], val: np.ndarray, inputs: TrainingInputs, *,
                 build_seconds: float, shared: bool = False, reused_seconds: float = 0.0,
                 view_seconds: Sequence[float] = (), val_seconds: float = 0.0) -> None:
        self.views = list(views)
        self.val = val
        self.inputs = inputs
        self.build_seconds = build_seconds
        self.shared = shared
        self.reused_seconds = reused_seconds
        #: seconds of each view's pass and of the validation pass, when they were computed
        self.view_seconds = tuple(float(s) for s in view_seconds)
        self.val_seconds = float(val_seconds)

    def view_of_epoch(self, epoch: int) -> int:
        return epoch % len(self.views)

    def train_epoch(self, epoch: int, batch_size: int, seed: int) -> tf.data.Dataset:
        """The epoch's batches of ``(features, one-hot, sample weight)``, shuffled by ``seed``.

        The shuffle is the same ``tf.data`` shuffle (same seed, same size) as the uncached path,
        so both see the images in the same order.
        """
        inputs = self.inputs
        onehot = np.eye(inputs.n_classes, dtype=np.float32)[inputs.train_labels]
        weights = inputs.class_weight[inputs.train_labels]
        ds = tf.data.Dataset.from_tensor_slices(
            (self.views[self.view_of_epoch(epoch)], onehot, weights))
        ds = ds.shuffle(max(1, inputs.n_train), seed=seed, reshuffle_each_iteration=False)
        return finish(ds.batch(batch_size),
                      autotune_thread=inputs.autotune_thread).prefetch(tf.data.AUTOTUNE)

    def val_set(self, batch_size: int) -> tf.data.Dataset:
        onehot = np.eye(self.inputs.n_classes, dtype=np.float32)[self.inputs.val_labels]
        return finish(tf.data.Dataset.from_tensor_slices((self.val, onehot)).batch(batch_size),
                      autotune_thread=self.inputs.autotune_thread)


class FeatureSource(Protocol):
    """Where a phase's frozen features come from (the executor's one question about them)."""

    def frozen_features(self, request: FeatureRequest) -> FrozenFeatures:
        """The features of ``request.views`` views of the training images and of the
        validation images, through the prefix of ``request.clf`` ending before group
        ``request.trainable_from``."""
        ...


def compute_features(request: FeatureRequest, callbacks: Sequence[Any] = ()) -> FrozenFeatures:
    """Compute the request's views and validation features (nothing reused), ``callbacks``
    seeing each pass."""
    started = time.perf_counter()
    prefix = request.prefix()
    views, seconds = [], []
    for v in range(request.views):
        t = time.perf_counter()
        views.append(predict_features(prefix, request.view_data(v), request.verbose, callbacks))
        seconds.append(time.perf_counter() - t)
    t = time.perf_counter()
    val = predict_features(prefix, request.val_data(), request.verbose, callbacks)
    return FrozenFeatures(views, val, request.inputs,
                          build_seconds=time.perf_counter() - started, view_seconds=seconds,
                          val_seconds=time.perf_counter() - t)


class FreshFeatures:
    """The trainer's feature source: every request computed for this run.

    ``extractions`` counts the prefix passes (views and validation sets) it ran.
    """

    def __init__(self) -> None:
        self.extractions = 0

    def frozen_features(self, request: FeatureRequest) -> FrozenFeatures:
        self.extractions += request.views + 1
        return compute_features(request)


class FeatureCache(FrozenFeatures):
    """The features of one phase computed now (the trainer's cache, as one call)."""

    def __init__(self, clf: Classifier, trainable_from: int, plan: CachePlan,
                 inputs: TrainingInputs, aug: Any, *, seed: int, phase: int,
                 batch_size: int, verbose: int = 0) -> None:
        request = FeatureRequest(clf, trainable_from, plan.views, inputs, aug, seed, phase,
                                 batch_size, verbose=verbose)
        done = compute_features(request)
        super().__init__(done.views, done.val, inputs, build_seconds=done.build_seconds,
                         view_seconds=done.view_seconds, val_seconds=done.val_seconds)
        self.plan = plan
