"""LogME against a direct maximisation of the evidence, and on problems with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from autotransfer.probes.logme import direct_log_evidence, logme


def direct_max_evidence(features, y):
    """Maximise the textbook evidence over (log α, log β) with a generic optimiser."""
    def negative(params):
        return -direct_log_evidence(features, y, np.exp(params[0]), np.exp(params[1]))

    best = min(
        (minimize(negative, x0, method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-11,
                                                                "maxiter": 4000})
         for x0 in ([0.0, 0.0], [3.0, 3.0], [-3.0, 1.0])),
        key=lambda r: r.fun,
    )
    return -best.fun, np.exp(best.x)


@pytest.mark.parametrize("n, d, k, seed", [(40, 5, 2, 0), (30, 12, 3, 1), (12, 25, 2, 2)])
def test_logme_equals_direct_evidence_maximisation(n, d, k, seed):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, d))
    labels = rng.integers(0, k, size=n)
    labels[:k] = np.arange(k)  # every class present
    result = logme(features, labels)
    for j, cls in enumerate(np.unique(labels)):
        y = (labels == cls).astype(float)
        best, (alpha, beta) = direct_max_evidence(features, y)
        assert result.per_class[j] * n == pytest.approx(best, abs=1e-4)
        # and the evidence at LogME's (α, β) by the direct formula is the same number
        direct = direct_log_evidence(features, y, result.alpha[j], result.beta[j])
        assert direct == pytest.approx(result.per_class[j] * n, rel=1e-9)
    assert result.score == pytest.approx(result.per_class.mean())


def test_informative_features_score_higher_than_noise():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 50)
    centres = rng.normal(size=(4, 16)) * 3
    informative = centres[labels] + rng.normal(size=(200, 16))
    noise = rng.normal(size=(200, 16))
    assert logme(informative, labels).score > logme(noise, labels).score + 0.1


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="features must be"):
        logme(np.zeros((3, 2)), np.zeros(4))
