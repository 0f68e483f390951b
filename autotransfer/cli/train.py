"""``autotransfer train DATASET --recipe R --out DIR``: execute a recipe and write a run folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from autotransfer.cli._common import backbone_file_option
from autotransfer.cli._common import (check_writable, echo_json, json_option, precision_option,
                                      stderr_console, stdout_console, target_option,
                                      warnings_as_notes)


@click.command("train")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--recipe", "-r", "recipe", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Recipe file (YAML or JSON). Optional with --resume (the run's "
              "own recipe is used).")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run folder to create; it appears only when the run is complete (it is "
              "assembled in OUT.partial).")
@click.option("--resume", is_flag=True, help="Continue the interrupted run in OUT.partial from "
              "its last complete epoch.")
@click.option("--savedmodel", is_flag=True, help="Also export a TensorFlow SavedModel.")
@click.option("--tflite", is_flag=True, help="Also export a TFLite model (slow to convert).")
@click.option("--onnx", is_flag=True, help="Also export model.onnx (the fixed-size classifier: "
              "input RGB 0-255 resized to the training size; needs the 'onnx' extra: pip "
              "install 'autotransfer[onnx]').")
@click.option("--no-feature-cache", is_flag=True, help="Run the frozen part of the network every "
              "epoch instead of caching its outputs (slower; for comparisons).")
@click.option("--cache-views", type=click.IntRange(min=1), default=None,
              help="Augmented views cached per image while groups are frozen [default: 4].")
@click.option("--verbose", "-v", count=True, help="Show Keras progress bars (-v) or one line per "
              "epoch (-vv).")
@precision_option
@target_option
@json_option
@backbone_file_option
def command(dataset: Path, recipe: Path | None, out: Path, resume: bool, savedmodel: bool,
            tflite: bool, onnx: bool, no_feature_cache: bool, cache_views: int | None,
            verbose: int, precision: str, target: Path | None, as_json: bool) -> None:
    """Train on DATASET exactly as the recipe says and write the run to --out.

    The run folder holds the model (model.keras), labels.txt, the executed recipe, the splits,
    metrics.json, plots, TensorBoard logs and report.md. Ctrl-C stops the run after writing
    nothing half-done; rerun with --resume to continue.
    """
    from autotransfer.train.run import train

    check_writable(out, folder=True, apart_from={"dataset": dataset, "target": target})
    if onnx:  # before training, not after it
        from autotransfer.train.export import require_onnx

        require_onnx("--onnx")
    chosen: Any = recipe
    if precision != "auto":
        if recipe is None:
            raise click.UsageError("--precision float32|bfloat16 needs --recipe: a resumed run "
                                   "keeps its own recipe's precision.")
        from autotransfer.recipe.io import load_recipe
        from autotransfer.train.precision import with_precision

        chosen = with_precision(load_recipe(recipe), precision)
    console = stderr_console()
    keras_verbose = {0: 0, 1: 1}.get(verbose, 2)
    from autotransfer._progress import ProgressDisplay

    # each phase's epochs get a bar with an estimate of the time left; -v: Keras' own bars
    with ProgressDisplay(console=console) as display, warnings_as_notes(console):
        def progress(text: str) -> None:
            if keras_verbose:
                console.log(text)
            else:
                display.say(text)

        try:
            result = train(dataset, chosen, out, resume=resume, export_savedmodel=savedmodel,
                           export_tflite=tflite, feature_cache=not no_feature_cache,
                           cache_views=cache_views, verbose=keras_verbose, progress=progress,
                           target=target)
        except KeyboardInterrupt:
            from autotransfer.train.run import partial_dir

            if partial_dir(out).exists():
                click.echo(f"Stopped. Every complete epoch is saved in {partial_dir(out)}; "
                           f"continue with: autotransfer train {dataset} --out {out} --resume",
                           err=True)
            raise
        if onnx:
            from autotransfer.train.export import add_onnx

            display.say("Converting to ONNX (tf2onnx)")
            add_onnx(result.out)
    click.echo(f"Wrote {result.out}", err=True)
    from autotransfer.train.report import left_out_summary

    left_out = left_out_summary(result.metrics)
    if left_out:
        click.echo(f"{left_out} Each is named, with why, under 'left_out' in "
                   f"{result.out / 'metrics.json'} and in {result.out / 'report.md'}.", err=True)
    if as_json:
        echo_json(result.to_dict())
        return
    from rich.table import Table

    from autotransfer.report.text import shown

    table = Table(title=f"Run {shown(result.out)}")
    for column in ("phase", "epochs", "best val", "s/epoch", "feature cache"):
        table.add_column(column)
    for phase in result.phases:
        best = "–" if phase.best_value is None else f"{phase.best_value:.4f}"
        table.add_row(shown(phase.name), f"{phase.epochs_run}/{phase.epochs_planned}"
                      + (" (early stop)" if phase.stopped_early else ""), best,
                      f"{phase.seconds_per_epoch:.2f}", "yes" if phase.features.used else "no")
    out_console = stdout_console()
    out_console.print(table)
    val = result.metrics["val"]
    out_console.print(f"Validation accuracy {val['accuracy']:.4f}, balanced accuracy "
                      f"{val['balanced_accuracy']:.4f}. Model: {shown(result.model_path)}")
