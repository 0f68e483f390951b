"""Use any run's model: ``evaluate`` on a labelled dataset, ``predict`` on image files.

A model is found from a run folder (what ``train`` and ``auto`` print: ``<run>/model.keras``,
``<auto run>/model/model.keras``) or a ``.keras`` file; its class names come from ``labels.txt``
beside it. A file that cannot be loaded safely (damaged, or holding Python code such as a Lambda
layer, which Keras' safe mode refuses) is a :class:`~autotransfer.errors.ModelFileError`. The
model resizes (and crops) images itself (see :mod:`.export`): prediction decodes each file with
autotransfer's reader and hands the model's own ``resize`` layer the full image. Models of older
runs take a fixed size; their transform (crop or squash) comes from ``run.json`` beside them, a
damaged one being a :class:`~autotransfer.errors.RunDirectoryError` that names it.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autotransfer.errors import (DatasetError, ImageDecodeError, InvalidParameterError,
                                 ModelFileError)

#: Where a run folder keeps its model: ``train``'s run, then ``auto``'s (its final run).
MODEL_PLACES = ("model.keras", "model/model.keras")


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

    @property
    def classifier(self) -> Any:
        """The fixed-size part of the model: takes :meth:`load_images`' batches."""
        from autotransfer.train.export import classifier_part

        return classifier_part(self.model)

    def load_images(self, paths: list[str | os.PathLike[str]]) -> np.ndarray:
        """``paths`` as one float32 batch for :attr:`classifier`, exactly as the model sees them.

        Each file is decoded by autotransfer's reader (EXIF orientation, alpha on white, ...),
        then resized by the model's own ``resize`` layer, so ``classifier(batch)`` gives what the
        whole model gives for each full image. Older fixed-size models: resized by the reader.
        """
        from autotransfer.data.images import load_image
        from autotransfer.train.export import resize_part

        resize = resize_part(self.model)
        if resize is None:
            return np.stack([load_image(p, self.input_size, crop=self.crop)
                             for p in paths]).astype(np.float32)
        return np.stack([np.asarray(resize(load_image(p).astype(np.float32))) for p in paths])


@dataclass(frozen=True)
class EvaluationResult:
    """Metrics of a model on one split of a dataset (see :mod:`.metrics` for the keys)."""

    model: str
    dataset: str
    split: str
    metrics: dict[str, Any]
    #: files of the dataset not evaluated, with why (``FileProblem`` dicts: path, code, message …)
    left_out: list[dict[str, Any]] = field(default_factory=list)
    #: every image's probabilities (``predictions.csv``: :mod:`.analysis`), and the model
    predictions: Any = field(default=None, repr=False, compare=False)
    loaded: LoadedModel | None = field(default=None, repr=False, compare=False)

    @property
    def accuracy(self) -> float:
        return float(self.metrics["accuracy"])

    def write_analysis(self, folder: str | os.PathLike[str]) -> Any:
        """Write ``metrics.json``, ``predictions.csv``, ``confusion_matrix.png`` and, when there
        are mistakes, ``mistakes.png`` and ``gradcam.png`` into ``folder`` (created); returns the
        :class:`~autotransfer.train.analysis.ErrorAnalysis` (also under ``error_analysis`` in
        ``metrics.json``)."""
        from autotransfer._io import atomic_write_json, ensure_dir
        from autotransfer.train.analysis import analyse_errors
        from autotransfer.train.plots import plot_confusion_matrix

        if self.predictions is None or self.loaded is None:
            raise InvalidParameterError("This evaluation holds no predictions to analyse "
                                        "(made by evaluate(), it would).")
        check_evaluation_folder(folder)
        target = ensure_dir(folder)
        analysis = analyse_errors(target, self.loaded, [self.predictions],
                                  self.metrics["confusion_matrix"])
        plot_confusion_matrix(self.metrics["confusion_matrix"], self.metrics["class_names"],
                              target / "confusion_matrix.png", title=f"{self.split} split")
        atomic_write_json(target / "metrics.json",
                          self.to_dict() | {"error_analysis": analysis.to_dict()})
        return analysis

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "dataset": self.dataset, "split": self.split, **self.metrics,
                "left_out": self.left_out}


@dataclass(frozen=True)
class Prediction:
    """The ``top`` classes of one image: ``[(class name, probability), ...]``, best first.

    An image that cannot be read has no ``top`` and an ``error`` saying why.
    """

    path: str
    top: list[tuple[str, float]]
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "top": [{"label": c, "probability": p} for c, p in self.top],
                "error": self.error}


