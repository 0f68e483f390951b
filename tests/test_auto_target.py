"""auto(target=...): the gap decides the adaptation, and the final training adapts to the target."""

from __future__ import annotations

import json


def test_auto_with_a_target_trains_the_advised_adaptation_with_it(tiny_target_auto_run):
    # the session's run (tests/conftest.py): 20 unlabelled target images in one folder, room for
    # a search; tests/oneshot/test_adapt.py checks the search's DA11 records on it
    result = tiny_target_auto_run
    advice = json.loads((result.out / "advice.json").read_text())
    method = advice["recipe"]["domain_adaptation"]["method"]
    assert advice["probes"]["domain_gap"]["n_target_images"] == 20
    metrics = json.loads((result.out / "model" / "metrics.json").read_text())
    assert metrics["target"]["n_images"] == 20
    if method not in ("none", "adabn"):  # the search's trials adapt, ranked by DA09's criterion
        assert result.tuning is not None and result.tuning.objective["rule"] == "DA11"
        final = metrics["domain_adaptation"]["method"]
        assert result.adaptation is not None and final == result.adaptation.method
        if final == method:
            assert metrics["target"]["used"]
        else:  # DA11: the exact linear head (no adaptation) scored at least as well as any trial
            scores = result.adaptation.scores
            assert final == "none" and scores["probe"] >= max(scores.values())
