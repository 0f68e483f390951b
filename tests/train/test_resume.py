"""Interrupted runs resume from the last complete epoch, without losing or repeating work."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from autotransfer.train import train
from autotransfer.train.checkpoint import (BEST, CheckpointClock, CheckpointManager,
                                           CheckpointPolicy)
from autotransfer.train.export import load_model
from autotransfer.train.phases import ExecState
from autotransfer.train.run import partial_dir
from tests.train.helpers import make_colour_dataset, tiny_recipe


def recipe():
    return tiny_recipe(head={"dropout": 0.2}, augmentation={"horizontal_flip": True, "zoom": 0.1},
                       phases=[
                           {"name": "head", "epochs": 2, "trainable_from": 5,
                            "learning_rate": 0.01},
                           {"name": "fine_tune", "epochs": 2, "trainable_from": 1,
                            "learning_rate": 0.001},
                       ])


class InterruptAt(keras.callbacks.Callback):
    """Ctrl-C in the middle of global epoch ``epoch`` (after its first batch)."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch
        self.current = -1

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch:
            raise KeyboardInterrupt


class EpochLog(keras.callbacks.Callback):
    def __init__(self) -> None:
        super().__init__()
        self.epochs: list[int] = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(epoch)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_colour_dataset(tmp_path_factory.mktemp("d") / "ds", {"a": 6, "b": 6, "c": 6})


@pytest.fixture(scope="module")
def uninterrupted(dataset, tmp_path_factory):
    return train(dataset, recipe(), tmp_path_factory.mktemp("u") / "run")


