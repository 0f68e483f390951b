"""probe_dataset end to end: one forward pass, exact BN statistics, cache reuse and repair."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import shared_dataset
from tests.data.builders import make_class_folders

keras = pytest.importorskip("keras")

from autotransfer.backbones.catalog import get_backbone  # noqa: E402
from autotransfer.probes.cache import FeatureCache  # noqa: E402
from autotransfer.probes.extract import _probe_model, extract, plan_extraction  # noqa: E402
from autotransfer.probes.probe import probe_dataset  # noqa: E402


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_class_folders(tmp_path_factory.mktemp("ds"), {"a": 8, "b": 8, "c": 8}, size=32)


def test_extracted_bn_statistics_equal_the_activations_measured_directly():
    plan = plan_extraction(get_backbone("test_tiny"), weights=None)
    images = np.random.default_rng(0).integers(0, 256, size=(10, 32, 32, 3), dtype=np.uint8)
    keras.utils.set_random_seed(0)
    arrays = extract(plan, images, batch_size=4)
    keras.utils.set_random_seed(0)
    model, bn_layers, _ = _probe_model(plan)
    assert arrays["features"].shape == (10, 32)
    assert list(arrays["bn_names"]) == [l.name for l in bn_layers] and len(bn_layers) >= 5
    probe_inputs = keras.Model(model.inputs, [l.input for l in bn_layers])
    activations = probe_inputs.predict(images, verbose=0)
    for i, act in enumerate(activations):
        act = np.asarray(act, dtype=np.float64).reshape(-1, act.shape[-1])
        np.testing.assert_allclose(arrays[f"bn_mean_{i}"], act.mean(axis=0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(arrays[f"bn_sq_{i}"], (act**2).mean(axis=0), rtol=1e-4, atol=1e-5)
    assert set(arrays["bn_groups"]) <= set(get_backbone("test_tiny").group_names)


def test_bn_statistics_come_from_the_evenly_spread_subset_and_features_from_every_image():
    from autotransfer.probes.extract import stats_subset

    plan = plan_extraction(get_backbone("test_tiny"), weights=None)
    images = np.random.default_rng(1).integers(0, 256, size=(10, 32, 32, 3), dtype=np.uint8)
    subset = stats_subset(10, 4)
    assert list(subset) == [0, 3, 6, 9] and list(stats_subset(3, 4)) == [0, 1, 2]
    keras.utils.set_random_seed(0)
    split = extract(plan, images, batch_size=4, bn_images=4)
    keras.utils.set_random_seed(0)
    whole = extract(plan, images, batch_size=4, bn_images=10)  # every image through one model
    keras.utils.set_random_seed(0)
    alone = extract(plan, images[subset], batch_size=4, bn_images=10)
    assert int(split["bn_images"]) == 4 and int(whole["bn_images"]) == 10
    np.testing.assert_allclose(split["features"], whole["features"], rtol=1e-5, atol=1e-6)
    for i in range(len(split["bn_names"])):
        for name in (f"bn_mean_{i}", f"bn_sq_{i}"):
            np.testing.assert_allclose(split[name], alone[name], rtol=1e-5, atol=1e-7)
    # the subset's statistics are not the whole sample's (so the rule is really applied)
    assert any(not np.allclose(split[f"bn_mean_{i}"], whole[f"bn_mean_{i}"], rtol=1e-3)
               for i in range(len(split["bn_names"])))


def test_the_orientation_views_from_the_probe_model_equal_those_of_their_own_model():
    from autotransfer.probes.extract import extract_views, extract_with_views

    plan = plan_extraction(get_backbone("test_tiny"), weights=None)
    images = np.random.default_rng(2).integers(0, 256, size=(9, 32, 32, 3), dtype=np.uint8)
    keras.utils.set_random_seed(0)
    arrays, views = extract_with_views(plan, lambda: images, [1, 4, 8], batch_size=4)
    keras.utils.set_random_seed(0)
    alone = extract_views(plan, images[[1, 4, 8]], batch_size=4)
    keras.utils.set_random_seed(0)
    assert extract_with_views(plan, images, None)[1] is None
    np.testing.assert_array_equal(views["view"], alone["view"])
    np.testing.assert_array_equal(views["source"], alone["source"])
    np.testing.assert_allclose(views["features"], alone["features"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(views["features"][views["view"] == 0],
                                  arrays["features"][[1, 4, 8]])  # the extraction's own


def test_probe_report_cache_hit_and_corrupt_entry_rebuilt(dataset, tmp_path):
    cache = FeatureCache(tmp_path / "cache")
    first = probe_dataset(dataset, ["test_tiny"], weights=None, per_class=6, cache=cache)
    probe = first.get("test_tiny")
    assert first.n_samples == 18 and first.sample_per_class == {"a": 6, "b": 6, "c": 6}
    assert probe.feature_dim == 32 and not probe.cached and probe.imagenet is None
    assert not probe.bn_shift.applicable and "folded" in probe.bn_shift.reason  # fresh BN: 0 / 1
    assert 0.0 <= probe.transferability.knn_accuracy <= 1.0

    second = probe_dataset(dataset, ["test_tiny"], weights=None, per_class=6, cache=cache)
    assert second.get("test_tiny").cached and second.get("test_tiny").extract_s == 0
    assert second.get("test_tiny").transferability == probe.transferability

    entries = list((tmp_path / "cache").iterdir())
    assert len(entries) == 4  # features, rotated/mirrored views, and the figures of each
    for entry in entries:
        entry.write_bytes(entry.read_bytes()[:100])
    third = probe_dataset(dataset, ["test_tiny"], weights=None, per_class=6, cache=cache)
    assert not third.get("test_tiny").cached
    assert third.get("test_tiny").transferability == probe.transferability
    assert third.orientation == first.orientation


def test_a_warm_probe_loads_no_tensorflow_and_computes_nothing(dataset, tmp_path):
    import json
    import subprocess
    import sys

    cache = FeatureCache(tmp_path / "cache")
    cold = probe_dataset(dataset, ["test_tiny"], weights=None, per_class=6, cache=cache)
    script = (
        "import json, sys\n"
        "from autotransfer.probes.cache import FeatureCache\n"
        "from autotransfer.probes.probe import probe_dataset\n"
        f"r = probe_dataset({str(dataset)!r}, ['test_tiny'], weights=None, per_class=6, "
        f"cache=FeatureCache({str(tmp_path / 'cache')!r}))\n"
        "heavy = sorted(m for m in ('tensorflow', 'keras', 'sklearn') if m in sys.modules)\n"
        "print(json.dumps({'heavy': heavy, 'report': r.model_dump(mode='json')}))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=True)
    warm = json.loads(done.stdout.strip().splitlines()[-1])
    assert warm["heavy"] == []
    probe = warm["report"]["probes"][0]
    assert probe["cached"] and probe["extract_s"] == 0
    assert probe["transferability"] == cold.get("test_tiny").model_dump(mode="json")[
        "transferability"]
    assert warm["report"]["orientation"] == cold.model_dump(mode="json")["orientation"]


def test_the_cached_figures_follow_the_labels_and_the_library_versions(dataset, tmp_path,
                                                                      monkeypatch):
    import shutil

    import autotransfer.probes.cache as cache_module
    import autotransfer.probes.probe as probe_module

    calls = []
    measure = probe_module.measure_transferability
    monkeypatch.setattr(probe_module, "measure_transferability",
                        lambda *a, **k: calls.append(1) or measure(*a, **k))
    cache = FeatureCache(tmp_path / "cache")
    args = dict(weights=None, per_class=6, cache=cache, measure_orientation_with="none")
    probe_dataset(dataset, ["test_tiny"], **args)
    probe_dataset(dataset, ["test_tiny"], **args)
    assert len(calls) == 1  # the figures were cached with the features
    relabelled = tmp_path / "relabelled"  # the same files under other class names
    shutil.copytree(dataset, relabelled)
    (relabelled / "c").rename(relabelled / "d")  # same order, another name
    again = probe_dataset(relabelled, ["test_tiny"], **args).get("test_tiny")
    assert len(calls) == 2 and again.cached  # same images: features reused, figures measured
    monkeypatch.setattr(cache_module, "library_versions", lambda *names: "keras==99")
    upgraded = probe_dataset(dataset, ["test_tiny"], **args).get("test_tiny")
    assert len(calls) == 3 and not upgraded.cached  # another library version: extracted again


def test_unknown_backbone_is_a_clear_error(dataset):
    from autotransfer.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="Did you mean 'mobilenet_v2'"):
        probe_dataset(dataset, ["mobilenet_v22"], cache=False)


@pytest.mark.shared
@pytest.mark.slow
def test_near_imagenet_data_shows_lower_shift_and_entropy_than_far_data(shared_weights,
                                                                       real_feature_cache):
    # the sample and the cache of tests/advisor/test_advise_shared.py: whichever runs first
    # extracts the features (and the AdaBN pass of the far datasets), the other reuses them
    cache = real_feature_cache
    args = dict(per_class=32, cache=cache, adabn_for=["mobilenet_v2"],
                measure_orientation_with="none")
    reports = {
        name: probe_dataset(shared_dataset(name), ["mobilenet_v2"], **args).get("mobilenet_v2")
        for name in ("hymenoptera", "eurosat_rgb_3k", "chest_xray_224")
    }
    near = reports["hymenoptera"]
    assert near.bn_shift.applicable and near.imagenet is not None
    for far in (reports["eurosat_rgb_3k"], reports["chest_xray_224"]):
        assert far.bn_shift.overall > 5 * near.bn_shift.overall
        assert far.imagenet.normalized_entropy > near.imagenet.normalized_entropy + 0.15
    # AdaBN was measured where asked, and a second probe reads it from the cache
    assert all(r.adabn is not None and r.adabn.n_samples == r.n_samples for r in reports.values())
    again = probe_dataset(shared_dataset("eurosat_rgb_3k"), ["mobilenet_v2"],
                          **args).get("mobilenet_v2")
    assert again.adabn.seconds == 0 and again.adabn == reports["eurosat_rgb_3k"].adabn.model_copy(
        update={"seconds": 0.0})
    # what ImageNet sees in hymenoptera: ants and bees
    concepts = near.imagenet.top_concepts
    assert concepts["ants"][0][0].startswith("ant") and concepts["bees"][0][0] == "bee"
