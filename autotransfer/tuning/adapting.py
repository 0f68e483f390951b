"""A search around a recipe that adapts to unlabelled target images (rule DA11; pure).

Every trial trains with the recipe's adaptation and the target images (:mod:`.trials`,
:class:`~autotransfer.tuning.trials.TrialAdaptation`) and is scored by rule DA09's unsupervised
criterion (:mod:`autotransfer.train.adaptation.selection`; no target label), which becomes the
tuner's objective (:func:`metric`, higher is better). For a method with a loss, λ is a searched
dimension (:func:`weight_dimension`) over 0 and DA09's weights, so the search replaces DA09's
separate choice. The trial kept is the best score, ties to trial 0 (:func:`summarise`): TUNE01's
McNemar test and TUNE02's stop measure source validation images, which cannot see the target.

Beside the trials, the recipe's exact linear head (the backbone frozen, the head fitted by L-BFGS,
no adaptation; seconds on the cached features) is scored by the same criterion
(:func:`probe_candidate`, trial id :data:`PROBE_TRIAL`): SEL02 cannot compare an adapting recipe
with it on source validation images, so here it competes on the search's own objective, and it is
kept when it scores at least as well as the best trial (the cheaper model wins ties:
:func:`probe_kept`). Without a search, ``auto`` scores the same head the same way against DA09's
candidates or the adapting final model (:mod:`autotransfer.oneshot.adapt`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from autotransfer.recipe.schema import Reason, Recipe
from autotransfer.tuning.dimensions import Dimension, SearchSpace, fmt

#: the rule of an adapting search; the rule whose params give its criterion and λ grid
RULE, GRID_RULE = "DA11", "DA09"
#: the search-space dimension of the adaptation loss weight λ
DIMENSION = "adaptation_weight"
WEIGHT_FIELD = "domain_adaptation.weight"
#: the exact linear head's id in the trial table (its files: ``search/trial_probe/``)
PROBE_TRIAL = "probe"
#: what :func:`probe_candidate` writes when the probe is done (a resumed search reads it)
PROBE_RESULT = "trial_result.json"


def adapts(recipe: Recipe) -> bool:
    """Whether ``recipe``'s trials read target images (then the search is DA11's)."""
    return bool(recipe.domain_adaptation.needs_target)


def criterion() -> str:
    """DA09's unsupervised criterion (``dev``), which ranks the trials."""
    from autotransfer.advisor.rules import rule_params

    return str(rule_params(GRID_RULE)["criterion"])


def weights() -> tuple[float, ...]:
    """DA09's λ candidates besides 0."""
    from autotransfer.advisor.rules import rule_params

    return tuple(float(w) for w in str(rule_params(GRID_RULE)["weights"]).split(","))


def metric(name: str) -> str:
    """The tuner's objective for criterion ``name`` (a trial's score, higher is better)."""
    return f"target_{name}"


def objective_record(name: str) -> dict[str, Any]:
    """What ``tuning.json`` says about how the trials were judged."""
    from autotransfer.advisor.rules import rule_text

    return {"metric": metric(name), "direction": "max", "criterion": name, "rule": RULE,
            "why": rule_text(RULE, {"criterion": name})}


def weight_dimension(recipe: Recipe) -> Dimension | None:
    """λ among 0 and DA09's weights, the recipe's own first (``None``: the method has no loss)."""
    da = recipe.domain_adaptation
    if not da.has_loss:
        return None
    grid = weights()
    values = tuple(sorted({0.0, *grid, float(da.weight)}))
    reason = recipe.reasons.get(WEIGHT_FIELD) or recipe.reasons.get("domain_adaptation.method")
    why = (f"adaptation loss weight λ: 0 (the same model trained source-only) or DA09's "
           f"{', '.join(f'{w:g}' for w in grid)}, trial 0 at the recipe's {da.weight:g}; ranked by "
           f"{criterion()} on the target, without target labels (DA11)")
    return Dimension(DIMENSION, "choice", float(da.weight), values=values, why=why,
                     rule=reason.rule if reason is not None else "", fields=(WEIGHT_FIELD,),
                     range_rule=RULE)


