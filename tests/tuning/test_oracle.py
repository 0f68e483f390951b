"""The oracles: trial 0 takes the recipe's values, then the search; the deadline; who ran what."""

from __future__ import annotations

import time

import numpy as np
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


def test_the_reserve_leaves_out_the_frozen_features_the_final_training_reuses(tmp_path):
    """auto's final training takes the search's frozen features from its store: on the tuning
    splits all of them, on train + validation all but those of the images it adds."""
    oracle, _ = oracle_for(tmp_path, "random")
    trials = ({"seconds": 100.0, "cold_seconds": 300.0, "feature_seconds": 200.0},  # cached
              {"seconds": 150.0, "cold_seconds": 150.0, "feature_seconds": 20.0})
    for metrics in trials:
        trial = oracle.create_trial("tuner0")
        oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5, **metrics})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    oracle.keep_for_final(1.2)  # the same images: only the training is repeated
    assert oracle.reserve == pytest.approx(1.2 * 130.0)  # the second trial's 150 - 20 s
    growth = 1.25  # train + validation: a quarter more images, whose features are new
    oracle.keep_for_final(1.2 * growth, growth)
    assert oracle.reserve == pytest.approx(max(1.2 * growth * 100.0 + 1.2 * 200.0 * 0.25,
                                               1.2 * growth * 130.0 + 1.2 * 20.0 * 0.25))
    assert oracle.reserve < 1.2 * growth * 300.0  # what the cold reserve kept


def completed(oracle, *records):
    for metrics in records:
        trial = oracle.create_trial("tuner0")
        oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5, **metrics})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)


def test_the_next_trial_is_judged_by_its_cold_cost_when_costlier(tmp_path):
    """Trials that reused the frozen features ran in 5 s, but the next one may need its own
    (another augmentation, a deeper prefix): it is judged by the median cold duration."""
    oracle, _ = oracle_for(tmp_path, "random")
    completed(oracle, *[{"seconds": 5.0, "cold_seconds": 40.0, "feature_seconds": 35.0}] * 2)
    oracle.keep_for_final(1.2)
    assert oracle.reserve == pytest.approx(1.2 * 5.0)
    assert oracle.expected_seconds() == pytest.approx(40.0)
    oracle.deadline = time.time() + 30.0  # 6 s reserve + 5 s would fit; 6 s + 40 s does not
    assert oracle.create_trial("tuner0").status == "STOPPED"


def test_a_trial_must_end_while_its_own_final_training_still_fits(tmp_path):
    """The records of an Office-Caltech DA11 search (4 minutes): trial 03 started with 129 s
    left, a 31 s reserve and a 20 s median cold trial, fine-tuned a deeper prefix and took 89 s;
    its final training (58 s) then overran the budget. Its deadline stops it in time."""
    oracle, _ = oracle_for(tmp_path, "random")
    completed(oracle, {"seconds": 40.3, "cold_seconds": 40.3, "feature_seconds": 14.4},
              {"seconds": 17.6, "cold_seconds": 20.2, "feature_seconds": 15.3},
              {"seconds": 4.7, "cold_seconds": 19.1, "feature_seconds": 14.4})
    oracle.keep_for_final(1.2)
    assert oracle.reserve == pytest.approx(1.2 * (40.3 - 14.4))
    start = time.time()
    oracle.deadline = start + 129.0
    assert not oracle.out_of_time()  # trial 03 starts: the typical trial fits
    ends = oracle.trial_deadline(start)
    assert ends == pytest.approx(start + 129.0 / 2.2)  # its own final training, 1.2 × it, fits
    assert ends - start < 88.7  # the 89 s trial is stopped
    assert ends + 1.2 * (ends - start) <= oracle.deadline + 1e-6
    oracle.reserve = 100.0  # a costlier completed trial: the reserve binds first
    assert oracle.trial_deadline(start) == pytest.approx(start + 29.0)
    oracle.keep_for_final(0.0)  # tune alone: no final training to keep room for
    assert oracle.trial_deadline(start) is None
    oracle.keep_for_final(1.2)
    oracle.deadline = None
    assert oracle.trial_deadline(start) is None


def test_the_final_growth_is_the_share_of_images_the_final_training_adds():
    from autotransfer.oneshot.plan import Shares, final_growth

    assert final_growth("train", 800, 200) == 1.0
    assert final_growth("train+val", 800, 200) == pytest.approx(1.25)
    shares = Shares(search_share=0.5, final_factor=1.2, wrap_up_s=20.0)
    assert shares.reserve_factor("train+val", 800, 200) == pytest.approx(1.5)


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


def test_a_trial_records_the_frozen_features_it_computed_or_reused():
    from autotransfer.train.phases import FeatureUse, PhaseRecord
    from autotransfer.tuning.hypermodel import feature_seconds

    phases = [PhaseRecord("head", 5, 3, features=FeatureUse(used=True, build_seconds=40.0)),
              PhaseRecord("ft", 2, 2, features=FeatureUse(used=True, build_seconds=0.5,
                                                          shared=True, reused_seconds=30.0)),
              PhaseRecord("all", 0, 2)]  # nothing frozen
    assert feature_seconds(phases) == pytest.approx(70.5)