@pytest.mark.usefixtures("every_epoch")
def test_ctrl_c_then_resume_continues_from_the_right_epoch(dataset, uninterrupted, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(dataset, recipe(), out, callbacks=[InterruptAt(3)])
    assert not out.exists()  # never half-written
    state = ExecState.from_dict(CheckpointManager(partial_dir(out) / "checkpoints").latest_state())
    assert state.global_epoch == 3 and state.phase == 1
    assert state.phases[1].epochs_run == 1 and not state.phases[1].finished  # mid-phase

    log = EpochLog()
    resumed = train(dataset, None, out, resume=True, callbacks=[log])
    assert log.epochs == [3]  # only the missing epochs, with their global numbers
    assert resumed.resumed and not partial_dir(out).exists()
    phases = resumed.metrics["phases"]
    assert [p["epochs_run"] for p in phases] == [2, 2]
    assert len(phases[1]["history"]["loss"]) == 2
    # the same data order, augmentation and dropout seeds and optimizer state as the
    # uninterrupted run; float results agree to rounding (TensorFlow on CPU is not bit-exact
    # from one process state to another)
    for a, b in zip(phases, uninterrupted.metrics["phases"]):
        np.testing.assert_allclose(a["history"]["loss"], b["history"]["loss"], rtol=5e-3)
    for a, b in zip(resumed.phases, uninterrupted.phases, strict=True):  # the typed records
        assert (a.epochs_run, a.best_epoch, a.stopped_early, a.batch_size, a.features.used) == (
            b.epochs_run, b.best_epoch, b.stopped_early, b.batch_size, b.features.used)
        assert len(a.epoch_seconds) == a.epochs_run  # each epoch once, the resumed one too
    for x, y in zip(load_model(resumed.model_path).get_weights(),
                    load_model(uninterrupted.model_path).get_weights()):
        np.testing.assert_allclose(x, y, rtol=0.05, atol=2e-3)


@pytest.mark.usefixtures("every_epoch")
def test_resume_refuses_a_different_recipe(dataset, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(dataset, recipe(), out, callbacks=[InterruptAt(1)])
    from autotransfer.errors import InvalidConfigError

    with pytest.raises(InvalidConfigError, match="differs"):
        train(dataset, tiny_recipe(seed=5), out, resume=True)
    from autotransfer.errors import RunDirectoryError

    with pytest.raises(RunDirectoryError, match="--resume"):  # a fresh start would overwrite it
        train(dataset, recipe(), out)
    assert (partial_dir(out) / "checkpoints" / "latest.json").is_file()  # still resumable


def test_killed_process_resumes(dataset, uninterrupted, tmp_path):
    out = tmp_path / "run"
    script = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(__import__('pathlib').Path(__file__).parents[2])!r})
        import keras
        from autotransfer.train import train
        from tests.train.test_resume import recipe

        class Kill(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.epoch = epoch
            def on_train_batch_end(self, batch, logs=None):
                if self.epoch == 2 and batch == 1:
                    os.kill(os.getpid(), signal.SIGKILL)

        train({str(dataset)!r}, recipe(), {str(out)!r}, callbacks=[Kill()])
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == -9, done.stderr[-3000:]
    assert not out.exists()
    ckpt = partial_dir(out) / "checkpoints"
    assert json.loads((ckpt / "latest.json").read_text())["dir"] == "phase-01-start"
    log = EpochLog()
    resumed = train(dataset, None, out, resume=True, callbacks=[log])
    assert log.epochs == [2, 3]
    for a, b in zip(resumed.metrics["phases"], uninterrupted.metrics["phases"]):
        np.testing.assert_allclose(a["history"]["val_loss"], b["history"]["val_loss"], rtol=5e-3)


def three_epoch_recipe():
    r = recipe()
    return r.model_copy(update={"phases": [r.phases[0], r.phases[1].model_copy(
        update={"epochs": 3})]})


@pytest.fixture(scope="module")
def uninterrupted3(dataset, tmp_path_factory):
    return train(dataset, three_epoch_recipe(), tmp_path_factory.mktemp("u3") / "run")


def test_policy_interval_bounds_the_share_spent_on_checkpoints():
    policy = CheckpointPolicy(min_interval_s=30, max_share=0.05)
    assert policy.interval(0.5) == 30 and policy.interval(3.0) == pytest.approx(60)
    now = [100.0]
    clock = CheckpointClock(policy, clock=lambda: now[0])
    now[0] += 29.9
    assert not clock.due()
    now[0] += 0.1
    assert clock.due()
    clock.write(lambda: now.__setitem__(0, now[0] + 2.0))  # a checkpoint taking 2 s
    assert (clock.written, clock.seconds) == (1, pytest.approx(2.0))
    now[0] += 39.9
    assert not clock.due()  # 2 s / 0.05 = 40 s
    now[0] += 0.1
    assert clock.due()


def test_skipped_checkpoints_resume_to_the_same_result(dataset, uninterrupted3, tmp_path,
                                                       monkeypatch):
    """Epoch 2's checkpoint skipped (its best weights kept in memory), epoch 3's written (with
    them), Ctrl-C in epoch 4: the resumed run repeats epoch 4 only and ends as the run that was
    never interrupted, the best epoch's weights restored."""
    calls = []

    def due(self):  # epoch 0 (not due), epoch 2 (not due), epoch 3 (due)
        calls.append(1)
        return len(calls) == 3

    monkeypatch.setattr(CheckpointClock, "due", due)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(dataset, three_epoch_recipe(), out, callbacks=[InterruptAt(4)])
    ckpt = partial_dir(out) / "checkpoints"
    assert json.loads((ckpt / "latest.json").read_text())["dir"] == "epoch-0004"
    assert not (ckpt / "epoch-0003").exists() and (ckpt / "epoch-0004" / BEST).is_file()
    state = ExecState.from_dict(CheckpointManager(ckpt).latest_state())
    assert state.global_epoch == 4 and state.phases[1].epochs_run == 2

    log = EpochLog()
    resumed = train(dataset, None, out, resume=True, callbacks=[log])
    assert log.epochs == [4]
    for a, b in zip(resumed.phases, uninterrupted3.phases, strict=True):
        assert (a.epochs_run, a.best_epoch) == (b.epochs_run, b.best_epoch)
        np.testing.assert_allclose(a.history["val_loss"], b.history["val_loss"], rtol=5e-3)
    for x, y in zip(load_model(resumed.model_path).get_weights(),
                    load_model(uninterrupted3.model_path).get_weights()):
        np.testing.assert_allclose(x, y, rtol=0.05, atol=2e-3)

