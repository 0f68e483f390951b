"""Learning-rate schedules: warm-up then constant / cosine / linear / step, tested alone."""

from __future__ import annotations

import math

import numpy as np
import pytest

from autotransfer.recipe.schema import Phase
from autotransfer.train.schedules import WarmupDecay, learning_rates, phase_schedule


def reference(step: int, peak: float, total: int, warmup: int, kind: str, floor_ratio: float) -> float:
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
@pytest.mark.parametrize("warmup,floor", [(0, 0.0), (10, 0.0), (5, 0.05)])
def test_schedule_matches_its_formula(kind, warmup, floor):
    schedule = WarmupDecay(0.1, total_steps=40, warmup_steps=warmup, kind=kind, min_ratio=floor)
    got = learning_rates(schedule, 45)
    want = [reference(s, 0.1, 40, warmup, kind, floor) for s in range(45)]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-9)


def test_warmup_rises_linearly_to_the_peak_then_cosine_ends_at_the_floor():
    lrs = learning_rates(WarmupDecay(1.0, 100, 10, "cosine", 0.1), 101)
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[100] == pytest.approx(0.1)
    assert all(a >= b - 1e-7 for a, b in zip(lrs[10:], lrs[11:]))


def test_phase_schedule_counts_steps_from_epochs():
    phase = Phase(name="p", epochs=4, trainable_from=5, learning_rate=0.02, warmup_epochs=1,
                  schedule="linear", min_lr_ratio=0.0)
    schedule = phase_schedule(phase, steps_per_epoch=5)
    assert (schedule.total_steps, schedule.warmup_steps) == (20, 5)
    assert learning_rates(schedule, 6)[4:6] == pytest.approx([0.02, 0.02])


def test_schedule_round_trips_through_its_config():
    schedule = WarmupDecay(0.3, 50, 5, "step", 0.02)
    again = WarmupDecay(**schedule.get_config())
    assert learning_rates(again, 50) == learning_rates(schedule, 50)


def test_bad_kind_is_refused():
    with pytest.raises(ValueError, match="kind must be one of"):
        WarmupDecay(0.1, 10, 0, "exponential")