def summarise(out: Path, recipe: Recipe, space: SearchSpace, records: list[Any], *,
              role_name: str, stopped: str, seconds: float, algorithm: str,
              name: str) -> Any:
    """The end of an adapting search: the best score kept (ties to trial 0, then the lower
    validation loss), its changes explained by DA11. ``records`` carry each trial's ``score``."""
    from autotransfer.tuning.provenance import recipe_changes
    from autotransfer.tuning.results import TuneResult, baseline_trial
    from autotransfer.tuning.trial_recipe import apply

    objective = objective_record(name)
    done = [t for t in records if t.status == "COMPLETED" and t.score is not None]
    baseline = baseline_trial(done)
    if not done:
        return TuneResult(out, role_name, recipe, space, records, None, None, None, None, [],
                          stopped, seconds, algorithm, objective=objective)
    probe = next((t for t in done if t.trial_id == PROBE_TRIAL), None)
    trials = [t for t in done if t is not probe]
    # ties go to trial 0 (the recipe as given), then the lower validation loss; the exact
    # linear head (the cheapest) is kept by :func:`probe_kept`
    best = max(trials, key=lambda t: (t.score, not t.changed,
                                      -(t.val_loss if t.val_loss is not None else 1e9)),
               default=probe)
    if probe is not None and probe_kept(probe.score, best.score if trials else None):
        best = probe
    base = None if baseline is None else baseline.score
    values = {k: v for k, v in best.values.items() if not k.startswith("tuner/")}
    refined = apply(recipe, values, space)
    changes = recipe_changes(recipe, refined)
    # worded from what changes: any unchanged trial that wins keeps the recipe as given
    why = (f"trial {best.trial_id} has the best {name} score ({best.score:.4f}"
           + ("" if base is None or best is baseline else f", trial 0: {base:.4f}")
           + f") of {len(done)} completed trial(s), without target labels"
           + ("" if changes else ": the recipe as given is kept"))
    if probe is not None:
        why = _probe_why(why, best, probe, trials, name)
    selection = {"rule": RULE, "candidate": best.trial_id, "criterion": name, "why": why}
    if probe is not None:
        selection["linear_probe"] = {"trial": PROBE_TRIAL, name: probe.score,
                                     "seconds": probe.seconds, "kept": best is probe}
    refined = _with_reasons(recipe, refined, changes, best, base, len(records), space, name)
    # ``gain`` keeps its meaning (validation accuracy over trial 0); the scores are in ``why``
    gain = (None if baseline is None or best.val_accuracy is None
            else best.val_accuracy - (baseline.val_accuracy or 0.0))
    return TuneResult(out, role_name, recipe, space, records, refined,
                      baseline.trial_id if baseline else None, best.trial_id, gain, changes,
                      stopped, seconds, algorithm, selection, objective=objective)


def probe_kept(probe_score: float, best_score: float | None) -> bool:
    """Whether the exact linear head, scored ``probe_score`` by DA09's criterion, is kept over
    the best adapting candidate's ``best_score`` (``None``: none scored): at least as good, as
    the cheaper model wins ties (rule DA11; a search's trials, or DA09's candidates without
    one)."""
    return best_score is None or probe_score >= best_score


def _probe_why(why: str, best: Any, probe: Any, trials: list[Any], name: str) -> str:
    """``why`` with what the exact linear head scored against the best trial, and, when it is
    kept, the training time it saves."""
    rival = max(trials, key=lambda t: (t.score, not t.changed), default=None)
    if best is not probe:
        return (why + f"; the exact linear head (trial {PROBE_TRIAL}, the backbone frozen, "
                f"no adaptation) scored {probe.score:.4f}, below it")
    if rival is None:
        return why + "; no adapting trial completed"
    saved = (None if rival.seconds is None or probe.seconds is None
             else max(0.0, rival.seconds - probe.seconds))
    return (f"the exact linear head (trial {PROBE_TRIAL}: the backbone frozen, the head fitted "
            f"by L-BFGS, no adaptation) scores {probe.score:.4f}, at least the best adapting "
            f"trial's ({rival.trial_id}: {rival.score:.4f}) of {len(trials)} completed, by "
            f"{name} on the target without target labels: the cheaper model to train (an exact "
            "solve on the frozen features, no epochs, no adaptation) is kept"
            + (f" ({saved:.0f} s less training than trial {rival.trial_id})"
               if saved is not None and saved >= 0.5 else ""))


