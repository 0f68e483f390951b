"""ImageNet-1k class names, offline.

Keras' ``decode_predictions`` downloads its class index on first use and so fails without
internet. autotransfer ships the 1000 public class names in the standard order
(``imagenet_classes.txt``, one per line: line ``i`` is class ``i``; taken from the TF-Slim
``labels.txt`` without its leading "background" entry).
"""

from __future__ import annotations

import functools
from importlib import resources

import numpy as np

from autotransfer.errors import InvalidParameterError

NUM_CLASSES = 1000


@functools.cache
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet class names; index ``i`` is class ``i`` (e.g. 309 "bee")."""
    text = resources.files("autotransfer.backbones").joinpath("imagenet_classes.txt").read_text(
        encoding="utf-8"
    )
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    assert len(names) == NUM_CLASSES, f"imagenet_classes.txt has {len(names)} names"
    return names


def decode_predictions(preds: np.ndarray, top: int = 5) -> list[list[tuple[int, str, float]]]:
    """The ``top`` classes of each row of ``preds`` (shape ``(batch, 1000)``), best first.

    Like ``keras.applications.imagenet_utils.decode_predictions``, but offline and with the class
    index instead of the WordNet id: each entry is ``(class_index, class_name, score)``.
    """
    scores = np.asarray(preds)
    if scores.ndim != 2 or scores.shape[1] != NUM_CLASSES:
        raise InvalidParameterError(
            f"decode_predictions expects a (batch, {NUM_CLASSES}) array of ImageNet scores; got "
            f"shape {scores.shape}. Build the backbone with include_top=True."
        )
    names = imagenet_class_names()
    result = []
    for row in scores:
        best = np.argsort(-row, kind="stable")[:top]
        result.append([(int(i), names[i], float(row[i])) for i in best])
    return result
