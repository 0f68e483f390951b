"""The classifier: each phase freezes exactly the groups it says, with the BN policy applied."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from autotransfer.errors import InvalidConfigError
from autotransfer.train.model import (build_classifier, set_trainable, trainable_weight_counts,
                                      variable_multipliers)
from tests.train.helpers import tiny_recipe

GROUPS = ["stem", "stage_s4", "stage_s8", "stage_s16", "stage_s32"]


def trainable_layers(clf):
    return {layer.name for layer in clf.model.layers if layer.trainable_weights}


@pytest.mark.parametrize("bn_policy", ["frozen", "trainable"])
@pytest.mark.parametrize("trainable_from", [0, 1, 2, 3, 4, 5])
def test_each_phase_trains_exactly_the_groups_from_trainable_from(trainable_from, bn_policy):
    clf = build_classifier(tiny_recipe(bn_policy=bn_policy), 3)
    set_trainable(clf, trainable_from)
    expected = {"predictions"}
    for group in GROUPS[trainable_from:]:
        expected.add(f"{group}_conv")
        if bn_policy == "trainable":
            expected.add(f"{group}_bn")
    assert trainable_layers(clf) == expected
    counts = trainable_weight_counts(clf)
    assert [counts[g] > 0 for g in GROUPS] == [i >= trainable_from for i in range(5)]
    # frozen BatchNorm runs in inference mode in Keras 3 (trainable=False)
    for group in GROUPS:
        bn = clf.model.get_layer(f"{group}_bn")
        assert bn.trainable == (bn_policy == "trainable" and GROUPS.index(group) >= trainable_from)


def test_training_changes_only_trainable_groups_and_frozen_bn_keeps_its_statistics():
    clf = build_classifier(tiny_recipe(bn_policy="frozen"), 3)
    set_trainable(clf, 3)
    clf.model.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy")
    before = {w.path: w.numpy().copy() for w in clf.model.weights}
    x = np.random.default_rng(0).uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    y = np.eye(3)[np.arange(16) % 3]
    clf.model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    changed = {path for path, value in before.items()
               if not np.array_equal(value, _value(clf.model, path))}
    changed_layers = {path.split("/")[-2] for path in changed}
    assert changed_layers == {"stage_s16_conv", "stage_s32_conv", "predictions"}


def _value(model, path):
    for w in model.weights:
        if w.path == path:
            return w.numpy()
    raise KeyError(path)


def test_trainable_bn_updates_statistics_of_trainable_groups_only():
    clf = build_classifier(tiny_recipe(bn_policy="trainable"), 3)
    set_trainable(clf, 4)
    clf.model.compile(optimizer=keras.optimizers.SGD(0.01), loss="categorical_crossentropy")
    stats = {g: clf.model.get_layer(f"{g}_bn").moving_mean.numpy().copy() for g in GROUPS}
    x = np.random.default_rng(1).uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    clf.model.fit(x, np.eye(3)[np.arange(16) % 3], epochs=1, batch_size=8, verbose=0)
    moved = [not np.array_equal(stats[g], clf.model.get_layer(f"{g}_bn").moving_mean.numpy())
             for g in GROUPS]
    assert moved == [False, False, False, False, True]


def test_head_layers_and_multipliers():
    clf = build_classifier(tiny_recipe(head={"dropout": 0.3, "hidden_units": 16}), 4)
    assert clf.head_layers == ("head_hidden", "head_dropout", "predictions")
    assert clf.model.output_shape == (None, 4)
    set_trainable(clf, 1)
    pairs = variable_multipliers(clf, [0.1, 0.2, 0.3, 0.4, 0.5])
    by_layer = {}
    for variable, multiplier in pairs:
        by_layer[variable.path.split("/")[-2]] = multiplier
    assert by_layer["stage_s4_conv"] == 0.2 and by_layer["stage_s32_conv"] == 0.5
    assert by_layer["head_hidden"] == 1.0 and by_layer["predictions"] == 1.0


def test_output_layer_is_float32_under_mixed_precision():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        clf = build_classifier(tiny_recipe(), 3)
        out = clf.model(np.zeros((1, 32, 32, 3), "float32"))
        assert clf.model.get_layer("stem_conv").compute_dtype == "float16"
        assert keras.backend.standardize_dtype(out.dtype) == "float32"
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_recipes_that_cannot_be_honoured_are_refused_with_the_reason():
    with pytest.raises(InvalidConfigError, match="has no pretrained weights"):
        build_classifier(tiny_recipe(backbone={"name": "test_tiny", "input_size": 32}), 2)
    folded = tiny_recipe(backbone={"name": "mobilenet_v3_small", "input_size": 32,
                                   "weights": "none"}, bn_policy="trainable")
    with pytest.raises(InvalidConfigError, match="folded"):
        build_classifier(folded, 2)
    no_bn = tiny_recipe(backbone={"name": "vgg16", "input_size": 32, "weights": "none"},
                        domain_adaptation={"method": "adabn", "before_phase": 0})
    with pytest.raises(InvalidConfigError, match="no BatchNorm"):
        build_classifier(no_bn, 2)
