"""k-NN, linear probe and separability respond to how separable the features are."""

from __future__ import annotations

import numpy as np
import pytest

from autotransfer.probes.transferability import measure_transferability, separability


def blobs(spread: float, seed: int = 0, n_per_class: int = 40, dim: int = 32):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(3), n_per_class)
    centres = rng.normal(size=(3, dim)) * spread
    return centres[labels] + rng.normal(size=(len(labels), dim)), labels


def test_separable_features_score_high_and_random_ones_at_chance():
    good = measure_transferability(*blobs(3.0))
    bad = measure_transferability(*blobs(0.0))
    assert good.knn_accuracy > 0.95 and good.linear_probe_accuracy > 0.95
    assert bad.knn_accuracy < 0.55 and bad.linear_probe_accuracy < 0.55  # chance is 1/3
    assert good.logme > bad.logme and good.separability > 10 * bad.separability
    assert good.n_samples == 120 and good.feature_dim == 32 and good.folds == 5


def test_folds_shrink_for_tiny_classes():
    features, labels = blobs(3.0, n_per_class=3)
    assert measure_transferability(features, labels).folds == 3


def test_separability_is_the_fisher_ratio():
    features = np.array([[0.0], [0.0], [2.0], [2.0]]) + np.array([[0.1], [-0.1], [0.1], [-0.1]])
    labels = np.array([0, 0, 1, 1])
    # standardised: within scatter 4 × (0.1/σ)², between 4 × (1/σ)², σ² = 1.01
    assert separability(features, labels) == pytest.approx(100.0)


def test_single_class_is_refused():
    with pytest.raises(ValueError, match="two classes"):
        measure_transferability(np.zeros((4, 2)), np.zeros(4, dtype=int))
