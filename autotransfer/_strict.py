"""The strict pydantic base of every file a user writes (recipes, custom backbone files): unknown
keys, NaN and infinity refused, and no boolean read as a number."""

from __future__ import annotations

from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator


def _number_kind(annotation: Any) -> str | None:
    """``"whole number"`` or ``"number"`` when a field of this type holds numbers but no
    booleans (``int``, ``float | None``, ``list[float]``, ``Literal[1]``), else ``None``."""
    leaves: set[type] = set()
    pending = [annotation]
    while pending:
        item = pending.pop()
        if get_origin(item) is Literal:
            leaves.update(type(v) for v in get_args(item))
        elif get_args(item):
            pending.extend(get_args(item))
        elif isinstance(item, type):
            leaves.add(item)
    if bool in leaves:
        return None
    return "whole number" if int in leaves else "number" if float in leaves else None


class StrictModel(BaseModel):
    """Frozen, unknown keys refused, defaults validated, no NaN or infinity, and a number field
    refuses ``true``/``false``."""

    # NaN and infinity pass no range check as users expect (NaN compares false), so no
    # setting may be one: ``learning_rate: .nan`` is refused as "not a finite number"
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True,
                              allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_as_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """Pydantic reads ``true`` as 1 in a number field (``epochs: true`` would train one
        epoch): a number field refuses a boolean, alone or in a list."""
        values = value if isinstance(value, list) else [value]
        if any(isinstance(v, bool) for v in values) and info.field_name is not None:
            field = cls.model_fields[info.field_name]
            kind = _number_kind(field.annotation)
            if kind is not None:
                default = field.get_default(call_default_factory=True)
                example = (f" (the default is {info.field_name}: {default})"
                           if isinstance(default, int | float | list) else "")
                raise ValueError(f"expects a {kind}, not true/false (true would be read as 1): "
                                 f"write the {kind} itself{example}")
        return value
