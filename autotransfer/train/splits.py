"""The training / validation split of a run, made once and kept in its folder (``splits.json``).

One implementation for the trainer and the search: a resumed run, or every trial of a search,
uses the same images as the first time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from autotransfer.data.splits import DataSplits, make_splits
from autotransfer.errors import InvalidParameterError
from autotransfer.recipe.schema import Recipe


def load_or_make(dataset: str | os.PathLike[str] | DataSplits, recipe: Recipe, path: Path, *,
                 resume: bool) -> DataSplits:
    """The splits saved at ``path`` when resuming (``dataset`` must be the one they were made
    from), else ``dataset``'s (given, or made from its profile with the recipe's validation
    fraction, seed and leak exclusion), saved there."""
    if resume and path.is_file():
        saved = DataSplits.load(path)
        _same_dataset(saved, dataset, path)
        return saved
    splits: Any
    if isinstance(dataset, DataSplits):
        splits = dataset
    else:
        from autotransfer.data.profile import profile_dataset

        splits = make_splits(profile_dataset(dataset), val_fraction=recipe.data.val_fraction,
                             seed=recipe.seed, exclude_leaks=recipe.data.exclude_leaks)
    path.parent.mkdir(parents=True, exist_ok=True)
    splits.save(path)
    return splits


def _dataset_root(dataset: str | os.PathLike[str] | DataSplits) -> Path:
    """The folder the images of ``dataset`` are read from (a CSV manifest's: its folder)."""
    if isinstance(dataset, DataSplits):
        return Path(dataset.root).resolve()
    given = Path(dataset).resolve()
    return given.parent if given.is_file() else given


def _same_dataset(saved: DataSplits, dataset: str | os.PathLike[str] | DataSplits | None,
                  path: Path) -> None:
    """A resumed run reads its images from the root saved in its splits: a different dataset
    given would be ignored without a word, so it is refused."""
    if dataset is None or _dataset_root(dataset) == Path(saved.root).resolve():
        return
    given = dataset.root if isinstance(dataset, DataSplits) else dataset
    raise InvalidParameterError(
        f"The run in '{path.parent}' was started on the dataset '{saved.root}' (recorded in "
        f"'{path}'), but '{given}' was given: a run continues on the images it started with. "
        f"Resume with the original dataset path '{saved.root}', or use '{given}' in a new run "
        "with a new --out.")
