"""What a search changed in a recipe (:func:`recipe_changes`) and why (:func:`with_provenance`:
a TUNE01 reason on every changed field, with the trial's evidence and the searched range's rule)."""

from __future__ import annotations

import json
from typing import Any

from autotransfer.advisor.rules import rule_text
from autotransfer.recipe.schema import Reason, Recipe
from autotransfer.tuning.results import TrialRecord
from autotransfer.tuning.space import SearchSpace, fmt

#: the rule of a change the search kept (recipes/rules.yaml)
KEPT = "TUNE01"


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


def recipe_changes(before: Recipe, after: Recipe) -> list[dict[str, Any]]:
    """The fields that differ, as ``{"path", "before", "after"}`` (phases compared one by one)."""
    a = before.model_dump(mode="json", exclude={"reasons", "name"})
    b = after.model_dump(mode="json", exclude={"reasons", "name"})
    if len(a["phases"]) != len(b["phases"]):
        def summary(r: dict[str, Any]) -> str:
            return "; ".join(f"{p['name']}: from group {p['trainable_from']}, {p['epochs']} epochs"
                             for p in r["phases"])

        changes = [{"path": "phases", "before": summary(a), "after": summary(b)}]
        a.pop("phases"), b.pop("phases")
    else:
        changes = []
        a["phases"] = {str(i): p for i, p in enumerate(a["phases"])}
        b["phases"] = {str(i): p for i, p in enumerate(b["phases"])}
    fa, fb = _flatten(a), _flatten(b)
    for path in fa:
        if fa[path] != fb.get(path):
            changes.append({"path": path, "before": fa[path], "after": fb.get(path)})
    return changes


def _scalar(value: Any) -> float | int | str | bool | None:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value)


def with_provenance(advised: Recipe, refined: Recipe, changes: list[dict[str, Any]], *,
                    best: TrialRecord, baseline: TrialRecord | None, n_trials: int,
                    space: SearchSpace, selection: dict[str, Any] | None = None) -> Recipe:
    """``refined`` with a TUNE01 reason on every changed field (the others keep theirs)."""
    reasons = dict(refined.reasons)
    base_acc = baseline.val_accuracy if baseline is not None else None
    gain = None if base_acc is None or best.val_accuracy is None else best.val_accuracy - base_acc
    if len(refined.phases) != len(advised.phases):  # phase indices moved: keep the non-phase ones
        reasons = {k: v for k, v in reasons.items() if not k.startswith("phases.")}
    for change in changes:
        path = change["path"]
        earlier = advised.reasons.get(path)
        dims = [d for d in space if any(path == f or path.startswith(f + ".") for f in d.fields)
                or (path == "phases" and d.name == "finetune_from")]
        text = rule_text(KEPT, {"path": path, "before": fmt(change["before"]),
                                "after": fmt(change["after"]), "val_accuracy": best.val_accuracy})
        text += (f", {gain:+.4f} over trial 0 (the advised recipe, {base_acc:.4f})"
                 if gain is not None else " (trial 0 did not complete)")
        text += f"; best of {n_trials} trial(s), trial {best.trial_id}"
        test = (selection or {}).get("test")
        text += (f" (exact McNemar p = {test['p']:.3g}: {test['gained']} validation image(s) "
                 f"gained, {test['lost']} lost)." if test else ".")
        evidence: dict[str, Any] = {
            "before": _scalar(change["before"]), "after": _scalar(change["after"]),
            "trial": best.trial_id, "val_accuracy": best.val_accuracy,
            "val_accuracy_trial0": base_acc, "gain": gain, "trials": n_trials,
            "advised_by": earlier.rule if earlier is not None else None,
            "mcnemar_p": test["p"] if test else None}
        thresholds: dict[str, Any] = {}
        for d in dims:
            if d.kind == "choice":
                thresholds[f"{d.name}.values"] = ",".join(str(v) for v in d.values)
            else:
                thresholds[f"{d.name}.low"], thresholds[f"{d.name}.high"] = d.low, d.high
        if test:
            thresholds["alpha"] = selection["alpha"]
        thresholds |= {f"{d.name}.rule": d.range_rule for d in dims if d.range_rule}
        reasons[path] = Reason(rule=KEPT, text=text, evidence=evidence, thresholds=thresholds)
    return refined.model_copy(update={"reasons": dict(sorted(reasons.items())),
                                      "name": f"{advised.name} (tuned)"})
