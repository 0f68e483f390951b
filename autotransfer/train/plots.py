"""Pictures of a run that say something for every kind of run (matplotlib, Agg backend).

* :func:`plot_confusion_matrix`: scikit-learn's ``ConfusionMatrixDisplay`` (a well-kept,
  widely read rendering: counts in the cells, true classes down, predicted across).
* :func:`plot_regularization_path`: a head fitted exactly (L-BFGS) has no epochs to plot; what
  says something is the cross-validated accuracy against the L2 strength ``C`` that chose it.
* :func:`has_epoch_curves`: whether any phase trained by gradient epochs (learning curves).

Every PNG is written atomically (:mod:`autotransfer._io`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from autotransfer._io import atomic_write_bytes

#: above this many classes the confusion matrix cells carry no numbers (they would not fit)
MAX_ANNOTATED_CLASSES = 30


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (no display needed).

    Text is drawn as written: class names come from the user's folders, and a name with ``$``
    would otherwise be parsed as mathtext (and a malformed one would stop the run).
    """
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, path: str | os.PathLike[str], *, dpi: int = 110,
             colors: int | None = None) -> Path:
    """Write ``fig`` to ``path`` as PNG, atomically, and close it.

    ``colors``: quantise to a palette of that many colours with Pillow (median cut), for
    figures of photographs: a full-colour PNG of a gallery weighs megabytes (it is embedded in
    ``report.html`` too), a 256-colour one a fifth of it, with text and pictures as legible.
    """
    plt = pyplot()
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    data = buffer.getvalue()
    if colors is not None:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            palette = image.convert("RGB").quantize(colors, method=Image.Quantize.MEDIANCUT)
        buffer = io.BytesIO()
        palette.save(buffer, format="PNG", optimize=True)
        data = buffer.getvalue()
    return atomic_write_bytes(path, data)


def plot_confusion_matrix(matrix: Sequence[Sequence[int]], class_names: Sequence[str],
                          path: str | os.PathLike[str], *, title: str | None = None) -> Path:
    """The confusion matrix (rows: true class, columns: predicted) as a PNG."""
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = pyplot()
    data = np.asarray(matrix, dtype=np.int64)
    k = len(class_names)
    side = min(2.5 + 0.45 * k, 28.0)  # 100 classes: a readable poster, not a 5000 px wall
    fig, ax = plt.subplots(figsize=(side + 1.0, side))
    display = ConfusionMatrixDisplay(data, display_labels=list(class_names))
    display.plot(ax=ax, cmap="Blues", colorbar=False, values_format="d",
                 include_values=k <= MAX_ANNOTATED_CLASSES, xticks_rotation=60)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    ax.tick_params(labelsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if title:
        ax.set_title(title, fontsize=9)
    return save_png(fig, path)


def has_epoch_curves(phases: Sequence[dict[str, Any]]) -> bool:
    """Whether some phase trained by gradient epochs (a phase solved exactly has none)."""
    return any(not p.get("solver") and p.get("epochs_run", 0) > 0 for p in phases)


def solved_phases(phases: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Phases whose head was fitted exactly and whose ``C`` was cross-validated (a path to show)."""
    return [p for p in phases if p.get("solver") and p["solver"].get("cv")]


def plot_regularization_path(phases: Sequence[dict[str, Any]],
                             path: str | os.PathLike[str]) -> Path | None:
    """Cross-validated accuracy (and log loss) against ``C`` for each exactly solved phase.

    The chosen ``C`` is marked, with the validation accuracy measured at it. ``None`` (nothing
    written) when no phase cross-validated ``C`` (it was given, or too few images per class).
    """
    solved = solved_phases(phases)
    if not solved:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    loss_ax = ax.twinx()
    for p in solved:
        s = p["solver"]
        rows = sorted(s["cv"], key=lambda r: r["c"])
        cs = [r["c"] for r in rows]
        ax.plot(cs, [r["accuracy"] for r in rows], "-o", markersize=4,
                label=f"{p['name']}: {s['folds']}-fold CV accuracy")
        loss_ax.plot(cs, [r["log_loss"] for r in rows], ":", color="tab:grey", linewidth=1,
                     label=f"{p['name']}: CV log loss")
        ax.axvline(s["c"], color="tab:green", linestyle="--", linewidth=1)
        val = (p.get("history") or {}).get("val_accuracy") or []
        if val:
            ax.plot([s["c"]], [val[-1]], "*", color="tab:green", markersize=11,
                    label=f"{p['name']}: validation accuracy at chosen C={s['c']:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("C (inverse L2 strength; right = weaker regularisation)")
    ax.set_ylabel("accuracy")
    loss_ax.set_ylabel("log loss", color="tab:grey")
    loss_ax.tick_params(axis="y", colors="tab:grey")
    ax.set_title("Linear head: cross-validated accuracy against the L2 strength", fontsize=9)
    handles, labels = ax.get_legend_handles_labels()
    more, more_labels = loss_ax.get_legend_handles_labels()
    ax.legend(handles + more, labels + more_labels, fontsize=7, loc="best")
    return save_png(fig, path)


def plot_files(metrics: dict[str, Any]) -> list[str]:
    """The plots a run with these ``metrics`` draws (see ``Runner._plots``)."""
    phases = metrics["phases"]
    return ((["learning_curves.png"] if has_epoch_curves(phases) else [])
            + (["regularization_path.png"] if solved_phases(phases) else [])
            + ["confusion_matrix.png"])


def plots_markdown(metrics: dict[str, Any], prefix: str = "") -> list[str]:
    """The "Training" pictures of a report, with words where a picture would say nothing."""
    phases = metrics["phases"]
    lines = ["", "## Training", ""]
    if has_epoch_curves(phases):
        lines += [f"![learning curves]({prefix}learning_curves.png)", ""]
    if solved_phases(phases):
        lines += ["A head fitted exactly has no epochs to plot: the cross-validated accuracy "
                  "against the L2 strength C shows how the regularisation was chosen.", "",
                  f"![cross-validated accuracy against C]({prefix}regularization_path.png)", ""]
    for p in phases:
        s = p.get("solver")
        if s and not s.get("cv"):
            lines += [f"Phase '{p['name']}' fitted the head exactly with C={s['c']:.3g} "
                      f"({s['chosen_by']}): nothing was cross-validated, so there is no curve "
                      "to draw.", ""]
    lines += [f"![confusion matrix (validation)]({prefix}confusion_matrix.png)"]
    return lines
