"""Learning-rate schedules of a recipe phase: linear warm-up, then constant, cosine, linear or step.

Keras' own schedules do the work (steps count optimizer updates from the start of a phase;
``W`` warm-up steps, ``T`` steps in all, ``floor = min_ratio * peak``):

* ``cosine``: :class:`keras.optimizers.schedules.CosineDecay` with ``warmup_target=peak`` and
  ``warmup_steps=W``, decaying over ``T - W`` steps to ``alpha = min_ratio``; ``constant`` is the
  same with ``alpha = 1`` (nothing to decay);
* ``linear``: :class:`~keras.optimizers.schedules.PolynomialDecay` (``power=1``) to ``floor``;
  ``step``: :class:`~keras.optimizers.schedules.PiecewiseConstantDecay`, ``peak`` times 0.1 from
  half of the decay and 0.01 from three quarters (never below ``floor``). Keras gives these two
  no warm-up, so :class:`Warmup` puts the same linear ramp as ``CosineDecay``'s before them.

The warm-up is Keras': from ``peak / (W + 1)`` at step 0, a straight line reaching ``peak`` at
step ``W``, where the decay starts (``initial_learning_rate = peak / (W + 1)``: no update at a
rate of 0). After the warm-up the rates are those of the formulas above, step for step.
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops
from keras.optimizers.schedules import (CosineDecay, LearningRateSchedule, PiecewiseConstantDecay,
                                        PolynomialDecay)

KINDS = ("constant", "cosine", "linear", "step")


@keras.saving.register_keras_serializable(package="autotransfer")
class Warmup(LearningRateSchedule):
    """``CosineDecay``'s linear warm-up (``peak / (W + 1)`` to ``peak`` over ``W`` steps) before
    a Keras schedule that has none, which then runs from its own step 0."""

    def __init__(self, after: LearningRateSchedule, peak: float, warmup_steps: int) -> None:
        if isinstance(after, dict):
            after = keras.optimizers.schedules.deserialize(after)
        self.after = after
        self.peak = float(peak)
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step: Any) -> Any:
        step = ops.cast(step, "float32")
        warm = float(self.warmup_steps)
        start = self.peak / (warm + 1.0)
        ramp = start + (self.peak - start) * step / max(warm, 1.0)
        return ops.where(step < warm, ramp,
                         ops.cast(self.after(ops.maximum(step - warm, 0.0)), "float32"))

    def get_config(self) -> dict[str, Any]:
        return {"after": keras.optimizers.schedules.serialize(self.after), "peak": self.peak,
                "warmup_steps": self.warmup_steps}


def warmup_decay(peak: float, total_steps: int, warmup_steps: int = 0, kind: str = "cosine",
                 min_ratio: float = 0.0) -> LearningRateSchedule:
    """The schedule of ``kind``: a warm-up of ``warmup_steps`` to ``peak``, then the decay to
    ``min_ratio * peak`` at ``total_steps`` (held after it)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    if total_steps < 1 or not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"need total_steps >= 1 and 0 <= warmup_steps <= total_steps; got "
                         f"{total_steps}, {warmup_steps}")
    peak, floor = float(peak), float(min_ratio) * float(peak)
    span = max(1, total_steps - warmup_steps)
    if kind in ("cosine", "constant"):
        alpha = 1.0 if kind == "constant" else float(min_ratio)
        if warmup_steps == 0:
            return CosineDecay(peak, span, alpha=alpha)
        return CosineDecay(peak / (warmup_steps + 1), span, alpha=alpha, warmup_target=peak,
                           warmup_steps=warmup_steps)
    if kind == "linear":
        decay: LearningRateSchedule = PolynomialDecay(peak, span, end_learning_rate=floor,
                                                      power=1.0)
    else:  # step: x0.1 from t = 1/2, x0.01 from t = 3/4 (PiecewiseConstantDecay: step > boundary)
        boundaries = [max(0, math.ceil(span * f) - 1) for f in (0.5, 0.75)]
        decay = PiecewiseConstantDecay(boundaries, [peak, max(0.1 * peak, floor),
                                                    max(0.01 * peak, floor)])
    return decay if warmup_steps == 0 else Warmup(decay, peak, warmup_steps)


def phase_steps(phase: Any, steps_per_epoch: int) -> tuple[int, int]:
    """``(total, warm-up)`` optimizer steps of a recipe phase."""
    total = max(1, phase.epochs * steps_per_epoch)
    warmup = min(total - 1, int(round(phase.warmup_epochs * steps_per_epoch)))
    return total, max(0, warmup)


def phase_schedule(phase: Any, steps_per_epoch: int) -> LearningRateSchedule:
    """The schedule of a recipe :class:`~autotransfer.recipe.schema.Phase` (steps of one phase)."""
    total, warmup = phase_steps(phase, steps_per_epoch)
    return warmup_decay(phase.learning_rate, total, warmup, phase.schedule, phase.min_lr_ratio)


def learning_rates(schedule: LearningRateSchedule, steps: int) -> list[float]:
    """The schedule's rate at steps ``0 .. steps-1`` as Python floats (plots, tests)."""
    return [float(ops.convert_to_numpy(schedule(step))) for step in range(steps)]