def test_the_reserve_counts_features_the_store_has_evicted_whole(tmp_path):
    """The final training reuses a trial's frozen features only while the search's store keeps
    them: once later trials evicted them (LRU), its final training computes them again."""
    import json

    from autotransfer.tuning.activations import ActivationStore
    from autotransfer.tuning.results import trial_dir

    oracle, _ = oracle_for(tmp_path, "random")
    oracle.tuning_dir = tmp_path
    records = ({"seconds": 100.0, "cold_seconds": 300.0, "feature_seconds": 200.0},
               {"seconds": 150.0, "cold_seconds": 150.0, "feature_seconds": 20.0})
    completed(oracle, *records)
    store = ActivationStore(splits=lambda: None, max_bytes=1024)
    for n, trial_id in enumerate(sorted(oracle.trials)):
        run = trial_dir(tmp_path, trial_id) / "run"
        run.mkdir(parents=True)
        (run / "metrics.json").write_text(json.dumps({"store": {"keys": [f"k{n}"]}}))
        store.target_features[f"k{n}"] = np.zeros(64, dtype=np.float32)  # 256 bytes each
    oracle.keep_for_final(1.2)
    assert oracle.reserve == pytest.approx(1.2 * 130.0)  # no store given: the records trusted
    oracle.feature_store = store
    oracle.keep_for_final(1.2)
    assert oracle.reserve == pytest.approx(1.2 * 130.0)  # both kept: as before
    store.target_features["later"] = np.zeros(150, dtype=np.float32)  # evicts k0, the oldest
    assert not store.resident(["k0"]) and store.resident(["k1"])
    oracle.keep_for_final(1.2)
    assert oracle.reserve == pytest.approx(1.2 * 300.0)  # trial 0's final training: cold
    growth = 1.25
    oracle.keep_for_final(1.2 * growth, growth)
    assert oracle.reserve == pytest.approx(1.2 * growth * 300.0)
    (trial_dir(tmp_path, sorted(oracle.trials)[1]) / "run" / "metrics.json").unlink()
    oracle.keep_for_final(1.2)  # a trial that recorded no keys: whole, with a store
    assert oracle.reserve == pytest.approx(1.2 * 300.0)
    assert not oracle.features_kept(sorted(oracle.trials)[1])


def test_a_trial_that_evicts_a_completed_trials_features_moves_its_own_deadline(tmp_path):
    """PLAN01: the reserve counts trial 0's frozen features (200 s) as reused by its final
    training. Trial 1 evicts them from the store while it runs, after its deadline was set: the
    reserve grows by 1.2 × 200 s, and trial 1's deadline follows it at its next check, so the
    grown reserve is still free when trial 1 ends (it overran by 240 s before)."""
    import json

    from autotransfer.tuning.activations import ActivationStore
    from autotransfer.tuning.hypermodel import TrialFailed
    from autotransfer.tuning.recipe_tuner import PAST_OWN_DEADLINE, OwnDeadline
    from autotransfer.tuning.results import trial_dir

    oracle, _ = oracle_for(tmp_path, "random")
    oracle.tuning_dir = tmp_path
    store = ActivationStore(splits=lambda: None, max_bytes=1024)
    oracle.feature_store = store
    completed(oracle, {"seconds": 100.0, "cold_seconds": 300.0, "feature_seconds": 200.0})
    (first,) = oracle.trials
    run = trial_dir(tmp_path, first) / "run"
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps({"store": {"keys": ["trial 0"]}}))
    store.target_features["trial 0"] = np.zeros(64, dtype=np.float32)  # 256 bytes
    oracle.keep_for_final(1.2)
    assert oracle.reserve == pytest.approx(1.2 * 100.0)
    started = time.time() - 100.0  # trial 1 has run 100 s
    oracle.deadline = started + 400.0
    deadline = OwnDeadline(oracle, started, hard=started + 10_000.0)
    assert deadline.reason == PAST_OWN_DEADLINE
    assert deadline.deadline == pytest.approx(started + 400.0 / 2.2)  # 400 - 120 binds later
    deadline.check()  # about 82 s to go
    store.target_features["trial 1"] = np.zeros(200, dtype=np.float32)  # 800 bytes: evicts
    assert not store.resident(["trial 0"]) and store.evictions == 1
    assert oracle.trial_deadline(started) == pytest.approx(started + 400.0 - 1.2 * 300.0)
    assert oracle.reserve == pytest.approx(1.2 * 300.0)
    with pytest.raises(TrialFailed, match=r"ran past its own deadline \(rule PLAN01\)"):
        deadline.check()  # 40 s after its start, 60 s ago
    assert deadline.deadline + oracle.reserve <= oracle.deadline + 1e-6
    oracle.keep_for_final(0.0)  # tune alone: the budget's guard only, with its own reason
    late = OwnDeadline(oracle, started, hard=time.time() - 1.0)
    assert late.deadline == late.hard and "end of the time budget" in late.reason
    with pytest.raises(TrialFailed, match="end of the time budget"):
        late.check()