def probe_candidate(recipe: Recipe, hypermodel: Any, out: Path, *, deadline: float | None,
                    say: Callable[[str], None]) -> Any:
    """The exact linear head of ``recipe`` trained on the search's splits, in memory with its
    shared frozen features (``hypermodel``'s store and target features; the hypermodel's trial
    path and guards), and scored by its criterion on the target, as a
    :class:`~.results.TrialRecord` (trial :data:`PROBE_TRIAL`; files in its trial folder,
    reused by a resumed search). Past ``deadline`` it stops — or, already past, is skipped —
    and, like any failure of its training, is recorded as failed, as a trial would be."""
    from autotransfer.tuning.hypermodel import Deadline, TrialFailed, release_memory, \
        trial_failure
    from autotransfer.tuning.results import TrialRecord, trial_dir
    from autotransfer.tuning.trial_recipe import LINEAR_PROBE, apply

    folder = trial_dir(out, PROBE_TRIAL)
    values = {LINEAR_PROBE: True}
    done = folder / PROBE_RESULT
    if done.is_file():
        got = json.loads(done.read_text(encoding="utf-8"))["objective"]
    else:
        def failed(message: str) -> Any:
            say(f"The exact linear head was not scored ({RULE}): {message}")
            return TrialRecord(trial_id=PROBE_TRIAL, status="FAILED", values=values,
                               changed=values, message=message)

        if deadline is not None and time.time() >= deadline:
            return failed("skipped: it could only start past the end of the time budget")
        probe = apply(recipe, values, hypermodel.space)
        say(f"Scoring the exact linear head (L-BFGS on the frozen backbone, no adaptation) by "
            f"{hypermodel.criterion} on the target, beside the trials ({RULE})")
        guards = [] if deadline is None else [Deadline(deadline)]
        started = time.perf_counter()
        try:
            result, score = hypermodel.in_memory(probe, folder / "run", guards, adapting=True)
            got = hypermodel.objective(result, score, time.perf_counter() - started)
        except TrialFailed as exc:
            return failed(str(exc))
        except Exception as exc:  # noqa: BLE001 - recorded as failed, as a trial is
            return failed(str(trial_failure(exc)))
        finally:
            release_memory()
        from autotransfer._io import atomic_write_json

        atomic_write_json(done, {"objective": got, "kind": "in memory", "rule": RULE,
                                 "val_correct": result.metrics["val"].get("correct")})
    return TrialRecord(trial_id=PROBE_TRIAL, status="COMPLETED", values=values, changed=values,
                       val_accuracy=got["val_accuracy"], val_loss=got["val_loss"],
                       seconds=got["seconds"], epochs=got["epochs"],
                       score=got[metric(str(hypermodel.criterion))])


def probe_deadline(oracle: Any, now: float | None = None) -> float | None:
    """When the exact linear head, scored before trial 0, must end (rule DA11): the oracle's
    deadline for a trial started ``now`` (PLAN01: trial 0's final training still fits after
    it), or without one (``tune`` alone) half the time left, so trial 0, which always runs, is
    never starved; ``None`` without a search deadline."""
    start = time.time() if now is None else now
    ends = oracle.trial_deadline(start) if hasattr(oracle, "trial_deadline") else None
    if ends is not None:
        return ends
    deadline = getattr(oracle, "deadline", None)
    return None if deadline is None else start + max(0.0, deadline - start) / 2.0


def _with_reasons(recipe: Recipe, refined: Recipe, changes: list[dict[str, Any]], best: Any,
                  base: float | None, n_trials: int, space: SearchSpace, name: str) -> Recipe:
    reasons = dict(refined.reasons)
    if len(refined.phases) != len(recipe.phases):
        reasons = {k: v for k, v in reasons.items() if not k.startswith("phases.")}
    for change in changes:
        path = change["path"]
        dims = [d for d in space if any(path == f or path.startswith(f + ".") for f in d.fields)
                or (path == "phases" and d.name == "finetune_from")]
        text = (f"tuning changed {path} from {fmt(change['before'])} to {fmt(change['after'])}: "
                f"{name} score {best.score:.4f} on the target, without target labels"
                + ("" if base is None else f" (trial 0: {base:.4f})")
                + f"; best of {n_trials} trial(s), trial {best.trial_id} (DA11).")
        evidence: dict[str, Any] = {
            "before": _scalar(change["before"]), "after": _scalar(change["after"]),
            "trial": best.trial_id, f"{name}": best.score, f"{name}_trial0": base,
            "val_accuracy": best.val_accuracy, "trials": n_trials}
        thresholds: dict[str, Any] = {"criterion": name}
        for d in dims:
            if d.kind == "choice":
                thresholds[f"{d.name}.values"] = ",".join(str(v) for v in d.values)
            else:
                thresholds[f"{d.name}.low"], thresholds[f"{d.name}.high"] = d.low, d.high
            if d.range_rule:
                thresholds[f"{d.name}.rule"] = d.range_rule
        reasons[path] = Reason(rule=RULE, text=text, evidence=evidence, thresholds=thresholds)
    return refined.model_copy(update={"reasons": dict(sorted(reasons.items())),
                                      "name": f"{recipe.name} (tuned)"})


def _scalar(value: Any) -> Any:
    import json

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value)
