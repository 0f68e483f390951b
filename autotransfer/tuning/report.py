"""``report.md`` of an ``auto`` run: what the data is, what was measured, what was decided and
why, what tuning changed, and the final numbers (Markdown, plots linked as PNG files)."""

from __future__ import annotations

from typing import Any

from autotransfer.durations import format_duration
from autotransfer.recipe.schema import N_GROUPS, Recipe
from autotransfer.tuning.tuner import markdown as tuning_markdown

GROUPS = ("stem", "stage_s4", "stage_s8", "stage_s16", "stage_s32")


def trials_plot_note(tuning: Any) -> str | None:
    """Why ``tuning.png`` is not drawn, in words (``None``: it is). One trial is one bar: a
    picture that compares nothing."""
    if len(tuning.trials) > 1:
        return None
    return ("One trial ran (the advised recipe, trial 0): there is nothing to compare it with, so "
            "no plot of the trials is drawn.")


def _num(value: Any, fmt: str = ".3f") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    return format(value, fmt) if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)


def _trains(phase_from: int) -> str:
    if phase_from >= N_GROUPS:
        return "head only"
    return f"groups {phase_from}–{N_GROUPS - 1} ({GROUPS[phase_from]}…) + head"


def recipe_table(recipe: Recipe) -> list[str]:
    lines = [f"{recipe.backbone.name} at {recipe.backbone.input_size} px, batches of "
             f"{recipe.data.batch_size}, BatchNorm {recipe.bn_policy}, domain adaptation "
             f"{recipe.domain_adaptation.method}, dropout {recipe.head.dropout:g}, label smoothing "
             f"{recipe.regularization.label_smoothing:g}.", "",
             "| phase | epochs | trains | peak LR | warm-up | weight decay |",
             "|---|---|---|---|---|---|"]
    for p in recipe.phases:
        if recipe.solves_head(p):
            lines.append(f"| {p.name} | one exact fit | {_trains(p.trainable_from)} | L-BFGS "
                         "logistic regression, L2 by cross-validation | – | – |")
            continue
        lines.append(f"| {p.name} | {p.epochs} | {_trains(p.trainable_from)} | "
                     f"{p.learning_rate:.2e} | {p.warmup_epochs:g} | {p.weight_decay:.2e} |")
    a = recipe.augmentation
    ops = [n for n, on in (("horizontal flip", a.horizontal_flip), ("vertical flip", a.vertical_flip),
                           ("90° rotations", a.rotate90)) if on]
    ops += [f"{n} {v:g}" for n, v in (("rotation", a.rotation), ("zoom", a.zoom),
                                       ("translation", a.translation), ("brightness", a.brightness),
                                       ("contrast", a.contrast), ("saturation", a.saturation),
                                       ("hue", a.hue), ("MixUp α", a.mixup_alpha)) if v]
    lines += ["", f"Augmentation: {', '.join(ops) or 'none'}."]
    return lines


def _linear_probe_section(choice: Any) -> list[str]:
    """Rule SEL02: which of the linear probe and the fine-tuned recipe was kept, and why."""
    from autotransfer.tuning.baseline import markdown as probe_markdown

    if choice is None:
        return []
    lines = ["", "### The linear probe against fine-tuning (rule SEL02)", ""]
    if isinstance(choice, str):
        return lines + probe_markdown(None, choice)
    return lines + [f"The cheap candidate — the same backbone frozen, the head fitted exactly — "
                    f"against the fine-tuned recipe, on {choice.measured_on}:", "",
                    *probe_markdown(choice)]


