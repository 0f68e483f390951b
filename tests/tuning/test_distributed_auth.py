"""The distributed search's settings and token check (:mod:`autotransfer.tuning.distributed`).

The oracle is served in this process on 127.0.0.1 and called with KerasTuner's own client and
stub, so these tests also pin the KerasTuner internals the module relies on.
"""

from __future__ import annotations

import socket
import threading
import types

import grpc
import keras_tuner
import pytest
from keras_tuner.src import protos
from keras_tuner.src.distribute import oracle_client
from keras_tuner.src.distribute import utils as dist_utils

from autotransfer.cli import EXIT_USER_ERROR, main
from autotransfer.errors import DistributedTuningError
from autotransfer.tuning import distributed
from autotransfer.tuning.distributed import TOKEN_ENV, Distribution, settings

TOKEN = "s3cret-token-for-the-tests-0123456789"
VARS = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT", TOKEN_ENV)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def environ(monkeypatch):
    """Set the distribution variables (the others unset) in os.environ."""
    for name in VARS:
        monkeypatch.delenv(name, raising=False)

    def set_env(**values: str) -> None:
        for name in VARS:
            monkeypatch.delenv(name, raising=False)
        for name, value in values.items():
            monkeypatch.setenv(TOKEN_ENV if name == "token" else f"KERASTUNER_{name}", value)

    return set_env


# ----------------------------------------------------------------------------- settings
@pytest.mark.parametrize("env, role", [
    ({}, "local"),
    ({"KERASTUNER_TUNER_ID": "chief"}, "local"),
    ({"KERASTUNER_TUNER_ID": "chief", "KERASTUNER_ORACLE_IP": "127.0.0.1",
      "KERASTUNER_ORACLE_PORT": "8000"}, "chief"),
    ({"KERASTUNER_TUNER_ID": "tuner0", "KERASTUNER_ORACLE_IP": "localhost",
      "KERASTUNER_ORACLE_PORT": "8000"}, "worker"),
    ({"KERASTUNER_TUNER_ID": "chief-a", "KERASTUNER_ORACLE_IP": "10.0.0.5",
      "KERASTUNER_ORACLE_PORT": "8000", TOKEN_ENV: TOKEN}, "chief"),
])
def test_roles_agree_with_keras_tuner(env, role, monkeypatch):
    for name in VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert settings().role == role == (
        "local" if not dist_utils.has_chief_oracle()
        else "chief" if dist_utils.is_chief_oracle() else "worker")


def test_addresses_and_loopback():
    env = {"KERASTUNER_TUNER_ID": "tuner1", "KERASTUNER_ORACLE_PORT": " 8000 "}
    assert settings({**env, "KERASTUNER_ORACLE_IP": "127.0.0.1"}) == Distribution(
        "worker", "tuner1", "127.0.0.1", 8000)
    six = settings({**env, "KERASTUNER_ORACLE_IP": "[::1]"})
    assert six.loopback and six.address == "[::1]:8000"
    assert settings({**env, "KERASTUNER_ORACLE_IP": "LOCALHOST"}).loopback
    for host in ("0.0.0.0", "::", "10.0.0.5", "chief.example.org"):
        dist = settings({**env, "KERASTUNER_ORACLE_IP": host, TOKEN_ENV: TOKEN})
        assert not dist.loopback and dist.token == TOKEN
        assert TOKEN not in repr(dist)


