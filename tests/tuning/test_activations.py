"""The activation store's budget: target features count in it and go least recently used first."""

from __future__ import annotations

import numpy as np

from autotransfer.tuning.activations import ActivationStore, _Views


def features(kb: int) -> np.ndarray:
    return np.zeros(kb * 256, dtype=np.float32)  # kb KiB


def test_target_features_count_in_the_budget_and_go_least_recently_used_first():
    store = ActivationStore(splits=lambda: None, max_bytes=3 * 1024)
    target = store.target_features
    target["a"], target["b"] = features(1), features(1)
    assert store.bytes() == 2 * 1024 and store.resident(["a", "b"])
    assert target.get("a") is not None  # a read makes "a" the most recently used
    target["c"] = features(2)  # 4 KiB > 3 KiB: "b", the least recently used, goes
    assert list(target) == ["a", "c"] and store.bytes() == 3 * 1024
    assert not store.resident(["a", "b"]) and store.resident(["c"])
    assert "a" in target and list(target) == ["a", "c"]  # a membership test is not a use
    target["d"] = features(4)  # larger than the whole budget: not kept, the rest stays
    assert "d" not in target and list(target) == ["a", "c"]
    assert store.used == ["a", "b", "a", "c"]  # what the run took or kept


def test_augmented_views_go_before_target_features():
    store = ActivationStore(splits=lambda: None, max_bytes=3 * 1024)
    store.target_features["t"] = features(1)
    store._views["v"] = _Views("group", ("x",), [features(1)], [1.0])
    store.target_features["u"] = features(2)  # makes room: the view goes, "t" stays
    assert "v" not in store._views and list(store.target_features) == ["t", "u"]
    assert store.bytes() == 3 * 1024
