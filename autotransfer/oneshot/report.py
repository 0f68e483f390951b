"""``report.md`` of an ``auto`` run: what the data is, what was measured, what was decided and
why, what tuning changed, and the final numbers (Markdown, plots linked as PNG files)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autotransfer.backbones.spec import GROUP_NAMES
from autotransfer.durations import format_duration
from autotransfer.recipe.schema import N_GROUPS, Recipe
from autotransfer.report.text import markdown_literal
from autotransfer.tuning.markdown import markdown as tuning_markdown

if TYPE_CHECKING:
    from autotransfer.data.models import DatasetProfile
    from autotransfer.oneshot.result import AutoResult
    from autotransfer.tuning.baseline import BaselineChoice
    from autotransfer.tuning.results import TuneResult


def trials_plot_note(tuning: TuneResult) -> str | None:
    """Why ``tuning.png`` is not drawn, in words (``None``: it is). One trial is one bar: a
    picture that compares nothing."""
    if len(tuning.trials) > 1:
        return None
    return ("One trial ran (the advised recipe, trial 0): there is nothing to compare it with, so "
            "no plot of the trials is drawn.")


def _num(value: Any, fmt: str = ".3f") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "–"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format(value, fmt)
    return str(value)


def _trains(phase_from: int) -> str:
    if phase_from >= N_GROUPS:
        return "head only"
    return f"groups {phase_from}–{N_GROUPS - 1} ({GROUP_NAMES[phase_from]}…) + head"


def recipe_table(recipe: Recipe) -> list[str]:
    lines = [f"{markdown_literal(recipe.backbone.name)} at {recipe.backbone.input_size} px, "
             "batches of "
             f"{recipe.data.batch_size}, BatchNorm {recipe.bn_policy}, domain adaptation "
             f"{recipe.domain_adaptation.method}, dropout {recipe.head.dropout:g}, label smoothing "
             f"{recipe.regularization.label_smoothing:g}.", "",
             "| phase | epochs | trains | peak LR | warm-up | weight decay |",
             "|---|---|---|---|---|---|"]
    for p in recipe.phases:
        if recipe.solves_head(p):
            lines.append(f"| {markdown_literal(p.name)} | one exact fit | "
                         f"{_trains(p.trainable_from)} | L-BFGS "
                         "logistic regression, L2 by cross-validation | – | – |")
            continue
        lines.append(f"| {markdown_literal(p.name)} | {p.epochs} | {_trains(p.trainable_from)} | "
                     f"{p.learning_rate:.2e} | {p.warmup_epochs:g} | {p.weight_decay:.2e} |")
    a = recipe.augmentation
    ops = [n for n, on in (("horizontal flip", a.horizontal_flip),
                           ("vertical flip", a.vertical_flip),
                           ("90° rotations", a.rotate90)) if on]
    ops += [f"{n} {v:g}" for n, v in (("rotation", a.rotation), ("zoom", a.zoom),
                                       ("translation", a.translation),
                                       ("brightness", a.brightness), ("contrast", a.contrast),
                                       ("saturation", a.saturation), ("hue", a.hue),
                                       ("MixUp α", a.mixup_alpha)) if v]
    lines += ["", f"Augmentation: {', '.join(ops) or 'none'}."]
    return lines


def _linear_probe_section(choice: BaselineChoice | str | None) -> list[str]:
    """Rule SEL02: which of the linear probe and the fine-tuned recipe was kept, and why."""
    from autotransfer.tuning.baseline import markdown as probe_markdown

    if choice is None:
        return []
    lines = ["", "### The linear probe against fine-tuning (rule SEL02)", ""]
    if isinstance(choice, str):
        return lines + probe_markdown(None, choice)
    return lines + ["The cheap candidate — the same backbone frozen, the head fitted exactly "
                    f"— against the fine-tuned recipe, on {choice.measured_on}:", "",
                    *probe_markdown(choice)]


def markdown_report(result: AutoResult, advised: Recipe, refined: Recipe,
                    profile: DatasetProfile) -> str:
    """``report.md``: the data, the measurements, the decisions, tuning, the final model, time."""
    out = [*_headline(result, refined, profile), *_data(result, profile),
           *_measured(result), *_decided(result, advised), *_tuned(result, refined),
           *_linear_probe_section(result.linear_probe), *_final(result), *_time(result)]
    return "\n".join(out) + "\n"


def _headline(result: AutoResult, refined: Recipe, profile: DatasetProfile) -> list[str]:
    """The title and the final accuracy, model and time in one sentence."""
    tuning, metrics, budget = result.tuning, result.metrics, result.budget
    out: list[str] = [f"# autotransfer: {markdown_literal(profile.root)}", ""]
    test = metrics.get("test")
    headline = (f"**Test accuracy {test['accuracy']:.4f}** (balanced "
                f"{test['balanced_accuracy']:.4f}, {test['n_images']} held-out images)" if test else
                f"**Validation accuracy {metrics['val']['accuracy']:.4f}** "
                f"({metrics['val']['n_images']} images; no test split, and the validation split "
                + ("also chose among the tuning trials)" if tuning is not None else
                   "also decided early stopping)"))
    out += [f"{headline}, with {markdown_literal(refined.backbone.name)} at "
            f"{refined.backbone.input_size} px, in "
            f"{format_duration(result.seconds)} (budget {format_duration(budget['total'])}). "
            f"Model: `model/model.keras` (classes in `model/labels.txt`).", ""]
    choice = result.linear_probe
    if choice is not None and not isinstance(choice, str):
        out += [f"The final model is the **{choice.winner}** (rule SEL02; section 4).", ""]
    return out


def _data(result: AutoResult, profile: DatasetProfile) -> list[str]:
    """Section 1: the images, classes and splits, file problems and the advisor's warnings."""
    advice, f = result.advice, result.advice.facts
    out = ["## 1. The data", ""]
    out.append(f"{profile.n_images} usable images in {len(profile.classes)} classes "
               f"({profile.layout.replace('_', ' ')}); median shorter side "
               f"{_num(f.get('median_side'), '.0f')} px; grayscale "
               f"{_num(f.get('grayscale'), '.0%')}; imbalance "
               f"{_num(profile.imbalance_ratio, '.2f')}:1.")
    out += ["", "| split | images | " + " | ".join(map(markdown_literal, profile.classes)) + " |",
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
    return out


def _measured(result: AutoResult) -> list[str]:
    """Section 2: each candidate backbone's probe, the AdaBN check and the orientation."""
    advice = result.advice
    out = ["", "## 2. What was measured", "",
           f"On a stratified sample of {advice.probes.n_samples} training images, for each "
           "candidate backbone (one forward pass each):", "",
           "| rank | backbone | LogME | linear probe | k-NN | BN shift (mean) | shift peaks at | "
           "ImageNet entropy | params |", "|---|---|---|---|---|---|---|---|---|"]
    for c in advice.candidates:
        p = advice.probes.get(c.backbone)
        entropy = p.imagenet.normalized_entropy if p.imagenet is not None else None
        status = "" if c.allowed else f" (excluded: {markdown_literal(c.excluded_because)})"
        out.append(f"| {c.rank} | {markdown_literal(c.backbone)}{status} | {c.logme:.3f} | "
                   f"{c.linear_acc:.1%} | "
                   f"{c.knn_acc:.1%} | {_num(p.bn_shift.overall, '.2f')} | "
                   f"{p.bn_shift.peak_group or '–'} | {_num(entropy, '.2f')} | "
                   f"{c.params_m:.1f}M |")
    for p in advice.probes.probes:
        if p.adabn is not None:
            out.append(f"\nAdaBN check ({markdown_literal(p.backbone)}): {p.adabn.describe()}.")
    o = advice.probes.orientation
    if o is not None:
        out.append(f"\nOrientation: {o.describe()}.")
    return out


def _decided(result: AutoResult, advised: Recipe) -> list[str]:
    """Section 3: each rule in force with its evidence, and the advised recipe."""
    from autotransfer.report.advice import decisions_in_force

    advice = result.advice
    out = ["", "## 3. What was decided, and why", "",
           f"Preset '{advice.preset}', then the rules of `recipes/rules.yaml` in order "
           "(docs/rules.md); each line is a rule that fired, with the measured evidence.", ""]
    rows, folded = decisions_in_force(advice)  # values overridden later or unused: not settings
    for firing, kept in rows:
        evidence = ", ".join(f"{k}={_num(v, '.3g')}" for k, v in firing.evidence.items())
        sets = ", ".join(f"{k}={_num(v, '.3g')}" for k, v in kept.items())
        away = "; ".join(f"{f.decision}={_num(f.value, '.3g')} {f.why}" for f in folded
                         if f.rule == firing.rule)
        out.append(f"- **{firing.rule}** {firing.name}: {firing.text}"
                   + (f" → {sets}" if sets else "")
                   + (f" *(not in force: {away})*" if away else "")
                   + (f" *(evidence: {evidence})*" if evidence else ""))
    return out + ["", "The advised recipe (`recipe.yaml`):", "", *recipe_table(advised)]


def _tuned(result: AutoResult, refined: Recipe) -> list[str]:
    """Section 4: the search (or why none ran) and the refined recipe."""
    tuning, budget = result.tuning, result.budget
    out = ["", "## 4. What tuning changed", ""]
    if tuning is None:
        out += [f"No search ran (rule {budget['rules']['search_skipped']}): "
                f"{budget['search_skipped']}", ""]
    else:
        body = tuning_markdown(tuning).split("\n", 2)[2]  # without its title
        note = trials_plot_note(tuning)
        out += [body.replace("\n## ", "\n### "),
                "![tuning trials](tuning.png)" if note is None else note, ""]
    if tuning is not None and tuning.changes:
        out += [f"The refined recipe (`recipe.tuned.yaml`, every changed field with a "
                f"{_selection_reason(tuning)}):", "", *recipe_table(refined)]
    return out


def _selection_reason(tuning: TuneResult) -> str:
    """What the refined recipe's reasons rest on, from the search's own selection record:
    TUNE01's validation accuracy (tested against trial 0), or DA11's criterion on the target."""
    rule = tuning.selection.get("rule") or tuning.objective.get("rule") or "TUNE01"
    criterion = tuning.objective.get("criterion")
    if tuning.objective.get("rule") == rule and criterion:
        return (f"{rule} reason: the best {criterion} score on the target images, "
                "without target labels")
    tested = ", tested against trial 0" if tuning.selection.get("test") else ""
    return f"{rule} reason: the best validation accuracy{tested}"


def _final(result: AutoResult) -> list[str]:
    """Section 5: the final model's accuracy by split and class, the forecast against it, the
    adaptation, the exports, and the final run's pictures and mistakes."""
    metrics, budget = result.metrics, result.budget
    test = metrics.get("test")
    out = ["", "## 5. Final model", "", budget["note"], ""]
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
        out.append(f"| {markdown_literal(name)} | {c['precision']:.3f} | {c['recall']:.3f} | "
                   f"{c['f1']:.3f} | {c['support']} |")
    if result.forecast is not None:  # issue 18: what the advisor expected, against the measures
        out += ["", "### Forecast against measured", "", *result.forecast.markdown()]
    from autotransfer.oneshot.adapt import markdown as adaptation_markdown

    out += adaptation_markdown(result.adaptation)  # issue 19: DA09/DA10, the gap before/after
    if len(result.exports) > 1:
        out += ["", "Exported: " + ", ".join(f"`{f}`" for f in result.exports) + "."]
    # the final run's pictures and mistakes, as its own report shows them (only those it drew)
    from autotransfer.train.analysis import analysis_markdown
    from autotransfer.train.plots import plots_markdown

    pictures = plots_markdown(metrics, prefix="model/")
    if metrics.get("error_analysis"):
        pictures += analysis_markdown(metrics["error_analysis"], prefix="model/")
    return out + [f"#{line}" if line.startswith("## ") else line for line in pictures] + [""]


def _time(result: AutoResult) -> list[str]:
    """Section 6: the time of each step, and how much of the budget each used."""
    from autotransfer.budget import markdown_table

    tuning, budget = result.tuning, result.budget
    out = ["## 6. Time", "",
           f"- profiling, probing and advising: {format_duration(budget['advise_seconds'])}",
           "- tuning: none (see section 4)" if tuning is None else
           f"- tuning: {format_duration(budget['tune_seconds'])} ({len(tuning.trials)} trials; "
           f"{tuning.stopped_because}); {budget['reserve_factor']:.2f} × the longest trial's "
           "time was kept for the final step",
           f"- final model: {format_duration(budget['final_seconds'])} ({budget['final']})",
           *([f"- ONNX export: {format_duration(budget['onnx_seconds'])}"]
             if budget.get("onnx_seconds") is not None else []), ""]
    return out + [*markdown_table(budget), ""]  # how much of the budget each step used


def plot_trials(tuning: TuneResult, path: Path) -> None:
    """``tuning.png``: each trial's validation accuracy, the best and trial 0 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [t for t in tuning.trials if t.val_accuracy is not None]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(tuning.trials) + 2), 3.2))
    colours = ["tab:green" if t.trial_id == tuning.best_trial else
               "tab:blue" if not t.changed else "tab:gray" for t in rows]
    ax.bar([t.trial_id for t in rows], [t.val_accuracy for t in rows], color=colours)
    for t in tuning.trials:
        if t.val_accuracy is None:
            ax.bar([t.trial_id], [0.0])
            ax.text(t.trial_id, 0.02, "failed", rotation=90, ha="center", va="bottom", fontsize=7)
    if tuning.baseline_accuracy is not None:
        ax.axhline(tuning.baseline_accuracy, color="tab:blue", linestyle="--", linewidth=1,
                   label="trial 0 (advised)")
        ax.legend(loc="lower right", fontsize=8)
    low = min([t.val_accuracy for t in rows] or [0.0])
    ax.set_ylim(max(0.0, low - 0.1), 1.0)
    ax.set_xlabel("trial")
    ax.set_ylabel("validation accuracy")
    ax.set_title("Tuning trials (green: best, blue: the advised recipe)", fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
