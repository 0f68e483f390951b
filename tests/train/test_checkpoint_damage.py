"""A damaged checkpoint costs an epoch, not the run: the one before it is kept and used."""

from __future__ import annotations

import json
import shutil

import keras
import numpy as np
import pytest

from autotransfer.cli import EXIT_OK, EXIT_USER_ERROR, main
from autotransfer.errors import RunDirectoryError
from autotransfer.train import train
from autotransfer.train.checkpoint import WEIGHTS, CheckpointManager, CheckpointWarning
from autotransfer.train.run import partial_dir
from tests.train.helpers import make_colour_dataset
from tests.train.test_resume import InterruptAt, recipe


def _truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _model(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((3,))
    return keras.Model(inputs, keras.layers.Dense(2)(inputs))


def test_the_previous_checkpoint_is_kept_and_used_when_the_latest_is_damaged(tmp_path):
    manager = CheckpointManager(tmp_path / "checkpoints")
    models = [_model(seed) for seed in range(3)]
    for i, model in enumerate(models):
        manager.save(f"epoch-{i + 1:04d}", model, {"global_epoch": i + 1, "notes": []},
                     best_model_weights=model.get_weights())
    assert sorted(p.name for p in manager.root.iterdir() if p.is_dir()) == ["epoch-0002",
                                                                            "epoch-0003"]
    fresh = CheckpointManager(manager.root)  # a resumed process
    assert fresh.latest_dir().name == "epoch-0003" and fresh.latest_state()["notes"] == []

    _truncate(manager.root / "epoch-0003" / WEIGHTS)
    resumed = CheckpointManager(manager.root)
    with pytest.warns(CheckpointWarning, match="epoch-0003.*damaged.*model.weights.h5"):
        state = resumed.latest_state()
    assert state["global_epoch"] == 2 and "resumed from 'epoch-0002'" in state["notes"][0]
    restored = _model(9)
    resumed.restore_model(restored)
    for a, b in zip(restored.get_weights(), models[1].get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # the next save replaces the damaged one and keeps the sound one before it
    resumed.save("epoch-0003", models[2], {"global_epoch": 3, "notes": []})
    assert CheckpointManager(manager.root).latest_dir().name == "epoch-0003"
    assert (manager.root / "epoch-0002").is_dir()

    for name in ("epoch-0002", "epoch-0003"):
        (manager.root / name / "state.json").write_text("{")
    with pytest.raises(RunDirectoryError, match="No checkpoint .* can be used.*Delete"):
        CheckpointManager(manager.root).latest_state()


@pytest.mark.usefixtures("every_epoch")
def test_resume_after_the_latest_checkpoint_was_truncated(tmp_path, capsys):
    data = make_colour_dataset(tmp_path / "ds", {"a": 6, "b": 6, "c": 6})
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(data, recipe(), out, callbacks=[InterruptAt(3)])
    checkpoints = partial_dir(out) / "checkpoints"
    assert json.loads((checkpoints / "latest.json").read_text())["dir"] == "epoch-0003"

    # every checkpoint damaged: a clear exit 2, and the interrupted run is left as it was
    broken = tmp_path / "broken"
    shutil.copytree(partial_dir(out), partial_dir(broken))
    for folder in (partial_dir(broken) / "checkpoints").iterdir():
        if folder.is_dir():
            _truncate(folder / WEIGHTS)
    assert main(["train", str(data), "-o", str(broken), "--resume"]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "No checkpoint" in err and "damaged" in err and "Traceback" not in err
    assert partial_dir(broken).is_dir()

    # only the latest damaged: the run resumes from the one before, says so, and completes
    _truncate(checkpoints / "epoch-0003" / WEIGHTS)
    assert main(["train", str(data), "-o", str(out), "--resume", "--json"]) == EXIT_OK
    captured = capsys.readouterr()
    assert "Note: Checkpoint 'epoch-0003' is damaged (model.weights.h5 has" in captured.err
    summary = json.loads(captured.out)
    assert summary["resumed"] and [p["epochs_run"] for p in summary["phases"]] == [2, 2]
    metrics = json.loads((out / "metrics.json").read_text())
    assert any("'epoch-0003' is damaged" in note and "resumed from 'phase-01-start'" in note
               for note in metrics["notes"])
    assert len(metrics["phases"][1]["history"]["loss"]) == 2  # its epochs, each once
    assert main(["predict", str(out), str(data / "a"), "--json", "-q"]) == EXIT_OK
