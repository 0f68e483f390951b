"""The adaptive wrapper: the recipe's loss is applied (only then), target labels are never read,
and what is kept is the plain classifier."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from autotransfer.recipe.schema import DomainAdaptation
from autotransfer.train.adaptation.model import AdaptiveModel, features_and_predictions, penultimate
from autotransfer.train.adaptation.objective import AdaptationObjective
from autotransfer.train.adaptation.pairing import pair_with_target

N_CLASSES = 3


def _classifier(hidden: int = 8) -> keras.Model:
    inputs = keras.Input((6,))
    x = keras.layers.Dense(hidden, activation="relu", name="head_hidden")(inputs)
    x = keras.layers.Dropout(0.0, name="head_dropout")(x)
    outputs = keras.layers.Dense(N_CLASSES, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, outputs, name="tiny_classifier")


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    xs = rng.normal(size=(48, 6)).astype("float32")
    ys = rng.integers(0, N_CLASSES, 48)
    xt = (rng.normal(size=(40, 6)) * 2 + 3).astype("float32")
    return xs, np.eye(N_CLASSES, dtype="float32")[ys], xt


def _train(method: str, weight: float, target: np.ndarray | None = None, epochs: int = 2):
    keras.utils.set_random_seed(0)
    xs, ys, xt = _data()
    clf = _classifier()
    model = AdaptiveModel(clf, DomainAdaptation(method=method, weight=weight, ramp_steps=0),
                          N_CLASSES, seed=0)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    source = tf.data.Dataset.from_tensor_slices((xs, ys, np.ones(48, "float32"))).batch(16)
    ds = pair_with_target(source, xt if target is None else target, 16, seed=0)
    history = model.fit(ds, epochs=epochs, verbose=0,
                        validation_data=tf.data.Dataset.from_tensor_slices((xs, ys)).batch(16))
    return clf, model, history.history


def _plain(epochs: int = 2):
    keras.utils.set_random_seed(0)
    xs, ys, _ = _data()
    clf = _classifier()
    clf.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy")
    clf.fit(tf.data.Dataset.from_tensor_slices((xs, ys, np.ones(48, "float32"))).batch(16),
            epochs=epochs, verbose=0)
    return clf


@pytest.mark.parametrize("method", ["coral", "mmd", "mcc", "entropy", "dann", "cdan"])
def test_each_method_changes_training_and_weight_zero_does_not(method):
    adapted, _, history = _train(method, 1.0)
    untouched, _, _ = _train(method, 0.0)
    plain = _plain()
    assert history["adapt_loss"][-1] > 0 and "val_accuracy" in history
    assert "val_adapt_loss" not in history  # measured in training only
    # weight 0: exactly source-only training; weight 1: a different classifier
    for a, b in zip(untouched.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert any(not np.allclose(a, b, atol=1e-5)
               for a, b in zip(adapted.get_weights(), plain.get_weights(), strict=True))


def test_target_batches_are_images_only_so_labels_cannot_leak():
    xs, ys, xt = _data()
    source = tf.data.Dataset.from_tensor_slices((xs, ys)).batch(16)
    (x_s, x_t), y = next(iter(pair_with_target(source, xt, 16, seed=3)))
    assert x_s.shape == x_t.shape == (16, 6) and y.shape == (16, N_CLASSES)
    # the target side holds only target rows (shuffled), no label tensor
    rows = {tuple(np.round(r, 5)) for r in xt}
    assert all(tuple(np.round(r, 5)) in rows for r in x_t.numpy())


def test_pairing_cycles_a_small_target_set_and_refuses_an_empty_one():
    xs, ys, xt = _data()
    source = tf.data.Dataset.from_tensor_slices((xs, ys)).batch(16)
    assert len(list(pair_with_target(source, xt[:5], 16, seed=0))) == 3
    with pytest.raises(ValueError, match="empty"):
        pair_with_target(source, xt[:0], 16, seed=0)


def test_the_discriminator_trains_but_belongs_to_the_wrapper_only():
    clf, model, _ = _train("dann", 1.0)
    assert len(model.trainable_variables) > len(clf.trainable_variables)
    names = {v.path for v in clf.weights}
    assert not any("discriminator" in n for n in names)


def test_the_kept_classifier_has_no_custom_objects(tmp_path):
    clf, model, _ = _train("cdan", 1.0)
    path = tmp_path / "clf.keras"
    clf.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    assert {type(layer).__module__.split(".")[0] for layer in loaded.layers} == {"keras"}
    xs, _, _ = _data()
    np.testing.assert_allclose(loaded.predict(xs, verbose=0), model.predict(xs, verbose=0),
                               rtol=1e-5, atol=1e-6)


def test_features_are_the_input_of_the_head_dropout_and_may_be_the_model_input():
    clf = _classifier()
    assert penultimate(clf) is clf.get_layer("head_hidden").output
    inputs = keras.Input((6,))
    bare = keras.Model(inputs, keras.layers.Dense(N_CLASSES, activation="softmax",
                                                  name="predictions")(inputs))
    pair = features_and_predictions(bare)
    f, p = pair(np.ones((2, 6), "float32"))
    np.testing.assert_allclose(f, np.ones((2, 6)))


def test_objective_refuses_a_method_without_loss():
    with pytest.raises(ValueError, match="adds no loss"):
        AdaptationObjective(DomainAdaptation(method="adabn_target"), 4, N_CLASSES)
