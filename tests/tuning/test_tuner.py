"""tune(): trial 0 is the recipe, failed trials are skipped, the search resumes, provenance."""

from __future__ import annotations

import json
import math

import pytest

from autotransfer.errors import InvalidParameterError
from autotransfer.recipe.io import load_recipe
from autotransfer.tuning import trials
from autotransfer.tuning.hypermodel import NaNGuard, TrialFailed
from autotransfer.tuning.tuner import PROJECT, tune
from tests.train.helpers import make_colour_dataset, tiny_recipe


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("colours")
    return make_colour_dataset(root / "ds", {"red": 8, "green": 8, "blue": 8})


def head_recipe(**overrides):
    """Head only: trials run on stored features (seconds each)."""
    return tiny_recipe(phases=[{"name": "head", "epochs": 3, "trainable_from": 5,
                                "learning_rate": 0.05, "schedule": "constant"}], **overrides)


def finetune_recipe():
    """Head, then fine-tuning: trials run the full trainer."""
    return tiny_recipe(domain_adaptation={"method": "adabn", "before_phase": 0}, phases=[
        {"name": "head", "epochs": 2, "trainable_from": 5, "learning_rate": 0.05},
        {"name": "fine_tune", "epochs": 1, "trainable_from": 3, "learning_rate": 0.002}])


def trial_dir(result, trial_id):
    return result.out / PROJECT / f"trial_{trial_id}"


def test_trial_0_trains_the_recipe_unchanged_and_the_results_say_what_changed(dataset, tmp_path):
    recipe = finetune_recipe()
    result = tune(dataset, recipe, tmp_path / "t", trials=2)
    first, second = result.trials
    assert first.changed == {} and result.baseline_trial == first.trial_id
    trained = load_recipe(trial_dir(result, first.trial_id) / "run" / "recipe.yaml")
    assert trained.model_dump() == recipe.model_dump()  # field by field
    assert second.changed and second.status == "COMPLETED"
    assert load_recipe(trial_dir(result, second.trial_id) / "run" / "recipe.yaml") != recipe
    # outputs: the recipe it started from, the refined one, the table
    assert load_recipe(result.out / "recipe.yaml") == recipe
    refined = load_recipe(result.out / "recipe.tuned.yaml")
    assert refined == result.refined
    data = json.loads((result.out / "tuning.json").read_text())
    assert [t["trial_id"] for t in data["trials"]] == [first.trial_id, second.trial_id]
    assert data["baseline_val_accuracy"] == first.val_accuracy
    assert "| trial |" in (result.out / "tuning.md").read_text()
    if result.best_trial == first.trial_id:
        assert result.changes == [] and result.gain == 0
        assert refined.model_dump(exclude={"name", "reasons"}) == recipe.model_dump(
            exclude={"name", "reasons"})
    else:
        assert result.gain >= 0 and result.changes
        for change in result.changes:
            reason = refined.reasons[change["path"]]
            assert reason.rule == "TUNE01" and "over trial 0" in reason.text
            assert reason.evidence["gain"] == pytest.approx(result.gain)


def test_a_failed_trial_is_recorded_and_skipped(dataset, tmp_path, monkeypatch):
    real = trials.run_trial
    calls = []

    def flaky(recipe, store, out, **kwargs):
        calls.append(recipe)
        if len(calls) == 2:
            raise FloatingPointError("simulated: the loss became NaN")
        return real(recipe, store, out, **kwargs)

    monkeypatch.setattr(trials, "run_trial", flaky)
    result = tune(dataset, head_recipe(), tmp_path / "t", trials=3)
    statuses = [t.status for t in result.trials]
    assert statuses == ["COMPLETED", "FAILED", "COMPLETED"]
    failed = result.trials[1]
    assert "FloatingPointError" in failed.message and failed.val_accuracy is None
    assert result.best_trial != failed.trial_id
    assert "failed" in (result.out / "tuning.md").read_text()


def test_nan_loss_fails_the_trial():
    with pytest.raises(TrialFailed, match="nan"):
        NaNGuard().on_train_batch_end(3, {"loss": math.nan})
    NaNGuard().on_train_batch_end(3, {"loss": 0.5})


def test_the_recipe_itself_failing_is_an_error_not_a_skipped_trial(dataset, tmp_path):
    bad = head_recipe(backbone={"name": "test_tiny", "input_size": 32, "weights": "imagenet"})
    with pytest.raises(Exception, match="no pretrained weights"):
        tune(dataset, bad, tmp_path / "t", trials=3)


