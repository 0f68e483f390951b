"""The gap between source and target: ~0 for one distribution, large for a shifted one."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from autotransfer.probes.domain_gap import (a_distance, between_domains, gap_from_arrays,
                                            kl_divergence, total_variation)
from autotransfer.probes.bn_shift import BNLayerStats
from tests.data.builders import make_class_folders, pattern

GROUPS = ("stem", "stage_s4")


def arrays(features: np.ndarray, bn_means: list[np.ndarray], probs: np.ndarray | None = None):
    """What extract() returns, for two BN layers with the given per-channel means (variance 1)."""
    out = {"features": features.astype(np.float32), "bn_names": np.asarray(["bn0", "bn1"]),
           "bn_groups": np.asarray(list(GROUPS)), "bn_eps": np.asarray([1e-3, 1e-3])}
    for i, mean in enumerate(bn_means):
        out[f"bn_mean_{i}"] = mean
        out[f"bn_sq_{i}"] = mean**2 + 1.0
        out[f"bn_moving_mean_{i}"] = np.zeros_like(mean)
        out[f"bn_moving_var_{i}"] = np.ones_like(mean)
    if probs is not None:
        out["probs"] = probs
    return out


def domain(n: int, seed: int, shift: float = 0.0, scale: float = 1.0):
    """Two well-separated classes in 16 dimensions, shifted and scaled as a whole."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], n // 2)
    x = rng.normal(size=(n, 16)) + 3.0 * np.eye(16)[labels]
    return x * scale + shift, labels


def test_the_measures():
    assert a_distance(0.5) == 0.0 and a_distance(0.6) == 0.0 and a_distance(0.0) == 2.0
    assert a_distance(0.25) == pytest.approx(1.0)
    assert total_variation([0.5, 0.5], [1.0, 0.0]) == pytest.approx(0.5)
    assert kl_divergence([0.5, 0.5], [0.5, 0.5]) == pytest.approx(0.0)
    assert kl_divergence([1.0, 0.0], [0.0, 1.0]) > 5  # finite: smoothed
    ones, zeros = np.ones(4), np.zeros(4)
    same = BNLayerStats("bn", "stem", zeros, ones, zeros, ones, 1e-3)
    far = BNLayerStats("bn", "stem", zeros, ones, ones * 3, ones, 1e-3)
    per_group, overall = between_domains([same], [far], ["stem", "stage_s4"])
    assert per_group == {"stem": pytest.approx(9.0, rel=1e-2), "stage_s4": None}
    assert overall == per_group["stem"]


def test_a_target_from_the_same_distribution_has_no_gap_and_a_shifted_one_a_large_gap():
    xs, ys = domain(200, 0)
    xt, yt = domain(200, 1)
    zero = [np.zeros(8), np.zeros(8)]
    same = gap_from_arrays(arrays(xs, zero), arrays(xt, zero), ys, ["a", "b"], GROUPS, seed=0)
    assert same.a_distance < 0.3 and same.class_tv < 0.1
    assert same.bn_overall == pytest.approx(0.0, abs=1e-9)
    assert same.source_histogram == pytest.approx({"a": 0.5, "b": 0.5}, abs=0.05)

    xf, _ = domain(200, 1, shift=2.0, scale=1.5)
    moved = [np.full(8, 2.0), np.full(8, 1.0)]
    far = gap_from_arrays(arrays(xs, zero), arrays(xf, moved), ys, ["a", "b"], GROUPS, seed=0)
    assert far.a_distance > 1.5 and far.domain_error < 0.1
    assert far.bn_per_group["stem"] > far.bn_per_group["stage_s4"] > 0
    assert far.bn_peak_group == "stem" and far.evaluation is None
    # stored statistics 0 / 1 everywhere: folded, so no shift from ImageNet, only between domains
    assert far.source_bn_shift is None and far.target_bn_shift is None
    assert far.source_entropy is None  # no ImageNet classifier in these arrays


def test_predicted_classes_moving_on_the_target_are_measured():
    xs, ys = domain(200, 0)
    xt, yt = domain(200, 1)
    only_a = xt[yt == 0]  # the target holds one class: the predicted histogram moves by 0.5
    zero = [np.zeros(8), np.zeros(8)]
    gap = gap_from_arrays(arrays(xs, zero), arrays(only_a, zero), ys, ["a", "b"], GROUPS)
    assert gap.class_tv == pytest.approx(0.5, abs=0.05) and gap.class_kl > 0.3
    assert gap.target_histogram["a"] > 0.95 and gap.n_target == 100


