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
from autotransfer.recipe.schema import Augmentation  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_class_folders(tmp_path_factory.mktemp("ds"), {"a": 8, "b": 8, "c": 8}, size=32)


def test_the_cached_path_is_timed_where_the_trainer_caches():
    assert uses_cache(3, False, 1000, 100)
    assert not uses_cache(0, False, 1000, 100)  # everything trains: nothing to cache
    assert not uses_cache(3, True, 1000, 100)  # MixUp/CutMix mix images
    assert not uses_cache(3, False, 2**30, 100)  # above the trainer's memory limit


@pytest.mark.parametrize("trainable_from, cached", [(0, False), (3, True)])
def test_a_training_step_is_timed_inside_fit_with_its_input_pipeline(trainable_from, cached,
                                                                     monkeypatch):
    transformed = []
    original = step_time.image_transform

    def counting(augmentation, seed=0):  # the timed epoch's pipeline calls the transform
        transform = original(augmentation, seed)

        def counted(x, y, w):
            transformed.append(1)  # once per trace of the tf.data map
            return transform(x, y, w)
        return counted

    monkeypatch.setattr(step_time, "image_transform", counting)
    images = np.random.default_rng(0).integers(0, 256, size=(12, 32, 32, 3), dtype=np.uint8)
    arrays = time_training_step(get_backbone("test_tiny"), images, 3, trainable_from,
                                batch_size=4, bn_frozen=True, mixes=False, n_train=100,
                                augmentation=Augmentation(zoom=0.0, translation=0.0))  # a flip
    assert bool(arrays["cached"]) is cached
    assert arrays["step_seconds_per_image"] > 0 and arrays["eval_seconds_per_image"] > 0
    assert float(arrays["overhead_seconds"]) >= 0
    assert int(arrays["timed_images"]) == step_time.TIMED_STEPS * 4
    # the rate is the median timed batch (not their sum): every batch is kept
    batches = np.asarray(arrays["batch_seconds"])
    assert batches.shape == (step_time.TIMED_STEPS,) and (batches > 0).all()
    assert float(arrays["step_seconds_per_image"]) == pytest.approx(np.median(batches) / 4)
    # the uncached epoch augments every batch; the cached one augmented once, while caching
    assert bool(transformed) is not cached
    timing = step_time.step_timing(arrays, trainable_from=trainable_from, input_size=32,
                                   batch_size=4, precision="float32", seconds=1.0)
    assert isinstance(timing, StepTiming) and timing.step_ms > 0 and timing.fit_timed
    assert len(timing.batch_ms) == step_time.TIMED_STEPS  # every timed batch, kept as evidence
    assert timing.overhead_s == pytest.approx(float(arrays["overhead_seconds"]), abs=1e-3)
    assert str(trainable_from) in timing.describe()
    assert ("cached activations" if cached else "augmented images") in timing.describe()


@pytest.fixture
def probed(dataset, tmp_path):
    """A probe report of the tiny backbone (no step timed yet), its profile and a timing setting."""
    cache = FeatureCache(tmp_path / "cache")
    report = probe_dataset(dataset, ["test_tiny"], weights=None, per_class=6, cache=cache,
                           measure_orientation_with="none")
    setting = dict(input_size=32, trainable_from=2, batch_size=4, bn_frozen=True, mixes=False,
                   per_class=6, cache=cache, augmentation=Augmentation())
    return report, profile_dataset(dataset), setting


def test_measured_once_then_cached_with_the_probe(probed, monkeypatch):
    report, profile, setting = probed
    first = measure_step(report, profile, "test_tiny", **setting).get("test_tiny").step
    assert first.seconds > 0 and first.trainable_from == 2 and first.step_ms > 0
    assert first.fit_timed and first.overhead_s is not None and first.cached

    monkeypatch.setattr(step_time, "time_training_step",
                        lambda *a, **k: pytest.fail("not cached"))
    again = measure_step(report, profile, "test_tiny", **setting).get("test_tiny").step
    assert again.seconds == 0 and again.step_ms == first.step_ms
    assert again.overhead_s == first.overhead_s and again.batch_ms == first.batch_ms
    # another depth is another measurement, and so is another augmentation
    with pytest.raises(pytest.fail.Exception):
        measure_step(report, profile, "test_tiny", **{**setting, "trainable_from": 1})
    with pytest.raises(pytest.fail.Exception):
        measure_step(report, profile, "test_tiny",
                     **{**setting, "augmentation": Augmentation(rotate90=True)})


