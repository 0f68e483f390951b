"""Choosing among trained candidates from source validation batches and unlabelled targets."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from autotransfer.train.adaptation.validate import candidate_outputs, choose


def _classifier(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,))
    x = keras.layers.Dense(5, activation="relu", name="head_hidden")(inputs)
    x = keras.layers.Dropout(0.1, name="head_dropout")(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax",
                                                  name="predictions")(x))


def test_candidates_are_scored_from_source_val_and_unlabelled_target_only():
    rng = np.random.default_rng(0)
    xv = rng.normal(size=(20, 4)).astype("float32")
    yv = np.eye(3, dtype="float32")[np.arange(20) % 3]
    val = tf.data.Dataset.from_tensor_slices((xv, yv)).batch(8)
    target = tf.data.Dataset.from_tensor_slices(rng.normal(size=(15, 4)).astype("float32"))
    outputs = {f"c{s}": candidate_outputs(f"c{s}", _classifier(s), val, target)
               for s in range(2)}
    c0 = outputs["c0"]
    assert c0.source_val_features.shape == (20, 5) and c0.target_probs.shape == (15, 3)
    np.testing.assert_array_equal(c0.source_val_labels, np.arange(20) % 3)
    choice = choose(outputs, "source")
    assert choice.name in outputs and "without target labels" in choice.text
    assert choose(outputs, "dev").criterion == "dev"
    with pytest.raises(ValueError, match="no candidates"):
        choose({})


def test_a_linear_head_on_frozen_features_is_scored_from_its_input_features():
    """The exact head (one softmax layer on the pooled features, no hidden layer) has the pooled
    features as its penultimate ones: DEV scores it like the gradient candidates."""
    rng = np.random.default_rng(1)
    keras.utils.set_random_seed(1)
    inputs = keras.Input((4,))
    linear = keras.Model(inputs, keras.layers.Dense(3, activation="softmax",
                                                    name="predictions")(inputs))
    xv = rng.normal(size=(20, 4)).astype("float32")
    yv = np.eye(3, dtype="float32")[np.arange(20) % 3]
    val = tf.data.Dataset.from_tensor_slices((xv, yv)).batch(8)
    xt = rng.normal(1.0, 1.0, size=(15, 4)).astype("float32")
    target = tf.data.Dataset.from_tensor_slices(xt)
    exact = candidate_outputs("exact_head", linear, val, target)
    np.testing.assert_allclose(exact.source_val_features, xv, rtol=1e-6)
    np.testing.assert_allclose(exact.target_features, xt, rtol=1e-6)
    outputs = {"exact_head": exact, "0": candidate_outputs("0", _classifier(0), val, target)}
    choice = choose(outputs, "dev")
    assert set(choice.scores) == {"exact_head", "0"} and all(
        np.isfinite(v) for v in choice.scores.values())
