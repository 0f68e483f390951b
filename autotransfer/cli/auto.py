"""``autotransfer auto DATASET``: profile, probe, advise, tune, train, evaluate, export, report."""

from __future__ import annotations

from pathlib import Path

import click

from autotransfer.cli._common import backbone_file_option
from autotransfer.cli._common import (check_writable, echo_json, json_option, precision_option,
                                      stdout_console, target_option)


@click.command("auto")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder to create [default: runs/<dataset name>]; it appears only when "
              "complete (assembled in OUT.partial; rerunning continues an interrupted run).")
@click.option("--time-budget", default="30m", show_default=True, envvar="AUTOTRANSFER_TIME_BUDGET",
              metavar="DURATION", help="Wall-clock budget of the whole run, e.g. 30m, 2h, 90s, or "
              "'none' [env: AUTOTRANSFER_TIME_BUDGET].")
@click.option("--trials", type=click.IntRange(min=1), default=30, show_default=True,
              envvar="AUTOTRANSFER_TRIALS",
              help="At most this many tuning trials; the budget usually stops the search first "
              "[env: AUTOTRANSFER_TRIALS].")
@click.option("--preset", default="standard", show_default=True,
              help="The advisor's starting point: quick, standard, thorough (or a preset file).")
@click.option("--backbones", "-b", default=None, metavar="NAMES",
              help="Comma-separated candidate backbones [default: those with weights here].")
@click.option("--max-params", type=click.FloatRange(min=0.01), default=None, metavar="MILLIONS",
              help="Only choose backbones with at most this many million parameters.")
@click.option("--algorithm", type=click.Choice(["bayesian", "hyperband", "random"]),
              default="bayesian", show_default=True, help="KerasTuner's search after trial 0.")
@click.option("--final", type=click.Choice(["auto", "train+val", "train"]), default="auto",
              show_default=True, help="Final training data: train + validation (auto: when there "
              "is a test split to measure on) or the training split alone.")
@click.option("--full-search", is_flag=True, help="Run the search to its budget even when trial "
              "0 gets so few validation images wrong that no trial could beat it beyond chance "
              "(by default the search then stops after trial 0).")
@click.option("--savedmodel", is_flag=True, help="Also export a TensorFlow SavedModel.")
@click.option("--tflite", is_flag=True, help="Also export a TFLite model.")
@click.option("--onnx", is_flag=True, help="Also export model/model.onnx (the fixed-size "
              "classifier; needs the 'onnx' extra: pip install 'autotransfer[onnx]').")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out folder.")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=0, show_default=True, help="Seed of the sample, the "
              "splits and the recipe.")
@precision_option
@target_option
@json_option
@backbone_file_option
def command(dataset: Path, out: Path | None, time_budget: str, trials: int, preset: str,
            backbones: str | None, max_params: float | None, algorithm: str, final: str,
            full_search: bool, savedmodel: bool, tflite: bool, onnx: bool, overwrite: bool,
            seed: int, precision: str, target: Path | None, as_json: bool) -> None:
    """Turn DATASET into a tuned, evaluated, exported model and a report, in one command.

    Profiles the images, probes the candidate backbones, advises a recipe (every decision with
    its rule and evidence), refines it with KerasTuner (trial 0 is the advised recipe), trains
    the final model with the refined recipe, evaluates it on the test split when there is one,
    exports it and writes report.md: what the data is, what was measured, what was decided and
    why, what tuning changed, and the final numbers.
    """
    from autotransfer.oneshot import auto

    check_writable(out if out is not None else Path("runs") / dataset.resolve().name, folder=True,
                   apart_from={"dataset": dataset, "target": target})
    names = [b.strip() for b in backbones.split(",") if b.strip()] if backbones else None
    if onnx:  # before the work, not after it
        from autotransfer.train.export import require_onnx

        require_onnx("--onnx")
    # the steps, bars with estimates and the time left of the budget, on stderr: the same
    # display as auto(verbose=1) in Python
    result = auto(dataset, out, time_budget=time_budget, trials=trials, preset=preset,
                  backbones=names, max_params_m=max_params, algorithm=algorithm, final=final,
                  full_search=full_search, export_savedmodel=savedmodel, export_tflite=tflite,
                  export_onnx=onnx, overwrite=overwrite, seed=seed, precision=precision,
                  target=target, verbose=1)
    if result.budget.get("exceeded"):
        click.secho(f"The time budget was exceeded by {result.budget['over_seconds']:.0f} s "
                    "(where the time went: section 6 of the report).", fg="yellow", err=True)
    if onnx:  # converted inside auto(), its time in the budget (summary.json, the report)
        click.echo(f"Wrote {result.model_path.with_name('model.onnx')}", err=True)
    click.echo(f"Wrote {result.out} (report: {result.report_path})", err=True)
    if as_json:
        echo_json(result.to_dict())
        return
    from autotransfer.report.text import shown

    console_out = stdout_console()
    t = result.tuning
    where = shown(result.out)
    if t is None:
        console_out.print(f"[bold]{where}[/bold]: the advised recipe, no search "
                          f"({result.budget['search_skipped']})")
    else:
        console_out.print(f"[bold]{where}[/bold]: {t.refined.backbone.name}, "
                          f"{len(t.trials)} tuning trial(s), gain over the advised recipe "
                          f"{t.gain:+.4f}" if t.gain is not None else f"[bold]{where}[/bold]")
    choice = result.linear_probe  # rule SEL02: a sentence when nothing was compared
    if choice is not None and not isinstance(choice, str):
        console_out.print(f"Kept the {choice.winner} (rule SEL02): {choice.why}.")
    numbers = f"validation accuracy {result.val_accuracy:.4f}"
    if result.test_accuracy is not None:
        numbers += f", test accuracy {result.test_accuracy:.4f}"
    console_out.print(numbers + f" ({result.final}); report: {shown(result.report_path)}")
