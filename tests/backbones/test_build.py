"""Building backbones: every catalog entry builds, and its declared metadata holds."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from autotransfer.backbones.build import (
    build_backbone,
    group_boundaries,
    inbound_layers,
    layer_group_ranges,
)
from autotransfer.backbones.catalog import get_backbone, list_backbones
from autotransfer.errors import InvalidParameterError, UnknownNameError, WeightsUnavailableError
from tests.train.standalone import keras_modules


def _check_groups(model: Any, name: str, size: int) -> None:
    """Every layer in exactly one group, groups in topological order and cut at the boundaries,
    each boundary at its declared output stride."""
    spec = get_backbone(name)
    groups = layer_group_ranges(model, spec)
    assert [g.name for g in groups] == list(spec.group_names)
    names = [n for g in groups for n in g.layers]
    assert sorted(names) == sorted(layer.name for layer in model.layers)  # a partition
    assert all(g.layers for g in groups)

    # The only edges between groups go from a group's last operation to the next group.
    operations = model.operations
    stops = group_boundaries(model, spec)
    group_of: dict[int, int] = {}
    g = 0
    for i, op in enumerate(operations):
        while i >= stops[g]:
            g += 1
        group_of[id(op)] = g
    for op in operations:
        for parent in inbound_layers(op):
            a, b = group_of[id(parent)], group_of[id(op)]
            assert a <= b, f"{parent.name} (group {a}) feeds {op.name} (group {b})"
            if a != b:
                assert b == a + 1 and parent is operations[stops[a] - 1], (
                    f"{parent.name} -> {op.name} crosses a group boundary")

    # Each group ends at its declared output stride (valid padding loses a few pixels).
    for group in groups:
        height = next(model.get_layer(n).output.shape[1] for n in reversed(group.layers)
                      if len(model.get_layer(n).output.shape) == 4)
        ratio = size / height / group.stride
        assert 0.75 <= ratio <= 1.6, f"{group.name} ends at {height}px, stride {group.stride}"


def test_tiny_backbone_builds_fast_with_real_batchnorm() -> None:
    import keras

    model = build_backbone("test_tiny", 32, weights=None)
    assert model.output.shape == (None, 32)
    assert model.count_params() == get_backbone("test_tiny").params
    assert sum(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers) == 5
    rescale = model.get_layer("preprocess")
    assert isinstance(rescale, keras.layers.Rescaling)  # built-in: saves without custom objects
    assert (rescale.scale, rescale.offset) == (pytest.approx(1 / 127.5), -1.0)
    groups = layer_group_ranges(model, "test_tiny")
    assert len(groups) >= 3 and groups[0].first == model.layers[0].name
    _check_groups(model, "test_tiny", 32)
    out = model(np.full((2, 32, 32, 3), 255.0, dtype="float32"), training=False)
    assert out.shape == (2, 32) and np.isfinite(np.asarray(out)).all()


def test_feature_map_and_classifier_variants() -> None:
    fmap = build_backbone("test_tiny", 64, weights=None, pooling=None)
    assert fmap.output.shape == (None, 2, 2, 32)
    top = build_backbone("test_tiny", weights=None, include_top=True,
                         classifier_activation=None)
    assert top.output.shape == (None, 1000)
    assert top.layers[-1].name in layer_group_ranges(top, "test_tiny")[-1].layers


@pytest.mark.parametrize("mode", ["tf", "torch", "caffe", "lite", "none"])
def test_in_model_preprocessing_is_the_numpy_one_in_builtin_layers(mode: str, tmp_path) -> None:
    """The same float32 numbers as preprocess_input (and as the custom layer of older versions),
    from Keras' own Rescaling (and flip), so the model reloads in safe mode."""
    import keras

    from autotransfer.backbones.layers import Preprocess, preprocess
    from autotransfer.backbones.preprocessing import preprocess_input

    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, preprocess(inputs, mode))
    model.save(tmp_path / "p.keras")
    reloaded = keras.saving.load_model(tmp_path / "p.keras", safe_mode=True)
    x = np.random.default_rng(0).uniform(0, 255, (2, 5, 7, 3)).astype("float32")
    expected = preprocess_input(x, mode)
    np.testing.assert_array_equal(np.asarray(model(x)), expected)
    np.testing.assert_array_equal(np.asarray(reloaded(x)), expected)
    np.testing.assert_array_equal(np.asarray(Preprocess(mode)(x)), expected)


def test_no_preprocessing_layer_when_asked() -> None:
    model = build_backbone("test_tiny", weights=None, include_preprocessing=False)
    assert "preprocess" not in [layer.name for layer in model.layers]


def test_bad_arguments_give_clear_errors() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'test_tiny'"):
        build_backbone("test_tiny2", weights=None)
    with pytest.raises(InvalidParameterError, match="must be an integer >= 32; got 16"):
        build_backbone("test_tiny", 16, weights=None)
    with pytest.raises(InvalidParameterError, match="include_top=True"):
        build_backbone("mobilenet_v2", 128, weights=None, include_top=True)
    with pytest.raises(WeightsUnavailableError, match="has no pretrained weights"):
        build_backbone("test_tiny", weights="imagenet")


def _test_size(name: str) -> int:
    spec = get_backbone(name)
    # Inception and Xception lose pixels to valid padding: give them room.
    return 64 if spec.min_input_size <= 32 else 2 * spec.min_input_size


@pytest.mark.slow
@pytest.mark.parametrize("name", [s.name for s in list_backbones()])
def test_catalog_entry_matches_the_built_model(name: str, tmp_path) -> None:
    spec = get_backbone(name)
    size = _test_size(name)
    model = build_backbone(spec, size, weights=None)
    assert model.output.shape == (None, spec.feature_dim)
    assert model.count_params() == spec.params
    _check_groups(model, name, size)
    # what autotransfer ships is made of Keras' own classes only (no custom objects)
    model.save(tmp_path / "backbone.keras")
    modules = {module for module, _ in keras_modules(tmp_path / "backbone.keras")}
    assert all(m == "keras" or m.startswith("keras.") for m in modules), modules