def test_target_labels_only_fill_the_evaluation():
    xs, ys = domain(120, 0)
    xt, yt = domain(120, 1, shift=0.5)
    zero = [np.zeros(8), np.zeros(8)]
    probs = np.full((120, 1000), 1e-3)
    blind = gap_from_arrays(arrays(xs, zero, probs), arrays(xt, zero, probs), ys, ["a", "b"],
                            GROUPS)
    names = ["a", "b", "z"]  # a class the source lacks is not counted
    labels = [names[c] if i % 10 else "z" for i, c in enumerate(yt)]
    seen = gap_from_arrays(arrays(xs, zero, probs), arrays(xt, zero, probs), ys, ["a", "b"],
                           GROUPS, eval_labels=labels)
    assert seen.model_dump(exclude={"evaluation"}) == blind.model_dump(exclude={"evaluation"})
    assert seen.evaluation.n_images == 108 and seen.evaluation.classes == ["a", "b"]
    assert seen.evaluation.source_only_linear_accuracy > 0.9
    assert seen.evaluation.adabn_linear_accuracy is None  # AdaBN not measured here
    adapted = (xs[1::2] - xs[1::2].mean(axis=0), xt[1::2] - xt[1::2].mean(axis=0))
    both = gap_from_arrays(arrays(xs, zero, probs), arrays(xt, zero, probs), ys, ["a", "b"],
                           GROUPS, eval_labels=labels, adapted=adapted)
    assert both.evaluation.adabn_linear_accuracy > 0.9
    assert both.model_dump(exclude={"evaluation"}) == blind.model_dump(exclude={"evaluation"})
    assert blind.source_entropy == pytest.approx(1.0, abs=1e-6)


# ------------------------------------------------------------------ end to end, tiny backbone
def _shifted_folder(root, n: int, seed: int):
    root.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        img = pattern(32, seed + i).astype(float) * 0.3 + 150 + rng.normal(0, 40, (32, 32, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(root / f"{i:03d}.png")
    return root


def test_measured_on_images_with_the_cache(tmp_path):
    pytest.importorskip("keras")
    from autotransfer.data.profile import profile_dataset
    from autotransfer.data.target import read_target
    from autotransfer.probes.cache import FeatureCache
    from autotransfer.probes.domain_gap import measure_domain_gap

    profile = profile_dataset(make_class_folders(tmp_path / "src", {"a": 20, "b": 20}), workers=1)
    same = read_target(make_class_folders(tmp_path / "same", {"a": 20, "b": 20}, seed=1000),
                       profile, workers=1)
    far = read_target(_shifted_folder(tmp_path / "far", 40, 2000), profile, workers=1)
    cache = FeatureCache(tmp_path / "cache")
    kwargs = dict(per_class=20, total=100, weights=None, cache=cache)
    near_gap = measure_domain_gap(profile, same, "test_tiny", **kwargs)
    far_gap = measure_domain_gap(profile, far, "test_tiny", **kwargs)
    assert near_gap.n_source == 40 and near_gap.n_target == 40 and not near_gap.cached
    assert near_gap.a_distance < 0.5 < far_gap.a_distance
    assert far_gap.bn_overall > 10 * near_gap.bn_overall
    assert near_gap.evaluation is not None and far_gap.evaluation is None  # class folders
    again = measure_domain_gap(profile, far, "test_tiny", **kwargs)
    assert again.cached and again.model_dump(exclude={"cached", "seconds"}) == far_gap.model_dump(
        exclude={"cached", "seconds"})


def test_held_out_adabn_extracts_the_odd_images_with_the_even_images_statistics():
    keras = pytest.importorskip("keras")
    from autotransfer.backbones.catalog import get_backbone
    from autotransfer.probes.adabn_check import adapted_features
    from autotransfer.probes.domain_gap import held_out_adabn
    from autotransfer.probes.extract import plan_extraction

    plan = plan_extraction(get_backbone("test_tiny"), weights=None)
    images = np.random.default_rng(0).integers(0, 256, size=(12, 32, 32, 3), dtype=np.uint8)
    images[::2] //= 4  # the even half darker: its statistics differ from the odd half's
    keras.utils.set_random_seed(0)
    held_out = held_out_adabn(plan, images, batch_size=4)
    keras.utils.set_random_seed(0)
    own = adapted_features(plan, images[1::2], batch_size=4)  # statistics of the odd ones
    assert held_out.shape == own.shape == (6, 32) and np.isfinite(held_out).all()
    assert not np.allclose(held_out, own, atol=1e-4)  # other statistics than the images' own
