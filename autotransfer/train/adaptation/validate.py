"""Unsupervised validation of trained candidates (no target label): what a criterion needs from
a trained classifier, and the choice among candidates.

:func:`candidate_outputs` runs a trained classifier (a shipped model or a bare classifier) on the
labelled source validation batches and the unlabelled target images and keeps its penultimate
features and predictions; :func:`choose` scores candidates with a criterion of
:mod:`.selection` and explains the pick; by default with rule DA09's criterion, the one measured
most reliable on Office-Caltech-10 (docs/benchmarks/adapt.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from autotransfer.train.adaptation.model import features_and_predictions
from autotransfer.train.adaptation.selection import CandidateOutputs, scores


@dataclass(frozen=True)
class Choice:
    """The chosen candidate, every candidate's score, and why."""

    name: str
    criterion: str
    scores: dict[str, float]
    text: str


def candidate_outputs(name: str, model: Any, source_val: tf.data.Dataset,
                      target: tf.data.Dataset, batch_size: int = 32) -> CandidateOutputs:
    """``model`` on ``source_val`` (``(x, one-hot)`` batches) and ``target`` (unbatched images)."""
    from autotransfer.train.export import classifier_part

    pair = features_and_predictions(classifier_part(model))
    f_val, p_val, labels = [], [], []
    for x, y in source_val:
        f, p = pair(x, training=False)
        f_val.append(np.asarray(f))
        p_val.append(np.asarray(p))
        labels.append(np.argmax(np.asarray(y), axis=1))
    f_t, p_t = pair.predict(target.batch(batch_size), verbose=0)
    return CandidateOutputs(name, np.concatenate(p_val), np.concatenate(labels),
                            np.concatenate(f_val), np.asarray(p_t), np.asarray(f_t))


def choose(candidates: Mapping[str, CandidateOutputs],
           criterion: str | None = None) -> Choice:
    """The candidate with the best ``criterion`` score (higher is better; default: DA09's)."""
    if not candidates:
        raise ValueError("no candidates to choose from")
    if criterion is None:
        from autotransfer.advisor.rules import rule_params

        criterion = str(rule_params("DA09")["criterion"])
    measured = {name: scores(c, (criterion,))[criterion] for name, c in candidates.items()}
    best = max(measured, key=lambda k: measured[k])
    ranked = ", ".join(f"{k} {v:.3f}" for k, v in sorted(measured.items(),
                                                         key=lambda kv: -kv[1]))
    return Choice(best, criterion, measured,
                  f"chosen by {criterion} without target labels among {len(measured)} "
                  f"candidates ({ranked})")
