"""Advisor(target=...): the gap is measured for the chosen backbone and decides the adaptation."""

from __future__ import annotations

import json

import pytest

from tests.data.builders import make_class_folders


def test_advise_with_a_target_measures_the_gap_and_records_the_decision(tmp_path):
    pytest.importorskip("keras")
    from autotransfer import advise
    from autotransfer.probes.cache import FeatureCache

    source = make_class_folders(tmp_path / "source", {"a": 12, "b": 12})
    target = make_class_folders(tmp_path / "target", {"a": 12, "b": 12}, seed=500)
    advice = advise(source, backbones=["test_tiny"], weights=None, per_class=12,
                    target=target, cache=FeatureCache(tmp_path / "cache"), verbose=0,
                    precision="float32")
    gap = advice.probes.domain_gap
    assert gap is not None and gap.backbone == "test_tiny" and gap.n_target_images == 24
    assert gap.evaluation is not None  # the target's class folders: evaluation only
    assert advice.facts["target_known"] and advice.facts["gap_a"] == gap.a_distance
    fired = [f.rule for f in advice.firings if f.rule in ("DA04", "DA05", "DA06", "DA07", "DA08")]
    assert len(fired) == 1  # exactly one target rule decides
    method = advice.recipe.domain_adaptation.method
    if fired == ["DA04"]:
        assert method == "none"
    else:
        assert advice.recipe.reasons["domain_adaptation.method"].rule == fired[0]
    data = json.loads(json.dumps(advice.to_dict()))
    assert data["probes"]["domain_gap"]["a_distance"] == gap.a_distance
