"""Optimizers with per-variable learning-rate multipliers (discriminative rates) and weight decay.

Scaling gradients does not scale the step of Adam-type optimizers (their update is invariant to the
gradient's scale), so the *learning rate* of each variable is multiplied by its layer group's
multiplier inside ``update_step``. Weight decay is handled here too, with the same multiplier:

* ``adamw``: decoupled weight decay (Loshchilov & Hutter): ``w -= lr * mult * wd * w`` before the
  Adam step, as Keras' own ``AdamW`` does;
* ``adam`` and ``sgd``: classic L2 decay, ``grad += wd * w`` (as ``torch.optim.Adam``/``SGD``), so
  the two Adam variants differ exactly as in the literature.

Only kernels (variables of rank >= 2) are decayed; biases and BatchNorm scales/offsets are not.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import keras


class _GroupRates:
    """Mixin for a Keras optimizer: per-variable rate multipliers and our own weight decay."""

    def _setup_groups(self, weight_decay: float, decoupled: bool) -> None:
        self._wd = float(weight_decay)
        self._decoupled = decoupled
        self._multiplier_by_key: dict[Any, float] = {}
        self._rate_multipliers: list[float] = []
        self._decays: list[bool] = []

    def set_multipliers(self, multipliers: Iterable[tuple[Any, float]]) -> None:
        """``(variable, multiplier)`` pairs of keras variables; call it before ``build``."""
        self._multiplier_by_key = {self._var_key(v): float(m) for v, m in multipliers}

    def build(self, variables: Sequence[Any]) -> None:
        super().build(variables)  # type: ignore[misc]
        self._rate_multipliers = [self._multiplier_by_key.get(self._var_key(v), 1.0)
                                  for v in variables]
        self._decays = [self._wd > 0 and len(v.shape) >= 2 for v in variables]

    def rate_multiplier(self, variable: Any) -> float:
        return self._rate_multipliers[self._get_variable_index(variable)]

    def update_step(self, gradient: Any, variable: Any, learning_rate: Any) -> None:
        index = self._get_variable_index(variable)
        multiplier = self._rate_multipliers[index]
        lr = keras.ops.cast(learning_rate, variable.dtype) * multiplier
        if self._decays[index]:
            wd = keras.ops.cast(self._wd, variable.dtype)
            if self._decoupled:
                self.assign_sub(variable, variable * wd * lr)
            else:
                gradient = gradient + wd * keras.ops.cast(variable, gradient.dtype)
        super().update_step(gradient, variable, lr)  # type: ignore[misc]


class GroupAdam(_GroupRates, keras.optimizers.Adam):
    """Adam (``decoupled=False``: L2) or AdamW (``decoupled=True``) with per-variable rates."""

    def __init__(self, learning_rate: Any, *, weight_decay: float = 0.0, decoupled: bool = True,
                 **kwargs: Any) -> None:
        super().__init__(learning_rate=learning_rate, **kwargs)
        self._setup_groups(weight_decay, decoupled)


class GroupSGD(_GroupRates, keras.optimizers.SGD):
    """SGD with momentum and L2 weight decay, with per-variable rates."""

    def __init__(self, learning_rate: Any, *, weight_decay: float = 0.0, momentum: float = 0.9,
                 **kwargs: Any) -> None:
        super().__init__(learning_rate=learning_rate, momentum=momentum, **kwargs)
        self._setup_groups(weight_decay, decoupled=False)


def make_optimizer(phase: Any, learning_rate: Any,
                   multipliers: Iterable[tuple[Any, float]] | None = None
                   ) -> keras.optimizers.Optimizer:
    """The optimizer of a recipe phase; ``multipliers``: (keras variable, rate multiplier) pairs."""
    if phase.optimizer == "sgd":
        opt: Any = GroupSGD(learning_rate, weight_decay=phase.weight_decay,
                            momentum=phase.momentum)
    else:
        opt = GroupAdam(learning_rate, weight_decay=phase.weight_decay,
                        decoupled=phase.optimizer == "adamw")
    if multipliers:
        opt.set_multipliers(multipliers)
    return opt