def test_a_reports_timing_is_reused_only_for_the_same_setting(probed, monkeypatch):
    """measure_step on a report that already holds a timing: the same setting returns it as it
    is; another BN policy, mixing or augmentation (not only another depth) is timed again."""
    report, profile, setting = probed
    timed = measure_step(report, profile, "test_tiny", **setting)
    assert "bn_frozen=True" in timed.get("test_tiny").step.setting
    monkeypatch.setattr(step_time, "time_training_step",
                        lambda *a, **k: pytest.fail("timed again"))
    assert measure_step(timed, profile, "test_tiny", **setting) is timed
    for changed in ({"bn_frozen": False}, {"mixes": True},
                    {"augmentation": Augmentation(rotate90=True)}):
        with pytest.raises(pytest.fail.Exception, match="timed again"):
            measure_step(timed, profile, "test_tiny", **{**setting, **changed})


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


# --- the input pipeline's share of an epoch (issue 17) ---------------------------------------

def test_the_image_transform_is_the_trainers_where_there_is_one():
    import tensorflow as tf

    none = Augmentation(horizontal_flip=False, zoom=0.0, translation=0.0)
    assert step_time.image_transform(None) is None and step_time.image_transform(none) is None
    x = tf.constant(np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)), tf.float32)
    y = tf.constant(np.eye(2, dtype=np.float32)[[0, 1, 0, 1]])
    w = tf.ones([4])
    mixing = step_time.image_transform(none.model_copy(update={"mixup_alpha": 0.4}))
    mixed_x, mixed_y, _ = mixing(x, y, w)  # MixUp alone is a transform of the pipeline too
    assert mixed_x.shape == x.shape and not np.allclose(mixed_y.numpy(), y.numpy())
    shifted, same_y, _ = step_time.image_transform(Augmentation(translation=0.3))(x, y, w)
    assert shifted.shape == x.shape and np.allclose(same_y.numpy(), y.numpy())


def test_records_and_caches_from_before_the_fit_timing_load_without_it():
    old = {"trainable_from": 0, "input_size": 224, "batch_size": 32, "cached": False,
           "step_ms": 25.0, "eval_ms": 9.0, "timed_images": 64}
    timing = StepTiming.model_validate(old)
    assert timing.overhead_s is None and not timing.fit_timed
    arrays = {"step_seconds_per_image": np.asarray(0.025), "eval_seconds_per_image":
              np.asarray(0.009), "cached": np.asarray(False), "timed_images": np.asarray(64)}
    timing = step_time.step_timing(arrays, trainable_from=0, input_size=224, batch_size=32,
                                   precision="float32", seconds=0.0)
    assert timing.overhead_s is None and not timing.fit_timed and timing.batch_ms == ()
    assert "besides" not in timing.describe()


def test_the_training_rate_is_the_median_batch_not_the_slow_first_ones():
    """The first batches after tracing run slow (warm-up) and a single batch can be slowed by
    another process: the steady rate is the median batch per image, which neither moves."""
    steady = [0.16, 0.15, 0.17, 0.16]
    assert step_time.steady_rate([0.60, 0.22, *steady], 16) == pytest.approx(0.165 / 16)
    assert step_time.steady_rate([*steady, 0.90], 16) == pytest.approx(0.16 / 16)
    assert step_time.steady_rate([0.32], 32) == pytest.approx(0.01)
    with pytest.raises(ValueError):
        step_time.steady_rate([], 16)
    assert step_time.TIMED_STEPS >= 5 and step_time.WARMUP_STEPS >= 1
