"""Render an :class:`Advice`: the data, the evidence, the ranked backbones, the recipe, and why.

Only the decisions in force are printed as settings: a value that a later rule overrode, or that
the recipe does not use (the fine-tuning epochs of a head-only recipe, the dropout of a head fit
exactly by L-BFGS), is folded into a note under the table (:func:`decisions_in_force`).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from autotransfer.advisor.advise import Advice
from autotransfer.advisor.decisions import DECISIONS
from autotransfer.advisor.rules import Firing
from autotransfer.backbones.spec import GROUP_NAMES
from autotransfer.recipe.schema import N_GROUPS, Recipe
from autotransfer.report.probe import render_probe
from autotransfer.report.text import shown


def _trainable(phase_from: int) -> str:
    if phase_from >= N_GROUPS:
        return "head only"
    if phase_from == N_GROUPS - 1:
        return f"group {phase_from} ({GROUP_NAMES[phase_from]}) + head"
    return f"groups {phase_from}–{N_GROUPS - 1} ({GROUP_NAMES[phase_from]}…) + head"


#: decisions that only fine-tuning phases read
FINETUNE_ONLY = ("finetune_epochs", "finetune_lr", "group_lr_decay", "warmup_fraction", "gradual")
#: decisions that only a head trained by gradient descent reads
GRADIENT_HEAD = ("head_epochs", "head_lr")
#: decisions that only phases trained by gradient descent read
GRADIENT_ONLY = ("dropout", "label_smoothing", "schedule", "optimizer", "weight_decay", "patience")


@dataclass(frozen=True)
class Folded:
    """A value a rule set that is not in force, and why."""

    rule: str
    decision: str
    value: object
    why: str

    def describe(self) -> str:
        return f"{self.rule} {self.decision} = {_short(self.value)}"


def fold_note(folded: list[Folded]) -> str:
    """The folded values grouped by why: ``"overridden by BUD02: FZ01 finetune_from = 4; …"``."""
    groups: dict[str, list[str]] = {}
    for f in folded:
        groups.setdefault(f.why, []).append(f.describe())
    return " ".join(f"{why[0].upper()}{why[1:]}: {', '.join(items)}." for why, items in groups.items())


def unused_decisions(recipe: Recipe) -> dict[str, str]:
    """Decisions that ``recipe`` does not read -> why (the recipe's structure decides)."""
    unused: dict[str, str] = {}
    gradient = [p for p in recipe.phases if not recipe.solves_head(p)]
    if all(p.trainable_from >= N_GROUPS for p in recipe.phases):
        unused.update(dict.fromkeys(FINETUNE_ONLY, "not used: only the head trains"))
    if any(recipe.solves_head(p) for p in recipe.phases):
        unused.update(dict.fromkeys(GRADIENT_HEAD,
                                    "not used: the head is fit exactly by L-BFGS"))
    if not gradient:
        unused.update(dict.fromkeys(GRADIENT_ONLY,
                                    "not used: the head is fit exactly by L-BFGS, no phase "
                                    "trains by gradient descent"))
    return unused


def decisions_in_force(advice: Advice) -> tuple[list[tuple[Firing, dict[str, object]]],
                                                 list[Folded]]:
    """Each firing with the settings of it that are in force, and the values folded away:
    overridden by a later rule, or not used by the recipe. Internal values (no recipe field,
    e.g. ``epoch_estimate_s``) are neither: the rule's text gives them."""
    last: dict[str, str] = {}
    for firing in advice.firings:
        for decision in firing.set:
            last[decision] = firing.rule
    unused = unused_decisions(advice.recipe)
    rows: list[tuple[Firing, dict[str, object]]] = []
    folded: list[Folded] = []
    for firing in advice.firings:
        kept: dict[str, object] = {}
        for decision, value in firing.set.items():
            if decision in DECISIONS and not DECISIONS[decision][1]:
                continue  # not a recipe setting
            if last.get(decision) != firing.rule:
                folded.append(Folded(firing.rule, decision, value,
                                     f"overridden by {last[decision]}"))
            elif decision in unused:
                folded.append(Folded(firing.rule, decision, value, unused[decision]))
            else:
                kept[decision] = value
        rows.append((firing, kept))
    return rows, folded


def render_recipe(recipe: Recipe, console: Console) -> None:
    exact = all(recipe.solves_head(p) for p in recipe.phases)
    length = ("the head fit exactly (L-BFGS)" if exact else
              f"{recipe.total_epochs} epochs at most")
    console.print(f"[bold]Recipe[/bold]: {recipe.backbone.name} at {recipe.backbone.input_size} px, "
                  f"batches of {recipe.data.batch_size}, {length}, seed {recipe.seed}")
    table = Table()
    for col in ("phase", "epochs", "trains", "peak LR", "warm-up", "LR × per group"):
        table.add_column(col)
    for p in recipe.phases:
        if recipe.solves_head(p):
            table.add_row(shown(p.name), "1 exact fit", _trainable(p.trainable_from),
                          "L-BFGS, L2 by CV", "-", "-")
            continue
        mult = "-" if p.trainable_from >= N_GROUPS else " ".join(f"{m:g}" for m in p.group_lr_multipliers[p.trainable_from:])
        table.add_row(shown(p.name), str(p.epochs), _trainable(p.trainable_from),
                      f"{p.learning_rate:.1e}", f"{p.warmup_epochs:g}", mult)
    console.print(table)
    gradient = [p for p in recipe.phases if not recipe.solves_head(p)]
    if gradient:
        first = gradient[0]
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
    settings = [f"BatchNorm: {recipe.bn_policy}",
                f"domain adaptation: {recipe.domain_adaptation.method}",
                f"class weighting: {recipe.data.class_weighting}"]
    if gradient:  # an exact L-BFGS head uses no dropout, label smoothing or early stopping
        settings += [f"dropout {recipe.head.dropout:g}",
                     f"label smoothing {recipe.regularization.label_smoothing:g}",
                     f"early stopping on {recipe.early_stopping.monitor}, patience "
                     f"{recipe.early_stopping.patience}"]
    console.print(" · ".join(settings))


def render_advice(advice: Advice, console: Console, *, show_probes: bool = True) -> None:
    f = advice.facts
    console.print(
        f"[bold]Data[/bold] {shown(advice.profile.root)}: {f['n_classes']} classes, "
        f"{f['n_train']} training "
        f"images ({f['per_class']:.0f} per class, imbalance {f['imbalance']:.2f}:1), median side "
        f"{f['median_side']:.0f} px, grayscale {f['grayscale']:.0%}"
    )
    for warning in advice.warnings:
        console.print(f"[bold red]Warning:[/bold red] {shown(warning)}")
    if show_probes:
        render_probe(advice.probes, console)
    for p in advice.probes.probes:
        if p.adabn is not None:
            console.print(f"AdaBN check ({p.backbone}): {p.adabn.describe()}")
        if p.precision is not None:
            console.print(f"Precision check ({p.backbone}): {p.precision.describe()}")
    o = advice.probes.orientation
    if o is not None:
        console.print(f"Orientation ({o.backbone}, {o.n_images} images): {o.describe()}")

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
    if advice.forecast is not None:
        console.print(f"[bold]Forecast[/bold] {advice.forecast.describe()}")

    console.print(f"[bold]Why[/bold] (preset '{advice.preset}', then the rules in order)")
    why = Table(show_lines=False)
    for col in ("rule", "decided", "because"):
        why.add_column(col, overflow="fold")
    why.add_row("BB01", f"backbone = {advice.recipe.backbone.name}", advice.recipe.reasons["backbone.name"].text)
    rows, folded = decisions_in_force(advice)
    for firing, kept in rows:
        if firing.kind != "warn" and not kept:
            continue  # nothing of it is in force: in the note below
        decided = ", ".join(f"{k} = {_short(v)}" for k, v in kept.items()) or "(warning)"
        why.add_row(f"{firing.rule}\n[dim]{firing.name}", decided, firing.text)
    console.print(why)
    if folded:
        from rich.markup import escape

        console.print("[dim]Not in force (advice.json keeps every firing): "
                      + escape(fold_note(folded)) + "[/dim]", highlight=False)


def _short(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
