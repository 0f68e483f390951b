"""The training / validation split of a run, made once and kept in its folder (``splits.json``).

One implementation for the trainer and the search: a resumed run, or every trial of a search,
uses the same images as the first time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from autotransfer.data.splits import DataSplits, make_splits
from autotransfer.recipe.schema import Recipe


def load_or_make(dataset: str | os.PathLike[str] | DataSplits, recipe: Recipe, path: Path, *,
                 resume: bool) -> DataSplits:
    """The splits saved at ``path`` when resuming, else ``dataset``'s (given, or made from its
    profile with the recipe's validation fraction, seed and leak exclusion), saved there."""
    if resume and path.is_file():
        return DataSplits.load(path)
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
