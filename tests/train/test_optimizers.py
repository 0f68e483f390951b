"""Discriminative rates: after one step, update sizes between groups follow the multipliers."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from autotransfer.recipe.schema import Phase
from autotransfer.train.model import build_classifier, set_trainable, variable_multipliers
from autotransfer.train.optimizers import GroupAdam, make_optimizer
from tests.train.helpers import tiny_recipe

MULTIPLIERS = [0.05, 0.1, 0.25, 0.5, 1.0]


def one_step(optimizer_name: str, weight_decay: float = 0.0, lr: float = 1e-3):
    keras.utils.set_random_seed(0)
    clf = build_classifier(tiny_recipe(bn_policy="frozen"), 3)
    set_trainable(clf, 0)
    phase = Phase(name="p", epochs=1, trainable_from=0, learning_rate=lr,
                  optimizer=optimizer_name, group_lr_multipliers=MULTIPLIERS,
                  weight_decay=weight_decay, momentum=0.0)
    optimizer = make_optimizer(phase, phase.learning_rate, variable_multipliers(clf, MULTIPLIERS))
    clf.model.compile(optimizer=optimizer, loss="categorical_crossentropy")
    x = np.random.default_rng(0).uniform(0, 255, (8, 32, 32, 3)).astype("float32")
    y = np.eye(3)[np.arange(8) % 3]
    before = {w.path: w.numpy().copy() for w in clf.model.trainable_weights}
    with tf.GradientTape() as tape:
        loss = keras.losses.categorical_crossentropy(y, clf.model(x, training=True))
        loss = keras.ops.mean(loss)
    grads = tape.gradient(loss, clf.model.trainable_weights)
    optimizer.apply(grads, clf.model.trainable_weights)
    deltas = {w.path: w.numpy() - before[w.path] for w in clf.model.trainable_weights}
    grads = {w.path: np.asarray(g) for w, g in zip(clf.model.trainable_weights, grads)}
    return clf, deltas, grads, before


def conv_kernel(group: str) -> str:
    return f"{group}_conv/kernel"


def find(mapping, suffix):
    return next(v for k, v in mapping.items() if k.endswith(suffix))


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_adam_update_magnitude_ratio_equals_the_multiplier_ratio(name):
    _, deltas, grads, _ = one_step(name)
    groups = ["stem", "stage_s4", "stage_s8", "stage_s16", "stage_s32"]
    # Adam's first step is lr * g / (|g| + eps) ≈ lr * sign(g): |update| = lr * multiplier
    sizes = []
    for group in groups:
        d, g = find(deltas, conv_kernel(group)), find(grads, conv_kernel(group))
        big = np.abs(g) > 1e-4  # far above epsilon
        sizes.append(np.mean(np.abs(d[big])))
    ratios = np.asarray(sizes) / sizes[-1]
    np.testing.assert_allclose(ratios, np.asarray(MULTIPLIERS) / MULTIPLIERS[-1], rtol=2e-2)
    np.testing.assert_allclose(sizes[-1], 1e-3, rtol=2e-2)
    head = find(deltas, "predictions/kernel")
    assert np.max(np.abs(head)) == pytest.approx(1e-3, rel=2e-2)  # head: multiplier 1


def test_sgd_update_is_rate_times_multiplier_times_gradient():
    _, deltas, grads, _ = one_step("sgd", lr=5.0)  # large: float32 rounding of w + delta
    for group, m in zip(["stem", "stage_s8", "stage_s32"], [0.05, 0.25, 1.0]):
        want = -5.0 * m * find(grads, conv_kernel(group))
        np.testing.assert_allclose(find(deltas, conv_kernel(group)), want, rtol=1e-3,
                                   atol=1e-3 * np.abs(want).max())


def test_weight_decay_decoupled_for_adamw_coupled_for_sgd_and_only_on_kernels():
    _, d_plain, g_plain, before = one_step("sgd", 0.0, lr=1.0)
    _, d_decay, _, _ = one_step("sgd", 0.5, lr=1.0)
    kernel = conv_kernel("stage_s32")
    # L2: grad + wd * w, so the extra step is -lr * m * wd * w
    want = -1.0 * 1.0 * 0.5 * find(before, kernel)
    np.testing.assert_allclose(find(d_decay, kernel) - find(d_plain, kernel), want, rtol=1e-3,
                               atol=1e-4 * np.abs(want).max())
    bias = "predictions/bias"
    np.testing.assert_allclose(find(d_decay, bias), find(d_plain, bias), rtol=1e-6, atol=1e-12)
    _, a_plain, _, w = one_step("adamw", 0.0, lr=1.0)
    _, a_decay, _, _ = one_step("adamw", 0.5, lr=1.0)
    kernel = conv_kernel("stem")
    want = -1.0 * 0.05 * 0.5 * find(w, kernel)
    np.testing.assert_allclose(find(a_decay, kernel) - find(a_plain, kernel), want, rtol=1e-3,
                               atol=1e-4 * np.abs(want).max())


def test_multiplier_defaults_to_one_for_unmapped_variables():
    variable = keras.Variable(np.ones((2, 2), "float32"))
    optimizer = GroupAdam(0.1)
    optimizer.build([variable])
    assert optimizer.rate_multiplier(variable) == 1.0
