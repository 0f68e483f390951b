"""Fit a linear head exactly: multinomial logistic regression on the frozen features.

A head-only phase whose head is one softmax layer solves a convex problem. Gradient descent for a
fixed number of epochs stops short of its optimum, or past it, and needs a learning rate, a
schedule and early stopping on the validation split to get near it. L-BFGS (scikit-learn's
``LogisticRegression``) solves it to convergence in seconds on the cached pooled features (the
cross-validation's folds in parallel threads, each with one BLAS thread), and
the one hyper-parameter left, the L2 strength, is chosen by stratified k-fold cross-validation
on the *training* images (every augmented view of an image in the same fold): the choice reads
every training image instead of the validation split alone, and the validation split stays an
honest measure. This is the linear-evaluation protocol of Kornblith et al. (CVPR 2019) and
Radford et al. (CLIP, 2021).

The coefficients go into the classifier's ``predictions`` layer (a two-class logistic regression
``sigmoid(z)`` becomes the softmax of ``(-z/2, z/2)``): the model stays the same Keras model, and a
later fine-tuning phase starts from this head (linear probing, then fine-tuning: Kumar et al.,
ICLR 2022).
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autotransfer.train.phases import CVPoint, SolverRecord

#: inverse L2 strengths (scikit-learn's ``C``) tried by the cross-validation, half a decade apart
C_GRID: tuple[float, ...] = tuple(float(10.0 ** e) for e in np.arange(-3.0, 2.01, 0.5))
#: folds of the cross-validation (fewer when the smallest class has fewer images)
DEFAULT_FOLDS = 5
MAX_ITER = 1000
TOL = 1e-4
#: the cross-validation's fits, which only rank the ``C`` values, run in float32: they read half
#: the bytes per L-BFGS iteration and choose the same ``C``; the fit that is kept runs in float64
CV_DTYPE = np.float32


@dataclass(frozen=True)
class LinearFit:
    """A fitted linear head and how its L2 strength was chosen."""

    kernel: np.ndarray = field(repr=False)  # features × classes
    bias: np.ndarray = field(repr=False)  # classes
    c: float
    chosen_by: str  # "cross-validation", "given" or "default (too few images per class)"
    folds: int
    cv: list[dict[str, float]]  # per C: mean fold accuracy and log loss
    n_images: int
    n_views: int
    train_accuracy: float
    train_loss: float
    seconds: float

    @property
    def cv_accuracy(self) -> float | None:
        row = next((r for r in self.cv if r["c"] == self.c), None)
        return None if row is None else row["accuracy"]

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        return softmax(np.asarray(features, np.float64) @ self.kernel + self.bias)

    def record(self) -> SolverRecord:
        """The fit without its coefficients: what a phase record keeps."""
        return SolverRecord(c=self.c, chosen_by=self.chosen_by, folds=self.folds,
                            cv=tuple(CVPoint(r["c"], r["accuracy"], r["log_loss"])
                                     for r in self.cv),
                            n_images=self.n_images, n_views=self.n_views,
                            train_accuracy=self.train_accuracy, train_loss=self.train_loss,
                            seconds=self.seconds)

    def to_dict(self) -> dict[str, Any]:
        return self.record().to_dict()


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class _Path:
    """Logistic regressions along a path of ``C`` values, each warm-started from the last.

    Features are centred and divided by one scale ``s`` (their root-mean-square over the rows
    fitted) for L-BFGS to converge in few iterations, and ``C`` is multiplied by ``s²``: the
    problem solved is exactly the L2-penalised one on the raw features, the usual linear probe
    (per-feature standardisation would change it, inflating the noisy low-variance features).
    The kernel and bias returned act on the raw features.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, w: np.ndarray | None,
                 n_classes: int, *, dtype: Any = np.float64) -> None:
        from sklearn.linear_model import LogisticRegression

        self.mean = x.mean(axis=0)
        scale = float(np.sqrt(((x - self.mean) ** 2).mean()))
        self.std = scale if scale > 1e-8 else 1.0
        self.x = ((x - self.mean) / self.std).astype(dtype, copy=False)
        self.y, self.w, self.n_classes = y, w, n_classes
        self.model = LogisticRegression(max_iter=MAX_ITER, tol=TOL, warm_start=True)

    def fit(self, c: float) -> tuple[np.ndarray, np.ndarray]:
        """Kernel (features × n_classes) and bias of the logistic regression with ``C = c``."""
        from sklearn.exceptions import ConvergenceWarning

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model.set_params(C=c * self.std**2)
            self.model.fit(self.x, self.y, sample_weight=self.w)
        coef = np.asarray(self.model.coef_, np.float64) / self.std
        intercept = np.asarray(self.model.intercept_, np.float64) - coef @ self.mean
        return _expand(coef, intercept, np.unique(self.y), self.x.shape[1], self.n_classes)