@pytest.mark.parametrize("env, expected", [
    ({"KERASTUNER_TUNER_ID": "chief", "KERASTUNER_ORACLE_IP": "127.0.0.1"},
     "KERASTUNER_ORACLE_PORT is not"),
    ({"KERASTUNER_TUNER_ID": "chief", "KERASTUNER_ORACLE_IP": "127.0.0.1:8000"},
     "KERASTUNER_ORACLE_IP=127.0.0.1 and KERASTUNER_ORACLE_PORT=8000"),
    ({"KERASTUNER_TUNER_ID": "chief", "KERASTUNER_ORACLE_IP": "127.0.0.1",
      "KERASTUNER_ORACLE_PORT": "http"}, "not a port number"),
    ({"KERASTUNER_TUNER_ID": "chief", "KERASTUNER_ORACLE_IP": "127.0.0.1",
      "KERASTUNER_ORACLE_PORT": "70000"}, "not a port number"),
    ({"KERASTUNER_TUNER_ID": "chief", "KERASTUNER_ORACLE_IP": "127.0.0.1",
      "KERASTUNER_ORACLE_PORT": "0"}, "not a port number"),
    ({"KERASTUNER_TUNER_ID": "chief", "KERASTUNER_ORACLE_IP": " ",
      "KERASTUNER_ORACLE_PORT": "8000"}, "KERASTUNER_ORACLE_IP is empty"),
    ({"KERASTUNER_TUNER_ID": "chief", "KERASTUNER_ORACLE_IP": "http://chief/",
      "KERASTUNER_ORACLE_PORT": "8000"}, "not a host name or IP address"),
    ({"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": "8000"},
     "KERASTUNER_TUNER_ID is not"),
    ({"KERASTUNER_TUNER_ID": "chief", "KERASTUNER_ORACLE_PORT": "8000"},
     "KERASTUNER_ORACLE_IP is not"),
    ({"KERASTUNER_TUNER_ID": "chief", "KERASTUNER_ORACLE_IP": "0.0.0.0",
      "KERASTUNER_ORACLE_PORT": "8000"}, "Refusing to serve the search's oracle on 0.0.0.0:8000"),
    ({"KERASTUNER_TUNER_ID": "tuner0", "KERASTUNER_ORACLE_IP": "10.0.0.5",
      "KERASTUNER_ORACLE_PORT": "8000"}, "Set AUTOTRANSFER_TUNER_TOKEN to the chief's value"),
    ({"KERASTUNER_TUNER_ID": "chief", "KERASTUNER_ORACLE_IP": "10.0.0.5",
      "KERASTUNER_ORACLE_PORT": "8000", TOKEN_ENV: ""}, "set but empty"),
    ({"KERASTUNER_TUNER_ID": "chief", "KERASTUNER_ORACLE_IP": "10.0.0.5",
      "KERASTUNER_ORACLE_PORT": "8000", TOKEN_ENV: "hunter2"}, "too short"),
    ({"KERASTUNER_TUNER_ID": "chief", "KERASTUNER_ORACLE_IP": "10.0.0.5",
      "KERASTUNER_ORACLE_PORT": "8000", TOKEN_ENV: "correct horse battery staple"},
     "printable ASCII"),
])
def test_malformed_or_unsafe_settings_are_clear_errors(env, expected):
    with pytest.raises(DistributedTuningError) as info:
        settings(env)
    assert expected in str(info.value)
    if env.get(TOKEN_ENV):
        assert env[TOKEN_ENV] not in str(info.value)


def test_cli_exits_2_on_a_port_less_ip_and_an_open_chief_without_token(environ, tmp_path, capsys):
    args = ["tune", str(tmp_path / "ds"), "-o", str(tmp_path / "t")]
    environ(TUNER_ID="chief", ORACLE_IP="127.0.0.1")
    assert main(args) == EXIT_USER_ERROR
    assert "KERASTUNER_ORACLE_PORT" in capsys.readouterr().err
    environ(TUNER_ID="chief", ORACLE_IP="0.0.0.0", ORACLE_PORT=str(free_port()))
    assert main(args) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "Refusing to serve" in err and "secrets.token_urlsafe" in err
    assert "Traceback" not in err
    assert not (tmp_path / "t").exists()


# ----------------------------------------------------------------------------- the server
def _oracle(tmp_path, max_trials: int = 3):
    """A KerasTuner random-search oracle over one float, its project in ``tmp_path``."""
    hp = keras_tuner.HyperParameters()
    hp.Float("lr", 1e-4, 1e-1, sampling="log")
    tuner = keras_tuner.RandomSearch(
        hypermodel=lambda hp: hp.Float("lr", 1e-4, 1e-1, sampling="log") and None,
        objective=keras_tuner.Objective("val_accuracy", "max"), max_trials=max_trials, seed=0,
        directory=str(tmp_path), project_name="search", hyperparameters=hp)
    return tuner


