"""float32 vs mixed_bfloat16 while probing: timing, feature agreement, the cache, the GPU path."""

from __future__ import annotations

import numpy as np
import pytest

from tests.data.builders import make_class_folders

keras = pytest.importorskip("keras")

from autotransfer.backbones.catalog import get_backbone  # noqa: E402
from autotransfer.probes import precision  # noqa: E402
from autotransfer.probes.cache import FeatureCache  # noqa: E402
from autotransfer.probes.extract import extract, plan_extraction  # noqa: E402
from autotransfer.probes.precision import (PrecisionCheck, extract_timed,  # noqa: E402
                                           policy_scope, precision_check)
from autotransfer.probes.probe import measure_precision, probe_dataset  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_class_folders(tmp_path_factory.mktemp("ds"), {"a": 8, "b": 8, "c": 8}, size=32)


def _bfloat16_faster(monkeypatch):
    """Report bfloat16 as twice as fast (the real timing depends on this machine's CPU)."""
    real = precision.time_forward

    def faster(models, images, batch_size=32, batches=precision.TIMED_BATCHES):
        seconds, timed = real(models, images, batch_size, batches)
        return {"float32": seconds["float32"], "bfloat16": seconds["float32"] / 2}, timed

    monkeypatch.setattr(precision, "time_forward", faster)


def test_policy_scope_restores_the_global_policy_even_on_error():
    assert keras.mixed_precision.global_policy().name == "float32"
    with pytest.raises(ValueError):
        with policy_scope("mixed_bfloat16"):
            assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
            raise ValueError
    assert keras.mixed_precision.global_policy().name == "float32"


def test_both_precisions_are_timed_and_bfloat16_features_agree_with_float32(monkeypatch):
    plan = plan_extraction(get_backbone("test_tiny"), weights=None)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(40, 32, 32, 3), dtype=np.uint8)
    labels = np.repeat([0, 1], 20)
    images[labels == 1] //= 3  # darker images: a separable second class
    keras.utils.set_random_seed(0)
    float32 = extract(plan, images)["features"]

    slow = extract_timed(plan, images, batch_size=8)
    assert slow["float32_seconds_per_image"] > 0 and slow["bfloat16_seconds_per_image"] > 0
    assert int(slow["timed_images"]) == 3 * 8

    _bfloat16_faster(monkeypatch)
    keras.utils.set_random_seed(0)  # the same random weights as the float32 extraction
    arrays = extract_timed(plan, images, batch_size=8)
    bf16 = arrays["bfloat16_features"]
    assert bf16.shape == float32.shape and bf16.dtype == np.float32
    assert not np.array_equal(bf16, float32)  # computed in bfloat16 ...
    np.testing.assert_allclose(bf16, float32, rtol=0.05, atol=0.05 * np.abs(float32).max())
    assert keras.mixed_precision.global_policy().name == "float32"  # ... and not leaked

    from autotransfer.probes.transferability import measure_transferability

    t = measure_transferability(float32, labels)
    check = precision_check(arrays, t.linear_probe_accuracy, t.logme, labels, seed=0,
                            seconds=1.0, float32_features=float32)
    assert check.measured and check.speedup == pytest.approx(2.0, rel=1e-3)
    assert check.feature_cosine > 0.99
    assert abs(check.bfloat16_linear_probe_accuracy - check.linear_probe_accuracy) <= 0.1
    assert abs(check.bfloat16_logme - check.logme) < 0.1
    assert "2.00×" in check.describe()


def test_a_slower_bfloat16_is_not_extracted_and_says_why():
    arrays = {"float32_seconds_per_image": np.asarray(0.02),
              "bfloat16_seconds_per_image": np.asarray(0.03), "timed_images": np.asarray(96)}
    check = precision_check(arrays, 0.9, 1.2, np.repeat([0, 1], 10), seed=0, seconds=2.0)
    assert check.speedup == pytest.approx(2 / 3)
    assert check.bfloat16_linear_probe_accuracy is None and check.bfloat16_logme is None
    assert "not faster" in check.reason


def test_measured_once_then_cached_with_the_probe(dataset, tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path / "cache")
    report = probe_dataset(dataset, ["test_tiny"], weights=None, per_class=6, cache=cache,
                           measure_orientation_with="none")
    before = set(cache.folder.iterdir())
    _bfloat16_faster(monkeypatch)
    first = measure_precision(report, report_profile(dataset), "test_tiny", per_class=6,
                              weights=None, cache=cache).get("test_tiny").precision
    assert first.measured and first.seconds > 0 and first.n_samples == 18
    assert first.bfloat16_linear_probe_accuracy is not None and first.feature_cosine > 0.99
    assert len(set(cache.folder.iterdir()) - before) == 1  # its own entry, the probe's kept

    monkeypatch.setattr(precision, "time_forward", lambda *a, **k: pytest.fail("not cached"))
    again = measure_precision(report, report_profile(dataset), "test_tiny", per_class=6,
                              weights=None, cache=cache).get("test_tiny").precision
    assert again.seconds == 0 and again.float32_ms == first.float32_ms
    assert again.bfloat16_linear_probe_accuracy == first.bfloat16_linear_probe_accuracy


def test_not_measured_where_a_gpu_has_its_own_mixed_precision(dataset, tmp_path, monkeypatch):
    report = probe_dataset(dataset, ["test_tiny"], weights=None, per_class=6, cache=False,
                           measure_orientation_with="none")
    monkeypatch.setattr(precision, "gpu_present", lambda: True)
    check = measure_precision(report, report_profile(dataset), "test_tiny", per_class=6,
                              weights=None, cache=False).get("test_tiny").precision
    assert check == PrecisionCheck(measured=False, reason=check.reason) and "GPU" in check.reason


def test_the_advisor_measures_the_chosen_backbone_unless_told_the_precision(dataset, tmp_path):
    from autotransfer.advisor.advise import Advisor

    measured = Advisor(backbones=["test_tiny"], weights=None, per_class=6,
                       cache=False).fit(dataset)
    check = measured.probes_.get("test_tiny").precision
    assert check is not None and check.measured
    reason = measured.recipe_.reasons["precision"]
    assert reason.rule in ("PREC01", "PREC02")
    assert reason.evidence["float32_ms"] == pytest.approx(check.float32_ms, rel=1e-5)
    assert measured.recipe_.precision == ("bfloat16" if reason.rule == "PREC01" else "float32")

    told = Advisor(backbones=["test_tiny"], weights=None, per_class=6, cache=False,
                   precision="bfloat16").fit(dataset)
    assert told.probes_.get("test_tiny").precision is None  # nothing measured
    assert told.recipe_.precision == "bfloat16" and told.recipe_.reasons["precision"].rule == "user"


def report_profile(dataset):
    from autotransfer.data.profile import profile_dataset

    return profile_dataset(dataset)


def test_probe_features_are_float32_whatever_policy_the_caller_left_set(dataset):
    plain = probe_dataset(dataset, ["test_tiny"], weights=None, per_class=6, cache=False,
                          measure_orientation_with="none").get("test_tiny")
    with policy_scope("mixed_bfloat16"):
        under = probe_dataset(dataset, ["test_tiny"], weights=None, per_class=6, cache=False,
                              measure_orientation_with="none").get("test_tiny")
    assert under.transferability == plain.transferability
