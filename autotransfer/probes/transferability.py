"""Cheap estimates of how well frozen features separate the classes.

Cross-validated k-NN and logistic-regression ("linear probe") accuracy with scikit-learn, LogME,
and a class-separability ratio. All take pooled features (N × D) and integer labels. The scores
the literature compares with LogME are here too, for the backbone-ranking study
(tools/bench_advice.py): H-score (Bao et al., ICIP 2019) and its shrinkage form (Ibrahim et al.,
ICLR 2023), GBC (Pándy et al., CVPR 2022), SFDA (Shao et al., ECCV 2022), and, from the ImageNet
classifier's probabilities, NCE (Tran et al., ICCV 2019) and LEEP (Nguyen et al., ICML 2020).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg import eigh, solve
from pydantic import BaseModel, ConfigDict, Field

from autotransfer.probes.blas import one_blas_thread
from autotransfer.probes.logme import logme


class Transferability(BaseModel):
    """Transferability figures of one backbone on one dataset sample."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    logme: float = Field(description="LogME evidence per sample (You et al., ICML 2021); higher is better.")
    knn_accuracy: float = Field(description="Cross-validated k-NN accuracy (cosine, k=5).")
    linear_probe_accuracy: float = Field(description="Cross-validated logistic-regression accuracy.")
    separability: float = Field(
        description="Between-class over within-class scatter of standardised features (Fisher)."
    )
    folds: int
    n_samples: int
    feature_dim: int


def _folds(labels: np.ndarray, wanted: int) -> int:
    smallest = int(np.bincount(labels).min())
    return max(2, min(wanted, smallest))


def knn_accuracy(features: np.ndarray, labels: np.ndarray, *, k: int = 5, folds: int = 5,
                 seed: int = 0) -> float:
    """Stratified cross-validated accuracy of a cosine k-NN classifier."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    n_folds = _folds(labels, folds)
    neighbours = max(1, min(k, int(len(labels) * (n_folds - 1) / n_folds) - 1))
    clf = KNeighborsClassifier(n_neighbors=neighbours, metric="cosine")
    cv = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    with one_blas_thread():
        return float(cross_val_score(clf, features, labels, cv=cv).mean())


def linear_probe_accuracy(features: np.ndarray, labels: np.ndarray, *, folds: int = 5,
                          seed: int = 0, c: float = 1.0) -> float:
    """Stratified cross-validated accuracy of L2 logistic regression on standardised features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    # tol 1e-3: the accuracy is stable to the third decimal and the fit is 5× faster than at 1e-4
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000, tol=1e-3))
    cv = StratifiedKFold(n_splits=_folds(labels, folds), shuffle=True, random_state=seed)
    with one_blas_thread():
        return float(cross_val_score(clf, features, labels, cv=cv).mean())


def separability(features: np.ndarray, labels: np.ndarray) -> float:
    """Fisher's ratio trace(S_between) / trace(S_within) on standardised features."""
    x = np.asarray(features, dtype=np.float64)
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-8)
    between = within = 0.0
    for cls in np.unique(labels):
        members = x[labels == cls]
        centre = members.mean(axis=0)
        between += len(members) * float(centre @ centre)
        within += float(((members - centre) ** 2).sum())
    return between / max(within, 1e-12)