def _raw_stub(port: int, token: str | None = None):
    """KerasTuner's stub, as a process posing as a worker would build it."""
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = protos.get_service_grpc().OracleStub(channel)
    metadata = None if token is None else [(distributed.METADATA_KEY, token)]
    return stub, metadata


def test_the_chief_refuses_calls_without_the_token_and_records_nothing(tmp_path):
    tuner = _oracle(tmp_path)
    port = free_port()
    said: list[str] = []
    chief = distributed.start_server(
        tuner.oracle, Distribution("chief", "chief", "127.0.0.1", port, TOKEN), said.append)
    try:
        service = protos.get_service()
        for token in (None, "wrong-token-0123456789", TOKEN[:-1]):
            stub, metadata = _raw_stub(port, token)
            with pytest.raises(grpc.RpcError) as info:
                stub.CreateTrial(service.CreateTrialRequest(tuner_id="rogue"), metadata=metadata,
                                 wait_for_ready=True, timeout=30)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            # a made-up result for trial 0
            with pytest.raises(grpc.RpcError) as info:
                stub.UpdateTrial(service.UpdateTrialRequest(
                    trial_id="00", metrics={"val_accuracy": 1.0}), metadata=metadata,
                    wait_for_ready=True, timeout=30)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            forged = keras_tuner.engine.trial.Trial(tuner.oracle.get_space(), trial_id="00",
                                                    status="COMPLETED")
            forged.metrics.register("val_accuracy", "max")
            forged.metrics.update("val_accuracy", 1.0)
            with pytest.raises(grpc.RpcError) as info:
                stub.EndTrial(service.EndTrialRequest(trial=forged.to_proto()),
                              metadata=metadata, wait_for_ready=True, timeout=30)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert tuner.oracle.trials == {} and tuner.oracle.ongoing_trials == {}
        assert "rogue" not in tuner.oracle.tuner_ids
        assert chief.check.refused == 9
        assert sum("Refused CreateTrial from ipv" in s for s in said) == 3

        # the right token, on a stub of its own: served
        stub, metadata = _raw_stub(port, TOKEN)
        response = stub.CreateTrial(service.CreateTrialRequest(tuner_id="tuner0"),
                                    metadata=metadata, wait_for_ready=True, timeout=30)
        assert response.trial.status == protos.get_proto().TrialStatus.RUNNING
        assert list(tuner.oracle.trials) == [response.trial.trial_id]
    finally:
        chief.stop()


def test_keras_tuners_worker_client_with_the_token(tmp_path, environ):
    """A worker's OracleClient (KerasTuner's) makes every call through ``stub``: with the stub
    :func:`authenticate_worker` gives it, a trial runs from start to end; without, it is refused
    and the refusal is a clear error."""
    tuner = _oracle(tmp_path)
    port = free_port()
    chief = distributed.start_server(
        tuner.oracle, Distribution("chief", "chief", "127.0.0.1", port, TOKEN))
    try:
        environ(TUNER_ID="tuner0", ORACLE_IP="127.0.0.1", ORACLE_PORT=str(port), token=TOKEN)
        client = oracle_client.OracleClient(tuner.oracle)  # what BaseTuner gives a worker
        with pytest.raises(DistributedTuningError, match="refused this worker .tuner0.: "
                           "AUTOTRANSFER_TUNER_TOKEN is not the chief's"), \
                distributed.refused_as_error():
            client.create_trial("tuner0")  # KerasTuner's own stub sends no token
        distributed.authenticate_worker(types.SimpleNamespace(oracle=client))
        assert client.get_space().get_config() == tuner.oracle.get_space().get_config()
        trial = client.create_trial("tuner0")
        client.update_trial(trial.trial_id, {"val_accuracy": 0.5})
        trial.status = "COMPLETED"
        trial.metrics.register("val_accuracy", "max")
        trial.metrics.update("val_accuracy", 0.5)
        client.end_trial(trial)
        served = tuner.oracle.trials[trial.trial_id]
        assert served.status == "COMPLETED"
        assert served.metrics.get_last_value("val_accuracy") == 0.5
        assert client.get_best_trials(1)[0].trial_id == trial.trial_id

        environ(TUNER_ID="tuner1", ORACLE_IP="127.0.0.1", ORACLE_PORT=str(port))
        other = oracle_client.OracleClient(tuner.oracle)
        distributed.authenticate_worker(types.SimpleNamespace(oracle=other))
        with pytest.raises(DistributedTuningError, match="AUTOTRANSFER_TUNER_TOKEN is not set"), \
                distributed.refused_as_error():
            other.create_trial("tuner1")
        assert list(tuner.oracle.trials) == [trial.trial_id]
    finally:
        chief.stop()


