"""Classification metrics (scikit-learn): accuracy, balanced accuracy, per class, matrix."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def classification_metrics(y_true: Sequence[int] | np.ndarray, probabilities: np.ndarray,
                           class_names: Sequence[str]) -> dict[str, Any]:
    """Metrics of predicted ``probabilities`` (n × k) against integer labels ``y_true``."""
    from sklearn.metrics import (accuracy_score, balanced_accuracy_score, confusion_matrix,
                                 log_loss, precision_recall_fscore_support)

    y = np.asarray(y_true, dtype=np.int64)
    probs = np.asarray(probabilities, dtype=np.float64)
    pred = probs.argmax(axis=1)
    labels = list(range(len(class_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y, pred, labels=labels, zero_division=0)
    per_class = {
        name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
               "support": int(support[i])}
        for i, name in enumerate(class_names)
    }
    clipped = np.clip(probs, 1e-12, 1.0)
    return {
        "n_images": int(len(y)),
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)) if len(y) else 0.0,
        "macro_f1": float(np.mean(f1)),
        "loss": float(log_loss(y, clipped / clipped.sum(1, keepdims=True), labels=labels)),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(y, pred, labels=labels).tolist(),
        "class_names": list(class_names),
        # per image, in split order: 1 where the prediction is right (paired comparisons)
        "correct": (pred == y).astype(int).tolist(),
    }
