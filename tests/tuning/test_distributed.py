"""KerasTuner's chief/worker mode through ``autotransfer tune``: a chief and two workers on
loopback share one search."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest

from autotransfer.recipe.io import save_recipe
from tests.train.helpers import make_colour_dataset, tiny_recipe

TIMEOUT = 420


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(tuner_id: str, port: int, args: list[str]) -> subprocess.Popen:
    env = dict(os.environ, KERASTUNER_TUNER_ID=tuner_id, KERASTUNER_ORACLE_IP="127.0.0.1",
               KERASTUNER_ORACLE_PORT=str(port), TF_CPP_MIN_LOG_LEVEL="3",
               OMP_NUM_THREADS="1", TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
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