def check_evaluation_folder(folder: str | os.PathLike[str]) -> Path:
    """Refuse a run folder as where an evaluation writes: it would overwrite the run's files."""
    target = Path(folder)
    if (target / "run.json").is_file() or (target / "summary.json").is_file():
        raise InvalidParameterError(
            f"'{target}' is a run folder: the evaluation would overwrite the run's own "
            "metrics.json and predictions.csv. Choose another folder (e.g. "
            f"'{target / 'evaluation'}').")
    return target


def find_model_file(path: str | os.PathLike[str]) -> Path:
    """The ``.keras`` file of ``path``: the file itself, or the model inside a run folder.

    A folder must hold it at one of :data:`MODEL_PLACES`; run folders found inside one that does
    not are suggested. Raises :class:`InvalidParameterError` saying what to pass instead.
    """
    target = Path(path)
    if target.is_file():
        return target
    if not target.is_dir():
        raise InvalidParameterError(
            f"No model at '{target}': it does not exist. Pass the run folder that 'autotransfer "
            "train' or 'autotransfer auto' printed, or a model.keras file.")
    for place in MODEL_PLACES:
        if (target / place).is_file():
            return target / place
    runs = sorted({str(p).removesuffix(place)[:-1] for place in MODEL_PLACES
                   for p in target.glob(f"*/{place}") if p.is_file()})
    hint = (f" Run folders inside it: {', '.join(repr(r) for r in runs[:10])}." if runs else "")
    raise InvalidParameterError(
        f"No model at '{target}': the folder holds no model.keras.{hint} Pass the run folder that "
        "'autotransfer train' or 'autotransfer auto' printed (a finished run, not its .partial "
        "folder), or a model.keras file.")


def _load_keras(model_file: Path) -> Any:
    """Keras' safe loading of ``model_file``, its failures turned into :class:`ModelFileError`."""
    from autotransfer.train.export import load_model

    damaged = ("It is damaged (e.g. cut short while copying) or not a .keras file: copy it again "
               "from the run, or train again.")
    if not zipfile.is_zipfile(model_file):
        raise ModelFileError(f"'{model_file}' is not a complete .keras file (not a readable zip "
                             f"archive). {damaged}")
    try:
        return load_model(model_file)
    except MemoryError:
        raise
    except Exception as exc:  # a hostile or damaged file can make Keras raise anything
        if "safe_mode" in str(exc) or "arbitrary code" in str(exc):
            raise ModelFileError(
                f"'{model_file}' was not loaded: it holds Python code (a Lambda layer or a "
                "function saved by value), which Keras' safe mode refuses and autotransfer never "
                "runs. Models that autotransfer writes have none: pass a model.keras made by "
                "'autotransfer train' or 'autotransfer auto'.") from exc
        if "could not be deserialized" in str(exc) or "Could not locate" in str(exc):
            raise ModelFileError(
                f"'{model_file}' was not loaded: it names a layer, class or function that is "
                "neither Keras' nor autotransfer's, and autotransfer never imports one a model "
                "file names. Pass a model.keras made by 'autotransfer train' or 'autotransfer "
                "auto' (or a copy of it that is not damaged).") from exc
        lines = str(exc).strip().splitlines()
        reason = lines[0].rstrip(".")[:300] if lines else type(exc).__name__
        raise ModelFileError(f"'{model_file}' cannot be loaded as a Keras model ({reason}). "
                             f"{damaged}") from exc


