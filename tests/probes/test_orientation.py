"""The orientation probe: views are the right transforms; predictability tracks information."""

from __future__ import annotations

import numpy as np
import pytest

from autotransfer.probes.orientation import measure_orientation, views


def test_views_are_quarter_turns_and_a_mirror_of_each_image():
    images = np.arange(2 * 3 * 3 * 1).reshape(2, 3, 3, 1)
    stacked, view, source = views(images)
    assert stacked.shape == (10, 3, 3, 1)
    np.testing.assert_array_equal(stacked[view == 0], images)
    np.testing.assert_array_equal(stacked[(view == 1) & (source == 1)][0], np.rot90(images[1]))
    np.testing.assert_array_equal(stacked[(view == 2) & (source == 0)][0], np.rot90(images[0], 2))
    np.testing.assert_array_equal(stacked[view == 4], images[:, :, ::-1])


def test_predictability_is_high_when_features_encode_the_view_and_at_chance_otherwise():
    rng = np.random.default_rng(0)
    n = 60
    view = np.repeat(np.arange(5), n)
    source = np.tile(np.arange(n), 5)
    informative = np.eye(5)[view] * 3 + rng.normal(size=(5 * n, 5))
    blind = rng.normal(size=(5 * n, 5))
    seen = measure_orientation("x", informative, view, source)
    unseen = measure_orientation("x", blind, view, source)
    assert seen.rotation_accuracy > 0.9 and seen.flip_accuracy > 0.9
    assert unseen.rotation_accuracy == pytest.approx(0.25, abs=0.1)
    assert unseen.flip_accuracy == pytest.approx(0.5, abs=0.12)
    assert seen.n_images == n
