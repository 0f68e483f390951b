"""Plots (learning curves, confusion matrix) and a short Markdown report of a run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from autotransfer.report.text import markdown_code, markdown_literal
from autotransfer.train.phases import phase_records


def _pyplot() -> Any:
    from autotransfer.train.plots import pyplot  # Agg, and names drawn as written (no mathtext)

    return pyplot()


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
    """scikit-learn's ``ConfusionMatrixDisplay`` (see :mod:`.plots`)."""
    from autotransfer.train.plots import plot_confusion_matrix as plot

    return plot(matrix, class_names, path)


#: at most this many left-out files are listed in report.md (metrics.json lists every one)
REPORT_LEFT_OUT_ROWS = 100


def left_out_summary(metrics: dict[str, Any]) -> str:
    """``"Left out 11 of 46 files: 4 duplicate_of_held_out, …"``, or ``""`` when none were."""
    from autotransfer.data.models import FileProblem, count_codes

    left_out = [FileProblem.model_validate(p) for p in metrics.get("left_out") or []]
    if not left_out:
        return ""
    total = metrics["n_train"] + metrics["n_val"] + metrics["n_test"] + len(left_out)
    return f"Left out {len(left_out)} of {total} files: {count_codes(left_out)}."


def _left_out_section(metrics: dict[str, Any]) -> list[str]:
    if "left_out" not in metrics:  # a run made before files left out were recorded
        return []
    left_out = metrics["left_out"]
    if not left_out:
        return ["", "Every file of the dataset was used."]
    lines = ["", f"**{left_out_summary(metrics)}**", "", "| file | reason | what to do |",
             "| --- | --- | --- |"]
    for p in left_out[:REPORT_LEFT_OUT_ROWS]:
        cells = [markdown_code(p["path"]), markdown_literal(f"{p['code']}: {p['message']}"),
                 markdown_literal(p["hint"])]
        lines.append("| " + " | ".join(cells) + " |")
    if len(left_out) > REPORT_LEFT_OUT_ROWS:
        lines.append(f"\n… and {len(left_out) - REPORT_LEFT_OUT_ROWS} more: every one is listed "
                     "under `left_out` in `metrics.json`.")
    return lines


def adaptation_section(metrics: dict[str, Any]) -> list[str]:
    """A run with a target (issue 19): what the recipe's adaptation did and the gap before (the
    advisor's, frozen backbone) and after (this model), the table ``auto``'s report shows too."""
    target = metrics.get("target")
    if not target:
        return []
    from autotransfer.train.adaptation.gap_report import BEFORE, gap_table

    done = metrics.get("domain_adaptation") or {}
    method = done.get("method") or ("none" if not target.get("used") else "?")
    weight = done.get("weight")
    before = metrics.get("domain_gap_before")
    lines = ["", "### Adaptation to the target: the gap before and after", "",
             f"Target: {target['n_images']} unlabelled images in "
             f"'{markdown_literal(target['path'])}'. Method "
             f"**{method}**" + (f", loss weight λ = {weight:g}" if weight is not None else "")
             + (f" (rule {before['rule']})" if before and before.get("rule") else "") + "."
             + (f" ({target['note']}.)" if target.get("note") else "")]
    phases = done.get("phases") or []
    if phases:
        lines[-1] += " Loss applied in phase(s) " + ", ".join(
            f"{p['phase']} (on {p['on']})" for p in phases) + "."
    if (done.get("adabn_target") or {}).get("text"):
        lines[-1] += f" {done['adabn_target']['text']}."
    table = gap_table([(BEFORE, before), ("after (this model)", metrics.get("domain_gap"))])
    if table:
        lines += ["", *table]
    else:
        lines += ["", "The gap was not measured (no validation images to measure it on)."]
    return lines


def markdown_report(metrics: dict[str, Any]) -> str:
    """A short human-readable summary of ``metrics.json``."""
    val = metrics["val"]
    lines = [
        f"# Run report: {markdown_literal(metrics['recipe'])}",
        "",
        f"Backbone **{markdown_literal(metrics['backbone'])}** at {metrics['input_size']} px, "
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
    lines += _left_out_section(metrics)
    lines += ["", "| phase | trains from group | epochs run / planned | best val | s/epoch | "
              "feature cache |", "| --- | ---: | ---: | ---: | ---: | --- |"]
    records = phase_records(metrics)
    for p in records:
        cache = p.features
        cache_text = f"yes ({cache.reason})" if cache.used else f"no ({cache.reason})"
        best = "–" if p.best_value is None else f"{p.best_value:.4f}"
        lines.append(f"| {markdown_literal(p.name)} | {p.trainable_from} | {p.epochs_run} / "
                     f"{p.epochs_planned}{' (early stop)' if p.stopped_early else ''} | "
                     f"{best} | {p.seconds_per_epoch:.2f} | {cache_text} |")
    from autotransfer.train.linear_head import describe

    for p in records:
        if p.solver is not None:
            lines += ["", f"Phase '{markdown_literal(p.name)}' fitted the head exactly: "
                      f"{describe(p.solver)}."]
    if metrics.get("adabn"):
        a = metrics["adabn"]
        lines += ["", f"AdaBN before phase {a['before_phase']}: {a['n_layers']} BatchNorm layers "
                  f"re-estimated on {a['n_images']} images (mean shift {a['mean_abs_shift']:.3f} "
                  f"std); val accuracy {a['before']['accuracy']:.4f} → "
                  f"{a['after']['accuracy']:.4f},"
                  f" val loss {a['before']['loss']:.4f} → {a['after']['loss']:.4f}."]
    lines += adaptation_section(metrics)
    lines += ["", "| class | precision | recall | F1 | support |",
              "| --- | ---: | ---: | ---: | ---: |"]
    for name, m in val["per_class"].items():
        lines.append(f"| {markdown_literal(name)} | {m['precision']:.3f} | {m['recall']:.3f} | "
                     f"{m['f1']:.3f} | "
                     f"{m['support']} |")
    from autotransfer.train.analysis import analysis_markdown
    from autotransfer.train.plots import plot_files, plots_markdown

    lines += plots_markdown(metrics)
    analysis = metrics.get("error_analysis")
    if analysis:
        lines += analysis_markdown(analysis)
    names = ["model.keras", "labels.txt", "recipe.yaml", "splits.json", "metrics.json",
             *plot_files(metrics), *([f for f in (analysis["predictions_csv"],
                                                  analysis["mistakes_png"],
                                                  analysis["gradcam_png"]) if f]
                                     if analysis else [])]
    lines += ["", "Files: " + ", ".join(f"`{n}`" for n in names) + ", `logs/` (TensorBoard: "
              "`tensorboard --logdir logs`; curves per epoch, the recipe and its accuracy on the "
              "HParams dashboard).", ""]
    return "\n".join(lines)
