"""Error analysis of a model on labelled images, the way practitioners look at one.

* ``predictions.csv``: one row per evaluated image (split, path relative to the dataset root,
  true label, predicted label, confidence = the predicted class's probability, correct, the true
  class's probability), so any mistake can be found, sorted and opened.
* the most confused pairs of classes (off-diagonal cells of the confusion matrix, largest first);
* ``mistakes.png``: a gallery of the most confident wrong predictions, each with its true and
  predicted label and confidence;
* ``gradcam.png``: for the first few of them, Grad-CAM heat maps (:mod:`.gradcam`) of the
  predicted and of the true class: where the model saw what it said, and where it saw the truth.

:func:`analyse_errors` writes them (atomically) and returns an :class:`ErrorAnalysis` record,
which ``metrics.json`` keeps and the reports read. Nothing is drawn for nothing: without a
mistake there is no gallery (the record says so), and a 1 × 1 feature map gives no heat map.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autotransfer._io import atomic_write_text, spreadsheet_safe, spreadsheet_value
from autotransfer.report.text import markdown_literal

PREDICTIONS_FILE = "predictions.csv"
MISTAKES_FILE = "mistakes.png"
GRADCAM_FILE = "gradcam.png"
CSV_COLUMNS = ("split", "path", "true_label", "predicted_label", "confidence", "correct",
               "true_label_probability")
#: mistakes shown in the gallery, and how many of them get heat maps
GALLERY_SIZE = 16
GRADCAM_SIZE = 4
#: gallery and heat-map pictures: inches per thumbnail at GALLERY_DPI (about 190 pixels: the
#: training size or less, never upscaled much) and a 256-colour palette: each PNG ≲ 300 KB
THUMB_INCHES = 2.0
GALLERY_DPI = 95
GALLERY_COLORS = 256
#: most confused pairs kept in the record (and printed by ``evaluate``)
CONFUSED_PAIRS = 5


@dataclass(frozen=True)
class PredictionRow:
    """One image's prediction (a row of ``predictions.csv``)."""

    split: str
    path: str
    true_label: str
    predicted_label: str
    confidence: float
    correct: bool
    true_label_probability: float


@dataclass(frozen=True)
class SplitPredictions:
    """A model's probabilities on the images of one split, in split order."""

    split: str
    root: str  # the dataset root; ``paths`` are relative to it
    paths: list[str]
    labels: np.ndarray = field(repr=False)  # true class index per image
    probabilities: np.ndarray = field(repr=False)  # images × classes
    class_names: list[str]

    def __post_init__(self) -> None:
        probs = np.asarray(self.probabilities)
        if probs.ndim != 2 or probs.shape[0] != len(self.paths) or len(self.labels) != len(
                self.paths) or probs.shape[1] != len(self.class_names):
            raise ValueError(f"{len(self.paths)} paths, {len(self.labels)} labels, probabilities "
                             f"{probs.shape} and {len(self.class_names)} classes do not match")

    @property
    def predicted(self) -> np.ndarray:
        return np.asarray(self.probabilities).argmax(axis=1)

    @property
    def confidence(self) -> np.ndarray:
        return np.asarray(self.probabilities).max(axis=1)

    @property
    def correct(self) -> np.ndarray:
        return self.predicted == np.asarray(self.labels)

    def row(self, i: int) -> PredictionRow:
        probs = np.asarray(self.probabilities)
        true, pred = int(self.labels[i]), int(probs[i].argmax())
        return PredictionRow(self.split, self.paths[i], self.class_names[true],
                             self.class_names[pred], float(probs[i, pred]), true == pred,
                             float(probs[i, true]))

    def rows(self) -> list[PredictionRow]:
        return [self.row(i) for i in range(len(self.paths))]

    def mistake_indices(self, limit: int | None = None) -> list[int]:
        """Wrong predictions, most confident first (ties: in path order)."""
        wrong = np.flatnonzero(~self.correct)
        confidence = self.confidence
        order = sorted(wrong.tolist(), key=lambda i: (-float(confidence[i]), self.paths[i]))
        return order if limit is None else order[:limit]

    def mistakes(self, limit: int | None = None) -> list[PredictionRow]:
        return [self.row(i) for i in self.mistake_indices(limit)]

    def image_path(self, i: int) -> Path:
        return Path(self.root) / self.paths[i]


