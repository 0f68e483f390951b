"""Reading and writing recipes (YAML or JSON by extension), with errors that name file and key."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from autotransfer._io import atomic_write_text, safe_yaml
from autotransfer.errors import InvalidConfigError
from autotransfer.recipe.schema import Recipe

M = TypeVar("M", bound=BaseModel)

#: a recipe, rule base or preset is a few KiB; a larger file is not one (and is not read whole)
MAX_DATA_FILE_BYTES = 16 * 2**20


class _DuplicateJsonKey(ValueError):
    pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, value in pairs:
        if key in data:
            raise _DuplicateJsonKey(f"the key {key!r} is given twice in one object; keep one")
        data[key] = value
    return data


def read_data_file(path: str | os.PathLike[str]) -> Any:
    """Parse a YAML (.yaml/.yml) or JSON file; errors name the file and the position.

    YAML is read by a safe loader (no tag can build a Python object or run code); in either
    format a key given twice in one mapping is an error, never settled silently.
    """
    file = Path(path)
    try:
        size = file.stat().st_size
        if not file.is_file():  # a pipe or device would be read forever
            raise InvalidConfigError(f"'{file}' is not a regular file (a folder, pipe or device). "
                                     "Pass a YAML or JSON file.")
        if size > MAX_DATA_FILE_BYTES:
            raise InvalidConfigError(
                f"File '{file}' has {size:,} bytes, more than any recipe or rule file "
                f"({MAX_DATA_FILE_BYTES:,} at most): it is not one. Pass a YAML or JSON file.")
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidConfigError(f"File '{file}' does not exist.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidConfigError(f"File '{file}' cannot be read as UTF-8 text: {exc}.") from None
    try:
        if file.suffix.lower() == ".json":
            return json.loads(text, object_pairs_hook=_unique_pairs)
        return safe_yaml(text)
    except (json.JSONDecodeError, _DuplicateJsonKey, yaml.YAMLError,
            RecursionError) as exc:  # too deep: RecursionError
        kind = file.suffix.lstrip(".").upper() or "YAML"
        raise InvalidConfigError(f"File '{file}' is not valid {kind}: {exc}") from None


def validation_message(source: str, error: ValidationError) -> str:
    """One line per problem: ``file: key.path: what is wrong (got …)``."""
    lines = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"])
        got = item.get("input")
        shown = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key; check the spelling against the schema"
        if not where:  # a check across fields: its message names them
            lines.append(f"{source}: {message}")
        else:
            lines.append(f"{source}: {where}: {message}{shown}")
    return "\n".join(lines)


def validate(model: type[M], data: Any, source: str) -> M:
    """Validate ``data`` as ``model``; raise :class:`InvalidConfigError` naming file and keys."""
    if not isinstance(data, dict):
        raise InvalidConfigError(
            f"{source}: expected a mapping at the top level, got {type(data).__name__}.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidConfigError(
            f"{source} is not a valid {model.__name__.lower()}:\n{validation_message(source, exc)}"
        ) from None


def load_recipe(path: str | os.PathLike[str]) -> Recipe:
    """Load and validate a recipe file (its backbone must be in the catalog)."""
    from autotransfer.backbones.catalog import get_backbone
    from autotransfer.errors import UnknownNameError

    recipe = validate(Recipe, read_data_file(path), str(path))
    try:
        get_backbone(recipe.backbone.name)
    except UnknownNameError as exc:
        raise InvalidConfigError(f"{path}: backbone.name: {exc}") from None
    return recipe


def dump_recipe(recipe: Recipe, fmt: str = "yaml") -> str:
    data = recipe.to_dict()
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def save_recipe(recipe: Recipe, path: str | os.PathLike[str]) -> Path:
    """Write ``recipe`` atomically as YAML or JSON (by extension)."""
    fmt = "json" if Path(path).suffix.lower() == ".json" else "yaml"
    return atomic_write_text(path, dump_recipe(recipe, fmt))
