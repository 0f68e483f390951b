"""Unsupervised validation criteria: what they prefer, and that they need no target label."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from autotransfer.train.adaptation.selection import (CRITERIA, CandidateOutputs, density_ratios,
                                                     dev_risk, score, scores, select, snd_score)


def _clustered(n: int = 60, k: int = 3, noise: float = 0.02, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    p = np.eye(k)[np.arange(n) % k] + rng.uniform(0, noise, (n, k))
    return p / p.sum(axis=1, keepdims=True)


def _diffuse(n: int = 60, k: int = 3, seed: int = 0) -> np.ndarray:
    p = np.random.default_rng(seed).dirichlet(np.ones(k) * 5, n)
    return p


def _candidate(name: str, target_probs: np.ndarray, val_good: bool = True,
               seed: int = 0) -> CandidateOutputs:
    rng = np.random.default_rng(seed)
    labels = np.arange(30) % 3
    probs = np.full((30, 3), 0.1)
    probs[np.arange(30), labels if val_good else (labels + 1) % 3] = 0.8
    return CandidateOutputs(name, probs, labels, rng.normal(size=(30, 4)), target_probs,
                            rng.normal(size=(len(target_probs), 4)) + 0.5)


def test_snd_prefers_tight_clusters_and_is_fooled_by_collapse():
    assert snd_score(_clustered(noise=0.02)) > snd_score(_clustered(noise=1.0))
    # SND measures how many close neighbours a prediction has: fewer, bigger clusters score
    # higher, and every image predicted as one class scores highest of all — its blind spot
    # (measured in docs/benchmarks/adapt.md: it picks collapsed entropy minimisation)
    assert snd_score(_clustered(k=2)) > snd_score(_clustered(k=3))
    collapsed = np.tile([0.98, 0.01, 0.01], (60, 1))
    assert snd_score(collapsed) > snd_score(_clustered(k=2))


def test_snd_does_not_depend_on_the_order_of_target_images():
    p = _clustered()
    perm = np.random.default_rng(1).permutation(len(p))
    assert snd_score(p) == pytest.approx(snd_score(p[perm]), rel=1e-9)


def test_density_ratios_weigh_target_like_source_images_up():
    rng = np.random.default_rng(0)
    source = np.concatenate([rng.normal(0, 1, (100, 2)), rng.normal(4, 1, (100, 2))])
    target = rng.normal(4, 1, (200, 2))
    w = density_ratios(source, target)
    assert w[100:].mean() > 5 * w[:100].mean()


def test_dev_prefers_the_candidate_with_lower_source_loss():
    good = _candidate("good", _clustered())
    bad = _candidate("bad", _clustered(), val_good=False)
    assert dev_risk(good) < dev_risk(bad)
    assert select([bad, good], "dev")[0] == 1
    assert select([bad, good], "source")[0] == 1


def test_every_criterion_scores_and_the_shared_ratios_agree_with_the_single_scores():
    c = _candidate("c", _diffuse())
    all_scores = scores(c)
    assert set(all_scores) == set(CRITERIA)
    for criterion in CRITERIA:
        assert all_scores[criterion] == pytest.approx(score(c, criterion))
    with pytest.raises(ValueError, match="unknown criterion"):
        score(c, "oracle")


def test_candidates_carry_no_target_labels():
    # the selection cannot read target labels: its input has no field for them
    fields = {f.name for f in dataclasses.fields(CandidateOutputs)}
    assert not any(name.startswith("target") and "label" in name for name in fields)
