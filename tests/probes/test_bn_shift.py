"""BN-shift arithmetic: the Gaussian divergence, folded-BN detection, per-group aggregation."""

from __future__ import annotations

import numpy as np
import pytest

from autotransfer.probes.bn_shift import (
    BNLayerStats,
    is_folded,
    layer_shift,
    overall_shift,
    shift_by_group,
    symmetric_kl,
)


def test_symmetric_kl_matches_the_closed_form_and_numerical_integration():
    assert symmetric_kl(0.0, 1.0, 0.0, 1.0) == pytest.approx(0.0)
    # KL(N(0,1)‖N(1,4)) + KL(N(1,4)‖N(0,1)) by numerical integration
    x = np.linspace(-30, 30, 200001)
    p = np.exp(-x**2 / 2) / np.sqrt(2 * np.pi)
    q = np.exp(-((x - 1) ** 2) / 8) / np.sqrt(8 * np.pi)
    numeric = np.trapezoid(p * np.log(p / q), x) + np.trapezoid(q * np.log(q / p), x)
    assert symmetric_kl(0.0, 1.0, 1.0, 4.0) == pytest.approx(numeric, rel=1e-6)


def layer(group, data_mean, data_var, moving_mean=0.0, moving_var=1.0, channels=4, name="bn"):
    full = lambda v: np.full(channels, v, dtype=float)  # noqa: E731
    return BNLayerStats(name, group, full(moving_mean), full(moving_var), full(data_mean),
                        full(data_var), 1e-3)


def test_layer_shift_grows_with_the_distance():
    near, far = layer("g", 0.1, 1.1), layer("g", 2.0, 0.2)
    assert 0 < layer_shift(near) < layer_shift(far)


def test_folded_statistics_are_detected():
    assert is_folded([layer("a", 3.0, 2.0), layer("b", 1.0, 5.0)])  # stored: mean 0, var 1
    assert not is_folded([layer("a", 3.0, 2.0), layer("b", 1.0, 5.0, moving_mean=0.5)])
    assert not is_folded([])


def test_groups_take_the_median_layer_and_overall_weights_groups_equally():
    layers = [layer("stem", 0.0, 1.0, name="a"), layer("stem", 0.0, 1.0, name="b"),
              layer("stem", 5.0, 1.0, name="outlier"), layer("deep", 1.0, 1.0, name="c")]
    per_group = shift_by_group(layers, ["stem", "middle", "deep"])
    assert per_group["stem"] == pytest.approx(0.0, abs=1e-6)  # the outlier does not dominate
    assert per_group["middle"] is None
    assert per_group["deep"] == pytest.approx(layer_shift(layers[-1]))
    assert overall_shift(per_group) == pytest.approx(per_group["deep"] / 2)
