"""Domain adaptation as the executor's phase objective (:mod:`autotransfer.train.objective`).

:func:`objective_for` turns a recipe and the unlabelled target images (a
:class:`~autotransfer.data.target.TargetSet`) into the object the one phase executor runs:

* loss methods (coral, mmd, mcc, entropy, dann, cdan): every epoch-trained phase fits an
  :class:`~.model.AdaptiveModel` on ``((source, target), y, w)`` batches. A phase on cached frozen
  features gets the *target's* features through the same frozen prefix (one unaugmented view,
  computed once per phase), so the loss is as cheap as the head; a phase on images pairs source
  batches with target image batches, augmented as the source ones are.
* ``adabn_target``: phases train as usual; after the last one the BN statistics become the
  target images' (:mod:`.adabn_target`).

Only ``TargetSet.records`` (image paths) are read; ``eval_labels`` never.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from autotransfer.errors import InvalidConfigError
from autotransfer.train.adaptation.adabn_target import adapt_to_target, describe
from autotransfer.train.adaptation.model import AdaptiveModel
from autotransfer.train.adaptation.pairing import pair_with_target
from autotransfer.train.adaptation.target_images import target_images
from autotransfer.train.augment import is_identity, make_augmenter
from autotransfer.train.objective import PhaseContext, PhaseTraining, Supervised

#: added to the epoch seed for the target side's shuffle and augmentation
TARGET_SEED_OFFSET = 7919


class TargetAdaptation:
    """The :class:`~autotransfer.train.objective.PhaseObjective` of a domain-adaptation recipe."""

    def __init__(self, recipe: Any, target: Any) -> None:
        self.config = recipe.domain_adaptation
        self.target = target
        self.seed = int(recipe.seed)
        self.input_size = int(recipe.backbone.input_size)
        self.crop = bool(recipe.data.crop)
        self._images: tf.data.Dataset | None = None
        #: Keras callbacks of the target's pass through a frozen prefix (a search's deadlines)
        self.callbacks: list[Any] = []
        #: what was done, for the run's metrics
        self.record: dict[str, Any] = {"method": self.config.method,
                                       "weight": self.config.weight if self.config.has_loss
                                       else None,
                                       "target": str(target.root),
                                       "target_images": int(target.n_images),
                                       "phases": [], "adabn_target": None}

    def images(self) -> tf.data.Dataset:
        """The decoded target images (unbatched, float32, cached after the first pass)."""
        if self._images is None:
            self._images = target_images(self.target, self.input_size, crop=self.crop)
        return self._images

    def target_features(self, context: PhaseContext, prefix: keras.Model) -> np.ndarray:
        """The target images through the phase's frozen ``prefix`` (one unaugmented view);
        tuning trials override it to share them across the trials of a search."""
        return np.asarray(prefix.predict(self.images().batch(context.batch_size), verbose=0,
                                         callbacks=self.callbacks), dtype=np.float32)

    # ------------------------------------------------------------------ PhaseObjective
    def uses_frozen_features(self, recipe: Any, index: int) -> bool:
        return True

    def training(self, context: PhaseContext) -> PhaseTraining:
        if not self.config.has_loss:
            return Supervised().training(context)
        c, bs = context, context.batch_size
        n_classes = c.inputs.n_classes
        features = c.features
        if features is not None:
            prefix = c.prefix_model()
            assert prefix is not None
            target_x = self.target_features(c, prefix)
            suffix = keras.Model(c.clf.boundary(c.phase.trainable_from), c.clf.model.output,
                                 name="trainable_suffix")
            model = AdaptiveModel(suffix, self.config, n_classes, seed=self.seed + c.index)

            def epoch_data(epoch: int, seed: int) -> tf.data.Dataset:
                return pair_with_target(features.train_epoch(epoch, bs, seed), target_x, bs,
                                        seed + TARGET_SEED_OFFSET)

            val = features.val_set(bs)
            on = "cached features"
        else:
            model = AdaptiveModel(c.clf.model, self.config, n_classes, seed=self.seed + c.index)
            aug = c.recipe.augmentation

            def epoch_data(epoch: int, seed: int) -> tf.data.Dataset:
                target_seed = seed + TARGET_SEED_OFFSET
                transform = None if is_identity(aug) else make_augmenter(aug, target_seed)
                return pair_with_target(c.inputs.train_epoch(aug, bs, seed), self.images(), bs,
                                        target_seed, transform=transform)

            val = c.inputs.eval_set("val", bs)
            on = "images"
        self.record["phases"].append({"phase": c.index, "on": on,
                                      "loss": self.config.method,
                                      "weight": self.config.weight})
        return PhaseTraining(model, epoch_data, val)

    def after_phases(self, clf: Any, inputs: Any) -> None:
        if self.config.method != "adabn_target" or self.record["adabn_target"] is not None:
            return
        result = adapt_to_target(clf.model, self.images(), 32)
        self.record["adabn_target"] = result.to_dict() | {"text": describe(result)}


def objective_for(recipe: Any, target: Any | None) -> TargetAdaptation | None:
    """The phase objective of ``recipe`` with the target images ``target`` (a ``TargetSet``);
    ``None`` when the recipe adapts to no target (then the default, supervised, objective runs).

    Raises:
        InvalidConfigError: the recipe's method needs target images and ``target`` is ``None``.
    """
    da = recipe.domain_adaptation
    if not da.needs_target:
        return None
    if target is None:
        raise InvalidConfigError(
            f"domain_adaptation.method is '{da.method}', which adapts to unlabelled images from "
            "where the model will be used, but no target was given. Pass --target DIR (train(..., "
            "target=DIR)), or set domain_adaptation.method to 'none'.")
    return TargetAdaptation(recipe, target)
