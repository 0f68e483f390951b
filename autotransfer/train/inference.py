"""Use any run's model: ``evaluate`` on a labelled dataset, ``predict`` on image files.

A model is found from a run folder (``<run>/model.keras``) or a ``.keras`` file; its class names
come from ``labels.txt`` beside it, and its input transform (size; crop or squash) from
``run.json`` beside it (defaults: the model's input size, centre crop).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autotransfer.errors import DatasetError, InvalidParameterError


@dataclass(frozen=True)
class LoadedModel:
    model: Any
    class_names: list[str]
    input_size: int
    crop: bool
    folder: Path

    @property
    def recipe_path(self) -> Path | None:
        path = self.folder / "recipe.yaml"
        return path if path.is_file() else None


@dataclass(frozen=True)
class EvaluationResult:
    """Metrics of a model on one split of a dataset (see :mod:`.metrics` for the keys)."""

    model: str
    dataset: str
    split: str
    metrics: dict[str, Any]

    @property
    def accuracy(self) -> float:
        return float(self.metrics["accuracy"])

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "dataset": self.dataset, "split": self.split, **self.metrics}


@dataclass(frozen=True)
class Prediction:
    """The ``top`` classes of one image: ``[(class name, probability), ...]``, best first."""

    path: str
    top: list[tuple[str, float]]

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "top": [{"label": c, "probability": p} for c, p in self.top]}


def load_run_model(path: str | os.PathLike[str]) -> LoadedModel:
    """Load a run's model with its class names and input transform."""
    from autotransfer.train.export import load_model

    target = Path(path)
    model_file = target / "model.keras" if target.is_dir() else target
    if not model_file.is_file():
        raise InvalidParameterError(
            f"No model at '{model_file}'. Pass a run folder (made by 'autotransfer train') or its "
            "model.keras file.")
    folder = model_file.parent
    labels_file = folder / "labels.txt"
    if not labels_file.is_file():
        raise InvalidParameterError(
            f"'{labels_file}' is missing: the class names of '{model_file}' are unknown. Keep the "
            "model next to the labels.txt of its run.")
    class_names = [line for line in labels_file.read_text("utf-8").splitlines() if line]
    model = load_model(model_file)
    size = int(model.input_shape[1])
    crop = True
    info = folder / "run.json"
    if info.is_file():
        crop = bool(json.loads(info.read_text("utf-8")).get("crop", True))
    n_out = int(model.output_shape[-1])
    if n_out != len(class_names):
        raise InvalidParameterError(f"'{labels_file}' lists {len(class_names)} classes but the "
                                    f"model has {n_out} outputs.")
    return LoadedModel(model, class_names, size, crop, folder)


def evaluate(model: str | os.PathLike[str], dataset: str | os.PathLike[str], *,
             split: str = "val", batch_size: int = 32) -> EvaluationResult:
    """Accuracy, balanced accuracy, per-class metrics and confusion matrix on ``split``.

    ``split`` is ``val``, ``test``, ``train`` or ``all``. Without a ``val`` folder, the validation
    images are held out exactly as at training time (the run's recipe gives the fraction and seed).
    """
    from autotransfer.data.pipeline import make_dataset
    from autotransfer.data.profile import profile_dataset
    from autotransfer.data.splits import make_splits
    from autotransfer.recipe.io import load_recipe
    from autotransfer.train.metrics import classification_metrics

    if split not in ("val", "test", "train", "all"):
        raise InvalidParameterError(f"The 'split' parameter must be val, test, train or all. Got "
                                    f"{split!r} instead.")
    loaded = load_run_model(model)
    fraction, seed = 0.2, 0
    if loaded.recipe_path is not None:
        recipe = load_recipe(loaded.recipe_path)
        fraction, seed = recipe.data.val_fraction, recipe.seed
    profile = profile_dataset(dataset)
    splits = make_splits(profile, val_fraction=fraction, seed=seed, exclude_leaks=False)
    records = {"val": splits.val, "test": splits.test, "train": splits.train,
               "all": list(profile.records)}[split]
    if not records:
        raise DatasetError(f"The dataset '{dataset}' has no images in split '{split}'.")
    unknown = sorted({r.label for r in records} - set(loaded.class_names))
    if unknown:
        raise DatasetError(f"The dataset has class(es) {', '.join(unknown)} that the model does "
                           f"not know (its classes: {', '.join(loaded.class_names)}).")
    ds = make_dataset(records, splits.root, loaded.class_names, loaded.input_size,
                      batch_size=batch_size, crop=loaded.crop, cache=False)
    probs = loaded.model.predict(ds.map(lambda x, y: x), verbose=0)
    index = {c: i for i, c in enumerate(loaded.class_names)}
    labels = np.asarray([index[r.label] for r in records])
    metrics = classification_metrics(labels, probs, loaded.class_names)
    return EvaluationResult(str(model), str(dataset), split, metrics)


def predict(model: str | os.PathLike[str], images: list[str | os.PathLike[str]], *,
            top_k: int = 5, batch_size: int = 32) -> list[Prediction]:
    """The ``top_k`` classes (with probabilities) of each image file."""
    from autotransfer.data.images import load_image

    if top_k < 1:
        raise InvalidParameterError(f"The 'top_k' parameter must be >= 1. Got {top_k} instead.")
    loaded = load_run_model(model)
    k = min(top_k, len(loaded.class_names))
    results: list[Prediction] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        batch = np.stack([load_image(p, loaded.input_size, crop=loaded.crop) for p in chunk])
        probs = np.asarray(loaded.model.predict(batch.astype(np.float32), verbose=0))
        for path, row in zip(chunk, probs, strict=True):
            order = np.argsort(-row)[:k]
            results.append(Prediction(os.fspath(path),
                                      [(loaded.class_names[i], float(row[i])) for i in order]))
    return results
