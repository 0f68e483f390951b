"""BatchNorm-statistics shift: how far the user's activations are from ImageNet's, layer by layer.

Each BatchNorm layer stores the running mean and variance of its inputs on ImageNet. Feeding the
user's images and measuring the same per-channel statistics gives two Gaussians per channel; their
symmetric Kullback–Leibler divergence, averaged over channels, says how unfamiliar this layer finds
the data. Aggregated per layer group, it shows *at which depth* the data stops looking like
ImageNet. Pure numpy; the activation statistics come from :mod:`autotransfer.probes.extract`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: Released BN layers with |mean| below this and |variance − 1| below ``_FOLDED_VAR`` everywhere
#: hold placeholder statistics: BN was folded into the convolutions.
_FOLDED_MEAN = 1e-4
_FOLDED_VAR = 1e-2


@dataclass(frozen=True)
class BNLayerStats:
    """One BatchNorm layer: its stored (ImageNet) statistics and those measured on the data."""

    name: str
    group: str
    moving_mean: np.ndarray
    moving_var: np.ndarray
    data_mean: np.ndarray
    data_var: np.ndarray
    epsilon: float


def symmetric_kl(mean_p, var_p, mean_q, var_q) -> np.ndarray:  # type: ignore[no-untyped-def]
    """KL(p‖q) + KL(q‖p) between univariate Gaussians, elementwise."""
    diff2 = (np.asarray(mean_p) - np.asarray(mean_q)) ** 2
    return 0.5 * ((var_p + diff2) / var_q + (var_q + diff2) / var_p) - 1.0


def layer_shift(layer: BNLayerStats) -> float:
    """Channel-mean symmetric KL of one layer (BN's epsilon keeps dead channels finite)."""
    kl = symmetric_kl(
        layer.data_mean, layer.data_var + layer.epsilon, layer.moving_mean,
        layer.moving_var + layer.epsilon,
    )  # fmt: skip
    return float(np.mean(kl))


def is_folded(layers: Sequence[BNLayerStats]) -> bool:
    """True when every layer holds placeholder statistics (BN folded before release)."""
    return bool(layers) and all(
        np.all(np.abs(l.moving_mean) < _FOLDED_MEAN) and np.all(np.abs(l.moving_var - 1) < _FOLDED_VAR)
        for l in layers  # noqa: E741
    )


def shift_by_group(layers: Sequence[BNLayerStats], groups: Sequence[str]) -> dict[str, float | None]:
    """Median over each group's layers of the per-layer shift (``None`` for groups without BN).

    The median keeps one odd layer (a depthwise layer with near-dead channels) from dominating.
    """
    per_group: dict[str, list[float]] = {g: [] for g in groups}
    for layer in layers:
        per_group.setdefault(layer.group, []).append(layer_shift(layer))
    return {g: (float(np.median(v)) if v else None) for g, v in per_group.items()}


def overall_shift(per_group: Mapping[str, float | None]) -> float | None:
    """Mean of the group shifts: each depth counts equally, whatever its number of layers."""
    values = [v for v in per_group.values() if v is not None]
    return float(np.mean(values)) if values else None
