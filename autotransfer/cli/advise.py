"""``autotransfer advise DATASET``: measure the data, then advise a recipe and say why."""

from __future__ import annotations

from pathlib import Path

import click

from autotransfer.cli._common import backbone_file_option
from autotransfer.cli._common import (check_writable, echo_json, json_option, precision_option,
                                      stdout_console, target_option)


@click.command("advise")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the recipe here (.yaml or .json) [default: recipe.yaml in the current folder].")
@click.option("--backbones", "-b", default=None, metavar="NAMES",
              help="Comma-separated candidates to probe and choose from "
              "[default: those with weights on this machine].")
@click.option("--max-params", type=click.FloatRange(min=0.01), default=None, metavar="MILLIONS",
              help="Only choose backbones with at most this many million parameters.")
@click.option("--preset", default="standard", show_default=True,
              help="Starting point the rules refine: quick, standard, thorough (or a preset file).")
@click.option("--sample", "per_class", type=click.IntRange(min=2), default=64, show_default=True,
              help="At most this many training images per class are probed.")
@click.option("--max-total", type=click.IntRange(min=4), default=1000, show_default=True,
              help="At most this many images are probed in all.")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=0, show_default=True, help="Seed of the sample and the recipe.")
@click.option("--no-cache", is_flag=True, help="Do not read or write the feature cache.")
@click.option("--time-budget", default=None, metavar="DURATION",
              help="Fit the schedule so that one training takes at most this long on this "
              "machine (30m, 1h, 90s), estimated from the forward pass timed while probing.")
@precision_option
@target_option
@json_option
@backbone_file_option
def command(dataset: Path, out: Path | None, backbones: str | None, max_params: float | None,
            preset: str, per_class: int, max_total: int, seed: int, no_cache: bool,
            time_budget: str | None, precision: str, target: Path | None, as_json: bool) -> None:
    """Advise a fine-tuning recipe for DATASET, explaining every decision.

    Profiles the data, probes the candidate backbones on a sample (BN-statistics shift, ImageNet
    entropy, LogME, k-NN and linear-probe accuracy, orientation), ranks the backbones and runs
    the rule base (recipes/rules.yaml) to choose the backbone, the frozen layer groups, the
    learning-rate schedule, augmentation, domain adaptation and class weighting. The recipe is
    written to a file that 'autotransfer train' accepts unchanged.
    """
    from autotransfer.advisor.advise import Advisor
    from autotransfer.cli.probe import echo_left_out
    from autotransfer.recipe.io import save_recipe

    recipe_path = check_writable(out or Path("recipe.yaml"))
    names = [b.strip() for b in backbones.split(",") if b.strip()] if backbones else None
    # verbose=1: the steps on stderr, with bars and estimates (the display of auto's too)
    advisor = Advisor(backbones=names, max_params_m=max_params, preset=preset,
                      per_class=per_class, max_total=max_total, seed=seed, cache=not no_cache,
                      time_budget=time_budget, precision=precision, target=target, verbose=1)
    advice = advisor.fit(dataset).advice_
    echo_left_out(advisor.profile_)
    save_recipe(advice.recipe, recipe_path)
    if as_json:
        echo_json({**advice.to_dict(), "recipe_path": str(recipe_path)})
    else:
        from autotransfer.report.advice import render_advice

        render_advice(advice, stdout_console())
    from autotransfer.backbones.custom import backbone_file_of

    own = backbone_file_of(advice.recipe.backbone.name)
    with_file = f" --backbone-file {own}" if own else ""
    if target is not None and advice.recipe.domain_adaptation.needs_target:
        with_file += f" --target {target}"
    click.echo(f"Wrote the recipe to {recipe_path}; train it with: autotransfer train {dataset} "
               f"--recipe {recipe_path}{with_file} --out runs/NAME", err=True)
