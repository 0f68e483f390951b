"""ImageNet class names ship with the package; decoding works offline."""

from __future__ import annotations

import numpy as np
import pytest

from autotransfer.backbones.imagenet_labels import decode_predictions, imagenet_class_names
from autotransfer.errors import InvalidParameterError


def test_class_names_are_the_standard_1000() -> None:
    names = imagenet_class_names()
    assert len(names) == 1000
    assert names[0].startswith("tench")
    assert names[281].startswith("tabby") and names[285] == "Egyptian cat"
    assert names[309] == "bee" and names[310].startswith("ant,")
    assert names[967] == "espresso" and names[968] == "cup"
    assert names[999].startswith("toilet tissue")


def test_decode_predictions_returns_best_classes_first() -> None:
    preds = np.zeros((2, 1000), dtype=np.float32)
    preds[0, 309], preds[0, 310] = 0.7, 0.2
    preds[1, 967] = 1.0
    decoded = decode_predictions(preds, top=2)
    assert decoded[0] == [(309, "bee", pytest.approx(0.7)), (310, imagenet_class_names()[310],
                                                            pytest.approx(0.2))]
    assert decoded[1][0][:2] == (967, "espresso")


def test_decode_predictions_rejects_features() -> None:
    with pytest.raises(InvalidParameterError, match="include_top=True"):
        decode_predictions(np.zeros((1, 1280)))
