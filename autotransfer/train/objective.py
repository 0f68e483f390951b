"""What one epoch-trained phase fits: the model and its data (the executor's one plug-in point).

The executor (:mod:`.executor`) sets the trainable groups, runs AdaBN, obtains the frozen
features, builds the optimizer (schedule, per-group rates, weight decay), compiles, seeds every
epoch, early-stops and keeps the best weights. *What* it fits each epoch comes from a
:class:`PhaseObjective`: :class:`Supervised` (the default) fits the classifier (or its trainable
suffix, on frozen features) to the labelled training images. A domain-adaptation method is another
objective: it returns a Keras model with its own ``train_step`` (e.g. fed
``((source_x, target_x), y, w)`` batches) and the dataset that yields them. The executor compiles
that model with the phase's optimizer, the recipe's loss (label smoothing) and ``accuracy``, and
calls ``fit(epoch_data(e, seed), validation_data=val_data)``; validation stays supervised.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import keras
import tensorflow as tf

from autotransfer.train.data import TrainingInputs
from autotransfer.train.feature_cache import FrozenFeatures
from autotransfer.train.model import Classifier


@dataclass(frozen=True)
class PhaseContext:
    """What an objective may use to build a phase's training: the recipe and phase index, the
    classifier (groups before ``trainable_from`` already frozen), the decoded inputs, the frozen
    features when the phase trains on them (else ``None``) and the batch size in force."""

    recipe: Any
    index: int
    clf: Classifier
    inputs: TrainingInputs
    features: FrozenFeatures | None
    batch_size: int

    @property
    def phase(self) -> Any:
        return self.recipe.phases[self.index]

    def prefix_model(self) -> keras.Model | None:
        """The frozen prefix (images -> what ``features`` hold), e.g. to compute the target
        images' features the same way; ``None`` when the phase trains on images."""
        if self.features is None:
            return None
        return keras.Model(self.clf.model.input, self.clf.boundary(self.phase.trainable_from),
                           name="frozen_prefix")


@dataclass(frozen=True)
class PhaseTraining:
    """The model one phase fits and its data.

    ``model`` must train the classifier's own variables (``clf.model``, its suffix, or a model
    that wraps them): the executor builds the optimizer from ``clf``'s per-group rates and keeps
    the best weights of ``clf.model``. ``epoch_data(epoch, seed)`` gives epoch ``epoch``'s
    batches (shuffled and augmented from ``seed``, the executor's epoch seed); ``val_data`` gives
    ``(x, one-hot)`` batches that ``model`` evaluates (its ``test_step``).
    """

    model: keras.Model
    epoch_data: Callable[[int, int], tf.data.Dataset]
    val_data: tf.data.Dataset


class PhaseObjective(Protocol):
    """Builds what a phase fits; :class:`Supervised` is the default."""

    def uses_frozen_features(self, recipe: Any, index: int) -> bool:
        """Whether phase ``index`` may train on cached frozen features (``False``: images)."""
        ...

    def training(self, context: PhaseContext) -> PhaseTraining:
        ...


def after_phases(objective: Any, clf: Classifier, inputs: TrainingInputs) -> None:
    """The objective's optional ``after_phases(clf, inputs)`` (e.g. AdaBN on target images once
    the last phase trained); the executor calls it when every phase has run."""
    step = getattr(objective, "after_phases", None)
    if step is not None:
        step(clf, inputs)


class Supervised:
    """Cross-entropy on the labelled training images (or on their frozen features)."""

    def uses_frozen_features(self, recipe: Any, index: int) -> bool:
        return True

    def training(self, context: PhaseContext) -> PhaseTraining:
        c, bs, features = context, context.batch_size, context.features
        if features is not None:
            suffix = keras.Model(c.clf.boundary(c.phase.trainable_from), c.clf.model.output,
                                 name="trainable_suffix")
            return PhaseTraining(suffix, lambda epoch, seed: features.train_epoch(epoch, bs, seed),
                                 features.val_set(bs))
        augmentation = c.recipe.augmentation
        return PhaseTraining(c.clf.model,
                             lambda epoch, seed: c.inputs.train_epoch(augmentation, bs, seed),
                             c.inputs.eval_set("val", bs))
