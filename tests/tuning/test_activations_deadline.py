"""The activation store checks a trial's deadline while it computes the frozen features (after
every batch of every pass), so a trial past its deadline stops there, not at the next fit."""

from __future__ import annotations

import time

import keras
import pytest

from autotransfer.data.profile import profile_dataset
from autotransfer.data.splits import make_splits
from autotransfer.train.data import TrainingInputs
from autotransfer.train.executor import prefix_state_key
from autotransfer.train.feature_cache import FeatureRequest
from autotransfer.train.model import build_classifier, set_trainable
from autotransfer.tuning.activations import ActivationStore
from autotransfer.tuning.hypermodel import Deadline, TrialFailed
from tests.train.helpers import make_colour_dataset, tiny_recipe


class Watcher(keras.callbacks.Callback):
    """Any other callback of the run: the store leaves it out of its passes."""

    def __init__(self) -> None:
        super().__init__()
        self.predict_batches = 0

    def on_predict_batch_end(self, batch, logs=None):
        self.predict_batches += 1


@pytest.fixture(scope="module")
def request_for(tmp_path_factory):
    dataset = make_colour_dataset(tmp_path_factory.mktemp("deadline") / "ds",
                                  {"red": 8, "green": 8})
    splits = make_splits(profile_dataset(dataset), val_fraction=0.25, seed=0)
    recipe = tiny_recipe()
    clf = build_classifier(recipe, len(splits.class_names))
    set_trainable(clf, 5)
    inputs = TrainingInputs(splits, 32)

    def request(callbacks, shareable=True):
        return FeatureRequest(clf, 5, 2, inputs, recipe.augmentation, recipe.seed, 0, 4,
                              state_key=prefix_state_key(recipe, inputs, None, 4),
                              shareable=shareable, callbacks=tuple(callbacks))

    return splits, request


@pytest.mark.parametrize("shareable", [True, False])
def test_a_trial_past_its_deadline_stops_in_the_first_pass(request_for, shareable):
    splits, request = request_for
    store = ActivationStore(splits)
    with pytest.raises(TrialFailed, match="end of the time budget"):
        store.frozen_features(request([Deadline(time.time() - 1.0)], shareable))
    assert not store._vals and not store._views  # nothing half-computed is kept


def test_in_time_the_features_come_and_other_callbacks_stay_out(request_for):
    splits, request = request_for
    store, watcher = ActivationStore(splits), Watcher()
    got = store.frozen_features(request([Deadline(time.time() + 3600.0), watcher]))
    assert len(got.views) == 2 and got.val.shape[0] == len(splits.val)
    assert watcher.predict_batches == 0  # predict would rebind it to the prefix
