"""``autotransfer advise DATASET``: measure the data, then advise a recipe and say why."""

from __future__ import annotations

from pathlib import Path

import click

from autotransfer.cli._common import echo_json, json_option, stderr_console, stdout_console


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
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sample and the recipe.")
@click.option("--no-cache", is_flag=True, help="Do not read or write the feature cache.")
@click.option("--time-budget", default=None, metavar="DURATION",
              help="Fit the schedule so that one training takes at most this long on this "
              "machine (30m, 1h, 90s), estimated from the forward pass timed while probing.")
@json_option
def command(dataset: Path, out: Path | None, backbones: str | None, max_params: float | None,
            preset: str, per_class: int, max_total: int, seed: int, no_cache: bool,
            time_budget: str | None, as_json: bool) -> None:
    """Advise a fine-tuning recipe for DATASET, explaining every decision.

    Profiles the data, probes the candidate backbones on a sample (BN-statistics shift, ImageNet
    entropy, LogME, k-NN and linear-probe accuracy, orientation), ranks the backbones and runs
    the rule base (recipes/rules.yaml) to choose the backbone, the frozen layer groups, the
    learning-rate schedule, augmentation, domain adaptation and class weighting. The recipe is
    written to a file that 'autotransfer train' accepts unchanged.
    """
    from autotransfer.advisor.advise import Advisor
    from autotransfer.recipe.io import save_recipe

    names = [b.strip() for b in backbones.split(",") if b.strip()] if backbones else None
    console = stderr_console()
    with console.status("Profiling the dataset") as status:
        def progress(backbone: str, what: str) -> None:
            status.update(f"Probing: {backbone + ': ' if backbone else ''}{what}")

        advisor = Advisor(backbones=names, max_params_m=max_params, preset=preset,
                          per_class=per_class, max_total=max_total, seed=seed, cache=not no_cache,
                          time_budget=time_budget)
        advice = advisor.fit(dataset, progress=progress).advice_
    target = out or Path("recipe.yaml")
    save_recipe(advice.recipe, target)
    if as_json:
        echo_json({**advice.to_dict(), "recipe_path": str(target)})
    else:
        from autotransfer.report.advice import render_advice

        render_advice(advice, stdout_console())
    click.echo(f"Wrote the recipe to {target}; train it with: autotransfer train {dataset} "
               f"--recipe {target} --out runs/NAME", err=True)