@dataclass(frozen=True)
class ConfusedPair:
    """``count`` images of ``true_label`` predicted as ``predicted_label`` (``share`` of the
    true class's images)."""

    true_label: str
    predicted_label: str
    count: int
    share: float


def most_confused_pairs(matrix: Sequence[Sequence[int]], class_names: Sequence[str],
                        limit: int = CONFUSED_PAIRS) -> list[ConfusedPair]:
    """The largest off-diagonal cells of a confusion matrix (rows true, columns predicted)."""
    data = np.asarray(matrix, dtype=np.int64)
    support = data.sum(axis=1)
    cells = [(int(data[i, j]), i, j) for i in range(len(data)) for j in range(len(data))
             if i != j and data[i, j] > 0]
    cells.sort(key=lambda c: (-c[0], c[1], c[2]))
    return [ConfusedPair(class_names[i], class_names[j], n, n / max(int(support[i]), 1))
            for n, i, j in cells[:limit]]


def predictions_csv_text(predictions: Sequence[SplitPredictions]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for split in predictions:
        for r in split.rows():
            writer.writerow([r.split, spreadsheet_safe(r.path, path=True),
                             spreadsheet_safe(r.true_label), spreadsheet_safe(r.predicted_label),
                             f"{r.confidence:.6f}", r.correct, f"{r.true_label_probability:.6f}"])
    return buffer.getvalue()


def write_predictions_csv(path: str | os.PathLike[str],
                          predictions: Sequence[SplitPredictions]) -> Path:
    """``predictions.csv`` of every split given (:data:`CSV_COLUMNS`), atomically."""
    return atomic_write_text(path, predictions_csv_text(predictions))


def read_predictions_csv(path: str | os.PathLike[str]) -> list[PredictionRow]:
    """The rows of a ``predictions.csv``."""
    with open(path, encoding="utf-8", newline="") as f:
        return [PredictionRow(r["split"], r["path"], spreadsheet_value(r["true_label"]),
                              spreadsheet_value(r["predicted_label"]),
                              float(r["confidence"]), r["correct"] == "True",
                              float(r["true_label_probability"]))
                for r in csv.DictReader(f)]


@dataclass(frozen=True)
class ErrorAnalysis:
    """What :func:`analyse_errors` wrote (file names relative to its folder) and found."""

    split: str  # the split of the gallery and heat maps
    n_images: int
    n_mistakes: int
    predictions_csv: str
    mistakes_png: str | None
    gradcam_png: str | None
    most_confused: list[ConfusedPair]
    notes: list[str]
    #: the images of ``mistakes_png``, most confident mistake first (paths as in the CSV)
    gallery: list[str] = field(default_factory=list)

    @property
    def files(self) -> list[str]:
        return [f for f in (self.predictions_csv, self.mistakes_png, self.gradcam_png) if f]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ErrorAnalysis:
        pairs = [ConfusedPair(**p) for p in data.get("most_confused", [])]
        return cls(**{**data, "most_confused": pairs})


def split_words(split: str) -> str:
    """``"val"`` -> ``"validation"``: a split's name in a sentence."""
    return {"val": "validation", "train": "training", "all": "evaluated"}.get(split, split)


def _short(text: str, width: int = 22) -> str:
    return text if len(text) <= width else text[:width - 1] + "…"


def _display(image: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(image, np.float32), 0, 255).astype(np.uint8)


def plot_mistakes(rows: Sequence[PredictionRow], images: np.ndarray,
                  path: str | os.PathLike[str]) -> Path:
    """A gallery of ``rows`` (mistakes) over their ``images``, each titled true/predicted."""
    from autotransfer.train.plots import pyplot, save_png

    plt = pyplot()
    n = len(rows)
    cols = min(4, n)
    nrows = -(-n // cols)
    # thumbnails about as large as the images the model saw (no upscaling), 256 colours
    fig, axes = plt.subplots(nrows, cols, figsize=(THUMB_INCHES * cols,
                                                   (THUMB_INCHES + 0.45) * nrows + 0.3),
                             squeeze=False, layout="constrained")
    for ax in axes.ravel():
        ax.axis("off")
    for ax, row, image in zip(axes.ravel(), rows, images, strict=False):
        ax.imshow(_display(image))
        ax.set_title(f"true: {_short(row.true_label)}\npredicted: {_short(row.predicted_label)}"
                     f"\nconfidence {row.confidence:.1%}", fontsize=7.5, color="tab:red")
    fig.suptitle(f"Most confident mistakes ({split_words(rows[0].split)} images)", fontsize=10)
    return save_png(fig, path, dpi=GALLERY_DPI, colors=GALLERY_COLORS)


def plot_grad_cam(rows: Sequence[PredictionRow], images: np.ndarray, predicted_maps: np.ndarray,
                  true_maps: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Per mistake: the image, the heat map of the predicted class, that of the true class."""
    from autotransfer.train.plots import pyplot, save_png

    plt = pyplot()
    n = len(rows)
    side = THUMB_INCHES
    fig, axes = plt.subplots(n, 3, figsize=(3 * side + 0.6, (side + 0.3) * n + 0.4),
                             squeeze=False, layout="constrained")
    for k, row in enumerate(rows):
        shown = _display(images[k])
        panels = ((None, f"true {_short(row.true_label)}\npredicted "
                         f"{_short(row.predicted_label)} ({row.confidence:.1%})", ""),
                  (predicted_maps[k], _short(row.predicted_label), ""),
                  (true_maps[k], _short(row.true_label), " (true)"))
        for i, (ax, (heat, title, suffix)) in enumerate(zip(axes[k], panels, strict=True)):
            ax.imshow(shown)
            if heat is not None and float(np.max(heat)) > 0:
                ax.imshow(heat, cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
                title = f"where it saw\n'{title}'{suffix}"
            elif i:  # ReLU(weighted map) is zero everywhere: no place speaks for this class
                title = f"nowhere speaks for\n'{title}'{suffix}"
            ax.set_title(title, fontsize=7.5)
            ax.axis("off")
    fig.suptitle("Grad-CAM on the most confident mistakes (red: drove the class's score)",
                 fontsize=9)
    return save_png(fig, path, dpi=GALLERY_DPI, colors=GALLERY_COLORS)


def analyse_errors(folder: str | os.PathLike[str], loaded: Any,
                   predictions: Sequence[SplitPredictions], matrix: Sequence[Sequence[int]],
                   *, gallery_split: str | None = None) -> ErrorAnalysis:
    """Write ``predictions.csv`` (every split), ``mistakes.png`` and ``gradcam.png`` (the
    ``gallery_split``, default the first) into ``folder``.

    ``loaded`` is the :class:`~autotransfer.train.inference.LoadedModel` that predicted: the
    gallery shows each image as it sees it (decoded, resized by its own resize layer), and
    Grad-CAM runs on its full classifier. ``matrix`` is the gallery split's confusion matrix.
    """
    from autotransfer.errors import ImageDecodeError, InvalidParameterError
    from autotransfer.train import gradcam

    folder = Path(folder)
    write_predictions_csv(folder / PREDICTIONS_FILE, predictions)
    chosen = next((p for p in predictions if p.split == gallery_split), predictions[0])
    n_images, n_wrong = len(chosen.paths), int((~chosen.correct).sum())
    pairs = most_confused_pairs(matrix, chosen.class_names)
    notes: list[str] = []
    mistakes_png = gradcam_png = None
    indices = chosen.mistake_indices(GALLERY_SIZE)
    if not indices:
        notes.append(f"No mistakes on the {n_images} {split_words(chosen.split)} images: no "
                     "gallery and no heat maps to draw.")
        return ErrorAnalysis(chosen.split, n_images, 0, PREDICTIONS_FILE, None, None, pairs,
                             notes)
    rows, arrays, unreadable = [], [], []
    for i in indices:  # one unreadable file (moved since) costs its picture, not the gallery
        try:
            arrays.append(loaded.load_images([chosen.image_path(i)])[0])
            rows.append(chosen.row(i))
        except (ImageDecodeError, OSError) as exc:
            unreadable.append(f"{chosen.paths[i]} ({exc})")
    if unreadable:
        notes.append(f"{len(unreadable)} mistaken image(s) could not be read again, left out of "
                     f"the pictures: {'; '.join(unreadable[:3])}")
    if not rows:
        return ErrorAnalysis(chosen.split, n_images, n_wrong, PREDICTIONS_FILE, None, None,
                             pairs, notes)
    images = np.stack(arrays)
    mistakes_png = plot_mistakes(rows, images, folder / MISTAKES_FILE).name
    gallery = [r.path for r in rows]
    if n_wrong > len(rows):
        notes.append(f"The gallery shows the {len(rows)} most confident of {n_wrong} mistakes; "
                     f"every one is in {PREDICTIONS_FILE}.")
    classifier = loaded.classifier
    try:
        height, width = gradcam.feature_map_size(classifier)
    except InvalidParameterError as exc:  # no spatial map to explain: said, not a failed run
        notes.append(f"No Grad-CAM heat maps: {exc}")
        height = width = 0
    if height * width == 1:
        notes.append(f"No Grad-CAM heat maps: the backbone's last feature map is {height} × "
                     f"{width} at this input size, so it holds no location to show.")
    elif height * width > 1:
        few = slice(0, GRADCAM_SIZE)
        index = {c: i for i, c in enumerate(chosen.class_names)}
        batch = np.asarray(images[few])
        classes = ([index[r.predicted_label] for r in rows[few]]
                   + [index[r.true_label] for r in rows[few]])
        maps = gradcam.grad_cam(classifier, np.concatenate([batch, batch]), classes)
        predicted, true = maps[:len(batch)], maps[len(batch):]
        gradcam_png = plot_grad_cam(rows[few], batch, predicted, true,
                                    folder / GRADCAM_FILE).name
    return ErrorAnalysis(chosen.split, n_images, n_wrong, PREDICTIONS_FILE, mistakes_png,
                         gradcam_png, pairs, notes, gallery)


def analysis_markdown(analysis: ErrorAnalysis | dict[str, Any], prefix: str = "") -> list[str]:
    """The "Mistakes" section of a report; ``prefix`` is the path from the report to the files."""
    a = analysis if isinstance(analysis, ErrorAnalysis) else ErrorAnalysis.from_dict(analysis)
    lines = ["", "## Mistakes", "",
             f"{a.n_mistakes} of {a.n_images} {split_words(a.split)} images are misclassified. "
             f"Every prediction, with its confidence, is in [`{a.predictions_csv}`]"
             f"({prefix}{a.predictions_csv}) (paths relative to the dataset root)."]
    if a.most_confused:
        lines += ["", "| true class | predicted as | images | share of the class |",
                  "| --- | --- | ---: | ---: |"]
        lines += [f"| {markdown_literal(p.true_label)} | {markdown_literal(p.predicted_label)} | "
                  f"{p.count} | {p.share:.1%} |" for p in a.most_confused]
    if a.mistakes_png:
        lines += ["", f"![most confident mistakes]({prefix}{a.mistakes_png})"]
    if a.gradcam_png:
        lines += ["", f"![Grad-CAM heat maps of the mistakes]({prefix}{a.gradcam_png})"]
    if a.notes:
        lines += [""] + [f"- {n}" for n in a.notes]
    return lines
