"""A real backbone (MobileNetV2, ImageNet weights) shipped in every format, on real photos of
several sizes, in a process that cannot import autotransfer."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from PIL import Image

from autotransfer.recipe.schema import Recipe
from autotransfer.train import export, predict
from autotransfer.train.model import build_classifier
from tests.conftest import shared_dataset
from tests.train.standalone import run_without_autotransfer

pytestmark = [pytest.mark.slow, pytest.mark.shared]

CLASSES = ["ants", "bees"]


def _recipe() -> Recipe:
    return Recipe.model_validate({
        "name": "mobilenet_v2", "seed": 0,
        "backbone": {"name": "mobilenet_v2", "input_size": 224, "weights": "imagenet"},
        "phases": [{"name": "head", "epochs": 1, "trainable_from": 5, "learning_rate": 0.01}],
    })


def test_mobilenet_v2_every_format_predicts_what_autotransfer_predicts(shared_weights, tmp_path):
    photos = shared_dataset("hymenoptera")
    paths, sizes = [], set()
    for path in sorted(photos.rglob("*.jpg")):
        with Image.open(path) as img:
            if img.size not in sizes:
                sizes.add(img.size)
                paths.append(path)
        if len(paths) == 5:
            break
    keras.utils.set_random_seed(0)
    clf = build_classifier(_recipe(), len(CLASSES))
    head = clf.model.get_layer("predictions")
    kernel, bias = head.get_weights()
    head.set_weights([np.random.default_rng(0).normal(0, 0.5, kernel.shape).astype("float32"),
                      bias])
    model = export.serving_model(clf.model, crop=True)
    export.save_keras(model, tmp_path / "model.keras")
    (tmp_path / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    export.export_savedmodel(model, tmp_path / "savedmodel", class_names=CLASSES)
    export.export_tflite(model, tmp_path / "model.tflite")

    rows = [dict(p.top) for p in predict(tmp_path, paths, top_k=2, batch_size=3)]
    expected = np.asarray([[row[c] for c in CLASSES] for row in rows])
    assert np.ptp(expected[:, 0]) > 0.05, "uninformative probabilities prove nothing"
    got = run_without_autotransfer(tmp_path, paths, parts=("savedmodel", "tflite"))
    assert got["autotransfer_modules"].size == 0
    np.testing.assert_allclose(got["keras_uint8"], expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got["savedmodel"], expected, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got["tflite"], expected, atol=1e-4, rtol=0)
