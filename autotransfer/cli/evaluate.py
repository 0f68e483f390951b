"""``autotransfer evaluate MODEL DATASET``: metrics of a run's model on a labelled dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from autotransfer.cli._common import (check_writable, echo_json, json_option, stderr_console,
                                      stdout_console)

#: the confusion matrix is printed as a table up to this many classes (wider ones do not fit)
MAX_TERMINAL_CLASSES = 20


@click.command("evaluate")
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--split", type=click.Choice(["val", "test", "train", "all"]), default="val",
              show_default=True, help="Which images of DATASET to evaluate on (without a val "
              "folder, the run's recipe holds out the same images as at training).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Images per forward pass.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Also write the error analysis into this folder (created; not a run folder, "
              "whose files it would overwrite): metrics.json, predictions.csv (every image: path, "
              "true and predicted label, confidence, correct), confusion_matrix.png, and, when "
              "there are mistakes, mistakes.png (the most confident ones) and gradcam.png (where "
              "the model looked). Without it, nothing is written.")
@json_option
def command(model: Path, dataset: Path, split: str, batch_size: int, out: Path | None,
            as_json: bool) -> None:
    """Evaluate MODEL (a run folder or its model.keras) on DATASET.

    Prints accuracy, balanced accuracy, macro F1, per-class precision / recall / F1, the
    confusion matrix (rows: true class, columns: predicted) and the most confused pairs of
    classes. --out DIR also writes every prediction and pictures of the mistakes.
    """
    from autotransfer.train.inference import check_evaluation_folder, evaluate

    if out is not None:  # refused before the work, not after
        check_writable(out, folder=True, apart_from={"dataset": dataset}, replaced=False)
        check_evaluation_folder(out)
    with stderr_console().status("Evaluating"):
        result = evaluate(model, dataset, split=split, batch_size=batch_size)
    analysis = None
    if out is not None:
        with stderr_console().status("Writing predictions, the mistakes and their heat maps"):
            analysis = result.write_analysis(out)
    if result.left_out:
        from autotransfer.data.models import FileProblem, count_codes, printable

        left = [FileProblem.model_validate(p) for p in result.left_out]
        lines = [f"Left out {len(left)} file(s) of the dataset: {count_codes(left)}."]
        shown = [] if as_json else left[:20]
        lines += [f"  {printable(p.path)}: {p.code}: {p.message}" for p in shown]
        lines.append("Every one is named, with why, under 'left_out' in the --json output.")
        click.echo("\n".join(lines), err=True)
    if as_json:
        extra = {} if analysis is None else {
            "out": str(out), "files": ["metrics.json", "confusion_matrix.png", *analysis.files],
            "error_analysis": analysis.to_dict()}
        echo_json(result.to_dict() | extra)
        return
    from rich.table import Table

    from autotransfer.report.text import shown

    m = result.metrics
    table = Table(title=f"{split}: accuracy {m['accuracy']:.4f}, balanced "
                  f"{m['balanced_accuracy']:.4f}, macro F1 {m['macro_f1']:.4f} ({m['n_images']} images)")
    for column in ("class", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, c in m["per_class"].items():
        table.add_row(shown(name), f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}",
                      str(c["support"]))
    console = stdout_console()
    console.print(table)
    _print_confusion(console, m)
    if analysis is not None:
        console.print(f"Wrote {', '.join(['metrics.json', 'confusion_matrix.png', *analysis.files])}"
                      f" to {shown(out)}")
        for note in analysis.notes:
            console.print(shown(note))


def _short(name: str, width: int = 12) -> str:
    return name if len(name) <= width else name[:width - 1] + "…"


def _print_confusion(console: Any, m: dict[str, Any]) -> None:
    """The confusion matrix (when it fits) and the most confused pairs, as rich tables."""
    from rich.markup import escape
    from rich.table import Table

    from autotransfer.train.analysis import most_confused_pairs

    names, matrix = m["class_names"], m["confusion_matrix"]
    if len(names) <= MAX_TERMINAL_CLASSES:
        table = Table(title="Confusion matrix", caption="rows: true class, columns: predicted")
        table.add_column("true \\ predicted")
        for name in names:
            table.add_column(escape(_short(name)), justify="right")
        for i, (name, row) in enumerate(zip(names, matrix, strict=True)):
            cells = [(f"[bold green]{n}[/]" if i == j else f"[red]{n}[/]" if n else "[dim]0[/]")
                     for j, n in enumerate(row)]
            table.add_row(escape(name), *cells)
        console.print(table)
    else:
        console.print(f"The confusion matrix has {len(names)} classes, too many for a terminal "
                      "table: --json holds it, --out DIR draws it (confusion_matrix.png).")
    pairs = most_confused_pairs(matrix, names)
    if not pairs:
        console.print("No mistakes: no pair of classes is confused.")
        return
    table = Table(title="Most confused pairs")
    for column in ("true class", "predicted as", "images", "share of the class"):
        table.add_column(column, justify="right" if column in ("images", "share of the class")
                         else "left")
    for p in pairs:
        table.add_row(escape(p.true_label), escape(p.predicted_label), str(p.count),
                      f"{p.share:.1%}")
    console.print(table)
