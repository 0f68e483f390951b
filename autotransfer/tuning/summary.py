"""The end of a search: the trial kept (the best, when it beats trial 0 beyond chance: rule TUNE01)
and the refined recipe with its provenance."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autotransfer.recipe.schema import Recipe
from autotransfer.tuning.provenance import recipe_changes, with_provenance
from autotransfer.tuning.results import TrialRecord, TuneResult, baseline_trial, trial_dir
from autotransfer.tuning.selection import KEEP
from autotransfer.tuning.selection import decide as decide_selection
from autotransfer.tuning.selection import val_correct
from autotransfer.tuning.space import SearchSpace, apply


def summarise(out: Path, recipe: Recipe, space: SearchSpace, records: list[TrialRecord], *,
              role_name: str, stopped: str, seconds: float, algorithm: str) -> TuneResult:
    """Pick the best trial, build the refined recipe and its provenance."""
    done = [t for t in records if t.status == "COMPLETED" and t.val_accuracy is not None]
    baseline = baseline_trial(done)
    if not done:
        return TuneResult(out, role_name, recipe, space, records, None, None, None, None, [],
                          stopped, seconds, algorithm)
    # the best validation accuracy; a tie with trial 0 keeps the recipe (the prior: a tie is no
    # evidence of a gain), other ties go to the lower validation loss
    best = max(done, key=lambda t: (t.val_accuracy, not t.changed, -(t.val_loss if t.val_loss
                                                                     is not None else 1e9)))
    selection: dict[str, Any] = {"rule": KEEP, "candidate": best.trial_id}
    if best.changed and baseline is not None:  # ... and it must beat trial 0 by more than chance
        selection |= decide_selection(val_correct(trial_dir(out, baseline.trial_id)),
                                      val_correct(trial_dir(out, best.trial_id)))
        if not selection["replace"]:
            best = baseline
    values = {k: v for k, v in best.values.items() if not k.startswith("tuner/")}
    refined = apply(recipe, values, space)
    changes = recipe_changes(recipe, refined)
    refined = with_provenance(recipe, refined, changes, best=best, baseline=baseline,
                              n_trials=len(records), space=space, selection=selection)
    gain = (None if baseline is None or best.val_accuracy is None
            else best.val_accuracy - (baseline.val_accuracy or 0.0))
    return TuneResult(out, role_name, recipe, space, records, refined,
                      baseline.trial_id if baseline else None, best.trial_id, gain, changes,
                      stopped, seconds, algorithm, selection)
