"""Render an :class:`Advice`: the data, the evidence, the ranked backbones, the recipe, and why."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from autotransfer.advisor.advise import Advice
from autotransfer.backbones.spec import GROUP_NAMES
from autotransfer.recipe.schema import N_GROUPS, Recipe
from autotransfer.report.probe import render_probe


def _trainable(phase_from: int) -> str:
    if phase_from >= N_GROUPS:
        return "head only"
    if phase_from == N_GROUPS - 1:
        return f"group {phase_from} ({GROUP_NAMES[phase_from]}) + head"
    return f"groups {phase_from}–{N_GROUPS - 1} ({GROUP_NAMES[phase_from]}…) + head"


def render_recipe(recipe: Recipe, console: Console) -> None:
    console.print(f"[bold]Recipe[/bold]: {recipe.backbone.name} at {recipe.backbone.input_size} px, "
                  f"batches of {recipe.data.batch_size}, {recipe.total_epochs} epochs at most, "
                  f"seed {recipe.seed}")
    table = Table()
    for col in ("phase", "epochs", "trains", "peak LR", "warm-up", "LR × per group"):
        table.add_column(col)
    for p in recipe.phases:
        if recipe.solves_head(p):
            table.add_row(p.name, "1 exact fit", _trainable(p.trainable_from),
                          "L-BFGS, L2 by CV", "-", "-")
            continue
        mult = "-" if p.trainable_from >= N_GROUPS else " ".join(f"{m:g}" for m in p.group_lr_multipliers[p.trainable_from:])
        table.add_row(p.name, str(p.epochs), _trainable(p.trainable_from),
                      f"{p.learning_rate:.1e}", f"{p.warmup_epochs:g}", mult)
    console.print(table)
    first = recipe.phases[0]
    console.print(f"Optimizer {first.optimizer}, weight decay {first.weight_decay:g}, "
                  f"{first.schedule} schedule")
    a = recipe.augmentation
    ops = [name for name, on in (("horizontal flip", a.horizontal_flip), ("vertical flip", a.vertical_flip),
                                 ("90° rotations", a.rotate90)) if on]
    ops += [f"{name} {value:g}" for name, value in (
        ("rotation", a.rotation), ("zoom", a.zoom), ("translation", a.translation),
        ("brightness", a.brightness), ("contrast", a.contrast), ("saturation", a.saturation),
        ("hue", a.hue), ("MixUp α", a.mixup_alpha), ("CutMix α", a.cutmix_alpha)) if value]
    console.print(f"Augmentation: {', '.join(ops) or 'none'}")
    console.print(f"BatchNorm: {recipe.bn_policy} · domain adaptation: {recipe.domain_adaptation.method}"
                  f" · class weighting: {recipe.data.class_weighting} · dropout {recipe.head.dropout:g}"
                  f" · label smoothing {recipe.regularization.label_smoothing:g} · early stopping on "
                  f"{recipe.early_stopping.monitor}, patience {recipe.early_stopping.patience}")


def render_advice(advice: Advice, console: Console, *, show_probes: bool = True) -> None:
    f = advice.facts
    console.print(
        f"[bold]Data[/bold] {advice.profile.root}: {f['n_classes']} classes, {f['n_train']} training "
        f"images ({f['per_class']:.0f} per class, imbalance {f['imbalance']:.2f}:1), median side "
        f"{f['median_side']:.0f} px, grayscale {f['grayscale']:.0%}"
    )
    for warning in advice.warnings:
        console.print(f"[bold red]Warning:[/bold red] {warning}")
    if show_probes:
        render_probe(advice.probes, console)
    for p in advice.probes.probes:
        if p.adabn is not None:
            console.print(f"AdaBN check ({p.backbone}): {p.adabn.describe()}")
    o = advice.probes.orientation
    if o is not None:
        console.print(f"Orientation ({o.backbone}, {o.n_images} images): quarter turns predicted with "
                      f"accuracy {o.rotation_accuracy:.2f} (chance 0.25), mirror images "
                      f"{o.flip_accuracy:.2f} (chance 0.5)")

    console.print("[bold]Backbones[/bold] (rule BB01: ranked by LogME under your constraints)")
    ranking = Table()
    for col in ("rank", "backbone", "LogME", "linear probe", "k-NN", "params", "status"):
        ranking.add_column(col)
    for c in advice.candidates:
        status = "[green]chosen" if c.rank == 1 else ("allowed" if c.allowed else f"[dim]excluded: {c.excluded_because}")
        ranking.add_row(str(c.rank), c.backbone, f"{c.logme:.3f}", f"{c.linear_acc:.1%}",
                        f"{c.knn_acc:.1%}", f"{c.params_m:.1f}M", status)
    console.print(ranking)

    render_recipe(advice.recipe, console)

    console.print(f"[bold]Why[/bold] (preset '{advice.preset}', then the rules in order)")
    why = Table(show_lines=False)
    for col in ("rule", "decided", "because"):
        why.add_column(col, overflow="fold")
    why.add_row("BB01", f"backbone = {advice.recipe.backbone.name}", advice.recipe.reasons["backbone.name"].text)
    for firing in advice.firings:
        decided = ", ".join(f"{k} = {_short(v)}" for k, v in firing.set.items()) or "(warning)"
        why.add_row(f"{firing.rule}\n[dim]{firing.name}", decided, firing.text)
    console.print(why)


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
