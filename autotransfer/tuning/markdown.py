"""``tuning.md``: a search's space, trial table and changes, for people."""

from __future__ import annotations

from autotransfer.durations import format_duration
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
    lines += ["", "## Search space", "", "| hyperparameter | default | range | why |",
              "|---|---|---|---|"]
    for d in result.space:
        lines.append(f"| {d.name} | {fmt(d.default)} | {d.describe_range()} | {d.why} |")
    for note in result.space.notes:
        lines.append(f"\n- {note}")
    lines += ["", "## Trials", "", "| trial | tuner | status | val accuracy | val loss | seconds | "
              "changed from the recipe |", "|---|---|---|---|---|---|---|"]
    for t in result.trials:
        acc = "–" if t.val_accuracy is None else f"{t.val_accuracy:.4f}"
        loss = "–" if t.val_loss is None else f"{t.val_loss:.4f}"
        secs = "–" if t.seconds is None else f"{t.seconds:.0f}"
        changed = (", ".join(f"{k}={fmt(v)}" for k, v in t.changed.items())
                   or "(none: the recipe)")
        if t.message:
            changed += f" — {t.message}"
        mark = " **best**" if t.trial_id == result.best_trial else ""
        lines.append(f"| {t.trial_id}{mark} | {t.tuner_id or ''} | {t.status.lower()} | {acc} | "
                     f"{loss} | {secs} | {changed} |")
    lines += ["", "## Changes", ""]
    why = result.selection.get("why")
    if not result.changes:
        lines.append(f"None: trial {result.selection['candidate']} had the best validation "
                     f"accuracy, but {why}." if why and not result.selection.get("replace")
                     else "None: no trial beat the recipe as given, which is kept.")
    elif why:
        lines.append(f"Trial {result.best_trial} replaces the recipe: {why}.")
        lines.append("")
    for c in result.changes:
        lines.append(f"- `{c['path']}`: {fmt(c['before'])} → {fmt(c['after'])}")
    return "\n".join(lines) + "\n"