def load_run_model(path: str | os.PathLike[str]) -> LoadedModel:
    """Load a run's model with its class names and input transform."""
    from autotransfer.train.export import input_size, resize_part

    model_file = find_model_file(path)
    folder = model_file.parent
    labels_file = folder / "labels.txt"
    if not labels_file.is_file():
        raise InvalidParameterError(
            f"'{labels_file}' is missing: the class names of '{model_file}' are unknown. Keep the "
            "model next to the labels.txt of its run.")
    try:
        class_names = [line for line in labels_file.read_text("utf-8").splitlines() if line]
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"'{labels_file}' cannot be read ({exc}): copy it again from the "
                             "run.") from exc
    model = _load_keras(model_file)
    size = input_size(model)[0]
    resize = resize_part(model)
    if resize is not None:
        crop = bool(resize.crop_to_aspect_ratio)
    else:  # an older fixed-size model: its run.json says how images were resized
        from autotransfer.train.run import read_run_info

        crop = bool((read_run_info(folder) or {}).get("crop", True))
    n_out = int(model.output_shape[-1])
    if n_out != len(class_names):
        raise InvalidParameterError(f"'{labels_file}' lists {len(class_names)} classes but the "
                                    f"model has {n_out} outputs: they come from different runs. "
                                    "Keep the model next to the labels.txt of its own run.")
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
    from autotransfer.train.metrics import classification_metrics

    if split not in ("val", "test", "train", "all"):
        raise InvalidParameterError(f"The 'split' parameter must be val, test, train or all. Got "
                                    f"{split!r} instead.")
    loaded = load_run_model(model)
    fraction, seed = _held_out_by(loaded.recipe_path)
    profile = profile_dataset(dataset)
    splits = make_splits(profile, val_fraction=fraction, seed=seed, exclude_leaks=False)
    records = {"val": splits.val, "test": splits.test, "train": splits.train,
               "all": list(profile.records)}[split]
    if not records:
        raise DatasetError(f"The dataset '{dataset}' has no images in split '{split}'. Choose "
                           "another split (--split val, test, train or all).")
    unknown = sorted({r.label for r in records} - set(loaded.class_names))
    if unknown:
        raise DatasetError(f"The dataset '{dataset}' has class(es) {', '.join(unknown)} that the "
                           f"model does not know (its classes: {', '.join(loaded.class_names)}). "
                           "Evaluate on images of the model's classes, or train a model on this "
                           "dataset.")
    ds = make_dataset(records, splits.root, loaded.class_names, loaded.input_size,
                      batch_size=batch_size, crop=loaded.crop, cache=False)
    probs = loaded.model.predict(ds.map(lambda x, y: x), verbose=0)
    index = {c: i for i, c in enumerate(loaded.class_names)}
    labels = np.asarray([index[r.label] for r in records])
    metrics = classification_metrics(labels, probs, loaded.class_names)
    left_out = [p.model_dump(mode="json") for p in splits.left_out]
    from autotransfer.train.analysis import SplitPredictions

    predictions = SplitPredictions(split, splits.root, [r.path for r in records], labels,
                                   np.asarray(probs), loaded.class_names)
    return EvaluationResult(str(model), str(dataset), split, metrics, left_out, predictions,
                            loaded)


def _held_out_by(recipe_path: Path | None) -> tuple[float, int]:
    """The validation fraction and seed of the run's recipe (default: 0.2 and 0, as a recipe's).

    Only these are read: the recipe's backbone need not be registered here (a custom one)."""
    if recipe_path is None:
        return 0.2, 0
    from autotransfer.errors import InvalidConfigError
    from autotransfer.recipe.io import read_data_file, validate
    from autotransfer.recipe.schema import Recipe

    try:
        recipe = validate(Recipe, read_data_file(recipe_path), str(recipe_path))
    except InvalidConfigError as exc:
        raise InvalidConfigError(
            f"{exc}\nThe recipe.yaml beside the model says which images its run held out for "
            "validation: copy it again from the run folder, so that evaluate uses the same "
            "images.") from None
    return recipe.data.val_fraction, recipe.seed


def predict(model: str | os.PathLike[str] | LoadedModel, images: Sequence[str | os.PathLike[str]],
            *, top_k: int = 5, batch_size: int = 32,
            progress: Callable[[int, int], None] | None = None) -> list[Prediction]:
    """The ``top_k`` classes (with probabilities) of each image file, in the order given.

    Images are read and predicted ``batch_size`` at a time; ``progress(done, total)`` is called
    after each batch. An image that cannot be read (missing, not an image, broken) does not stop
    the others: its :class:`Prediction` has ``error`` set and no classes.
    """
    if top_k < 1:
        raise InvalidParameterError(f"The 'top_k' parameter must be >= 1. Got {top_k} instead.")
    if batch_size < 1:
        raise InvalidParameterError(f"The 'batch_size' parameter must be >= 1. Got {batch_size} "
                                    "instead.")
    loaded = model if isinstance(model, LoadedModel) else load_run_model(model)
    k = min(top_k, len(loaded.class_names))
    results: list[Prediction] = []
    total = len(images)
    for start in range(0, total, batch_size):
        chunk = [os.fspath(p) for p in images[start:start + batch_size]]
        arrays: list[np.ndarray] = []
        errors: dict[int, str] = {}
        for i, path in enumerate(chunk):
            try:
                arrays.append(loaded.load_images([path]))
            except (ImageDecodeError, OSError) as exc:
                errors[i] = str(exc)
        probs = (np.asarray(loaded.classifier.predict(np.concatenate(arrays), verbose=0))
                 if arrays else np.zeros((0, len(loaded.class_names))))
        rows = iter(probs)
        for i, path in enumerate(chunk):
            if i in errors:
                results.append(Prediction(path, [], errors[i]))
                continue
            row = next(rows)
            order = np.argsort(-row)[:k]
            results.append(Prediction(path, [(loaded.class_names[j], float(row[j]))
                                             for j in order]))
        if progress is not None:
            progress(len(results), total)
    return results
