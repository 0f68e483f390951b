"""What an ImageNet classifier sees in each class of the user's data.

"To this model your 'bees' look like bee 61 %, fly 9 %, …": the share of each class's images whose
top-1 ImageNet prediction is a given concept, plus the mean prediction entropy (high entropy:
the images look like nothing the model knows).
"""

from __future__ import annotations

from collections import Counter

import numpy as np


def prediction_entropy(probabilities: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row of a probability matrix."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, 1.0)
    p = p / p.sum(axis=1, keepdims=True)
    return -(p * np.log(p)).sum(axis=1)


def top_concepts(
    probabilities: np.ndarray,
    labels: np.ndarray,
    class_names: list[str],
    concept_names: tuple[str, ...],
    *,
    top: int = 3,
) -> dict[str, list[tuple[str, float]]]:
    """For each class, the ImageNet concepts most often predicted top-1, with their shares."""
    predicted = np.asarray(probabilities).argmax(axis=1)
    view: dict[str, list[tuple[str, float]]] = {}
    for index, name in enumerate(class_names):
        mask = np.asarray(labels) == index
        if not mask.any():
            continue
        counts = Counter(predicted[mask].tolist())
        n = int(mask.sum())
        view[name] = [(concept_names[c], round(k / n, 4)) for c, k in counts.most_common(top)]
    return view
