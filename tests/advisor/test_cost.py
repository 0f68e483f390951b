"""The epoch-time model that sizes schedules to a time budget."""

from __future__ import annotations

import math

import pytest

from autotransfer.advisor.cost import epoch_seconds, forward_seconds


def test_forward_time_scales_with_images_and_pixels():
    assert forward_seconds(1000, 2.0, 224, 224) == pytest.approx(2.0)
    assert forward_seconds(2000, 2.0, 224, 224) == pytest.approx(4.0)
    assert forward_seconds(1000, 2.0, 112, 224) == pytest.approx(0.5)


def test_epoch_time_grows_with_the_trainable_share():
    times = [epoch_seconds(1000, 2.0, 224, 224, start) for start in (5, 4, 3, 1, 0)]
    assert times[0] == pytest.approx(2.0)  # head only: one forward pass
    assert times == sorted(times)
    assert times[-1] == pytest.approx(6.0)  # everything trains: forward + 2 × backward


@pytest.mark.parametrize("forward_ms, probe_size", [(math.nan, 224), (0.0, 224), (2.0, 0)])
def test_unknown_timing_gives_nan(forward_ms, probe_size):
    assert math.isnan(epoch_seconds(1000, forward_ms, 224, probe_size, 3))