def test_rerunning_continues_the_search_and_overwrite_starts_afresh(dataset, tmp_path):
    out = tmp_path / "t"
    said = []
    first = tune(dataset, head_recipe(), out, trials=2)
    done = {t.trial_id: (trial_dir(first, t.trial_id) / "trial_result.json").stat().st_mtime_ns
            for t in first.trials}
    logs = out / "logs" / "trials"  # each trial's HParams session, written as it ended
    sessions = {p.parent.name: p for p in logs.glob("*/*tfevents*")}
    assert sorted(sessions) == sorted(done)
    again = tune(dataset, head_recipe(), out, trials=4, progress=said.append)
    assert sorted(p.name for p in logs.iterdir()) == [t.trial_id for t in again.trials]
    assert all(p.is_file() for p in sessions.values())  # the earlier ones were kept as written
    assert [t.trial_id for t in again.trials][:2] == [t.trial_id for t in first.trials]
    assert len(again.trials) == 4 and all(t.status == "COMPLETED" for t in again.trials)
    for trial_id, mtime in done.items():  # the earlier trials were not run again
        assert (trial_dir(again, trial_id) / "trial_result.json").stat().st_mtime_ns == mtime
        assert not any(s.startswith(f"Trial {trial_id}:") for s in said)
    assert again.trials[0].changed == {}
    with pytest.raises(InvalidParameterError, match="different recipe"):
        tune(dataset, head_recipe(seed=1), out, trials=4)
    fresh = tune(dataset, head_recipe(seed=1), out, trials=1, overwrite=True)
    assert len(fresh.trials) == 1 and fresh.trials[0].changed == {}
    assert [p.name for p in logs.iterdir()] == [fresh.trials[0].trial_id]  # none of the old
    assert not any(p.exists() for p in sessions.values())


def test_an_interrupted_trial_is_run_again_on_resume(dataset, tmp_path, monkeypatch):
    real = trials.run_trial
    calls = []

    def interrupted(recipe, store, out, **kwargs):
        calls.append(recipe)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(recipe, store, out, **kwargs)

    monkeypatch.setattr(trials, "run_trial", interrupted)
    out = tmp_path / "t"
    with pytest.raises(KeyboardInterrupt):
        tune(dataset, head_recipe(), out, trials=3)
    result = tune(dataset, head_recipe(), out, trials=3)
    assert [t.status for t in result.trials] == ["COMPLETED"] * 3
    assert len(calls) == 4  # trial 0, trial 1 interrupted, trial 1 again, trial 2


def test_the_time_budget_stops_starting_trials_after_trial_0(dataset, tmp_path):
    result = tune(dataset, head_recipe(), tmp_path / "t", trials=10, time_budget=0.01)
    assert len(result.trials) == 1 and result.trials[0].status == "COMPLETED"
    assert "time budget" in result.stopped_because


def test_a_later_trial_runs_under_the_oracles_deadline(dataset, tmp_path, monkeypatch):
    """Trial 1 gets a Deadline by which, should it win, its own final training still fits
    (rule PLAN01): no later than half the time left with a reserve factor of 1."""
    import time

    from autotransfer.tuning.hypermodel import Deadline

    real = trials.run_trial
    deadlines, reasons = [], []

    def recording(recipe, store, out, **kwargs):
        ends = [c.deadline for c in kwargs.get("callbacks", ()) if isinstance(c, Deadline)]
        reasons.extend(c.reason for c in kwargs.get("callbacks", ()) if isinstance(c, Deadline))
        deadlines.append((time.time(), ends))
        return real(recipe, store, out, **kwargs)

    monkeypatch.setattr(trials, "run_trial", recording)
    result = tune(dataset, head_recipe(), tmp_path / "t", trials=2, time_budget=3600.0,
                  reserve_factor=1.0)
    end = time.time() + 3600.0  # later than the search's own end
    assert len(result.trials) == 2
    (_, first), (at, later) = deadlines
    assert first == []  # trial 0 always runs to its end
    assert len(later) == 1 and at < later[0] <= (at + end) / 2.0  # not the hard 3990 s guard
    assert len(reasons) == 1 and "ran past its own deadline (rule PLAN01)" in reasons[0]


