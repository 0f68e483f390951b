"""H-score, its shrinkage form, GBC, NCE and LEEP give their known values on constructed data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autotransfer.probes.transferability import gbc, h_score, leep, nce, shrinkage_h_score


def test_h_score_in_one_dimension_is_the_share_of_variance_the_class_explains():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 50)
    x = (labels * 1.5 + rng.normal(size=150))[:, None]
    means = np.array([x[labels == k].mean() for k in range(3)])[labels]
    assert h_score(x, labels) == pytest.approx(np.var(means) / np.var(x), rel=1e-9)


def test_h_score_ignores_an_invertible_linear_map_of_the_features():
    rng = np.random.default_rng(1)
    labels = np.repeat([0, 1], 100)
    x = rng.normal(size=(200, 5)) + labels[:, None] * np.array([1.0, 0, 0.5, 0, 0])
    mixing = rng.normal(size=(5, 5)) + 3 * np.eye(5)
    assert h_score(x @ mixing, labels) == pytest.approx(h_score(x, labels), rel=1e-6)


def test_shrinkage_h_score_is_close_to_h_score_with_plenty_of_images_and_finite_without():
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1], 500)
    x = rng.normal(size=(1000, 4)) + labels[:, None]
    assert shrinkage_h_score(x, labels) == pytest.approx(h_score(x, labels), rel=0.03)
    few = rng.normal(size=(20, 100)) + np.repeat([0, 1], 10)[:, None]
    assert 0 < shrinkage_h_score(few, np.repeat([0, 1], 10)) < h_score(few, np.repeat([0, 1], 10))


def test_gbc_is_minus_two_for_classes_with_identical_statistics_and_near_zero_apart():
    rng = np.random.default_rng(3)
    rows = rng.normal(size=(30, 8))
    same = np.concatenate([rows, rows])
    assert gbc(same, np.repeat([0, 1], 30)) == pytest.approx(-2.0)
    apart = np.concatenate([rows, rows + 100.0])
    assert gbc(apart, np.repeat([0, 1], 30)) == pytest.approx(0.0, abs=1e-9)


def one_hot(z: np.ndarray, n: int) -> np.ndarray:
    return np.eye(n)[z]


def test_nce_and_leep_are_zero_when_the_source_class_determines_the_label():
    z = np.array([0, 1, 2, 3] * 10)
    labels = z % 2
    assert nce(one_hot(z, 5), labels) == pytest.approx(0.0)
    assert leep(one_hot(z, 5), labels) == pytest.approx(0.0)


def test_nce_and_leep_are_log_half_when_the_source_class_says_nothing():
    z = np.array([0, 0, 1, 1] * 10)
    labels = np.array([0, 1, 0, 1] * 10)
    assert nce(one_hot(z, 3), labels) == pytest.approx(-math.log(2))
    assert leep(one_hot(z, 3), labels) == pytest.approx(-math.log(2))
