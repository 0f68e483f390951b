"""Pins what autotransfer relies on of KerasTuner's internals (tuning/_keras_tuner_private.py).

A KerasTuner release that renames or changes one of these fails here, by name.
"""

from __future__ import annotations

import grpc
import keras_tuner
import pytest

from autotransfer.tuning import _keras_tuner_private as private


class FirstOracle(private.FirstValuesHook, keras_tuner.oracles.RandomSearchOracle):
    def first_values(self):
        return {"x": 7}


def _oracle(tmp_path, cls=FirstOracle):
    oracle = cls(objective=keras_tuner.Objective("score", "max"), max_trials=5, seed=1)
    oracle._set_project_dir(str(tmp_path), "p")
    hp = oracle.get_space()
    hp.Int("x", 0, 100, default=50)
    oracle.update_space(hp)
    return oracle


@pytest.mark.parametrize("name", ["RandomSearchOracle", "BayesianOptimizationOracle",
                                  "HyperbandOracle"])
def test_the_oracles_draw_values_through_random_values_and_check_duplicates(name):
    cls = getattr(keras_tuner.oracles, name)
    assert callable(getattr(cls, "_random_values", None))
    assert callable(getattr(cls, "_duplicate", None))


def test_the_hook_gives_the_first_trial_its_values_once(tmp_path):
    oracle = _oracle(tmp_path)
    first = oracle.create_trial("t0")
    assert first.hyperparameters.values == {"x": 7}
    oracle.update_trial(first.trial_id, {"score": 1.0})
    first.status = "COMPLETED"
    oracle.end_trial(first)
    second = oracle.create_trial("t0")
    assert second.hyperparameters.values != {"x": 7}  # a duplicate: random values instead


def test_a_chief_serves_the_oracle_and_a_worker_reaches_it_through_a_stub(tmp_path):
    from concurrent import futures

    oracle = _oracle(tmp_path)
    servicer = private.oracle_servicer(oracle)
    assert servicer.stop_triggered is False
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    private.add_oracle_servicer(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        stub = private.oracle_stub(grpc.insecure_channel(f"127.0.0.1:{port}"))
        for method in ("GetSpace", "CreateTrial", "UpdateTrial", "EndTrial", "GetTrial"):
            assert callable(getattr(stub, method))
        assert private.chief_may_exit(oracle)  # no trial running
        oracle.create_trial("t0")
        assert not private.chief_may_exit(oracle)
    finally:
        server.stop(grace=None)


def test_a_workers_oracle_is_a_client_with_a_stub(tmp_path, monkeypatch):
    from keras_tuner.src.distribute import oracle_client

    for name, value in (("IP", "127.0.0.1"), ("PORT", "8000"), ("ID", "tuner0")):
        monkeypatch.setenv(f"KERASTUNER_ORACLE_{name}" if name != "ID" else "KERASTUNER_TUNER_ID",
                           value)
    oracle = _oracle(tmp_path)
    assert not private.is_oracle_client(oracle)
    client = oracle_client.OracleClient(oracle)
    assert private.is_oracle_client(client)
