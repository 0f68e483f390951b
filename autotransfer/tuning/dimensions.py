"""The vocabulary of a search space: :class:`Dimension` and :class:`SearchSpace` (pure)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from autotransfer.recipe.schema import N_GROUPS, Recipe

HEAD_ONLY = N_GROUPS

#: every dimension :func:`search_space` knows, in the order they are registered
DIMENSIONS = ("head_lr", "finetune_lr", "finetune_from", "augmentation_scale", "dropout",
              "label_smoothing", "weight_decay", "epochs_scale", "backbone", "adaptation_weight")

#: the augmentation fields ``augmentation_scale`` multiplies, with their schema maxima
AUG_MAGNITUDES: dict[str, float] = {
    "zoom": 0.95, "translation": 0.95, "rotation": 0.5, "brightness": 1.0, "contrast": 1.0,
    "saturation": 1.0, "hue": 0.5,
}


@dataclass(frozen=True)
class Dimension:
    """One hyperparameter of the search: default (the recipe's value), range, scale, why."""

    name: str
    kind: Literal["float", "int", "choice"]
    default: Any
    low: float | None = None
    high: float | None = None
    sampling: Literal["linear", "log"] = "linear"
    values: tuple[Any, ...] = ()
    why: str = ""
    rule: str = ""
    fields: tuple[str, ...] = ()
    #: the rule whose params give the range (TUNE03–TUNE10, recipes/rules.yaml)
    range_rule: str = ""

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return value in self.values
        assert self.low is not None and self.high is not None
        return self.low - 1e-12 <= value <= self.high + 1e-12

    def describe_range(self) -> str:
        if self.kind == "choice":
            return "{" + ", ".join(str(v) for v in self.values) + "}"
        scale = " (log)" if self.sampling == "log" else ""
        return f"[{fmt(self.low)}, {fmt(self.high)}]{scale}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["values"] = list(self.values)
        data["fields"] = list(self.fields)
        return data


@dataclass(frozen=True)
class SearchSpace:
    """The dimensions of a search around one recipe."""

    dimensions: tuple[Dimension, ...]
    notes: tuple[str, ...] = field(default=())

    def __iter__(self) -> Any:
        return iter(self.dimensions)

    def __len__(self) -> int:
        return len(self.dimensions)

    def __getitem__(self, name: str) -> Dimension:
        for dim in self.dimensions:
            if dim.name == name:
                return dim
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dimensions]

    def defaults(self) -> dict[str, Any]:
        """The recipe's own values: trial 0."""
        return {d.name: d.default for d in self.dimensions}

    def changed(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The entries of ``values`` that differ from the defaults."""
        return {d.name: values[d.name] for d in self.dimensions
                if d.name in values and not _same(values[d.name], d.default)}

    def register(self, hp: Any) -> dict[str, Any]:
        """Declare every dimension on a KerasTuner ``HyperParameters``; returns the values."""
        values: dict[str, Any] = {}
        for d in self.dimensions:
            if d.kind == "float":
                values[d.name] = hp.Float(d.name, min_value=d.low, max_value=d.high,
                                          sampling=d.sampling, default=d.default)
            elif d.kind == "int":
                values[d.name] = hp.Int(d.name, min_value=int(d.low), max_value=int(d.high),
                                        default=int(d.default))
            else:
                values[d.name] = hp.Choice(d.name, list(d.values), default=d.default)
        return values

    def to_dict(self) -> dict[str, Any]:
        return {"dimensions": [d.to_dict() for d in self.dimensions], "notes": list(self.notes)}


def fmt(value: Any) -> str:
    """A value as the tables show it (floats to 3 significant digits)."""
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


def head_phases(recipe: Recipe) -> list[int]:
    return [i for i, p in enumerate(recipe.phases) if p.trainable_from >= HEAD_ONLY]


def finetune_phases(recipe: Recipe) -> list[int]:
    return [i for i, p in enumerate(recipe.phases) if p.trainable_from < HEAD_ONLY]


def number(mapping: Mapping[str, Any], key: str) -> float | None:
    """``mapping[key]`` as a float; ``None`` when absent, not a number, or NaN."""
    value = mapping.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if value != value else float(value)  # NaN -> None
