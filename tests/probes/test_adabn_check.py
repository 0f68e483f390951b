"""The AdaBN check: the linear probe with ImageNet's and with re-estimated BN statistics."""

from __future__ import annotations

import numpy as np
import pytest

from autotransfer.probes.adabn_check import compare
from autotransfer.probes.transferability import knn_accuracy, linear_probe_accuracy


def test_features_that_separate_the_classes_after_adabn_give_a_positive_gain():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 20)
    noise = rng.normal(size=(60, 8))
    adapted = noise + 4.0 * np.eye(8)[labels]  # the classes apart
    before = linear_probe_accuracy(noise, labels, seed=0)  # chance: nothing to separate
    check = compare(adapted, labels, imagenet_linear=before,
                    imagenet_knn=knn_accuracy(noise, labels, seed=0), seed=0, seconds=1.5)
    assert check.adapted_linear_probe_accuracy == pytest.approx(1.0)
    assert check.gain == pytest.approx(1.0 - before) and check.gain > 0.4
    assert check.n_samples == 60 and check.adapted_knn_accuracy > check.knn_accuracy
    assert f"{before:.1%}" in check.describe() and "100.0%" in check.describe()
    assert check.n_adapted == 60 and "re-estimated on all 60 sample images" in check.describe()


def test_the_check_states_how_many_images_the_statistics_came_from():
    """The statistics come from a subset of the sample (``ADAPT_IMAGES``): the record keeps the
    true count, and the reports' line states it, not the sample's size."""
    from autotransfer.probes.adabn_check import ADAPT_IMAGES
    from autotransfer.probes.models import AdaBNCheck

    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(8), 80)  # a 640-image sample
    features = rng.normal(size=(640, 4)) + np.eye(8, 4)[labels]
    check = compare(features, labels, imagenet_linear=0.5, imagenet_knn=0.5, seed=0, seconds=1)
    assert ADAPT_IMAGES < 640 and check.n_samples == 640 and check.n_adapted == ADAPT_IMAGES
    assert f"re-estimated on {ADAPT_IMAGES} of the 640 sample images" in check.describe()
    assert "640 images)" not in check.describe()
    small = compare(features, labels, imagenet_linear=0.5, imagenet_knn=0.5, seed=0, seconds=1,
                    adapt_images=100)
    assert small.n_adapted == 100 and "on 100 of the 640 sample images" in small.describe()
    older = AdaBNCheck.model_validate(check.model_dump(exclude={"n_adapted"}))  # a cached record
    assert older.n_adapted is None and "re-estimated on the sample" in older.describe()


def test_measure_adabn_leaves_a_backbone_without_bn_statistics_alone_and_checks_the_sample(
        tmp_path):
    pytest.importorskip("keras")
    from autotransfer.data.profile import profile_dataset
    from autotransfer.errors import InvalidParameterError
    from autotransfer.probes.probe import measure_adabn, probe_dataset
    from tests.data.builders import make_class_folders

    profile = profile_dataset(make_class_folders(tmp_path / "ds", {"a": 6, "b": 6}, size=32))
    report = probe_dataset(profile, ["test_tiny"], weights=None, per_class=4, cache=False,
                           measure_orientation_with="none")
    assert not report.get("test_tiny").bn_shift.applicable  # random init: BN folded (0 / 1)
    assert measure_adabn(report, profile, "test_tiny", per_class=4, weights=None,
                         cache=False) is report
    applicable = report.get("test_tiny").bn_shift.model_copy(update={"applicable": True})
    faked = report.model_copy(update={"probes": [
        report.get("test_tiny").model_copy(update={"bn_shift": applicable})]})
    with pytest.raises(InvalidParameterError, match="has 12 images, but the probe of test_tiny "
                                                    "measured 8"):
        measure_adabn(faked, profile, "test_tiny", per_class=6, weights=None, cache=False)
    measured = measure_adabn(faked, profile, "test_tiny", per_class=4, weights=None, cache=False)
    check = measured.get("test_tiny").adabn
    assert check is not None and check.n_samples == 8 and check.n_adapted == 8
    assert check.seconds > 0
    assert check.linear_probe_accuracy == report.get("test_tiny").transferability.linear_probe_accuracy


def test_the_statistics_come_from_an_even_spread_subset_and_every_image_is_extracted():
    from autotransfer.probes.adabn_check import adaptation_subset

    picked = adaptation_subset(640, 256)
    assert len(picked) == 256 and picked[0] == 0 and picked[-1] == 639
    assert np.all(np.diff(picked) >= 2) and np.all(np.diff(picked) <= 3)  # no class left out
    assert list(adaptation_subset(5, 256)) == [0, 1, 2, 3, 4]

    keras = pytest.importorskip("keras")
    import tensorflow as tf

    from autotransfer.backbones.adabn import adapt_batchnorm
    from autotransfer.backbones.build import build_backbone
    from autotransfer.backbones.catalog import get_backbone
    from autotransfer.probes.adabn_check import adapted_features
    from autotransfer.probes.extract import plan_extraction, run_model

    plan = plan_extraction(get_backbone("test_tiny"), weights=None)
    images = np.random.default_rng(1).integers(0, 256, size=(12, 32, 32, 3), dtype=np.uint8)
    images[::2] //= 4  # two kinds of image: the subset's statistics differ from the whole's
    keras.utils.set_random_seed(0)
    features = adapted_features(plan, images, batch_size=4, adapt_images=4)
    keras.utils.set_random_seed(0)
    model = build_backbone(plan.spec, plan.input_size, weights=None)
    adapt_batchnorm(model, tf.data.Dataset.from_tensor_slices(images[[0, 4, 7, 11]]).batch(4))
    (expected,) = run_model(model, images, 4)
    assert features.shape == (12, 32)
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)
    keras.utils.set_random_seed(0)
    whole = adapted_features(plan, images, batch_size=4, adapt_images=12)
    assert not np.allclose(whole, features)
