"""Learning-rate schedules: linear warm-up, then constant, cosine, linear or step decay.

One formula, written with ``keras.ops`` so the same code runs inside the optimizer (per step) and
on plain numbers (tests, plots). Steps count optimizer updates from the start of a phase.

* warm-up: ``peak * (step + 1) / warmup_steps`` for the first ``warmup_steps`` steps;
* then, with ``t`` going from 0 to 1 over the remaining steps and ``floor = min_ratio * peak``:
  ``constant`` stays at ``peak``; ``cosine`` is ``floor + (peak - floor) * (1 + cos(pi t)) / 2``;
  ``linear`` is ``peak - (peak - floor) * t``; ``step`` multiplies ``peak`` by 0.1 from ``t = 0.5``
  and by 0.01 from ``t = 0.75`` (never below ``floor``).
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

KINDS = ("constant", "cosine", "linear", "step")


@keras.saving.register_keras_serializable(package="autotransfer")
class WarmupDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up to ``peak`` then the decay ``kind`` down to ``min_ratio * peak``."""

    def __init__(self, peak: float, total_steps: int, warmup_steps: int = 0,
                 kind: str = "cosine", min_ratio: float = 0.0) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
        if total_steps < 1 or not 0 <= warmup_steps < max(total_steps, 1) + 1:
            raise ValueError(f"need total_steps >= 1 and 0 <= warmup_steps <= total_steps; got "
                             f"{total_steps}, {warmup_steps}")
        self.peak = float(peak)
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.kind = kind
        self.min_ratio = float(min_ratio)

    def __call__(self, step: Any) -> Any:
        step = ops.cast(step, "float32")
        peak = self.peak
        floor = self.min_ratio * peak
        warm = float(self.warmup_steps)
        span = float(max(1, self.total_steps - self.warmup_steps))
        t = ops.clip((step - warm) / span, 0.0, 1.0)
        if self.kind == "constant":
            decayed = peak + 0.0 * t
        elif self.kind == "cosine":
            decayed = floor + (peak - floor) * 0.5 * (1.0 + ops.cos(math.pi * t))
        elif self.kind == "linear":
            decayed = peak - (peak - floor) * t
        else:  # step
            factor = ops.where(t >= 0.75, 0.01, ops.where(t >= 0.5, 0.1, 1.0))
            decayed = ops.maximum(peak * factor, floor)
        if self.warmup_steps > 0:
            warming = peak * (step + 1.0) / warm
            return ops.where(step < warm, warming, decayed)
        return decayed

    def get_config(self) -> dict[str, Any]:
        return {"peak": self.peak, "total_steps": self.total_steps,
                "warmup_steps": self.warmup_steps, "kind": self.kind, "min_ratio": self.min_ratio}


def phase_schedule(phase: Any, steps_per_epoch: int) -> WarmupDecay:
    """The schedule of a recipe :class:`~autotransfer.recipe.schema.Phase` (steps of one phase)."""
    total = max(1, phase.epochs * steps_per_epoch)
    warmup = min(total - 1, int(round(phase.warmup_epochs * steps_per_epoch)))
    return WarmupDecay(phase.learning_rate, total, max(0, warmup), phase.schedule,
                       phase.min_lr_ratio)


def learning_rates(schedule: WarmupDecay, steps: int) -> list[float]:
    """The schedule's rate at steps ``0 .. steps-1`` as Python floats (plots, tests)."""
    import numpy as np

    return [float(v) for v in np.asarray(ops.convert_to_numpy(schedule(ops.arange(steps))))]
