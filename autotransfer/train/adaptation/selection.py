"""Choosing adaptation hyper-parameters without target labels (unsupervised validation).

Each candidate (a method and its ``weight``; ``weight`` 0 or method 'none' is source-only) is
trained, then scored from what needs no target label: its predictions and features on the
target images, and its losses on the labelled *source* validation split.

* ``snd`` — soft neighbourhood density (Saito et al. 2021): the target predictions are
  L2-normalised, each one's similarities to the others (temperature 0.05, itself excluded) are
  softmax-normalised, and the mean entropy of those distributions is the score: well-clustered
  (dense) target predictions score high. Higher is better.
* ``dev`` — deep embedded validation (You et al. 2019): the source validation loss weighted by
  the density ratio ``p(target|x) / p(source|x)`` from a domain classifier on the candidate's
  features (logistic regression, cross-fitted), with the control variate that lowers its
  variance. A risk: lower is better (the score is its negative).
* ``iwv`` — importance-weighted validation (Sugiyama et al. 2007): the same weighted loss without
  the control variate.
* ``entropy`` — mean entropy of the target predictions (a naive baseline; lower is better).
* ``source`` — source validation accuracy (ignores the target; the usual default).

Every score is "higher is better". Nothing here receives target labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CRITERIA = ("snd", "dev", "iwv", "entropy", "source")
SND_TEMPERATURE = 0.05
#: density ratios are clipped here (a handful of source images must not decide alone)
MAX_RATIO = 20.0


@dataclass(frozen=True)
class CandidateOutputs:
    """What a trained candidate produced, without any target label."""

    name: str
    source_val_probs: np.ndarray  # (n_val, classes)
    source_val_labels: np.ndarray  # (n_val,) int — source labels only
    source_val_features: np.ndarray  # (n_val, d)
    target_probs: np.ndarray  # (n_target, classes)
    target_features: np.ndarray  # (n_target, d)


def snd_score(target_probs: np.ndarray, temperature: float = SND_TEMPERATURE,
              max_points: int = 2000, seed: int = 0) -> float:
    """Soft neighbourhood density of the target predictions (higher: denser)."""
    p = np.asarray(target_probs, dtype=np.float64)
    if len(p) > max_points:
        p = p[np.random.default_rng(seed).choice(len(p), max_points, replace=False)]
    p = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)
    sim = p @ p.T / temperature
    np.fill_diagonal(sim, -np.inf)
    sim -= sim.max(axis=1, keepdims=True)
    e = np.exp(sim)
    q = e / e.sum(axis=1, keepdims=True)
    return float(np.mean(-np.sum(q * np.log(q + 1e-12), axis=1)))


def density_ratios(source: np.ndarray, target: np.ndarray, seed: int = 0) -> np.ndarray:
    """``p(target|x)/p(source|x) · n_s/n_t`` for each source row (2-fold cross-fitted)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from autotransfer.probes.blas import one_blas_thread

    x = np.concatenate([source, target]).astype(np.float64)
    d = np.concatenate([np.zeros(len(source)), np.ones(len(target))])
    p_target = np.zeros(len(x))
    folds = StratifiedKFold(n_splits=2, shuffle=True, random_state=seed)
    # one BLAS thread (autotransfer.probes.blas): on real probe features (300 source and 450
    # target rows × 1280) OpenBLAS' default two threads took 2.1-2.6 s against 0.09-0.12 s,
    # alternating at nice 10 beside development work (two runs, load 4-6), the ratios bitwise
    # identical
    with one_blas_thread():
        for fit, held in folds.split(x, d):
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=300))
            clf.fit(x[fit], d[fit])
            p_target[held] = clf.predict_proba(x[held])[:, 1]
    p = np.clip(p_target[: len(source)], 1e-6, 1 - 1e-6)
    ratio = p / (1 - p) * len(source) / len(target)
    return np.minimum(ratio, MAX_RATIO)


def _losses(c: CandidateOutputs) -> np.ndarray:
    probs = np.asarray(c.source_val_probs, dtype=np.float64)
    picked = probs[np.arange(len(probs)), np.asarray(c.source_val_labels, dtype=np.int64)]
    return -np.log(np.clip(picked, 1e-7, 1.0))


def dev_risk(c: CandidateOutputs, *, control_variate: bool = True, seed: int = 0,
             ratios: np.ndarray | None = None) -> float:
    """Deep embedded validation risk (``control_variate=False``: importance-weighted)."""
    w = density_ratios(c.source_val_features, c.target_features, seed) if ratios is None \
        else ratios
    weighted = w * _losses(c)
    if not control_variate:
        return float(np.mean(weighted))
    var = np.var(w, ddof=1)
    eta = 0.0 if var <= 0 else -np.cov(weighted, w, ddof=1)[0, 1] / var
    return float(np.mean(weighted) + eta * np.mean(w) - eta)


def score(c: CandidateOutputs, criterion: str, seed: int = 0) -> float:
    """The candidate's score under ``criterion`` (higher is better)."""
    if criterion == "snd":
        return snd_score(c.target_probs, seed=seed)
    if criterion == "dev":
        return -dev_risk(c, seed=seed)
    if criterion == "iwv":
        return -dev_risk(c, control_variate=False, seed=seed)
    if criterion == "entropy":
        p = np.asarray(c.target_probs, dtype=np.float64)
        return float(np.mean(np.sum(p * np.log(p + 1e-12), axis=1)))
    if criterion == "source":
        pred = np.argmax(c.source_val_probs, axis=1)
        return float(np.mean(pred == np.asarray(c.source_val_labels)))
    raise ValueError(f"unknown criterion '{criterion}' (known: {', '.join(CRITERIA)})")


def scores(c: CandidateOutputs, criteria: Sequence[str] = CRITERIA,
           seed: int = 0) -> dict[str, float]:
    """Every criterion's score of ``c`` (the density ratios computed once for DEV and IWV)."""
    out: dict[str, float] = {}
    ratios = None
    for criterion in criteria:
        if criterion in ("dev", "iwv"):
            if ratios is None:
                ratios = density_ratios(c.source_val_features, c.target_features, seed)
            out[criterion] = -dev_risk(c, control_variate=criterion == "dev", seed=seed,
                                       ratios=ratios)
        else:
            out[criterion] = score(c, criterion, seed)
    return out


def select(candidates: Sequence[CandidateOutputs], criterion: str = "snd",
           seed: int = 0) -> tuple[int, list[float]]:
    """Index of the best-scoring candidate and every candidate's score."""
    if not candidates:
        raise ValueError("no candidates to select from")
    scores = [score(c, criterion, seed) for c in candidates]
    return int(np.argmax(scores)), scores
