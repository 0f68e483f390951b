"""LogME: the log marginal evidence of a linear model on frozen features.

You, Liu, Wang and Long, "LogME: Practical Assessment of Pre-trained Models for Transfer
Learning", ICML 2021. For each class k the one-hot target ``y_k`` is modelled as ``F w + ε`` with
prior ``w ~ N(0, α⁻¹ I)`` and noise ``ε ~ N(0, β⁻¹ I)``; the evidence

    log p(y | F, α, β) = D/2 log α + N/2 log β − N/2 log 2π
                         − β/2 ‖F m − y‖² − α/2 ‖m‖² − 1/2 log |A|,
    A = α I + β FᵀF,   m = β A⁻¹ Fᵀ y,

is maximised over (α, β) by MacKay's fixed point  γ = Σ βσᵢ/(α + βσᵢ),  α = γ/‖m‖²,
β = (N − γ)/‖F m − y‖².  Everything is computed in the basis of F's singular vectors (from one
eigendecomposition of the smaller Gram matrix), so one decomposition serves all classes and the
iteration is vectorised over them. The score is the
evidence per sample, averaged over classes (higher is better).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autotransfer.probes.blas import one_blas_thread

_EPS = 1e-12


@dataclass(frozen=True)
class LogMEResult:
    score: float  #: mean over classes of the maximised evidence divided by N
    per_class: np.ndarray  #: evidence / N per class
    alpha: np.ndarray  #: prior precision per class
    beta: np.ndarray  #: noise precision per class
    iterations: int


def logme(
    features: np.ndarray, labels: np.ndarray, *, max_iter: int = 100, tol: float = 1e-6
) -> LogMEResult:
    """LogME of ``features`` (N × D) for integer ``labels`` (N,)."""
    f = np.asarray(features, dtype=np.float64)
    y_int = np.asarray(labels)
    if f.ndim != 2 or y_int.shape != (f.shape[0],):
        raise ValueError(f"features must be (N, D) and labels (N,); got {f.shape} and {y_int.shape}")
    n, d = f.shape
    classes = np.unique(y_int)
    y = (y_int[:, None] == classes[None, :]).astype(np.float64)  # N × K one-hot
    with one_blas_thread():  # the value of a one-core machine on every machine (see .blas)
        sigma, z = _spectrum(f, y)
    s = np.sqrt(sigma)
    y_norm2 = (y**2).sum(axis=0)
    outside = np.maximum(y_norm2 - (z**2).sum(axis=0), 0.0)  # part of y no feature can explain

    k = y.shape[1]
    alpha = np.ones(k)
    beta = np.ones(k)
    iterations = 0
    for iterations in range(1, max_iter + 1):
        denom = alpha[None, :] + beta[None, :] * sigma[:, None]  # r × K
        coef = beta[None, :] * s[:, None] * z / denom  # m in the V basis
        m2 = (coef**2).sum(axis=0)
        residual = ((s[:, None] * coef - z) ** 2).sum(axis=0) + outside
        gamma = (beta[None, :] * sigma[:, None] / denom).sum(axis=0)
        new_alpha = gamma / (m2 + _EPS)
        new_beta = (n - gamma) / (residual + _EPS)
        converged = np.all(np.abs(new_alpha / alpha - 1) < tol) and np.all(
            np.abs(new_beta / beta - 1) < tol
        )
        alpha, beta = new_alpha, new_beta
        if converged:
            break
    evidence = _evidence(alpha, beta, s, z, outside, n, d)
    per_class = evidence / n
    return LogMEResult(float(per_class.mean()), per_class, alpha, beta, iterations)


def _spectrum(f: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues σ of FᵀF (the squared singular values of F) and the targets in F's left
    singular basis, from the eigendecomposition of the smaller Gram matrix (several times faster
    than an SVD). Directions with σ ≈ 0 are kept when N ≤ D (they hold part of y) and dropped
    when N > D (they are outside F's column space and y's part there is counted separately).
    """
    n, d = f.shape
    if n <= d:
        sigma, u = np.linalg.eigh(f @ f.T)
        return np.clip(sigma, 0.0, None), u.T @ y
    sigma, v = np.linalg.eigh(f.T @ f)
    keep = sigma > max(float(sigma.max()), _EPS) * 1e-12
    sigma, v = sigma[keep], v[:, keep]
    return sigma, (v.T @ (f.T @ y)) / np.sqrt(sigma)[:, None]


def _evidence(alpha, beta, s, z, outside, n, d) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Log evidence per class at (α, β), from the SVD quantities."""
    sigma = s**2
    denom = alpha[None, :] + beta[None, :] * sigma[:, None]
    coef = beta[None, :] * s[:, None] * z / denom
    m2 = (coef**2).sum(axis=0)
    residual = ((s[:, None] * coef - z) ** 2).sum(axis=0) + outside
    log_det_a = np.log(denom).sum(axis=0) + (d - len(s)) * np.log(alpha)
    return (
        d / 2 * np.log(alpha)
        + n / 2 * np.log(beta)
        - n / 2 * np.log(2 * np.pi)
        - beta / 2 * residual
        - alpha / 2 * m2
        - 0.5 * log_det_a
    )


def direct_log_evidence(features: np.ndarray, y: np.ndarray, alpha: float, beta: float) -> float:
    """The evidence of one target vector by the textbook formula with explicit matrices.

    O(D³): for testing :func:`logme` on small problems, not for use.
    """
    f = np.asarray(features, dtype=np.float64)
    n, d = f.shape
    a = alpha * np.eye(d) + beta * f.T @ f
    m = beta * np.linalg.solve(a, f.T @ y)
    _, logdet = np.linalg.slogdet(a)
    return float(
        d / 2 * np.log(alpha) + n / 2 * np.log(beta) - n / 2 * np.log(2 * np.pi)
        - beta / 2 * np.sum((f @ m - y) ** 2) - alpha / 2 * m @ m - 0.5 * logdet
    )  # fmt: skip
