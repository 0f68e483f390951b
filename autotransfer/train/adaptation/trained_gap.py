"""The source-target gap seen by a *trained* model: the gap after (or without) adaptation.

The advisor measures the gap on the frozen backbone's features (:mod:`autotransfer.probes.
domain_gap`); after training, the same two measures are taken on the trained model's penultimate
features and predictions (:func:`.validate.candidate_outputs`): the proxy A-distance of a
cross-validated domain classifier (source validation images against the target images), and the
total variation between the model's predicted-class histograms on the two. Only the target's
image paths are read — never its ``eval_labels``.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from autotransfer.probes.domain_gap import (a_distance, domain_classifier_error, histogram,
                                            total_variation)
from autotransfer.train.adaptation.selection import CandidateOutputs


@dataclass(frozen=True)
class TrainedGap:
    """The gap in a trained model's penultimate features (``None`` fields: not measurable)."""

    a_distance: float | None
    domain_error: float | None
    class_tv: float
    n_source: int
    n_target: int
    measured_on: str = "penultimate features of the trained model: source validation split " \
                       "against the target images"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def features_gap(outputs: CandidateOutputs, n_classes: int, *, seed: int = 0) -> TrainedGap:
    """The proxy A-distance and the predicted-class move of one trained candidate's outputs."""
    fs, ft = outputs.source_val_features, outputs.target_features
    hs = histogram(np.argmax(outputs.source_val_probs, axis=1), n_classes)
    ht = histogram(np.argmax(outputs.target_probs, axis=1), n_classes)
    error = None
    if min(len(fs), len(ft)) >= 2:  # a cross-validated classifier needs two rows a side
        error = round(domain_classifier_error(fs.reshape(len(fs), -1),
                                              ft.reshape(len(ft), -1), seed=seed), 6)
    return TrainedGap(None if error is None else round(a_distance(error), 6), error,
                      round(total_variation(hs, ht), 6), len(fs), len(ft))


def run_gap(run_dir: str | os.PathLike[str], splits: Any, target: Any, *, image_size: int,
            crop: bool = True, seed: int = 0) -> TrainedGap:
    """:func:`features_gap` of the model in ``run_dir`` on ``splits``' validation images and the
    images of ``target`` (a :class:`~autotransfer.data.target.TargetSet`)."""
    from autotransfer.train.adaptation.target_images import target_images
    from autotransfer.train.adaptation.validate import candidate_outputs
    from autotransfer.train.data import TrainingInputs
    from autotransfer.train.inference import load_run_model

    inputs = TrainingInputs(splits, image_size, crop=crop)
    model = load_run_model(run_dir).model
    outputs = candidate_outputs("trained", model, inputs.eval_set("val", 32),
                                target_images(target, image_size, crop=crop))
    return features_gap(outputs, inputs.n_classes, seed=seed)