def test_the_reserve_asks_the_searchs_own_store_what_it_still_keeps(dataset, tmp_path,
                                                                     monkeypatch):
    """PLAN01: the oracle counts a trial's frozen features as reused only while the store the
    trials shared still keeps them, so tune() hands it that store (none without sharing)."""
    from autotransfer.tuning import oracle as oracle_module
    from autotransfer.tuning.activations import ActivationStore

    made = []
    real = oracle_module.make_oracle

    def recording(*args, **kwargs):
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(oracle_module, "make_oracle", recording)
    result = tune(dataset, head_recipe(), tmp_path / "shared", trials=1, time_budget=3600.0,
                  reserve_factor=1.0)
    assert isinstance(made[-1].feature_store, ActivationStore)
    first = result.trials[0].trial_id
    assert made[-1].features_kept(first) is True  # trial 0's features: still in the store
    made[-1].feature_store.max_bytes = 0
    made[-1].feature_store.evict()
    assert made[-1].features_kept(first) is False  # evicted: the final training recomputes
    tune(dataset, head_recipe(), tmp_path / "alone", trials=1, shared_cache=False)
    assert made[-1].feature_store is None


def test_hyperband_starts_from_the_recipe_at_its_first_rung(dataset, tmp_path):
    recipe = head_recipe()
    result = tune(dataset, recipe, tmp_path / "t", trials=3, algorithm="hyperband")
    assert [t.status for t in result.trials] == ["COMPLETED"] * 3
    first = result.trials[0]
    assert first.changed == {} and 1 <= first.values["tuner/epochs"] <= recipe.total_epochs
    trained = load_recipe(trial_dir(result, first.trial_id) / "run" / "recipe.yaml")
    assert trained.phases[0].epochs == first.values["tuner/epochs"]
    assert trained.model_dump(exclude={"phases"}) == recipe.model_dump(exclude={"phases"})
    assert result.refined.phases[0].epochs == recipe.phases[0].epochs  # at the full budget


def test_the_best_trial_must_beat_trial_0_and_changes_carry_tune_reasons(tmp_path):
    from autotransfer.tuning.space import search_space
    from autotransfer.tuning.results import TrialRecord
    from autotransfer.tuning.summary import summarise

    recipe = head_recipe()
    space = search_space(recipe)
    base = space.defaults()

    def row(trial_id, acc, loss, **changed):
        return TrialRecord(trial_id=trial_id, status="COMPLETED", values={**base, **changed},
                           changed=changed, val_accuracy=acc, val_loss=loss)

    tie = [row("0", 0.9, 0.30), row("1", 0.9, 0.20, dropout=0.1)]
    kept = summarise(tmp_path, recipe, space, tie, role_name="local", stopped="", seconds=1.0,
                     algorithm="bayesian")
    assert kept.best_trial == "0" and kept.changes == [] and kept.gain == 0.0
    better = [*tie, row("2", 0.95, 0.40, dropout=0.15, head_lr=0.1)]
    result = summarise(tmp_path, recipe, space, better, role_name="local", stopped="",
                       seconds=1.0, algorithm="bayesian")
    assert result.best_trial == "2" and result.gain == pytest.approx(0.05)
    paths = {c["path"] for c in result.changes}
    assert paths == {"head.dropout", "phases.0.learning_rate"}
    for path in paths:
        reason = result.refined.reasons[path]
        assert reason.rule == "TUNE01" and "+0.0500 over trial 0" in reason.text
    assert result.refined.head.dropout == 0.15 and result.refined.phases[0].learning_rate == 0.1


def test_a_futile_search_stops_after_trial_0_and_stays_stopped(dataset, tmp_path, monkeypatch):
    import autotransfer.tuning.oracle as oracle

    seen = []

    def verdict(correct):
        seen.append(correct)
        return {"why": "no trial could replace the recipe (test)"}

    monkeypatch.setattr(oracle, "futile", verdict)
    out = tmp_path / "t"
    said = []
    result = tune(dataset, head_recipe(), out, trials=4, stop_when_futile=True,
                  progress=said.append)
    assert len(result.trials) == 1 and result.trials[0].changed == {}
    assert len(seen) == 1 and len(seen[0]) == 6  # trial 0's per-image validation results
    assert result.stopped_because == ("stopped after trial 0: no trial could replace the recipe "
                                      "(test)")
    assert any(s.startswith("No further trials: no trial could replace") for s in said)
    assert result.refined == load_recipe(out / "recipe.tuned.yaml")
    again = tune(dataset, head_recipe(), out, trials=4, stop_when_futile=True)
    assert len(again.trials) == 1 and again.stopped_because == result.stopped_because
    # without the flag (tune's default) the search runs on, a stopped one included
    full = tune(dataset, head_recipe(), tmp_path / "full", trials=2)
    assert len(full.trials) == 2 and len(seen) == 1
    resumed = tune(dataset, head_recipe(), out, trials=2)
    assert len(resumed.trials) == 2 and resumed.stopped_because == "reached 2 trial(s)"
