"""Tiny, learnable datasets and recipes for the trainer's tests (the ``test_tiny`` backbone)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from autotransfer.recipe.schema import Recipe

#: a clearly different colour per class
COLOURS = [(220, 40, 40), (40, 200, 60), (50, 70, 230), (230, 220, 40)]


def make_colour_dataset(root: Path, counts: dict[str, int], size: int = 32, seed: int = 0,
                        split: str | None = None) -> Path:
    """``root/[split/]<class>/i.png``: noisy images whose mean colour gives the class away."""
    rng = np.random.default_rng(seed)
    for k, (name, n) in enumerate(counts.items()):
        folder = root / split / name if split else root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            noise = rng.normal(0, 40, size=(size, size, 3))
            img = np.clip(np.asarray(COLOURS[k % len(COLOURS)]) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(img).save(folder / f"{name}_{i:03d}.png")
    return root


def make_shifted_target(root: Path, counts: dict[str, int], shift: int = 70,
                        seed: int = 1) -> Path:
    """A target domain: :func:`make_colour_dataset` made ``shift`` brighter, in class folders
    (which the adaptation may only use to evaluate)."""
    make_colour_dataset(root, counts, seed=seed)
    for path in root.rglob("*.png"):
        img = np.asarray(Image.open(path), dtype=np.int16) + shift
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
    return root


def source_and_target(base: Path, *, source: int, target: int) -> tuple[Path, Path]:
    """The adaptation tests' folders: a red/green :func:`make_colour_dataset` of ``source``
    images per class in ``base/source`` and its :func:`make_shifted_target` of ``target`` per
    class in ``base/target``."""
    return (make_colour_dataset(base / "source", {"red": source, "green": source}),
            make_shifted_target(base / "target", {"red": target, "green": target}))


class Untouchable(dict):
    """Target labels that fail the test when anything reads them (their count alone is allowed)."""

    def _read(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the target's class folders were read")

    __getitem__ = __iter__ = __contains__ = get = items = keys = values = _read  # type: ignore


def untouchable_target(path: Path) -> Any:
    """The target images in ``path`` (a ``TargetSet``) whose evaluation labels, which its class
    folders give, fail the test when read."""
    from autotransfer.data.target import read_target

    target = read_target(path)
    assert target.labelled  # class folders: evaluation labels exist, and must stay unread
    return target.model_copy(update={"eval_labels": Untouchable(target.eval_labels)})


def tiny_recipe(**overrides: Any) -> Recipe:
    """A recipe for ``test_tiny`` at 32 px; ``overrides`` replace top-level keys."""
    data: dict[str, Any] = {
        "name": "tiny",
        "seed": 0,
        "backbone": {"name": "test_tiny", "input_size": 32, "weights": "none"},
        "data": {"batch_size": 8, "val_fraction": 0.25},
        "head": {"dropout": 0.0},
        "augmentation": {"horizontal_flip": False, "zoom": 0.0, "translation": 0.0},
        "phases": [
            {"name": "head", "epochs": 2, "trainable_from": 5, "learning_rate": 0.01},
            {"name": "fine_tune", "epochs": 2, "trainable_from": 2, "learning_rate": 0.001,
             "group_lr_multipliers": [0.1, 0.2, 0.3, 0.5, 1.0]},
        ],
        "early_stopping": {"patience": 10},
    }
    data.update(overrides)
    return Recipe.model_validate(data)
