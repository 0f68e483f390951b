"""AdaBN re-estimates BatchNorm statistics on the target data, and the run reports its effect."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from autotransfer.train import train
from autotransfer.backbones.adabn import adapt_batchnorm
from autotransfer.train.model import build_classifier, set_trainable
from tests.train.helpers import make_colour_dataset, tiny_recipe


def test_first_bn_layer_gets_the_exact_statistics_of_its_input():
    keras.utils.set_random_seed(0)
    clf = build_classifier(tiny_recipe(), 2)
    set_trainable(clf, 5)  # BN frozen: AdaBN must work on frozen layers and leave them frozen
    images = np.random.default_rng(0).uniform(50, 200, (20, 32, 32, 3)).astype("float32")
    conv = keras.Model(clf.model.inputs, clf.model.get_layer("stem_conv").output)
    feature = conv.predict(images, verbose=0)
    ds = tf.data.Dataset.from_tensor_slices(images).batch(6)  # uneven batches: 6, 6, 6, 2
    result = adapt_batchnorm(clf.model, ds)
    bn = clf.model.get_layer("stem_bn")
    np.testing.assert_allclose(bn.moving_mean.numpy(), feature.mean(axis=(0, 1, 2)), rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), feature.var(axis=(0, 1, 2)),
                               rtol=1e-3, atol=1e-5)
    assert result.n_layers == 5 and result.n_images == 20 and result.mean_abs_shift > 0
    assert not bn.trainable


def test_later_layers_see_target_normalised_inputs():
    keras.utils.set_random_seed(1)
    clf = build_classifier(tiny_recipe(), 2)
    images = np.random.default_rng(1).uniform(0, 255, (16, 32, 32, 3)).astype("float32")
    adapt_batchnorm(clf.model, tf.data.Dataset.from_tensor_slices(images).batch(16))
    # with one batch, inference-mode BN outputs of the adapted network are normalised
    out = keras.Model(clf.model.inputs, clf.model.get_layer("stage_s8_bn").output).predict(
        images, verbose=0)
    np.testing.assert_allclose(out.mean(axis=(0, 1, 2)), clf.model.get_layer("stage_s8_bn").beta
                               .numpy(), atol=1e-3)


def test_run_reports_adabn_effect(tmp_path):
    data = make_colour_dataset(tmp_path / "ds", {"a": 8, "b": 8})
    recipe = tiny_recipe(domain_adaptation={"method": "adabn", "before_phase": 1})
    result = train(data, recipe, tmp_path / "run")
    adabn = result.metrics["adabn"]
    assert adabn["before_phase"] == 1 and adabn["n_layers"] == 5 and adabn["n_images"] == 12
    assert set(adabn["before"]) == {"accuracy", "loss"} and set(adabn["after"]) == {"accuracy",
                                                                                    "loss"}
    assert adabn["before"]["loss"] != adabn["after"]["loss"]
    assert "AdaBN before phase 1" in (result.out / "report.md").read_text()
