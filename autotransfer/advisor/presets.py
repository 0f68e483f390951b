"""Preset recipes: the starting decisions that the rules refine (``recipes/presets/*.yaml``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from autotransfer.advisor.decisions import DECISIONS, coerce
from autotransfer.advisor.rules import recipes_dir
from autotransfer.errors import unknown_name

#: Decisions a preset must not fix: they come from the candidates and the data.
_FROM_DATA = {"backbone", "input_size", "da_method"}  # da_method: from the target, if any


class Preset(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = Field(min_length=10)
    decisions: dict[str, Any]

    @field_validator("decisions")
    @classmethod
    def _complete(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = set(value) - set(DECISIONS)
        if unknown:
            raise ValueError(f"unknown decision(s) {sorted(unknown)}; known: {sorted(DECISIONS)}")
        missing = set(DECISIONS) - _FROM_DATA - set(value)
        if missing:
            raise ValueError(f"missing decision(s) {sorted(missing)}: a preset sets every one")
        for name, item in value.items():
            kind = DECISIONS[name][0]
            if kind is bool and not isinstance(item, bool):
                raise ValueError(f"{name} must be true or false, got {item!r}")
            if kind in (int, float) and (isinstance(item, bool) or not isinstance(item, int | float)):
                raise ValueError(f"{name} must be a number, got {item!r}")
            if kind is str and not isinstance(item, str):
                raise ValueError(f"{name} must be a string, got {item!r}")
        return {k: coerce(k, v) for k, v in value.items()}


def preset_names() -> list[str]:
    return sorted(p.stem for p in (recipes_dir() / "presets").glob("*.yaml"))


def load_preset(name: str) -> Preset:
    """The preset called ``name`` (a file under ``recipes/presets``) or a path to one."""
    from pathlib import Path

    from autotransfer.recipe.io import read_data_file, validate

    path = Path(name)
    if path.suffix.lower() not in (".yaml", ".yml", ".json"):
        path = recipes_dir() / "presets" / f"{name}.yaml"
        if not path.is_file():
            raise unknown_name("preset", name, preset_names())
    return validate(Preset, read_data_file(path), str(path))
