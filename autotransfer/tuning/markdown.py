"""``tuning.md``: a search's space, trial table and changes, for people."""

from __future__ import annotations

from autotransfer.durations import format_duration
from autotransfer.report.text import markdown_literal
from autotransfer.tuning.results import TuneResult
from autotransfer.tuning.space import fmt


def markdown(result: TuneResult) -> str:
    """The tuning report: space, trial table, changes, gain."""
    lines = ["# Tuning", ""]
    base, best = result.baseline_accuracy, result.best_accuracy
    lines.append(f"{len(result.trials)} trial(s), {result.algorithm} search, "
                 f"{format_duration(result.seconds)}; {result.stopped_because or 'done'}.")
    if base is not None and best is not None:
        lines.append(f"Validation accuracy: trial 0 (the recipe as given) {base:.4f}, best "
                     f"(trial {result.best_trial}) {best:.4f}, gain {result.gain:+.4f}.")
    scored = _scored(result)
    if scored:  # an adapting search (rule DA11): ranked by a score on the target, in the table
        lines.append(f"Trials ranked by {scored} on the target images, not validation accuracy "
                     f"(rule {result.objective['rule']}; column '{scored} (target)').")
    lines += ["", "## Search space", "", "| hyperparameter | default | range | why |",
              "|---|---|---|---|"]
    for d in result.space:
        lines.append(f"| {d.name} | {markdown_literal(fmt(d.default))} | "
                     f"{markdown_literal(d.describe_range())} | {markdown_literal(d.why)} |")
    for note in result.space.notes:
        lines.append(f"\n- {note}")
    score_head = f" {scored} (target) |" if scored else ""
    lines += ["", "## Trials", "", f"| trial | tuner | status |{score_head} val accuracy | "
              "val loss | seconds | changed from the recipe |",
              "|---|---|---|" + "---|" * bool(scored) + "---|---|---|---|"]
    for t in result.trials:
        acc = "–" if t.val_accuracy is None else f"{t.val_accuracy:.4f}"
        loss = "–" if t.val_loss is None else f"{t.val_loss:.4f}"
        secs = "–" if t.seconds is None else f"{t.seconds:.0f}"
        changed = (", ".join(f"{k}={fmt(v)}" for k, v in t.changed.items())
                   or "(none: the recipe)")
        if t.message:
            changed += f" — {t.message}"
        mark = " **best**" if t.trial_id == result.best_trial else ""
        score = ("" if not scored else " – |" if t.score is None else f" {t.score:.4f} |")
        lines.append(f"| {t.trial_id}{mark} | {markdown_literal(t.tuner_id or '')} | "
                     f"{t.status.lower()} |{score} {acc} | {loss} | {secs} | "
                     f"{markdown_literal(changed)} |")
    lines += ["", "## Changes", ""]
    why = result.selection.get("why")
    if not result.changes and result.objective:
        lines.append(f"None: {why}.")
    elif not result.changes:
        lines.append(f"None: trial {result.selection['candidate']} had the best validation "
                     f"accuracy, but {why}." if why and not result.selection.get("replace")
                     else "None: no trial beat the recipe as given, which is kept.")
    elif why:
        lines.append(f"Trial {result.best_trial} replaces the recipe: {why}.")
        lines.append("")
    for c in result.changes:
        lines.append(f"- `{c['path']}`: {markdown_literal(fmt(c['before']))} → "
                     f"{markdown_literal(fmt(c['after']))}")
    return "\n".join(lines) + "\n"


def _scored(result: TuneResult) -> str:
    """The criterion of the trials' score column: DA09's, when the search was ranked by it
    (rule DA11, :mod:`.adapting`); ``""`` when validation accuracy ranked the trials."""
    from autotransfer.tuning.adapting import RULE, metric

    o = result.objective
    if o.get("rule") != RULE or not o.get("criterion") or o.get("metric") != metric(
            str(o["criterion"])):
        return ""
    return str(o["criterion"])
