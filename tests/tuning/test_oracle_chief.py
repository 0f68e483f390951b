"""A distributed search's chief (KERASTUNER_TUNER_ID=chief) serves the oracle and never reads the
dataset up front; its reserve (rule PLAN01) still counts evaluating the search's validation and
test images: ``oracle.splits``, as tune() wires it there, loads the workers' splits on first use."""

from __future__ import annotations

import json

import pytest

from autotransfer.tuning.final_cost import MeasuredTrial, read_measured
from autotransfer.tuning.results import trial_dir
from tests.train.helpers import make_colour_dataset, tiny_recipe
from tests.tuning.test_final_cost import trial_metrics


class _Served(Exception):
    """Raised where the chief would start serving its oracle: carries it."""

    def __init__(self, oracle):
        super().__init__("serving")
        self.oracle = oracle


def as_chief(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process is a distributed search's chief (KerasTuner reads these variables)."""
    monkeypatch.setenv("KERASTUNER_TUNER_ID", "chief")
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.setenv("KERASTUNER_ORACLE_PORT", "8000")


@pytest.mark.parametrize("shared_cache", [True, False])  # False: no store, oracle.splits alone
def test_a_chiefs_reserve_loads_the_workers_splits_on_first_use(tmp_path, monkeypatch,
                                                                 shared_cache):
    from autotransfer.train.splits import load_or_make
    from autotransfer.tuning import recipe_tuner, tuner

    dataset = make_colour_dataset(tmp_path / "ds", {"red": 8, "green": 8})
    recipe = tiny_recipe(phases=[{"name": "head", "epochs": 1, "trainable_from": 5,
                                  "learning_rate": 0.05}])
    out = tmp_path / "tuning"
    workers = load_or_make(dataset, recipe, out / "splits.json", resume=False)  # a worker's
    made = []

    def counted(*args, **kwargs):
        made.append(args)
        return load_or_make(*args, **kwargs)

    def serve(oracle, *args, **kwargs):  # instead of KerasTuner's chief server (it blocks)
        raise _Served(oracle)

    monkeypatch.setattr(tuner, "load_or_make", counted)
    monkeypatch.setattr(recipe_tuner, "RecipeTuner", serve)
    as_chief(monkeypatch)
    with pytest.raises(_Served) as served:
        tuner.tune(dataset, recipe, out, trials=3, time_budget=600, reserve_factor=1.2,
                   algorithm="random", verbose=0, shared_cache=shared_cache)
    oracle = served.value.oracle
    assert (oracle.feature_store is None) is not shared_cache
    assert made == []  # the chief did not read the dataset to start serving
    oracle._set_project_dir(str(out), "search")
    trial = oracle.create_trial("tuner0")  # a worker's trial, completed and reported
    run = trial_dir(out, trial.trial_id) / "run"
    run.mkdir(parents=True)
    metrics = trial_metrics() | {"store": {"keys": ["k"]}}
    (run / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
    oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5,
                                         "seconds": metrics["seconds_total"]})
    trial.status = "COMPLETED"
    oracle.end_trial(trial)
    oracle.keep_for_final(1.2, 1.0)
    assert len(made) == 1  # loaded on first use, once
    loaded = oracle.splits()
    assert loaded.model_dump() == workers.model_dump()  # the workers' splits.json, not new ones
    n_val, n_eval = len(workers.val), len(workers.val) + len(workers.test)
    kept = read_measured(run, n_val, oracle.feature_store)[1]
    final = MeasuredTrial.from_metrics(metrics, n_val).final_seconds(eval_images=n_eval,
                                                                     features_kept=kept)
    assert final["evaluation"] > 0  # so a reserve without the splits' images differs
    assert oracle.reserve == pytest.approx(1.2 * final["total"])


def test_a_chiefs_reserve_grows_as_each_workers_trial_ends_there(tmp_path, monkeypatch):
    """On a chief each worker's trial ends in the chief's oracle (KerasTuner's servicer calls
    ``end_trial``; the worker's OracleClient keeps no reserve): the reserve (rule PLAN01) follows
    the workers' completed trials, costliest first. The chief's own store holds none of the
    workers' frozen features and its final training (auto, in the chief's process) computes
    them again: the reserve counts them so, more than if they were kept."""
    import keras_tuner
    from keras_tuner.src import protos

    from autotransfer.tuning import _keras_tuner_private as private
    from autotransfer.tuning import recipe_tuner, tuner

    dataset = make_colour_dataset(tmp_path / "ds", {"red": 8, "green": 8})
    recipe = tiny_recipe(phases=[{"name": "head", "epochs": 1, "trainable_from": 5,
                                  "learning_rate": 0.05}])
    out = tmp_path / "tuning"
    workers = tuner.load_or_make(dataset, recipe, out / "splits.json", resume=False)

    def serve(oracle, *args, **kwargs):
        raise _Served(oracle)

    monkeypatch.setattr(recipe_tuner, "RecipeTuner", serve)
    as_chief(monkeypatch)
    with pytest.raises(_Served) as served:
        tuner.tune(dataset, recipe, out, trials=5, time_budget=36000, reserve_factor=1.2,
                   algorithm="random", verbose=0)
    oracle = served.value.oracle
    oracle._set_project_dir(str(out), "search")
    oracle.keep_for_final(1.2, 1.0)  # as tune() does at start-up: no trial yet
    assert oracle.reserve == 0.0
    space = keras_tuner.HyperParameters()  # as a worker declares it (UpdateSpace)
    space.Float("dropout", 0.0, 0.5)
    oracle.update_space(space)
    servicer = private.oracle_servicer(oracle)
    n_val, n_eval = len(workers.val), len(workers.val) + len(workers.test)
    reserves = []
    for worker, fixed in (("tuner0", 6.0), ("tuner1", 60.0), ("tuner0", 20.0)):
        trial = oracle.create_trial(worker)
        run = trial_dir(out, trial.trial_id) / "run"
        run.mkdir(parents=True)
        metrics = trial_metrics(fixed=fixed) | {"store": {"keys": ["a worker's key"]}}
        (run / "metrics.json").write_text(json.dumps(metrics), encoding="utf-8")
        oracle.update_trial(trial.trial_id, {"val_accuracy": 0.5,
                                             "seconds": metrics["seconds_total"]})
        trial.status = "COMPLETED"
        servicer.EndTrial(protos.get_service().EndTrialRequest(trial=trial.to_proto()), None)
        measured = MeasuredTrial.from_metrics(metrics, n_val)
        again = 1.2 * measured.final_seconds(eval_images=n_eval, features_kept=False)["total"]
        kept = 1.2 * measured.final_seconds(eval_images=n_eval, features_kept=True)["total"]
        assert again > kept
        reserves.append((oracle.reserve, again))
    assert reserves[0][0] == pytest.approx(reserves[0][1])  # the first worker's trial
    assert reserves[1][0] == pytest.approx(reserves[1][1])  # a costlier one
    assert reserves[1][0] > reserves[0][0]
    assert reserves[2][0] == reserves[1][0]  # a cheaper one: the costliest still decides
