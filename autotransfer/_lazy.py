"""Lazy module exports: ``import autotransfer`` stays cheap (no TensorFlow until it is used)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str], extra: tuple[str, ...] = ()
) -> tuple[list[str], Callable[[str], Any], Callable[[], list[str]]]:
    """``(__all__, __getattr__, __dir__)`` for ``package``, whose public names ``exports`` maps to
    the modules defining them; each is imported on first access and then kept."""
    names = sorted([*exports, *extra])

    def __getattr__(name: str) -> Any:  # noqa: N807 - module-level protocol
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module '{package}' has no attribute '{name}'")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:  # noqa: N807
        return names

    return names, __getattr__, __dir__
