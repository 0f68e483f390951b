"""One training step of the recipe timed while advising: the trainer's path, the cache."""

from __future__ import annotations

import numpy as np
import pytest

from tests.data.builders import make_class_folders

keras = pytest.importorskip("keras")

from autotransfer.backbones.catalog import get_backbone  # noqa: E402
from autotransfer.data.profile import profile_dataset  # noqa: E402
from autotransfer.probes import step_time  # noqa: E402
from autotransfer.probes.cache import FeatureCache  # noqa: E402
from autotransfer.probes.probe import measure_step, probe_dataset  # noqa: E402
from autotransfer.probes.step_time import StepTiming, time_training_step, uses_cache  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_class_folders(tmp_path_factory.mktemp("ds"), {"a": 8, "b": 8, "c": 8}, size=32)


def test_the_cached_path_is_timed_where_the_trainer_caches():
    assert uses_cache(3, False, 1000, 100)
    assert not uses_cache(0, False, 1000, 100)  # everything trains: nothing to cache
    assert not uses_cache(3, True, 1000, 100)  # MixUp/CutMix mix images
    assert not uses_cache(3, False, 2**30, 100)  # above the trainer's memory limit


@pytest.mark.parametrize("trainable_from, cached", [(0, False), (3, True)])
def test_a_training_step_is_timed_per_image(trainable_from, cached):
    images = np.random.default_rng(0).integers(0, 256, size=(12, 32, 32, 3), dtype=np.uint8)
    arrays = time_training_step(get_backbone("test_tiny"), images, 3, trainable_from,
                                batch_size=4, bn_frozen=True, mixes=False, n_train=100)
    assert bool(arrays["cached"]) is cached
    assert arrays["step_seconds_per_image"] > 0 and arrays["eval_seconds_per_image"] > 0
    assert int(arrays["timed_images"]) == step_time.TIMED_STEPS * 4
    timing = step_time.step_timing(arrays, trainable_from=trainable_from, input_size=32,
                                   batch_size=4, precision="float32", seconds=1.0)
    assert isinstance(timing, StepTiming) and timing.step_ms > 0
    assert str(trainable_from) in timing.describe()


def test_measured_once_then_cached_with_the_probe(dataset, tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path / "cache")
    report = probe_dataset(dataset, ["test_tiny"], weights=None, per_class=6, cache=cache,
                           measure_orientation_with="none")
    profile = profile_dataset(dataset)
    setting = dict(input_size=32, trainable_from=2, batch_size=4, bn_frozen=True, mixes=False,
                   per_class=6, cache=cache)
    first = measure_step(report, profile, "test_tiny", **setting).get("test_tiny").step
    assert first.seconds > 0 and first.trainable_from == 2 and first.step_ms > 0

    monkeypatch.setattr(step_time, "time_training_step",
                        lambda *a, **k: pytest.fail("not cached"))
    again = measure_step(report, profile, "test_tiny", **setting).get("test_tiny").step
    assert again.seconds == 0 and again.step_ms == first.step_ms
    # another depth is another measurement
    with pytest.raises(pytest.fail.Exception):
        measure_step(report, profile, "test_tiny", **{**setting, "trainable_from": 1})


def test_a_record_or_cache_from_when_a_retrace_was_timed_still_loads():
    """The probe no longer times a retrace (the trainer traces once per phase): a saved record
    with ``trace_s`` and cached arrays with ``trace_seconds`` still load, without that figure."""
    old = {"trainable_from": 1, "input_size": 128, "batch_size": 32, "precision": "float32",
           "cached": True, "step_ms": 12.7, "eval_ms": 4.0, "timed_images": 64,
           "trace_s": 3.117, "seconds": 19.2}
    timing = StepTiming.model_validate(old)
    assert timing.step_ms == 12.7 and "trace_s" not in timing.model_dump()
    arrays = {"step_seconds_per_image": np.asarray(0.0127), "eval_seconds_per_image":
              np.asarray(0.004), "cached": np.asarray(True), "timed_images": np.asarray(64),
              "trace_seconds": np.asarray(3.1)}
    again = step_time.step_timing(arrays, trainable_from=1, input_size=128, batch_size=32,
                                  precision="float32", seconds=0.0)
    assert again.step_ms == pytest.approx(12.7) and again.cached
    with pytest.raises(ValueError):  # anything else unknown is still refused
        StepTiming.model_validate({**old, "typo": 1})
