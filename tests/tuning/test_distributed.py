"""KerasTuner's chief/worker mode through ``autotransfer tune``: a chief and two workers on
loopback share one search; a chief with a token refuses the workers without it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from autotransfer.recipe.io import save_recipe
from autotransfer.tuning.distributed import TOKEN_ENV
from tests.train.helpers import make_colour_dataset, tiny_recipe

TIMEOUT = 420
TOKEN = "a-shared-secret-for-the-test-0123456789"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(tuner_id: str, port: int, args: list[str], token: str | None = None) -> subprocess.Popen:
    env = dict(os.environ, KERASTUNER_TUNER_ID=tuner_id, KERASTUNER_ORACLE_IP="127.0.0.1",
               KERASTUNER_ORACLE_PORT=str(port), TF_CPP_MIN_LOG_LEVEL="3",
               OMP_NUM_THREADS="1", TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
    env.pop(TOKEN_ENV, None)
    if token is not None:
        env[TOKEN_ENV] = token
    code = "import sys; from autotransfer.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen([sys.executable, "-c", code, *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_a_chief_and_two_workers_on_loopback_complete_the_search(tmp_path):
    dataset = make_colour_dataset(tmp_path / "ds", {"red": 8, "green": 8, "blue": 8})
    recipe = tiny_recipe(phases=[{"name": "head", "epochs": 3, "trainable_from": 5,
                                  "learning_rate": 0.05}])
    save_recipe(recipe, tmp_path / "recipe.yaml")
    out = tmp_path / "tuning"
    # the full trainer for every trial (a few seconds each), so both workers get some
    args = ["tune", str(dataset), "--recipe", str(tmp_path / "recipe.yaml"), "--out", str(out),
            "--trials", "6", "--no-shared-cache", "--json"]
    port = free_port()
    processes = {"chief": start("chief", port, args)}
    processes.update({name: start(name, port, args) for name in ("tuner0", "tuner1")})
    outputs = {}
    try:
        for name, process in processes.items():
            outputs[name] = process.communicate(timeout=TIMEOUT)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    for name, process in processes.items():
        assert process.returncode == 0, f"{name}: {outputs[name][1][-3000:]}"
    chief = json.loads(outputs["chief"][0])
    assert chief["role"] == "chief"
    trials = chief["trials"]
    assert len(trials) == 6 and all(t["status"] == "COMPLETED" for t in trials)
    assert {t["tuner_id"] for t in trials} == {"tuner0", "tuner1"}
    assert trials[0]["changed"] == {} and chief["baseline_trial"] == trials[0]["trial_id"]
    assert (out / "recipe.tuned.yaml").is_file() and (out / "tuning.json").is_file()
    for name in ("tuner0", "tuner1"):
        worker = json.loads(outputs[name][0])
        assert worker["role"] == "worker"
        ran = {t["trial_id"] for t in worker["trials"]}
        assert ran == {t["trial_id"] for t in trials if t["tuner_id"] == name}


def finish(processes: dict[str, subprocess.Popen]) -> dict[str, tuple[str, str]]:
    """Wait for ``processes`` (killing them on a timeout): their stdout and stderr by name."""
    outputs = {}
    try:
        for name, process in processes.items():
            outputs[name] = process.communicate(timeout=TIMEOUT)
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return outputs


@pytest.mark.slow
def test_a_chief_with_a_token_refuses_workers_without_it(tmp_path):
    """Workers without the token, or with another, exit 2 and nothing of theirs is recorded; a
    worker with it runs the search."""
    dataset = make_colour_dataset(tmp_path / "ds", {"red": 6, "green": 6, "blue": 6})
    recipe = tiny_recipe(phases=[{"name": "head", "epochs": 2, "trainable_from": 5,
                                  "learning_rate": 0.05}])
    save_recipe(recipe, tmp_path / "recipe.yaml")
    out = tmp_path / "tuning"
    args = ["tune", str(dataset), "--recipe", str(tmp_path / "recipe.yaml"), "--out", str(out),
            "--trials", "2", "--backbones", "none", "--json"]
    port = free_port()
    chief = start("chief", port, args, token=TOKEN)
    try:
        refused = {"rogue": start("rogue", port, args),
                   "forger": start("forger", port, args, token=TOKEN[::-1])}
        outputs = finish(refused)
        for name, process in refused.items():
            stdout, stderr = outputs[name]
            assert process.returncode == 2, f"{name}: {stderr[-3000:]}"
            assert "refused this worker" in stderr and TOKEN_ENV in stderr, stderr[-3000:]
            assert "Traceback" not in stderr and TOKEN not in stderr and stdout == ""
        assert chief.poll() is None, "the chief stopped"
        worker = start("tuner0", port, args, token=TOKEN)
        outputs = finish({"tuner0": worker, "chief": chief})
    finally:
        if chief.poll() is None:
            chief.kill()
            chief.wait()
    assert worker.returncode == 0, outputs["tuner0"][1][-3000:]
    assert chief.returncode == 0, outputs["chief"][1][-3000:]
    assert json.loads(outputs["tuner0"][0])["role"] == "worker"
    result = json.loads(outputs["chief"][0])
    assert [t["tuner_id"] for t in result["trials"]] == ["tuner0", "tuner0"]
    assert all(t["status"] == "COMPLETED" for t in result["trials"])
