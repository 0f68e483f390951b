"""For the benchmarks: per-dataset results kept in ``<out>.json`` and rendered to ``<out>.md``,
rewritten atomically after each dataset, so that an interrupted benchmark resumes where it
stopped (a dataset run again replaces its old entry)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from autotransfer._io import atomic_write_json, atomic_write_text


def run_datasets(datasets: Sequence[str], run_one: Callable[[str], dict[str, Any]], out: Path,
                 env: dict[str, Any],
                 markdown: Callable[[list[dict[str, Any]], dict[str, Any]], str],
                 work: Path) -> list[dict[str, Any]]:
    """``run_one(name)`` for every dataset; the results saved after each; ``work`` removed last."""
    path = out.with_suffix(".json")
    results = json.loads(path.read_text())["results"] if path.is_file() else []
    try:
        for name in datasets:
            print(f"{name}:", flush=True)
            r = run_one(name)
            results = [o for o in results if o["dataset"] != name] + [r]
            out.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, {"environment": env, "results": results})
            atomic_write_text(out.with_suffix(".md"), markdown(results, env))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results
