"""Feature caching: when it applies, and that cached and uncached training agree."""

from __future__ import annotations

import numpy as np
import pytest

from autotransfer.recipe.schema import Augmentation
from autotransfer.train import train
from autotransfer.train.export import load_model
from autotransfer.train.feature_cache import plan_cache
from autotransfer.train.model import build_classifier
from tests.train.helpers import make_colour_dataset, tiny_recipe

NONE = Augmentation(horizontal_flip=False, zoom=0.0, translation=0.0)


@pytest.fixture(scope="module")
def clf():
    return build_classifier(tiny_recipe(), 3)


def test_plan_caches_pooled_features_of_head_only_phases(clf):
    plan = plan_cache(clf, 5, 10, NONE, 100)
    assert plan.used and plan.views == 1 and plan.feature_shape == (32,)
    assert plan.bytes == 100 * 32 * 4 and plan.boundary == "pooled features"


def test_plan_caches_group_boundary_with_views_for_augmentation(clf):
    plan = plan_cache(clf, 2, 10, Augmentation(), 100, views=3)
    assert plan.used and plan.views == 3
    assert plan.feature_shape == (8, 8, 8)  # 32 px / stride 4, 8 channels (end of stage_s4)
    assert plan_cache(clf, 2, 2, Augmentation(), 100, views=3).views == 2  # no more than epochs


def test_plan_declines_with_the_reason(clf):
    assert "nothing is frozen" in plan_cache(clf, 0, 5, NONE, 10).reason
    assert "MixUp" in plan_cache(clf, 5, 5, Augmentation(mixup_alpha=0.2), 10).reason
    assert "turned off" in plan_cache(clf, 5, 5, NONE, 10, enabled=False).reason
    tight = plan_cache(clf, 1, 5, NONE, 1000, max_bytes=1000)
    assert not tight.used and "cache limit" in tight.reason
    fewer = plan_cache(clf, 5, 5, Augmentation(), 100, views=4, max_bytes=100 * 32 * 4 * 2)
    assert fewer.used and fewer.views == 2 and "memory limit" in fewer.reason


def test_cached_and_uncached_training_agree(tmp_path):
    data = make_colour_dataset(tmp_path / "ds", {"a": 10, "b": 10, "c": 10})
    recipe = tiny_recipe()
    cached = train(data, recipe, tmp_path / "cached", feature_cache=True)
    plain = train(data, recipe, tmp_path / "plain", feature_cache=False)
    assert [p["feature_cache"]["used"] for p in cached.metrics["phases"]] == [True, True]
    assert [p["feature_cache"]["used"] for p in plain.metrics["phases"]] == [False, False]
    for a, b in zip(cached.metrics["phases"], plain.metrics["phases"]):
        np.testing.assert_allclose(a["history"]["loss"], b["history"]["loss"], rtol=1e-4)
        np.testing.assert_allclose(a["history"]["val_loss"], b["history"]["val_loss"], rtol=1e-4)
    wa = load_model(cached.model_path).get_weights()
    wb = load_model(plain.model_path).get_weights()
    for x, y in zip(wa, wb):
        np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-5)
    assert cached.val_accuracy == plain.val_accuracy


def test_augmented_views_differ_and_epochs_cycle_through_them(tmp_path):
    from autotransfer.data.profile import profile_dataset
    from autotransfer.data.splits import make_splits
    from autotransfer.train.data import TrainingInputs
    from autotransfer.train.feature_cache import FeatureCache
    from autotransfer.train.model import set_trainable

    data = make_colour_dataset(tmp_path / "ds", {"a": 6, "b": 6})
    splits = make_splits(profile_dataset(data, workers=1), val_fraction=0.25, seed=0)
    inputs = TrainingInputs(splits, 32)
    clf = build_classifier(tiny_recipe(), 2)
    set_trainable(clf, 5)
    aug = Augmentation(horizontal_flip=True, rotation=0.2)
    plan = plan_cache(clf, 5, 6, aug, inputs.n_train, views=3)
    cache = FeatureCache(clf, 5, plan, inputs, aug, seed=0, phase=0, batch_size=4)
    assert len(cache.views) == 3 and cache.views[0].shape == (inputs.n_train, 32)
    assert not np.allclose(cache.views[0], cache.views[1])
    assert [cache.view_of_epoch(e) for e in range(6)] == [0, 1, 2, 0, 1, 2]
    # validation features are the prefix of the unaugmented images: the model's own features
    direct = clf.backbone.predict(np.stack([x for x, _ in inputs.eval_set("val", 4)
                                            .unbatch().as_numpy_iterator()]), verbose=0)
    np.testing.assert_allclose(cache.val, direct, rtol=1e-5, atol=1e-6)


def test_epoch_pipelines_run_without_the_autotuning_thread(tmp_path):
    """Destroying a tf.data iterator waits for its autotuning thread: seconds at the end of every
    epoch's ``fit`` (docs/benchmarks/fit_tail.md). The trainer's pipelines run without it, and
    give the same batches in the same order as with it."""
    from autotransfer.data.profile import profile_dataset
    from autotransfer.data.splits import make_splits
    from autotransfer.train.data import TrainingInputs
    from autotransfer.train.feature_cache import FrozenFeatures

    data = make_colour_dataset(tmp_path / "ds", {"a": 6, "b": 6})
    splits = make_splits(profile_dataset(data, workers=1), val_fraction=0.25, seed=0)
    inputs = TrainingInputs(splits, 32)
    rng = np.random.default_rng(0)
    features = FrozenFeatures([rng.normal(size=(inputs.n_train, 5)).astype(np.float32)],
                              rng.normal(size=(len(splits.val), 5)).astype(np.float32), inputs,
                              build_seconds=0.0)
    aug = Augmentation(horizontal_flip=True, rotation=0.2)

    def pipelines():
        return [features.train_epoch(0, 4, seed=7), features.val_set(4),
                inputs.train_epoch(aug, 4, seed=7), inputs.eval_set("val", 4)]

    without = pipelines()
    assert [ds.options().autotune.enabled for ds in without] == [False] * 4
    inputs.autotune_thread = True  # the inputs' switch (tools/bench_fit_tail.py's), read anew
    with_thread = pipelines()
    assert [ds.options().autotune.enabled for ds in with_thread] == [True] * 4
    for a, b in zip(without, with_thread):
        for x, y in zip(a.as_numpy_iterator(), b.as_numpy_iterator(), strict=True):
            for u, v in zip(x, y, strict=True):
                np.testing.assert_array_equal(u, v)
