"""H-score, its shrinkage form, GBC, NCE and LEEP give their known values on constructed data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scipy.linalg import eigh

from autotransfer.probes.transferability import (_fisher_posteriors, gbc, h_score, leep, nce, sfda,
                                                 shrinkage_h_score)


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


def _fisher_posteriors_by_eigenvectors(x: np.ndarray, y: np.ndarray, a: float) -> np.ndarray:
    """SFDA's discriminant written as its authors do: every generalised eigenvector of
    (S_total_shrunk − S_within_shrunk, S_within_shrunk), coef = μ V Vᵀ."""
    priors = np.bincount(y) / len(y)
    means = np.stack([x[y == c].mean(axis=0) for c in range(len(priors))])
    within = sum(priors[c] * np.cov(x[y == c].T, bias=True) for c in range(len(priors)))

    def shrunk(c: np.ndarray) -> np.ndarray:
        return (1 - a) * c + a * np.trace(c) / len(c) * np.eye(len(c))

    _, v = eigh(shrunk(np.cov(x.T, bias=True)) - shrunk(within), shrunk(within))
    coef = means @ v @ v.T
    logits = x @ coef.T - 0.5 * np.diag(means @ coef.T) + np.log(priors)
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def test_sfda_discriminant_equals_the_eigenvector_form_with_its_adaptive_shrinkage():
    rng = np.random.default_rng(4)
    y = np.repeat([0, 1, 2], 20)
    x = rng.normal(size=(60, 6)) * 0.3 + y[:, None] * np.array([0.4, 0, 0.2, 0, 0, 0.1])
    p, a = _fisher_posteriors(x, y, None)
    within = sum(np.mean(y == c) * np.cov(x[y == c].T, bias=True) for c in range(3))
    assert a == pytest.approx(math.exp(-5 * np.linalg.eigvalsh(within)[-1]))
    np.testing.assert_allclose(p, _fisher_posteriors_by_eigenvectors(x, y, a), atol=1e-8)


def test_sfda_rises_with_separation_and_ignores_how_the_classes_are_numbered():
    rng = np.random.default_rng(5)
    y = np.repeat([0, 1, 2, 3], 16)
    noise = rng.normal(size=(64, 32))
    direction = rng.normal(size=(4, 32))
    scores = [sfda(noise + gap * direction[y], y) for gap in (0.0, 0.3, 1.0, 3.0)]
    assert scores == sorted(scores) and scores[-1] - scores[0] > 0.3
    assert 0.0 <= scores[0] and scores[-1] <= 1.0
    relabelled = np.array([2, 0, 3, 1])[y]
    assert sfda(noise + direction[y], relabelled) == pytest.approx(sfda(noise + direction[y], y))


def test_sfda_self_challenge_lowers_the_score_of_overlapping_classes():
    rng = np.random.default_rng(6)
    y = np.repeat([0, 1], 40)
    x = rng.normal(size=(80, 4)) + 0.8 * y[:, None]
    first, _ = _fisher_posteriors(x, y, None)
    assert sfda(x, y) < first[np.arange(80), y].mean()
    with pytest.raises(ValueError, match="two classes"):
        sfda(x, np.zeros(80, dtype=int))


def test_sfda_saturates_with_fewer_images_than_dimensions_unless_shrunk_by_ledoit_wolf():
    rng = np.random.default_rng(7)
    y = np.repeat([0, 1], 20)
    x = rng.normal(size=(40, 200))  # no signal at all, 40 images in 200 dimensions
    signal = x + 2.0 * y[:, None] * (np.arange(200) < 10)
    # the published strength (~no shrinkage here) cannot tell the signal from none
    assert sfda(x, y) == pytest.approx(1.0, abs=1e-6)
    assert sfda(signal, y) == pytest.approx(1.0, abs=1e-6)
    noise_lw = sfda(x, y, shrinkage="ledoit_wolf")
    assert noise_lw < 0.99 and sfda(signal, y, shrinkage="ledoit_wolf") > noise_lw + 0.04


@pytest.mark.parametrize("shrinkage", [None, "ledoit_wolf"])
def test_sfda_without_within_class_scatter_is_defined(shrinkage):
    # one image per class: no within-class scatter, the discriminant separates them perfectly
    rng = np.random.default_rng(8)
    y = np.arange(3)
    assert sfda(rng.normal(size=(3, 5)), y, shrinkage=shrinkage) == pytest.approx(1.0)
    assert sfda(1e-4 * rng.normal(size=(3, 5)), y, shrinkage=shrinkage) == pytest.approx(1.0)
    # constant features: nothing tells the classes apart, the score is chance
    for value in (0.0, 1.0):
        constant = np.full((6, 5), value)
        assert sfda(constant, np.repeat(y, 2), shrinkage=shrinkage) == pytest.approx(1 / 3)
