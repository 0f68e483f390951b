"""Prediction entropy and the per-class ImageNet concepts."""

from __future__ import annotations

import numpy as np
import pytest

from autotransfer.probes.imagenet_view import prediction_entropy, top_concepts


def test_entropy_bounds():
    uniform = np.full((1, 1000), 1 / 1000)
    certain = np.eye(1000)[:1]
    assert prediction_entropy(uniform)[0] == pytest.approx(np.log(1000))
    assert prediction_entropy(certain)[0] == pytest.approx(0.0, abs=1e-6)


def test_top_concepts_are_shares_of_top1_predictions_per_class():
    probs = np.zeros((5, 4))
    probs[[0, 1, 2], [1, 1, 2]] = 1.0  # class 0: concept 1 twice, concept 2 once
    probs[[3, 4], [3, 3]] = 1.0  # class 1: concept 3 twice
    labels = np.array([0, 0, 0, 1, 1])
    view = top_concepts(probs, labels, ["bees", "ants"], ("w", "bee", "fly", "ant"), top=2)
    assert view == {"bees": [("bee", pytest.approx(2 / 3, abs=1e-4)), ("fly", pytest.approx(1 / 3, abs=1e-4))],
                    "ants": [("ant", 1.0)]}
