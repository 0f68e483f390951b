"""Learning-rate schedules: Keras' CosineDecay / PolynomialDecay / PiecewiseConstantDecay after a
linear warm-up, checked step by step against the formulas the hand-written schedule they replace
implemented (the decay identical; the warm-up Keras' straight line to the peak at step W)."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from autotransfer.recipe.schema import Phase
from autotransfer.train.schedules import (Warmup, learning_rates, phase_schedule, phase_steps,
                                          warmup_decay)


def previous(step: int, peak: float, total: int, warmup: int, kind: str,
             floor_ratio: float) -> float:
    """The rate of the schedule written by hand before (train/schedules.py at e5e81f3)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = min(1.0, max(0.0, (step - warmup) / max(1, total - warmup)))
    floor = floor_ratio * peak
    if kind == "constant":
        return peak
    if kind == "cosine":
        return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * t))
    if kind == "linear":
        return peak - (peak - floor) * t
    return max(peak * (0.01 if t >= 0.75 else 0.1 if t >= 0.5 else 1.0), floor)


@pytest.mark.parametrize("kind", ["constant", "cosine", "linear", "step"])
@pytest.mark.parametrize("total,warmup,floor", [(40, 0, 0.0), (40, 10, 0.0), (40, 5, 0.05),
                                                (7, 2, 0.1), (1, 0, 0.0)])
def test_after_the_warmup_the_rates_are_those_of_before(kind, total, warmup, floor):
    schedule = warmup_decay(0.1, total_steps=total, warmup_steps=warmup, kind=kind,
                            min_ratio=floor)
    got = learning_rates(schedule, total + 5)
    want = [previous(s, 0.1, total, warmup, kind, floor) for s in range(total + 5)]
    np.testing.assert_allclose(got[warmup:], want[warmup:], rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("kind", ["constant", "cosine", "linear", "step"])
def test_the_warmup_is_keras_straight_line_to_the_peak(kind):
    lrs = learning_rates(warmup_decay(1.0, 100, 9, kind, 0.1), 11)
    np.testing.assert_allclose(lrs[:10], [(s + 1) / 10 for s in range(10)], rtol=1e-5)
    assert lrs[0] > 0 and lrs[9] == pytest.approx(1.0)
    # within one step of the previous ramp, peak * (s + 1) / W
    assert all(abs(lr - previous(s, 1.0, 100, 9, kind, 0.1)) <= 1 / 9 + 1e-6
               for s, lr in enumerate(lrs[:9]))


def test_cosine_is_keras_cosine_decay_with_warmup():
    schedule = warmup_decay(0.5, 30, 6, "cosine", 0.2)
    assert isinstance(schedule, keras.optimizers.schedules.CosineDecay)
    config = schedule.get_config()
    assert (config["warmup_target"], config["warmup_steps"], config["decay_steps"],
            config["alpha"]) == (0.5, 6, 24, 0.2)
    lrs = learning_rates(schedule, 31)
    assert lrs[6] == pytest.approx(0.5) and lrs[30] == pytest.approx(0.1)
    assert all(a >= b - 1e-7 for a, b in zip(lrs[6:], lrs[7:]))


def test_phase_schedule_counts_steps_from_epochs():
    phase = Phase(name="p", epochs=4, trainable_from=5, learning_rate=0.02, warmup_epochs=1,
                  schedule="linear", min_lr_ratio=0.0)
    assert phase_steps(phase, steps_per_epoch=5) == (20, 5)
    lrs = learning_rates(phase_schedule(phase, steps_per_epoch=5), 21)
    assert lrs[5] == pytest.approx(0.02) and lrs[4] < 0.02
    assert lrs[20] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("kind", ["cosine", "step", "linear"])
def test_schedule_round_trips_through_keras_serialization(kind):
    schedule = warmup_decay(0.3, 50, 5, kind, 0.02)
    again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert type(again) is type(schedule)
    assert learning_rates(again, 50) == learning_rates(schedule, 50)
    if kind != "cosine":
        assert isinstance(schedule, Warmup)


def test_an_optimizer_follows_the_schedule_step_by_step():
    schedule = warmup_decay(0.1, 8, 2, "cosine")
    optimizer = keras.optimizers.SGD(learning_rate=schedule)
    variable = keras.Variable(np.zeros(1, "float32"))
    seen = []
    for _ in range(8):
        seen.append(float(keras.ops.convert_to_numpy(optimizer.learning_rate)))
        optimizer.apply_gradients([(np.ones(1, "float32"), variable)])
    np.testing.assert_allclose(seen, learning_rates(schedule, 8), rtol=1e-6)


def test_bad_kind_is_refused():
    with pytest.raises(ValueError, match="kind must be one of"):
        warmup_decay(0.1, 10, 0, "exponential")