def test_serve_chief_returns_once_the_search_stops(tmp_path, environ):
    """KerasTuner's servicer flags the stop and ``exit_chief`` waits for the workers."""
    tuner = _oracle(tmp_path, max_trials=1)
    port = free_port()
    environ(TUNER_ID="chief", ORACLE_IP="127.0.0.1", ORACLE_PORT=str(port), token=TOKEN)
    serving = threading.Thread(target=distributed.serve_chief, args=(tuner,),
                               kwargs={"verbose": 0, "poll": 0.05}, daemon=True)
    serving.start()
    stub, metadata = _raw_stub(port, TOKEN)
    service = protos.get_service()
    call = {"metadata": metadata, "wait_for_ready": True, "timeout": 30}
    trial = keras_tuner.engine.trial.Trial.from_proto(
        stub.CreateTrial(service.CreateTrialRequest(tuner_id="tuner0"), **call).trial)
    stub.UpdateTrial(service.UpdateTrialRequest(trial_id=trial.trial_id,
                                                metrics={"val_accuracy": 0.5}), **call)
    trial.status = "COMPLETED"
    stub.EndTrial(service.EndTrialRequest(trial=trial.to_proto()), **call)
    assert serving.is_alive()
    stopped = stub.CreateTrial(service.CreateTrialRequest(tuner_id="tuner0"), **call).trial
    assert stopped.status == protos.get_proto().TrialStatus.STOPPED
    serving.join(timeout=30)
    assert not serving.is_alive()
    assert (tmp_path / "search" / "oracle.json").is_file()


def test_a_chief_cannot_share_a_busy_port(tmp_path):
    tuner = _oracle(tmp_path)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(DistributedTuningError, match="cannot listen on 127.0.0.1:"):
            distributed.start_server(
                tuner.oracle, Distribution("chief", "chief", "127.0.0.1", port, TOKEN))
    dist = Distribution("chief", "chief", "127.0.0.1", free_port(), TOKEN)
    first = distributed.start_server(tuner.oracle, dist)
    try:  # gRPC would share it (SO_REUSEPORT) and split the workers between two chiefs
        with pytest.raises(DistributedTuningError, match="the port is in use"):
            distributed.start_server(tuner.oracle, dist)
    finally:
        first.stop()


def test_keras_tuner_gives_a_worker_an_oracle_client(tmp_path, environ):
    environ(TUNER_ID="tuner0", ORACLE_IP="127.0.0.1", ORACLE_PORT=str(free_port()), token=TOKEN)
    tuner = _oracle(tmp_path)
    assert isinstance(tuner.oracle, oracle_client.OracleClient)
    kerastuner_stub = tuner.oracle.stub
    distributed.authenticate_worker(tuner)
    assert tuner.oracle.stub is not kerastuner_stub


def test_a_trial_id_that_is_not_a_number_is_refused_before_it_names_a_folder() -> None:
    """An impostor chief could send '../../x' as a trial id; KerasTuner would make it a path."""
    from autotransfer.tuning.recipe_tuner import RecipeTuner as tuner_class

    trial = types.SimpleNamespace(trial_id="../../outside", hyperparameters=None)
    with pytest.raises(keras_tuner.errors.FatalError, match="not a number"):
        tuner_class.run_trial(object(), trial)
