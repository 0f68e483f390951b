"""A resumed run reads its images from the dataset saved in its splits.json: one given on the
command line that is another dataset is refused (exit 2, both paths named), not ignored."""

from __future__ import annotations

import os

import keras
import pytest

from autotransfer.cli import EXIT_USER_ERROR, main
from autotransfer.train import train
from autotransfer.train.run import partial_dir
from tests.train.helpers import make_colour_dataset, tiny_recipe


class InterruptAt(keras.callbacks.Callback):
    """Ctrl-C during global epoch ``epoch``."""

    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt


@pytest.mark.usefixtures("every_epoch")
def test_resume_refuses_another_dataset_and_accepts_the_same_one_by_another_path(tmp_path,
                                                                                 capsys):
    data = make_colour_dataset(tmp_path / "ds", {"a": 6, "b": 6})
    other = make_colour_dataset(tmp_path / "other", {"a": 6, "b": 6}, seed=1)
    recipe = tiny_recipe(phases=[{"name": "head", "epochs": 2, "trainable_from": 5,
                                  "learning_rate": 0.01}])
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(data, recipe, out, callbacks=[InterruptAt(1)])
    splits = partial_dir(out) / "splits.json"
    before = splits.read_bytes()

    assert main(["train", str(other), "-o", str(out), "--resume"]) == EXIT_USER_ERROR
    err = " ".join(capsys.readouterr().err.split())
    assert f"was started on the dataset '{data}'" in err and f"'{other}' was given" in err
    assert "Resume with the original dataset path" in err and "new --out" in err
    assert splits.read_bytes() == before and not out.exists()  # still resumable

    os.symlink(data, tmp_path / "link")  # the same folder by another path: resumes
    resumed = train(tmp_path / "link", None, out, resume=True)
    assert resumed.resumed and resumed.metrics["n_train"] + resumed.metrics["n_val"] == 12
