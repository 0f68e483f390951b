"""TensorBoard logs: Keras' callback for the epochs, scalars for the steps without ``fit``, and
HParams sessions (the recipe's values and val accuracy) for a run and for tuning trials, read
back with TensorBoard's own EventAccumulator."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest

from autotransfer.train.tensorboard import RunLog, recipe_hparams, write_trial, write_trials
from tests.train.helpers import tiny_recipe


def accumulate(folder: Path) -> Any:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    acc.Reload()
    return acc


def scalars(folder: Path, tag: str) -> list[tuple[int, float]]:
    """``(step, value)`` of a scalar (``tf.summary.scalar`` stores a tensor per step)."""
    import tensorflow as tf

    return [(e.step, float(tf.make_ndarray(e.tensor_proto)))
            for e in accumulate(folder).Tensors(tag)]


def session(folder: Path) -> tuple[dict[str, Any], str]:
    """The HParams session recorded in ``folder``: its values and its group name."""
    from tensorboard.plugins.hparams import metadata

    acc = accumulate(folder)
    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)
    info = metadata.parse_session_start_info_plugin_data(content[metadata.SESSION_START_INFO_TAG])
    values = {}
    for name, value in info.hparams.items():
        kind = value.WhichOneof("kind")
        values[name] = getattr(value, kind)
    return values, info.group_name


def test_recipe_values_flatten_by_phase_name():
    values = recipe_hparams(tiny_recipe())
    assert values["backbone.name"] == "test_tiny" and values["backbone.input_size"] == 32
    assert values["phases.head.learning_rate"] == 0.01
    assert values["phases.fine_tune.group_lr_multipliers"] == "0.1, 0.2, 0.3, 0.5, 1.0"
    assert values["domain_adaptation.method"] == "none"
    assert not any(k.startswith("domain_adaptation.") and k != "domain_adaptation.method"
                   for k in values)
    assert "name" not in values and "head.lbfgs_c" not in values  # unset: left out
    assert all(isinstance(v, (bool, int, float, str)) for v in values.values())


def test_epochs_of_fit_and_of_the_steps_without_fit_land_in_the_same_curves(tmp_path):
    log = RunLog(tmp_path / "logs")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="categorical_crossentropy",
                  metrics=["accuracy"])
    x = np.random.default_rng(0).normal(size=(16, 3)).astype("float32")
    y = keras.utils.to_categorical(x[:, 0] > 0, 2)
    for epoch in range(2):  # the trainer fits one epoch per call
        model.fit(x, y, validation_data=(x, y), epochs=epoch + 1, initial_epoch=epoch,
                  verbose=0, callbacks=[log.callback])
    log.epoch({"accuracy": 0.75, "val_accuracy": 0.5, "loss": 0.4}, step=2)  # an exact head fit
    log.hparams(tiny_recipe(), {"val_accuracy": 0.5, "val_loss": 0.7})
    log.close()
    # each fit (and the exact head's writer) writes its own event file, and the reading order
    # across files is not always the step order (seen once in a suite run): compare by step
    val = sorted(scalars(tmp_path / "logs" / "validation", "epoch_accuracy"))
    assert [s for s, _ in val] == [0, 1, 2] and val[-1][1] == pytest.approx(0.5)
    lr = sorted(scalars(tmp_path / "logs" / "train", "epoch_learning_rate"))
    assert lr[0] == (0, pytest.approx(0.1))
    assert sorted(s for s, _ in scalars(tmp_path / "logs" / "train", "epoch_loss")) == [0, 1, 2]
    values, _ = session(tmp_path / "logs")
    assert values["phases.head.learning_rate"] == pytest.approx(0.01)
    assert scalars(tmp_path / "logs", "val_accuracy") == [(0, pytest.approx(0.5))]


@dataclass
class Trial:
    trial_id: str
    status: str
    values: dict[str, Any]
    val_accuracy: float | None
    val_loss: float | None
    seconds: float | None = 3.0


def test_each_trial_is_a_session_with_its_values_and_accuracy(tmp_path):
    trials = [Trial("00", "COMPLETED", {"lr_head": 0.01, "dropout": 0.1}, 0.8, 0.5),
              Trial("01", "COMPLETED", {"lr_head": 0.003, "dropout": 0.2}, 0.9, 0.4),
              Trial("02", "FAILED", {"lr_head": 0.1, "dropout": 0.0}, None, None)]
    recipe = tiny_recipe()
    folder = write_trials(tmp_path / "logs" / "trials", trials,
                          lambda t: recipe if t.trial_id == "01" else None)
    assert sorted(p.name for p in folder.iterdir()) == ["00", "01", "02"]
    values, _ = session(folder / "01")
    assert values["search.lr_head"] == pytest.approx(0.003) and values["trial"] == "01"
    assert values["backbone.name"] == "test_tiny" and values["status"] == "COMPLETED"
    assert scalars(folder / "01", "val_accuracy") == [(0, pytest.approx(0.9))]
    failed, _ = session(folder / "02")
    assert failed["status"] == "FAILED" and "backbone.name" not in failed
    assert accumulate(folder / "02").Tags()["tensors"] == ["_hparams_/session_start_info",
                                                            "seconds"]
    # when the search ends, a session written as its trial ended stays as it is (a dashboard
    # reading it sees no second copy); a folder that is no trial of the search goes
    events = sorted(folder.glob("*/*tfevents*"))
    write_trials(folder, trials[:2])
    assert sorted(p.name for p in folder.iterdir()) == ["00", "01"]
    assert sorted(folder.glob("*/*tfevents*")) == events[:2]
    assert not any(p.name.startswith(".") for p in folder.parent.iterdir())
    write_trial(folder, Trial("01", "COMPLETED", {"lr_head": 0.003}, 0.95, 0.3))  # replaced
    assert scalars(folder / "01", "val_accuracy") == [(0, pytest.approx(0.95))]


def test_a_run_logs_its_epochs_and_its_recipe_for_the_hparams_dashboard(tmp_path):
    from autotransfer.train import train
    from tests.train.helpers import make_colour_dataset

    data = make_colour_dataset(tmp_path / "ds", {"red": 6, "green": 6})
    result = train(data, tiny_recipe(), tmp_path / "run", progress=False)
    logs = result.out / "logs"
    val = scalars(logs / "validation", "epoch_accuracy")
    assert [step for step, _ in val] == [0, 1, 2, 3]  # 2 + 2 epochs, one curve across phases
    history = [*result.metrics["phases"][0]["history"]["val_accuracy"],
               *result.metrics["phases"][1]["history"]["val_accuracy"]]
    assert [v for _, v in val] == pytest.approx(history)
    rates = [v for _, v in scalars(logs / "train", "epoch_learning_rate")]
    assert len(rates) == 4 and rates[2] < 0.01  # the fine-tuning phase's smaller rate
    values, _ = session(logs)
    assert values["phases.fine_tune.learning_rate"] == pytest.approx(0.001)
    assert scalars(logs, "val_accuracy") == [(0, pytest.approx(result.val_accuracy))]


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    """A search of 3 trials, and what TensorBoard's folder of trial sessions held each time the
    tuner said a trial ended (the trial ids and val accuracies of the sessions there)."""
    import re

    from autotransfer.tuning.tuner import tune
    from tests.train.helpers import make_colour_dataset

    root = tmp_path_factory.mktemp("search_logs")
    data = make_colour_dataset(root / "ds", {"red": 6, "green": 6})
    recipe = tiny_recipe(phases=[{"name": "head", "epochs": 1, "trainable_from": 5,
                                  "learning_rate": 0.05, "schedule": "constant"}])
    folder = root / "t" / "logs" / "trials"
    on_the_dashboard: list[list[tuple[str, float | None]]] = []

    def progress(text: str) -> None:
        if re.fullmatch(r"Trial \d+ (completed|failed)", text):
            sessions = sorted(p for p in folder.iterdir()) if folder.is_dir() else []
            on_the_dashboard.append([
                (session(p)[0]["trial"], dict(scalars(p, "val_accuracy")).get(0))
                for p in sessions])

    result = tune(data, recipe, root / "t", trials=3, progress=progress, verbose=0)
    return result, on_the_dashboard


def test_a_search_logs_each_trial_for_the_hparams_dashboard(search):
    result, _ = search
    folder = result.out / "logs" / "trials"
    assert sorted(p.name for p in folder.iterdir()) == sorted(t.trial_id for t in result.trials)
    for trial in result.trials:
        values, _ = session(folder / trial.trial_id)
        assert values["trial"] == trial.trial_id and values["backbone.name"] == "test_tiny"
        assert {k for k in values if k.startswith("search.")}
        assert scalars(folder / trial.trial_id, "val_accuracy") == [
            (0, pytest.approx(trial.val_accuracy))]


def test_a_search_shows_each_trial_on_the_dashboard_as_the_trial_ends(search):
    """A user watching TensorBoard during a long search sees every trial ended so far, not all
    of them at the end: when the tuner says a trial ended, its HParams session is there."""
    result, on_the_dashboard = search
    ended = [(t.trial_id, None if t.val_accuracy is None else pytest.approx(t.val_accuracy))
             for t in result.trials]
    assert len(ended) == 3
    assert on_the_dashboard == [ended[:1], ended[:2], ended[:3]]
