"""``autotransfer evaluate MODEL DATASET``: metrics of a run's model on a labelled dataset."""

from __future__ import annotations

from pathlib import Path

import click

from autotransfer.cli._common import echo_json, json_option, stderr_console, stdout_console


@click.command("evaluate")
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--split", type=click.Choice(["val", "test", "train", "all"]), default="val",
              show_default=True, help="Which images of DATASET to evaluate on (without a val "
              "folder, the run's recipe holds out the same images as at training).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Images per forward pass.")
@json_option
def command(model: Path, dataset: Path, split: str, batch_size: int, as_json: bool) -> None:
    """Evaluate MODEL (a run folder or its model.keras) on DATASET.

    Reports accuracy, balanced accuracy, macro F1, per-class precision / recall / F1 and the
    confusion matrix.
    """
    from autotransfer.train.inference import evaluate

    with stderr_console().status("Evaluating"):
        result = evaluate(model, dataset, split=split, batch_size=batch_size)
    if as_json:
        echo_json(result.to_dict())
        return
    from rich.table import Table

    m = result.metrics
    table = Table(title=f"{split}: accuracy {m['accuracy']:.4f}, balanced "
                  f"{m['balanced_accuracy']:.4f}, macro F1 {m['macro_f1']:.4f} ({m['n_images']} images)")
    for column in ("class", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, c in m["per_class"].items():
        table.add_row(name, f"{c['precision']:.3f}", f"{c['recall']:.3f}", f"{c['f1']:.3f}",
                      str(c["support"]))
    stdout_console().print(table)
