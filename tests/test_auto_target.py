"""auto(target=...): the gap decides the adaptation, and the final training adapts to the target."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from tests.train.helpers import make_colour_dataset


def test_auto_with_a_target_trains_the_advised_adaptation_with_it(tmp_path, monkeypatch):
    pytest.importorskip("keras")
    from autotransfer import auto
    from autotransfer.oneshot import adapt

    # DA09's λ candidates are tests/oneshot/test_adapt.py's: λ = 0 alone keeps this one fast
    monkeypatch.setattr(adapt, "grid", lambda: ("dev", ()))

    source = make_colour_dataset(tmp_path / "src", {"r": 12, "g": 12})
    target = tmp_path / "tgt"
    target.mkdir()
    rng = np.random.default_rng(1)
    for i in range(20):  # the same colours, washed out and noisier: a shifted domain
        colour = np.array([(220, 40, 40), (40, 200, 60)][i % 2])
        pixels = colour * 0.5 + 100 + rng.normal(0, 60, (32, 32, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(target / f"{i}.png")
    result = auto(source, tmp_path / "out", time_budget=None, trials=2, backbones=["test_tiny"],
                  weights=None, precision="float32", target=target, verbose=0)
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
