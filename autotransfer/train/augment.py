"""The recipe's augmentation and MixUp/CutMix: defined in :mod:`autotransfer.data.augment` (the
input pipeline's layer, so that the probe can time it too) and re-exported here for the trainer."""

from __future__ import annotations

from autotransfer.data.augment import (augmentation_layers, compose, cutmix, is_identity,
                                       make_augmenter, make_mixer, mixes, mixup, random_rot90)

__all__ = ["augmentation_layers", "compose", "cutmix", "is_identity", "make_augmenter",
           "make_mixer", "mixes", "mixup", "random_rot90"]
