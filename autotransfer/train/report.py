"""Plots (learning curves, confusion matrix) and a short Markdown report of a run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    os.replace(tmp, path)
    return path


def plot_learning_curves(phases: list[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Loss and accuracy per epoch (train and validation), phases separated by dashed lines."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    start = 0
    for key, ax in zip(("loss", "accuracy"), axes, strict=True):
        ax.set_title(key)
        ax.set_xlabel("epoch")
    for phase in phases:
        history = phase["history"]
        n = len(history.get("loss", []))
        x = np.arange(start + 1, start + n + 1)
        for key, ax in zip(("loss", "accuracy"), axes, strict=True):
            for prefix, style in (("", "-"), ("val_", "--")):
                values = history.get(prefix + key, [])
                if values:
                    ax.plot(x, values, style, marker=".",
                            label=f"{phase['name']} {'val' if prefix else 'train'}")
        if start:
            for ax in axes:
                ax.axvline(start + 0.5, color="grey", linestyle=":", linewidth=1)
        start += n
    for ax in axes:
        ax.legend(fontsize=7)
    result = _save(fig, Path(path))
    plt.close(fig)
    return result


def plot_confusion_matrix(matrix: list[list[int]], class_names: list[str],
                          path: str | os.PathLike[str]) -> Path:
    plt = _pyplot()
    data = np.asarray(matrix)
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.45 * k + 2, 1.0 + 0.45 * k + 1.5))
    ax.imshow(data, cmap="Blues")
    ax.set_xticks(range(k), class_names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(k), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = data.max() / 2 if data.size else 0
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(data[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if data[i, j] > threshold else "black")
    result = _save(fig, Path(path))
    plt.close(fig)
    return result


def markdown_report(metrics: dict[str, Any]) -> str:
    """A short human-readable summary of ``metrics.json``."""
    val = metrics["val"]
    lines = [
        f"# Run report: {metrics['recipe']}",
        "",
        f"Backbone **{metrics['backbone']}** at {metrics['input_size']} px, "
        f"{len(metrics['class_names'])} classes, {metrics['n_train']} training / "
        f"{metrics['n_val']} validation images. Trained in {metrics['seconds_total']:.0f} s on "
        f"{metrics['device']['strategy']} ({metrics['device']['gpus']} GPU), precision "
        f"{metrics['precision']}, final batch size {metrics['batch_size']}.",
        "",
        f"**Validation accuracy {val['accuracy']:.4f}**, balanced accuracy "
        f"{val['balanced_accuracy']:.4f}, macro F1 {val['macro_f1']:.4f}.",
    ]
    if metrics.get("test"):
        test = metrics["test"]
        lines.append(f"Test accuracy {test['accuracy']:.4f}, balanced "
                     f"{test['balanced_accuracy']:.4f}.")
    lines += ["", "| phase | trains from group | epochs run / planned | best val | s/epoch | "
              "feature cache |", "| --- | ---: | ---: | ---: | ---: | --- |"]
    for p in metrics["phases"]:
        cache = p["feature_cache"]
        cache_text = f"yes ({cache['reason']})" if cache["used"] else f"no ({cache['reason']})"
        best = "–" if p["best_value"] is None else f"{p['best_value']:.4f}"
        lines.append(f"| {p['name']} | {p['trainable_from']} | {p['epochs_run']} / "
                     f"{p['epochs_planned']}{' (early stop)' if p['stopped_early'] else ''} | "
                     f"{best} | {p['seconds_per_epoch']:.2f} | {cache_text} |")
    from autotransfer.train.linear_head import describe

    for p in metrics["phases"]:
        if p.get("solver"):
            lines += ["", f"Phase '{p['name']}' fitted the head exactly: {describe(p['solver'])}."]
    if metrics.get("adabn"):
        a = metrics["adabn"]
        lines += ["", f"AdaBN before phase {a['before_phase']}: {a['n_layers']} BatchNorm layers "
                  f"re-estimated on {a['n_images']} images (mean shift {a['mean_abs_shift']:.3f} "
                  f"std); val accuracy {a['before']['accuracy']:.4f} → "
                  f"{a['after']['accuracy']:.4f},"
                  f" val loss {a['before']['loss']:.4f} → {a['after']['loss']:.4f}."]
    lines += ["", "| class | precision | recall | F1 | support |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for name, m in val["per_class"].items():
        lines.append(f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | "
                     f"{m['support']} |")
    lines += ["", "Files: `model.keras`, `labels.txt`, `recipe.yaml`, `splits.json`, "
              "`metrics.json`, `learning_curves.png`, `confusion_matrix.png`, `logs/` (TensorBoard).", ""]
    return "\n".join(lines)
