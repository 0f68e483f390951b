"""auto's run folder: assembled in ``<out>.partial`` (an interrupted call continues there), then
renamed to ``<out>`` when complete; a refused budget leaves no half-made folder behind."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autotransfer.errors import RunDirectoryError


@dataclass(frozen=True)
class RunFolder:
    """The published folder ``out``, the one being assembled, and whether it was resumed."""

    out: Path
    partial: Path
    resumed: bool

    @classmethod
    def prepare(cls, dataset: Path, out: str | os.PathLike[str] | None,
                overwrite: bool) -> RunFolder:
        """``out`` [default: ``runs/<dataset name>``] checked, ``<out>.partial`` created."""
        from autotransfer._io import check_apart

        out = Path(out) if out is not None else Path("runs") / dataset.resolve().name
        check_apart(out, dataset, option="out")  # never written into, nor deleted with, the data
        partial = out.with_name(out.name + ".partial")
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            if not overwrite:
                raise RunDirectoryError(f"'{out}' already exists. Choose another --out, or pass "
                                        "--overwrite to replace it.")
            shutil.rmtree(out)
        if overwrite and partial.exists():
            shutil.rmtree(partial)
        resumed = partial.exists()
        partial.mkdir(parents=True, exist_ok=True)
        return cls(out, partial, resumed)

    @contextmanager
    def refused_cleanly(self) -> Iterator[None]:
        """A refused budget leaves no half-made run folder behind (an interrupted one stays)."""
        from autotransfer.errors import TimeBudgetError

        try:
            yield
        except TimeBudgetError:
            if not self.resumed:
                shutil.rmtree(self.partial, ignore_errors=True)
            raise

    def fresh(self, name: str) -> Path:
        """``partial/name`` emptied: an interrupted step starts over."""
        from autotransfer.train.run import partial_dir

        path = self.partial / name
        if path.exists():
            shutil.rmtree(path)
        shutil.rmtree(partial_dir(path), ignore_errors=True)
        return path

    def publish(self) -> None:
        """Rename the finished ``<out>.partial`` to ``<out>``."""
        if self.out.is_dir():
            self.out.rmdir()
        os.replace(self.partial, self.out)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object a run wrote at ``path``, ``None`` when there is none; a damaged one is a
    :class:`RunDirectoryError` naming it (:func:`autotransfer._io.read_run_json`)."""
    from autotransfer._io import read_run_json
    from autotransfer.train.run import RUN_FIELDS

    return read_run_json(path, fields=RUN_FIELDS, fix=(
        "It was damaged or edited since it was written: run the same command with --overwrite "
        "to start over, or choose another --out."))
