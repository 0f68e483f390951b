"""Helpers shared by the command modules: consoles, JSON output, writing results."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout instead of tables."
)


def stdout_console() -> Any:
    from rich.console import Console

    return Console()


def stderr_console() -> Any:
    """Console for progress and notes, so that stdout stays clean for ``--json``."""
    from rich.console import Console

    return Console(stderr=True)


def echo_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_json_result(path: Path, obj: Any) -> None:
    """Write ``obj`` to ``path`` atomically and say where on stderr."""
    from autotransfer._io import atomic_write_json

    atomic_write_json(path, obj)
    click.echo(f"Wrote {path}", err=True)