def markdown_report(result: Any, advised: Recipe, refined: Recipe, profile: Any) -> str:
    advice, tuning, metrics, budget = result.advice, result.tuning, result.metrics, result.budget
    f = advice.facts
    out: list[str] = [f"# autotransfer: {profile.root}", ""]
    test = metrics.get("test")
    headline = (f"**Test accuracy {test['accuracy']:.4f}** (balanced {test['balanced_accuracy']:.4f}, "
                f"{test['n_images']} held-out images)" if test else
                f"**Validation accuracy {metrics['val']['accuracy']:.4f}** "
                f"({metrics['val']['n_images']} images; no test split, and the validation split "
                + ("also chose among the tuning trials)" if tuning is not None else
                   "also decided early stopping)"))
    out += [f"{headline}, with {refined.backbone.name} at {refined.backbone.input_size} px, in "
            f"{format_duration(result.seconds)} (budget {format_duration(budget['total'])}). "
            f"Model: `model/model.keras` (classes in `model/labels.txt`).", ""]
    choice = getattr(result, "linear_probe", None)
    if choice is not None and not isinstance(choice, str):
        out += [f"The final model is the **{choice.winner}** (rule SEL02; section 4).", ""]

    # the data
    out += ["## 1. The data", ""]
    out.append(f"{profile.n_images} usable images in {len(profile.classes)} classes "
               f"({profile.layout.replace('_', ' ')}); median shorter side "
               f"{_num(f.get('median_side'), '.0f')} px; grayscale {_num(f.get('grayscale'), '.0%')}; "
               f"imbalance {_num(profile.imbalance_ratio, '.2f')}:1.")
    out += ["", "| split | images | " + " | ".join(profile.classes) + " |",
            "|---|---|" + "---|" * len(profile.classes)]
    for s in profile.splits:
        out.append(f"| {s.name} | {s.n_images} | "
                   + " | ".join(str(s.class_counts.get(c, 0)) for c in profile.classes) + " |")
    problems = len(profile.problems)
    if problems or profile.duplicates:
        out.append(f"\n{problems} file problem(s), {len(profile.duplicates)} duplicate group(s) "
                   "(see `profile.json`).")
    for w in advice.warnings:
        out.append(f"\n> **Warning:** {w}")

    # the measurements
    out += ["", "## 2. What was measured", "",
            f"On a stratified sample of {advice.probes.n_samples} training images, for each "
            "candidate backbone (one forward pass each):", "",
            "| rank | backbone | LogME | linear probe | k-NN | BN shift (mean) | shift peaks at | "
            "ImageNet entropy | params |", "|---|---|---|---|---|---|---|---|---|"]
    for c in advice.candidates:
        p = advice.probes.get(c.backbone)
        entropy = p.imagenet.normalized_entropy if p.imagenet is not None else None
        status = "" if c.allowed else f" (excluded: {c.excluded_because})"
        out.append(f"| {c.rank} | {c.backbone}{status} | {c.logme:.3f} | {c.linear_acc:.1%} | "
                   f"{c.knn_acc:.1%} | {_num(p.bn_shift.overall, '.2f')} | "
                   f"{p.bn_shift.peak_group or '–'} | {_num(entropy, '.2f')} | {c.params_m:.1f}M |")
    for p in advice.probes.probes:
        if p.adabn is not None:
            out.append(f"\nAdaBN check ({p.backbone}): {p.adabn.describe()}.")
    o = advice.probes.orientation
    if o is not None:
        out.append(f"\nOrientation: quarter turns predicted with accuracy "
                   f"{o.rotation_accuracy:.2f} (chance 0.25), mirror images {o.flip_accuracy:.2f} "
                   "(chance 0.5).")

    # the decisions
    out += ["", "## 3. What was decided, and why", "",
            f"Preset '{advice.preset}', then the rules of `recipes/rules.yaml` in order "
            "(docs/rules.md); each line is a rule that fired, with the measured evidence.", ""]
    from autotransfer.report.advice import decisions_in_force

    rows, folded = decisions_in_force(advice)  # values overridden later or unused: not settings
    for firing, kept in rows:
        evidence = ", ".join(f"{k}={_num(v, '.3g')}" for k, v in firing.evidence.items())
        sets = ", ".join(f"{k}={_num(v, '.3g')}" for k, v in kept.items())
        away = "; ".join(f"{f.decision}={_num(f.value, '.3g')} {f.why}" for f in folded
                         if f.rule == firing.rule)
        out.append(f"- **{firing.rule}** {firing.name}: {firing.text}"
                   + (f" → {sets}" if sets else "") + (f" *(not in force: {away})*" if away else "")
                   + (f" *(evidence: {evidence})*" if evidence else ""))
    out += ["", "The advised recipe (`recipe.yaml`):", "", *recipe_table(advised)]

    # tuning
    out += ["", "## 4. What tuning changed", ""]
    if tuning is None:
        out += [f"No search ran: {budget['search_skipped']}", ""]
    else:
        body = tuning_markdown(tuning).split("\n", 2)[2]  # without its title
        note = trials_plot_note(tuning)
        out += [body.replace("\n## ", "\n### "),
                "![tuning trials](tuning.png)" if note is None else note, ""]
    if tuning is not None and tuning.changes:
        out += ["The refined recipe (`recipe.tuned.yaml`, every changed field with a TUNE reason):",
                "", *recipe_table(refined)]

    # the linear probe against fine-tuning (rule SEL02)
    out += _linear_probe_section(getattr(result, "linear_probe", None))

    # final
    out += ["", "## 5. Final model", "", budget["note"], ""]
    val = metrics["val"]
    out += ["| split | images | accuracy | balanced accuracy | macro F1 | loss |",
            "|---|---|---|---|---|---|"]
    for name, m in (("validation", val), ("test", test)):
        if m:
            out.append(f"| {name} | {m['n_images']} | {m['accuracy']:.4f} | "
                       f"{m['balanced_accuracy']:.4f} | {m['macro_f1']:.4f} | {m['loss']:.4f} |")
    shown = test or val
    out += ["", "| class | precision | recall | F1 | images |", "|---|---|---|---|---|"]
    for name, c in shown["per_class"].items():
        out.append(f"| {name} | {c['precision']:.3f} | {c['recall']:.3f} | {c['f1']:.3f} | "
                   f"{c['support']} |")
    # the final run's pictures and mistakes, as its own report shows them (only those it drew)
    from autotransfer.train.analysis import analysis_markdown
    from autotransfer.train.plots import plots_markdown

    pictures = plots_markdown(metrics, prefix="model/")
    if metrics.get("error_analysis"):
        pictures += analysis_markdown(metrics["error_analysis"], prefix="model/")
    out += [f"#{line}" if line.startswith("## ") else line for line in pictures] + [""]

    # time
    out += ["## 6. Time", "",
            f"- profiling, probing and advising: {format_duration(budget['advise_seconds'])}",
            "- tuning: none (see section 4)" if tuning is None else
            f"- tuning: {format_duration(budget['tune_seconds'])} ({len(tuning.trials)} trials; "
            f"{tuning.stopped_because}); {budget['reserve_factor']:.2f} × the longest trial's time was kept "
            "for the final step",
            f"- final model: {format_duration(budget['final_seconds'])} ({budget['final']})", ""]
    from autotransfer.budget import markdown_table

    out += [*markdown_table(budget), ""]  # how much of the budget each step used, and if kept
    return "\n".join(out) + "\n"
