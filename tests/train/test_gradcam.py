"""Grad-CAM heat maps: the image's shape, a real spatial map, and exactly CAM for a linear head."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from autotransfer.errors import InvalidParameterError
from autotransfer.train.export import classifier_part, serving_model
from autotransfer.train.gradcam import feature_layer, feature_map_size, grad_cam
from autotransfer.train.model import build_classifier
from tests.train.helpers import tiny_recipe

SIZE = 128  # the tiny backbone's output stride is 32: a 4 × 4 feature map


@pytest.fixture(scope="module")
def classifier():
    import keras

    keras.utils.set_random_seed(3)
    recipe = tiny_recipe(backbone={"name": "test_tiny", "input_size": SIZE, "weights": "none"})
    return build_classifier(recipe, 3).model


def _images(n: int = 2) -> np.ndarray:
    """Dark noise with one bright square per image, at a different place in each."""
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 40, (n, SIZE, SIZE, 3)).astype("float32")
    for i in range(n):
        top = 16 + 48 * (i % 2)
        x[i, top:top + 40, top:top + 40] = 230.0
    return x


def test_the_last_conv_feature_map_is_explained(classifier):
    assert feature_layer(classifier).name == "stage_s32_relu"
    assert feature_map_size(classifier) == (4, 4)


def test_heat_maps_have_the_images_shape_and_show_a_place(classifier):
    x = _images()
    classes = classifier.predict(x, verbose=0).argmax(axis=1)
    maps = grad_cam(classifier, x, classes)
    assert maps.shape == (2, SIZE, SIZE)
    assert maps.min() >= 0.0 and maps.max() == pytest.approx(1.0)
    for heat in maps:
        assert heat.std() > 0.05  # not constant: some places matter more than others


def test_with_an_average_pooled_linear_head_it_is_the_class_activation_map(classifier):
    """Grad-CAM of a GAP + dense head is CAM (Zhou et al. 2016): ReLU(sum_k w_kc A_k), scaled."""
    import keras

    x = _images()
    classes = [0, 2]
    maps = grad_cam(classifier, x, classes)
    features = keras.Model(classifier.input, feature_layer(classifier).output)
    fmap = np.asarray(features(x, training=False))
    kernel = classifier.get_layer("predictions").get_weights()[0]
    for i, c in enumerate(classes):
        cam = np.maximum(fmap[i] @ kernel[:, c], 0.0)
        expected = tf.image.resize(cam[..., None], (SIZE, SIZE), method="bilinear").numpy()[..., 0]
        assert expected.max() > 0
        np.testing.assert_allclose(maps[i], expected / expected.max(), atol=1e-4)


def test_a_shipped_model_is_explained_through_its_classifier(classifier):
    shipped = serving_model(classifier)
    x = _images(1)
    np.testing.assert_allclose(grad_cam(classifier_part(shipped), x, [1]),
                               grad_cam(classifier, x, [1]), atol=1e-5)


def test_one_class_per_image_is_needed(classifier):
    with pytest.raises(InvalidParameterError, match="one class per image"):
        grad_cam(classifier, _images(2), [0])


def test_a_mixed_precision_model_is_explained_in_float32():
    import keras

    from autotransfer.train.precision import run_policy

    with run_policy("bfloat16"):
        keras.utils.set_random_seed(3)
        recipe = tiny_recipe(backbone={"name": "test_tiny", "input_size": 64, "weights": "none"})
        model = build_classifier(recipe, 3).model
    assert feature_layer(model).compute_dtype == "bfloat16"
    maps = grad_cam(model, np.random.default_rng(2).uniform(0, 255, (1, 64, 64, 3)), [0])
    assert maps.dtype == np.float32 and maps.shape == (1, 64, 64) and np.isfinite(maps).all()


@pytest.mark.shared
def test_imagenet_mobilenet_v2_points_at_a_place_on_a_real_photo(shared_weights):
    """A real conv backbone with its ImageNet classifier, on a real photo of a bee: the heat map
    of its top class is a place, not a wash."""
    import keras

    from autotransfer.data.images import load_image
    from tests.conftest import shared_dataset

    weights = shared_weights / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5"
    if not weights.is_file():
        pytest.skip(f"needs {weights}")
    photo = sorted((shared_dataset("hymenoptera") / "val" / "bees").iterdir())[0]
    image = load_image(photo, 224).astype("float32")[None]
    base = keras.applications.MobileNetV2(weights=str(weights))
    inputs = keras.Input((224, 224, 3))
    nested = keras.Model(inputs, base(keras.layers.Rescaling(1 / 127.5, -1)(inputs)))
    with pytest.raises(InvalidParameterError, match="nested model"):
        feature_layer(nested)  # refused, not explained at the wrong layer
    top = int(base.predict(image / 127.5 - 1, verbose=0).argmax())
    assert feature_layer(base).name == "out_relu"
    heat = grad_cam(base, image / 127.5 - 1, [top])[0]
    assert heat.shape == (224, 224) and heat.max() == pytest.approx(1.0)
    assert heat.std() > 0.1 and (heat > 0.5).mean() < 0.6  # a region, not the whole photo
