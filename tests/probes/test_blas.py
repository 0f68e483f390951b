"""The probes' scikit-learn fits run with one BLAS thread, and give what they give with more."""

from __future__ import annotations

from unittest import mock

import numpy as np
from threadpoolctl import threadpool_info

from autotransfer.probes import orientation, transferability
from autotransfer.probes.blas import one_blas_thread


def _blas_threads() -> list[int]:
    return [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]


def test_one_blas_thread_inside_the_block_and_restored_after():
    import scipy.linalg  # noqa: F401 - loads SciPy's own OpenBLAS too

    before = _blas_threads()
    with one_blas_thread():
        assert _blas_threads() and set(_blas_threads()) == {1}
    assert _blas_threads() == before


def test_the_fits_run_inside_it_with_the_same_figures_as_without():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    features = rng.normal(size=(3, 64))[labels] + rng.normal(size=(120, 64))
    seen: list[list[int]] = []

    def score(*args, **kwargs):  # what the fit sees, then the fit itself
        seen.append(_blas_threads())
        return real(*args, **kwargs)

    from sklearn.model_selection import cross_val_score as real

    with mock.patch("sklearn.model_selection.cross_val_score", score):
        limited = (transferability.linear_probe_accuracy(features, labels),
                   transferability.knn_accuracy(features, labels),
                   orientation.predictability(features, labels, np.arange(120)))
    assert len(seen) == 3 and all(set(s) == {1} for s in seen)
    with mock.patch.object(transferability, "one_blas_thread", _no_limit), \
            mock.patch("autotransfer.probes.blas.one_blas_thread", _no_limit):
        default = (transferability.linear_probe_accuracy(features, labels),
                   transferability.knn_accuracy(features, labels),
                   orientation.predictability(features, labels, np.arange(120)))
    assert limited == default


def _no_limit():
    import contextlib

    return contextlib.nullcontext()


def test_logme_is_computed_with_one_blas_thread():
    from autotransfer.probes import logme as logme_module

    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(3), 20)
    seen: list[list[int]] = []
    real = logme_module._spectrum

    def spectrum(*args, **kwargs):
        seen.append(_blas_threads())
        return real(*args, **kwargs)

    with mock.patch.object(logme_module, "_spectrum", spectrum):
        logme_module.logme(rng.normal(size=(60, 16)), labels)
    assert seen and set(seen[0]) == {1}


def test_the_domain_gap_and_dev_density_ratio_fits_run_with_one_blas_thread():
    """Every logistic regression of the domain gap (the domain classifier, the source probe) and
    of DEV's density ratios sees one BLAS thread (two took 14-19 s against 0.5-0.7 s for the gap on
    real probe features); the figures are those of the unlimited fits."""
    from sklearn.linear_model import LogisticRegression

    from autotransfer.probes import domain_gap
    from autotransfer.train.adaptation import selection

    rng = np.random.default_rng(2)
    labels = np.repeat(np.arange(3), 30)
    source = rng.normal(size=(3, 48))[labels] + rng.normal(size=(90, 48))
    target = source[:60] + rng.normal(0.5, 1.0, size=(60, 48))
    empty = {"bn_names": np.array([]), "bn_groups": np.array([])}
    seen: list[list[int]] = []
    real = LogisticRegression.fit

    def fit(self, *args, **kwargs):
        seen.append(_blas_threads())
        return real(self, *args, **kwargs)

    def measure():
        gap = domain_gap.gap_from_arrays({"features": source, **empty},
                                         {"features": target, **empty}, labels,
                                         ["a", "b", "c"], [])
        return gap.model_dump(), selection.density_ratios(source[:40], target).tolist()

    with mock.patch.object(LogisticRegression, "fit", fit):
        limited = measure()
    assert len(seen) >= 5 + 5 + 1 + 2 and all(set(s) == {1} for s in seen)
    with mock.patch("autotransfer.probes.blas.one_blas_thread", _no_limit), \
            mock.patch.object(domain_gap, "one_blas_thread", _no_limit):
        assert measure() == limited
