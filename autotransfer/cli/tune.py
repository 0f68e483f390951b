"""``autotransfer tune DATASET``: refine a recipe with KerasTuner within a budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from autotransfer.cli._common import backbone_file_option
from autotransfer.cli._common import (check_writable, echo_json, json_option, precision_option,
                                      stdout_console, target_option)

ALGORITHMS = ("bayesian", "hyperband", "random")
DIMENSIONS = ("head_lr", "finetune_lr", "finetune_from", "augmentation_scale", "dropout",
              "label_smoothing", "weight_decay", "epochs_scale", "backbone", "adaptation_weight")


def _names(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def print_trials(result: Any, console: Any) -> None:
    """The trial table and the changes, as rich tables."""
    from rich.table import Table

    from autotransfer.report.text import shown

    table = Table(title=f"Trials ({result.algorithm}; {shown(result.stopped_because)})")
    for column in ("trial", "tuner", "status", "val acc", "val loss", "s", "changed"):
        table.add_column(column)
    for t in result.trials:
        changed = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                            for k, v in t.changed.items()) or "(the recipe as given)"
        if t.message:
            changed += f" — {t.message}"
        best = " *" if t.trial_id == result.best_trial else ""
        table.add_row(t.trial_id + best, t.tuner_id or "", t.status.lower(),
                      "–" if t.val_accuracy is None else f"{t.val_accuracy:.4f}",
                      "–" if t.val_loss is None else f"{t.val_loss:.4f}",
                      "–" if t.seconds is None else f"{t.seconds:.0f}", shown(changed))
    console.print(table)
    if result.objective:  # an adapting search (rule DA11): ranked by a score on the target
        console.print(f"Kept trial {result.best_trial} ({result.objective['rule']}, by "
                      f"{result.objective['criterion']} on the target): "
                      f"{shown(result.selection.get('why', ''))}.")
    elif result.gain is not None:
        console.print(f"Best trial {result.best_trial}: validation accuracy "
                      f"{result.best_accuracy:.4f}, {result.gain:+.4f} over trial 0 (the recipe "
                      "as given).")
    for change in result.changes:
        console.print(shown(f"  {change['path']}: {change['before']} -> {change['after']}"))
    if result.refined is not None and not result.changes:
        console.print("No trial beat the recipe as given; it is kept.")


@click.command("tune")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--recipe", "-r", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Recipe to refine (YAML or JSON); the refined one is also written next to it "
              "as NAME.tuned.yaml [default: advise one first].")
@click.option("--out", "-o", type=click.Path(file_okay=False, path_type=Path),
              default=Path("tuning"), show_default=True,
              help="Tuning folder: recipe.yaml, recipe.tuned.yaml, tuning.json, tuning.md and "
              "KerasTuner's search/. Re-running with the same folder continues the search.")
@click.option("--trials", type=click.IntRange(min=1), default=10, show_default=True,
              envvar="AUTOTRANSFER_TRIALS",
              help="At most this many trials in all, trial 0 (the recipe as given) included "
              "[env: AUTOTRANSFER_TRIALS].")
@click.option("--time-budget", default=None, envvar="AUTOTRANSFER_TIME_BUDGET", metavar="DURATION",
              help="Wall-clock budget of this run, e.g. 30m, 1h30m, 90s: no trial starts once it "
              "is spent [env: AUTOTRANSFER_TIME_BUDGET; default: no limit].")
@click.option("--overwrite", is_flag=True, help="Start the search afresh instead of continuing "
              "the one in --out.")
@click.option("--algorithm", type=click.Choice(ALGORITHMS), default="bayesian", show_default=True,
              help="KerasTuner's search after trial 0: Bayesian optimisation, Hyperband or random.")
@click.option("--only", default=None, metavar="NAMES",
              help="Comma-separated hyperparameters to search (" + ", ".join(DIMENSIONS) + ") "
              "[default: all that apply].")
@click.option("--fixed", default=None, metavar="NAMES",
              help="Comma-separated hyperparameters to keep as the recipe says.")
@click.option("--backbones", "-b", default=None, metavar="NAMES",
              help="Backbones to try besides the recipe's own [default: the probes' runner-ups "
              "recorded in the recipe]; 'none' keeps the backbone fixed.")
@click.option("--preset", default="standard", show_default=True,
              help="Without --recipe: the advisor's preset (quick, standard, thorough).")
@click.option("--no-shared-cache", is_flag=True, help="Run every trial through the full trainer "
              "(checkpoints, logs, a saved model per trial) instead of in memory with the frozen "
              "layers' activations shared across trials (slower).")
@precision_option
@target_option
@json_option
@backbone_file_option
def command(dataset: Path, recipe: Path | None, out: Path, trials: int, time_budget: str | None,
            overwrite: bool, algorithm: str, only: str | None, fixed: str | None,
            backbones: str | None, preset: str, no_shared_cache: bool, precision: str,
            target: Path | None, as_json: bool) -> None:
    """Refine a recipe for DATASET with KerasTuner, starting from the recipe itself.

    The search space is centred on the recipe (learning rates on a log range around them, the
    unfreeze depth a group or two either side, augmentation magnitude, dropout, label smoothing,
    weight decay, the probes' runner-up backbones); trial 0 trains the recipe unchanged, then
    Bayesian optimisation (or Hyperband) proposes the others. Failed trials are recorded and
    skipped. The refined recipe records what changed and the validation gain over trial 0.
    With --target, a recipe that adapts to the target trains every trial with it, and trials
    are ranked by rule DA09's criterion on the target (no target label), λ searched (rule DA11);
    without --recipe the advisor sees the target too. A given recipe that does not adapt
    (domain_adaptation.method 'none') is refused with --target: make one with advise --target.

    \b
    Distributed: start one process with KERASTUNER_TUNER_ID=chief and the workers with
    KERASTUNER_TUNER_ID=tuner0, tuner1, …, all with KERASTUNER_ORACLE_IP and
    KERASTUNER_ORACLE_PORT set to the chief's address (see docs/tuning.md).
    """
    from autotransfer.tuning.tuner import tune

    # --overwrite deletes only tune's own entries in --out (search/, logs/trials/ …), never --out
    check_writable(out, folder=True, apart_from={"dataset": dataset, "target": target},
                   replaced=False)
    if recipe is not None:  # the refined recipe is also written next to it
        check_writable(recipe, option="the refined recipe next to --recipe")
    names = _names(backbones)
    if names == ["none"]:
        names = []
    from autotransfer._progress import ProgressDisplay
    from autotransfer.durations import parse_duration

    # steps, bars with estimates, the time left of the budget: the display of auto's too
    with ProgressDisplay(parse_duration(time_budget)) as display:
        progress = display.say
        chosen: Any = recipe
        if recipe is not None and precision != "auto":  # the refined recipe goes to --out only
            from autotransfer.recipe.io import load_recipe
            from autotransfer.train.precision import with_precision

            chosen = with_precision(load_recipe(recipe), precision)
        result = tune(dataset, chosen, out, trials=trials, time_budget=time_budget,
                      overwrite=overwrite, algorithm=algorithm, backbones=names,
                      include=_names(only), exclude=_names(fixed) or (),
                      shared_cache=not no_shared_cache,
                      advisor_kwargs={"preset": preset, "precision": precision,
                                      "target": target},
                      progress=progress, target=target)
    if result.role == "worker":
        ran = ", ".join(t.trial_id for t in result.trials) or "none"
        click.echo(f"Worker ran trial(s) {ran}; the chief writes the results.", err=True)
    else:
        click.echo(f"Wrote {result.out / 'tuning.json'}, {result.out / 'tuning.md'} and "
                   f"{result.refined_path}", err=True)
    if as_json:
        echo_json(result.to_dict())
        return
    if result.role != "worker":
        print_trials(result, stdout_console())
