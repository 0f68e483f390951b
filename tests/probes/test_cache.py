"""The feature cache returns what was stored, and never trusts a damaged entry."""

from __future__ import annotations

import numpy as np

from autotransfer.probes.cache import FeatureCache, feature_key, weights_identity


def test_round_trip_and_key_sensitivity(tmp_path):
    cache = FeatureCache(tmp_path)
    arrays = {"features": np.arange(12, dtype=np.float32).reshape(3, 4), "labels": np.array([0, 1, 1])}
    key = feature_key(["a", "b"], "mobilenet_v2", "w1", 224)
    assert cache.load(key) is None
    cache.save(key, arrays)
    loaded = cache.load(key)
    assert set(loaded) == {"features", "labels"}
    np.testing.assert_array_equal(loaded["features"], arrays["features"])
    others = {
        feature_key(["a", "c"], "mobilenet_v2", "w1", 224),
        feature_key(["b", "a"], "mobilenet_v2", "w1", 224),
        feature_key(["a", "b"], "mobilenet", "w1", 224),
        feature_key(["a", "b"], "mobilenet_v2", "w2", 224),
        feature_key(["a", "b"], "mobilenet_v2", "w1", 160),
    }
    assert key not in others and len(others) == 5


def test_corrupt_entries_are_deleted_and_reported_as_missing(tmp_path):
    cache = FeatureCache(tmp_path)
    arrays = {"features": np.ones((2, 2), dtype=np.float32)}
    for damage in (lambda b: b[: len(b) // 2], lambda b: b"garbage", lambda b: b.replace(
            np.ones(1, np.float32).tobytes(), np.zeros(1, np.float32).tobytes(), 1)):
        key = feature_key(["x"], "b", "w", 1)
        path = cache.save(key, arrays)
        path.write_bytes(damage(path.read_bytes()))
        assert cache.load(key) is None
        assert not path.exists()


def test_weights_identity_follows_content(tmp_path):
    first = tmp_path / "w1.h5"
    first.write_bytes(b"weights one")
    second = tmp_path / "w2.h5"
    second.write_bytes(b"weights two")
    assert weights_identity(first, "x") != weights_identity(second, "x")
    assert weights_identity(None, "download:url") == "download:url"


def test_keys_follow_the_library_versions_and_the_measuring_code(tmp_path, monkeypatch):
    import autotransfer.probes.cache as cache_module
    from autotransfer.probes.cache import code_digest, library_versions

    assert "keras==" in library_versions() and "numpy==" in library_versions()
    key = feature_key(["a"], "b", "w", 1)
    monkeypatch.setattr(cache_module, "library_versions", lambda *names: "keras==0.0.1")
    assert feature_key(["a"], "b", "w", 1) != key
    (tmp_path / "measuring_mod_x.py").write_text("A = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = code_digest("measuring_mod_x")
    (tmp_path / "measuring_mod_x.py").write_text("A = 2\n")
    assert code_digest("measuring_mod_x") != before


def test_json_records_round_trip_and_are_not_confused_with_arrays(tmp_path):
    cache = FeatureCache(tmp_path)
    cache.save_json("k", '{"a": 1}')
    assert cache.load_json("k") == '{"a": 1}'
    cache.save("arrays", {"features": np.ones(2)})
    assert cache.load_json("arrays") is None and cache.load_json("absent") is None


def test_a_record_with_a_non_finite_figure_is_not_cached():
    from autotransfer.probes.probe import _finite

    assert _finite({"a": 1.0, "b": [0.5, {"c": 2.0}], "d": None, "e": "x"})
    assert not _finite({"a": {"b": [1.0, float("nan")]}})
    assert not _finite((float("inf"),))
