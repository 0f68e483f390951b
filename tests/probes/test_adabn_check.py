"""The AdaBN check: the linear probe with ImageNet's and with re-estimated BN statistics."""

from __future__ import annotations

import numpy as np
import pytest

from autotransfer.probes.adabn_check import compare
from autotransfer.probes.transferability import knn_accuracy, linear_probe_accuracy


def test_features_that_separate_the_classes_after_adabn_give_a_positive_gain():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 20)
    noise = rng.normal(size=(60, 8))
    adapted = noise + 4.0 * np.eye(8)[labels]  # the classes apart
    before = linear_probe_accuracy(noise, labels, seed=0)  # chance: nothing to separate
    check = compare(adapted, labels, imagenet_linear=before,
                    imagenet_knn=knn_accuracy(noise, labels, seed=0), seed=0, seconds=1.5)
    assert check.adapted_linear_probe_accuracy == pytest.approx(1.0)
    assert check.gain == pytest.approx(1.0 - before) and check.gain > 0.4
    assert check.n_samples == 60 and check.adapted_knn_accuracy > check.knn_accuracy
    assert f"{before:.1%}" in check.describe() and "100.0%" in check.describe()


def test_an_unknown_adabn_check_mode_is_a_clear_error(tmp_path):
    from autotransfer.errors import InvalidParameterError
    from autotransfer.probes.probe import probe_dataset

    with pytest.raises(InvalidParameterError, match="'best', 'all' or 'none'. Got 'some'"):
        probe_dataset(tmp_path, ["test_tiny"], adabn_check="some")
