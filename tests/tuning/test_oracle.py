"""The oracles: trial 0 takes the recipe's values, then the search; the deadline; who ran what."""

from __future__ import annotations

import time

import pytest

from autotransfer.tuning.oracle import make_oracle
from autotransfer.tuning.space import search_space
from tests.train.helpers import tiny_recipe


def oracle_for(tmp_path, algorithm, max_trials=6):
    space = search_space(tiny_recipe())
    oracle = make_oracle(algorithm, max_trials=max_trials, seed=0, epochs=4,
                         n_dimensions=len(space))
    oracle._set_project_dir(str(tmp_path), "search")
    hp = oracle.get_space()
    space.register(hp)
    oracle.update_space(hp)
    return oracle, space


def own(values):
    return {k: v for k, v in values.items() if not k.startswith("tuner/")}


@pytest.mark.parametrize("algorithm", ["bayesian", "hyperband", "random"])
def test_trial_0_takes_the_defaults_then_the_search_moves_away(tmp_path, algorithm):
    oracle, space = oracle_for(tmp_path, algorithm)
    first = oracle.create_trial("tuner0")
    assert first.status == "RUNNING"
    assert own(first.hyperparameters.values) == space.defaults()
    second = oracle.create_trial("tuner1")  # while trial 0 runs
    assert second.status == "RUNNING"
    assert space.changed(own(second.hyperparameters.values))
    assert oracle.tuner_of == {first.trial_id: "tuner0", second.trial_id: "tuner1"}


def test_the_deadline_stops_new_trials_but_never_trial_0(tmp_path):
    oracle, space = oracle_for(tmp_path, "bayesian")
    oracle.deadline = time.time() - 1.0
    first = oracle.create_trial("tuner0")
    assert first.status == "RUNNING" and own(first.hyperparameters.values) == space.defaults()
    assert oracle.create_trial("tuner1").status == "STOPPED"


def test_state_round_trips_who_ran_what(tmp_path):
    oracle, _ = oracle_for(tmp_path, "random")
    trial = oracle.create_trial("worker-a")
    state = oracle.get_state()
    again, _ = oracle_for(tmp_path / "other", "random")
    again.trials = dict(oracle.trials)
    again.set_state(state)
    assert again.tuner_of == {trial.trial_id: "worker-a"}


def test_the_reserve_follows_the_longest_completed_trial(tmp_path):
    oracle, _ = oracle_for(tmp_path, "random")
    for seconds in (5.0, 40.0, 12.0):  # a quick advised head fit, a fine-tuning trial, ...
        trial = oracle.create_trial("tuner0")
        oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5, "seconds": seconds})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
        oracle.keep_for_final(1.5)
    assert oracle.reserve == pytest.approx(1.5 * 40.0)  # the winner may be the slow one
    oracle.deadline = time.time() + 50.0  # less left than the reserve: no new trial
    assert oracle.create_trial("tuner0").status == "STOPPED"


def test_the_reserve_counts_the_work_a_trial_reused(tmp_path):
    # an in-memory trial that reused AdaBN and cached activations ran in 30 s, but the final
    # training redoes that work: 30 s + 50 s reused; a trial without cold_seconds counts as run
    oracle, _ = oracle_for(tmp_path, "random")
    for metrics in ({"seconds": 60.0}, {"seconds": 30.0, "cold_seconds": 80.0}):
        trial = oracle.create_trial("tuner0")
        oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5, **metrics})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    assert oracle.trial_seconds() == [60.0, 30.0]
    assert oracle.trial_seconds("cold_seconds") == [60.0, 80.0]
    oracle.keep_for_final(1.5)
    assert oracle.reserve == pytest.approx(1.5 * 80.0)


@pytest.mark.parametrize("misses, stops", [(2, True), (10, False)])
def test_the_oracle_stops_after_a_futile_trial_0_and_says_rule_tune02(tmp_path, misses, stops):
    """The futility stop is the oracle's (rule TUNE02): a distributed chief applies it too."""
    import json

    from autotransfer.tuning.results import trial_dir

    oracle, space = oracle_for(tmp_path / "t", "random")
    oracle._set_project_dir(str(tmp_path / "t"), "search")
    oracle.stop_when_futile, oracle.tuning_dir = True, tmp_path / "t"
    trial = oracle.create_trial("tuner0")
    folder = trial_dir(tmp_path / "t", trial.trial_id)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "trial_result.json").write_text(json.dumps({"val_correct": [0] * misses + [1] * 40}))
    oracle.update_trial(trial.trial_id, {"val_accuracy": 0.9, "seconds": 1.0})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)
    assert bool(oracle.stop_reason) is stops
    assert (oracle.create_trial("tuner0").status == "STOPPED") is stops
    if stops:
        assert oracle.stop_reason.startswith("stopped after trial 0: trial 0 (the recipe as given) "
                                             f"gets {misses} of the {misses + 40}")