def _centred_class_means(features: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centred features and, per row, the centred mean of its class (E[f | y])."""
    f = np.asarray(features, dtype=np.float64)
    f = f - f.mean(axis=0)
    _, y = np.unique(labels, return_inverse=True)
    means = np.stack([f[y == k].mean(axis=0) for k in range(int(y.max()) + 1)])
    return f, means[y]


def h_score(features: np.ndarray, labels: np.ndarray) -> float:
    """H-score (Bao et al., ICIP 2019): ``tr(cov(f)⁺ cov(E[f | y]))``, the share of the features'
    variance that the class explains, summed over directions (higher is better). The
    pseudo-inverse makes it defined when there are fewer images than feature dimensions."""
    f, g = _centred_class_means(features, labels)
    n = len(f)
    cov_f = f.T @ f / n
    cov_g = g.T @ g / n
    return float(np.trace(np.linalg.pinv(cov_f, hermitian=True) @ cov_g))


def shrinkage_h_score(features: np.ndarray, labels: np.ndarray) -> float:
    """H-score with the features' covariance shrunk by Ledoit-Wolf (Ibrahim, Ponomareva and
    Mazumder, ICLR 2023): ``tr(((1-a) cov(f) + a·mu·I)⁻¹ (1-a) cov(E[f | y]))``, stable when the
    sample is small against the feature dimension."""
    from sklearn.covariance import ledoit_wolf

    f, g = _centred_class_means(features, labels)
    shrunk, a = ledoit_wolf(f, assume_centered=True)
    cov_g = (1.0 - a) * (g.T @ g / len(f))
    return float(np.trace(np.linalg.solve(shrunk, cov_g)))


def gbc(features: np.ndarray, labels: np.ndarray, *, dims: int = 64) -> float:
    """Gaussian Bhattacharyya coefficient (Pándy et al., CVPR 2022): each class a Gaussian with
    diagonal covariance in the first ``dims`` principal components; minus the sum over class pairs
    of their Bhattacharyya coefficient (0 is best: no overlap)."""
    f = np.asarray(features, dtype=np.float64)
    f = f - f.mean(axis=0)
    k = min(dims, f.shape[1], len(f) - 1)
    _, _, vt = np.linalg.svd(f, full_matrices=False)
    z = f @ vt[:k].T
    _, y = np.unique(labels, return_inverse=True)
    stats = [(z[y == c].mean(axis=0), z[y == c].var(axis=0) + 1e-6) for c in np.unique(y)]
    total = 0.0
    for i, (mi, vi) in enumerate(stats):
        for mj, vj in stats[i + 1:]:
            v = (vi + vj) / 2
            distance = (np.sum((mi - mj) ** 2 / v) / 8
                        + 0.5 * np.sum(np.log(v) - 0.5 * (np.log(vi) + np.log(vj))))
            total += 2 * float(np.exp(-distance))  # the pair (i, j) and (j, i)
    return -total


def _shrunk(cov: np.ndarray, shrinkage: float, floor: float = 0.0) -> np.ndarray:
    """``(1 - a)·cov + a·max(mean(diag), floor)·I`` (``floor`` > 0 keeps it invertible when
    ``cov`` is zero: one image per class, or constant features)."""
    out = (1.0 - shrinkage) * cov
    out.flat[:: cov.shape[0] + 1] += shrinkage * max(np.trace(cov) / cov.shape[0], floor)
    return out


def _fisher_posteriors(x: np.ndarray, y: np.ndarray, shrinkage: float | str | None
                       ) -> tuple[np.ndarray, float]:
    """Class posteriors of SFDA's regularised Fisher discriminant on ``x`` itself, and the
    shrinkage used. Projecting on *every* generalised eigenvector ``V`` of (S_between,
    S_within) with ``VᵀS_wV = I`` gives ``VVᵀ = S_w⁻¹``, so the scores are those of shrinkage LDA:
    ``x·S_w⁻¹μ_c − μ_cᵀS_w⁻¹μ_c / 2 + log π_c``, computed here by one solve."""
    classes = int(y.max()) + 1
    priors = np.bincount(y, minlength=classes) / len(y)
    means = np.stack([x[y == c].mean(axis=0) for c in range(classes)])
    within = sum(priors[c] * np.atleast_2d(np.cov(x[y == c].T, bias=True))
                 for c in range(classes))
    if shrinkage is None:  # SFDA's adaptive strength: exp(−5 · largest eigenvalue of S_within)
        top = float(eigh(within, eigvals_only=True, subset_by_index=[len(within) - 1] * 2)[0])
        shrinkage = max(math.exp(-5.0 * top), 1e-10)
    elif shrinkage == "ledoit_wolf":  # of the pooled within-class deviations
        from sklearn.covariance import ledoit_wolf_shrinkage

        shrinkage = float(ledoit_wolf_shrinkage(x - means[y], assume_centered=True))
    # no within-class scatter at all (one image per class, constant features): the shrinkage
    # target alone, at a scale far below the features' own, so the solve stays defined
    floor = 1e-12 * (float(np.mean(x * x)) or 1.0)
    if not np.trace(within) > 0.0:
        shrinkage = 1.0
    coef = solve(_shrunk(within, shrinkage, floor), means.T, assume_a="sym").T  # C × D
    logits = x @ coef.T - 0.5 * np.sum(means * coef, axis=1) + np.log(priors)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True), shrinkage


def sfda(features: np.ndarray, labels: np.ndarray, *,
         shrinkage: str | None = None) -> float:
    """SFDA (Shao et al., "Not All Models Are Equal: Predicting Model Transferability in a
    Self-challenging Fisher Space", ECCV 2022): the mean posterior of the true class under a
    regularised Fisher discriminant (shrinkage ``exp(−5 λ_max(S_within))``), after a
    *self-challenge*: every image is pulled towards the mean of the other classes' means in
    proportion to how unsure a first discriminant is of it (its softened posterior ``p_y``:
    ``x ← p_y·x + (1 − p_y)·μ_¬y``), and the discriminant is fitted again with the same shrinkage.
    In [0, 1]; higher is better. As in the authors' code, the posterior is softened by a
    softmax of the probabilities and the score is the mean probability, not its log.

    ``shrinkage="ledoit_wolf"`` replaces the published strength by Ledoit and Wolf's (2004) for
    the within-class covariance: with fewer images than feature dimensions (a probe's sample)
    ``exp(−5 λ_max)`` is ~0 for features of unit scale, the discriminant separates the sample
    perfectly and the published score saturates at 1 for every backbone."""
    x = np.asarray(features, dtype=np.float64).copy()
    _, y = np.unique(labels, return_inverse=True)
    classes = int(y.max()) + 1
    if classes < 2:
        raise ValueError("SFDA needs at least two classes")
    p, strength = _fisher_posteriors(x, y, shrinkage)
    soft = np.exp(p) / np.exp(p).sum(axis=1, keepdims=True)
    means = np.stack([x[y == c].mean(axis=0) for c in range(classes)])
    others = (means.sum(axis=0) - means) / (classes - 1)  # mean of the other classes' means
    confidence = soft[np.arange(len(y)), y][:, None]
    x = confidence * x + (1.0 - confidence) * others[y]
    p, _ = _fisher_posteriors(x, y, strength)
    return float(p[np.arange(len(y)), y].mean())


def _joint(source_probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Empirical joint P(y, z) of target labels and (soft) source classes."""
    p = np.asarray(source_probs, dtype=np.float64)
    _, y = np.unique(labels, return_inverse=True)
    onehot = np.eye(int(y.max()) + 1)[y]
    return onehot.T @ p / len(y)


def leep(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """LEEP (Nguyen et al., ICML 2020): mean log-likelihood of the labels under the empirical
    predictor ``P(y | x) = sum_z P(y | z) θ(x)_z`` from the source classifier's probabilities
    ``θ`` (N × Z). At most 0; higher is better."""
    p = np.asarray(source_probs, dtype=np.float64)
    _, y = np.unique(labels, return_inverse=True)
    joint = _joint(p, y)
    conditional = joint / np.maximum(joint.sum(axis=0, keepdims=True), 1e-300)  # P(y | z)
    predicted = p @ conditional.T  # N × Y
    return float(np.mean(np.log(np.maximum(predicted[np.arange(len(y)), y], 1e-300))))


def nce(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """Negative conditional entropy −H(Y | Z) (Tran, Nguyen and Hassner, ICCV 2019) of the target
    labels given the source classifier's top-1 class Z. At most 0; higher is better."""
    p = np.asarray(source_probs)
    _, y = np.unique(labels, return_inverse=True)
    z = np.unique(np.argmax(p, axis=1), return_inverse=True)[1]
    joint = np.zeros((int(y.max()) + 1, int(z.max()) + 1))
    np.add.at(joint, (y, z), 1.0)
    joint /= len(y)
    p_z = joint.sum(axis=0, keepdims=True)
    nz = joint > 0
    return float(np.sum(joint[nz] * np.log((joint / p_z)[nz])))


def measure_transferability(features: np.ndarray, labels: np.ndarray, *, folds: int = 5,
                            seed: int = 0) -> Transferability:
    """All transferability figures for one feature matrix."""
    f = np.asarray(features, dtype=np.float32)
    y = np.unique(np.asarray(labels), return_inverse=True)[1]
    if len(np.unique(y)) < 2:
        raise ValueError("transferability needs at least two classes in the sample")
    return Transferability(
        logme=logme(f, y).score,
        knn_accuracy=knn_accuracy(f, y, folds=folds, seed=seed),
        linear_probe_accuracy=linear_probe_accuracy(f, y, folds=folds, seed=seed),
        separability=separability(f, y),
        folds=_folds(y, folds),
        n_samples=int(len(y)),
        feature_dim=int(f.shape[1]),
    )