def _expand(coef: np.ndarray, intercept: np.ndarray, present: np.ndarray, n_features: int,
            n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    if len(present) == 2 and coef.shape[0] == 1:  # sigmoid(z) == softmax(-z/2, z/2)
        coef = np.stack([-coef[0] / 2, coef[0] / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    kernel = np.zeros((n_features, n_classes))
    # a class absent from this fit gets a logit far below the others
    bias = np.full(n_classes, -30.0)
    kernel[:, present] = coef.T
    bias[present] = intercept
    return kernel, bias


def _scores(y: np.ndarray, probs: np.ndarray) -> tuple[float, float]:
    accuracy = float((probs.argmax(axis=1) == y).mean())
    loss = float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)).mean())
    return accuracy, loss


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _one_blas_thread() -> Any:
    """BLAS and OpenMP limited to one thread (OpenMP's limit is per thread: enter it in each
    worker). L-BFGS's products here have one column per class, too thin for threads to pay:
    threads waiting for each other made the cross-validation 3× slower on a nearly idle machine
    and 10-30× on a loaded one (docs/benchmarks/linear_head.md); the folds run in parallel
    threads instead."""
    from autotransfer.probes.blas import one_blas_thread

    return one_blas_thread(user_api=None)


def fit_linear_head(views: Sequence[np.ndarray], labels: np.ndarray, n_classes: int, *,
                    sample_weight: np.ndarray | None = None, c: float | None = None,
                    folds: int = DEFAULT_FOLDS, seed: int = 0,
                    grid: Sequence[float] = C_GRID, workers: int | None = None) -> LinearFit:
    """Logistic regression of ``labels`` on the stacked ``views`` (each ``images × features``).

    ``c`` fixes the inverse L2 strength; ``None`` chooses it from ``grid`` by stratified k-fold
    cross-validation over images (the views of an image stay in one fold; scored on each held-out
    image's first view; the folds' fits are solved in float32, the returned one in float64).
    The lowest mean fold log loss wins; ties go to the higher accuracy, then to the stronger
    regularisation. Per-image ``sample_weight`` (class weighting) weights every view. The folds
    are solved by ``workers`` threads (by default one per core), each with one BLAS thread: the
    same fits as one after the other, up to float rounding.
    """
    from concurrent.futures import ThreadPoolExecutor

    from sklearn.model_selection import StratifiedKFold

    started = time.perf_counter()
    views = [np.asarray(v, np.float64) for v in views]
    y = np.asarray(labels, np.int64)
    n = len(y)
    if not views or any(v.shape[0] != n for v in views):
        raise ValueError(f"every view needs one row per image ({n}); got "
                         f"{[v.shape[0] for v in views]}")
    x = np.concatenate(views)
    yy = np.tile(y, len(views))
    ww = None if sample_weight is None else np.tile(np.asarray(sample_weight, np.float64),
                                                    len(views))
    counts = np.bincount(y, minlength=n_classes)
    smallest = int(counts[counts > 0].min()) if n else 0
    k = min(folds, smallest)
    cv: list[dict[str, float]] = []
    if c is not None:
        chosen, how = float(c), "given"
    elif k < 2 or len(np.unique(y)) < 2:
        chosen, how, k = 1.0, "default (too few images per class to cross-validate)", 0
    else:
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        grid = sorted(float(g) for g in grid)  # strong to weak: each fit warm-starts the next

        def fold(split: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
            train_idx, held_idx = split
            rows = np.concatenate([train_idx + v * n for v in range(len(views))])
            scores = np.zeros((len(grid), 2))
            with _one_blas_thread():
                path = _Path(x[rows], yy[rows], None if ww is None else ww[rows], n_classes,
                             dtype=CV_DTYPE)
                for i, value in enumerate(grid):
                    kernel, bias = path.fit(value)
                    scores[i] = _scores(y[held_idx],
                                        softmax(views[0][held_idx] @ kernel + bias))
            return scores

        with _one_blas_thread(), ThreadPoolExecutor(min(k, workers or _cores())) as pool:
            scores = np.stack(list(pool.map(fold, splitter.split(np.zeros(n), y))), axis=1)
        cv = [{"c": value, "accuracy": float(scores[i, :, 0].mean()),
               "log_loss": float(scores[i, :, 1].mean())} for i, value in enumerate(grid)]
        best = min(cv, key=lambda r: (round(r["log_loss"], 10), -r["accuracy"], r["c"]))
        chosen, how = best["c"], "cross-validation"
    with _one_blas_thread():
        kernel, bias = _Path(x, yy, ww, n_classes).fit(chosen)
    train_acc, train_loss = _scores(yy, softmax(x @ kernel + bias))
    return LinearFit(kernel=kernel, bias=bias, c=chosen, chosen_by=how, folds=k, cv=cv,
                     n_images=n, n_views=len(views), train_accuracy=train_acc,
                     train_loss=train_loss, seconds=time.perf_counter() - started)


def set_head_weights(model: Any, fit: LinearFit, layer: str = "predictions") -> None:
    """Write the fitted kernel and bias into the classifier's output layer."""
    dense = model.get_layer(layer)
    kernel, bias = dense.get_weights()
    if kernel.shape != fit.kernel.shape:
        raise ValueError(f"the layer '{layer}' has a kernel of shape {kernel.shape}; the fitted "
                         f"head has {fit.kernel.shape}")
    dense.set_weights([fit.kernel.astype(kernel.dtype), fit.bias.astype(bias.dtype)])


# ----------------------------------------------------------------------------- phases
def solver_views_augmentation(recipe: Any) -> Any:
    """The augmentation of the views the solver fits on: the recipe's, without MixUp/CutMix
    (they mix images, which cached features cannot reproduce; a later phase still mixes)."""
    return recipe.augmentation.model_copy(update={"mixup_alpha": 0.0, "cutmix_alpha": 0.0})


def solve_head_phase(model: Any, views: Sequence[np.ndarray], val_features: np.ndarray,
                     inputs: Any, recipe: Any) -> tuple[LinearFit, dict[str, float]]:
    """Fit the head of ``model`` on the cached ``views`` of the training images; the fit and the
    phase's one-'epoch' logs (``accuracy``, ``loss``, ``val_accuracy``, ``val_loss``).

    ``inputs`` is the run's :class:`~autotransfer.train.data.TrainingInputs` (labels, class
    weights); validation metrics come from ``val_features`` (the head is what predicts).
    """
    weights = (inputs.class_weight[inputs.train_labels]
               if recipe.data.class_weighting != "none" else None)
    fit = fit_linear_head(views, inputs.train_labels, inputs.n_classes, sample_weight=weights,
                          c=recipe.head.lbfgs_c, seed=recipe.seed)
    set_head_weights(model, fit)
    val_acc, val_loss = _scores(np.asarray(inputs.val_labels, np.int64),
                                fit.predict_proba(val_features))
    return fit, {"accuracy": fit.train_accuracy, "loss": fit.train_loss,
                 "val_accuracy": val_acc, "val_loss": val_loss}


def describe(fit: LinearFit | SolverRecord | dict[str, Any]) -> str:
    """One line for progress and reports (from a fit, its record or the record's ``to_dict()``)."""
    d = fit if isinstance(fit, dict) else fit.to_dict()
    how = (f"C={d['c']:.3g} by {d['folds']}-fold cross-validation on the training images "
           f"(accuracy {d['cv_accuracy']:.4f})" if d["chosen_by"] == "cross-validation"
           else f"C={d['c']:.3g} ({d['chosen_by']})")
    return (f"logistic regression (L-BFGS) on {d['n_images']} image(s) × {d['n_views']} view(s), "
            f"{how}, in {d['seconds']:.1f} s")
