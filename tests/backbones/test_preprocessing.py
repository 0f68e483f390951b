"""Preprocessing modes: the numpy function and the Keras layer agree with the definitions."""

from __future__ import annotations

import numpy as np
import pytest

from autotransfer.backbones.preprocessing import MODES, center_crop_resize, preprocess_input
from autotransfer.errors import UnknownNameError

PIXELS = np.array([[[[0.0, 127.0, 255.0], [10.0, 20.0, 30.0]]]], dtype=np.float32)  # 1x1x2x3


def test_modes_follow_their_definitions() -> None:
    x = PIXELS
    np.testing.assert_allclose(preprocess_input(x, "tf"), x / 127.5 - 1, atol=1e-6)
    np.testing.assert_allclose(preprocess_input(x, "lite"), (x - 127) / 128, atol=1e-6)
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(preprocess_input(x, "torch"), (x / 255 - mean) / std, atol=1e-5)
    caffe = x[..., ::-1] - np.array([103.939, 116.779, 123.68])
    np.testing.assert_allclose(preprocess_input(x, "caffe"), caffe, atol=1e-4)
    np.testing.assert_array_equal(preprocess_input(x, "none"), x)


def test_unknown_mode_is_a_clear_error() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean .torch."):
        preprocess_input(PIXELS, "torh")


@pytest.mark.parametrize("mode", sorted(MODES))
def test_keras_layer_matches_numpy(mode: str) -> None:
    from autotransfer.backbones.layers import Preprocess

    layer = Preprocess(mode)
    got = np.asarray(layer(PIXELS))
    np.testing.assert_allclose(got, preprocess_input(PIXELS, mode), atol=1e-5)
    assert Preprocess.from_config(layer.get_config()).mode == mode


def test_center_crop_resize_gives_square_float_rgb() -> None:
    image = np.zeros((40, 60, 3), dtype=np.uint8)
    image[:, 30:] = 255
    out = center_crop_resize(image, 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.float32
    assert out[:, 0].max() == 0 and out[:, -1].min() == 255


def test_center_crop_resize_refuses_what_is_not_an_rgb_image() -> None:
    from autotransfer.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError, match=r"RGB array .* Got shape \(40, 60\) instead"):
        center_crop_resize(np.zeros((40, 60), dtype=np.uint8), 16)
