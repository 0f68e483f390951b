"""The shipped model needs no autotransfer: ``.keras``, the SavedModel's bytes signature and TFLite
give, in a process that cannot import autotransfer, the probabilities ``autotransfer predict``
gives, for photos of several sizes."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest
from PIL import Image

from autotransfer.errors import InvalidParameterError
from autotransfer.train import export, predict
from autotransfer.train.inference import load_run_model
from autotransfer.train.model import build_classifier
from tests.conftest import SHARED_DATASETS
from tests.train.helpers import tiny_recipe
from tests.train.standalone import keras_modules, run_without_autotransfer

CLASSES = ["ant", "bee", "wasp"]


def _photos(folder: Path) -> list[Path]:
    """Real photos of distinct sizes when ../shared is there, and synthetic images of odd shapes
    (wide, tall, smaller than the model's input; JPEG and PNG; EXIF-rotated) always."""
    paths: list[Path] = []
    real = SHARED_DATASETS / "hymenoptera"
    if real.is_dir():
        sizes: set[tuple[int, int]] = set()
        for path in sorted(real.rglob("*.jpg")):
            with Image.open(path) as img:
                if img.size not in sizes:
                    sizes.add(img.size)
                    paths.append(path)
            if len(paths) == 4:
                break
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for i, (height, width, suffix) in enumerate([(61, 300, "png"), (411, 97, "jpg"),
                                                 (20, 24, "png")]):
        ramp = np.outer(np.linspace(0.2, 1, height), np.linspace(0, 255, width))[..., None]
        pixels = np.clip(ramp + rng.normal(0, 30, (height, width, 3)), 0, 255).astype(np.uint8)
        path = folder / f"synthetic_{i}.{suffix}"
        Image.fromarray(pixels).save(path, **({"quality": 90} if suffix == "jpg" else {}))
        paths.append(path)
    exif = Image.Exif()
    exif[0x0112] = 6  # a phone photo taken upright: stored rotated, turned by its EXIF tag
    rotated = folder / "rotated.jpg"
    Image.open(paths[-2]).crop((0, 0, 97, 150)).save(rotated, exif=exif.tobytes())
    paths.append(rotated)
    return paths


def _probabilities(folder: Path, paths: list[Path]) -> np.ndarray:
    """``autotransfer predict``'s probabilities, one row per image, in class order."""
    rows = []
    for prediction in predict(folder, paths, top_k=len(CLASSES), batch_size=2):
        top = dict(prediction.top)
        rows.append([top[name] for name in CLASSES])
    return np.asarray(rows)


@pytest.fixture(scope="module", params=[True, False], ids=["crop", "squash"])
def shipped(request, tmp_path_factory):
    """A run folder with a tiny classifier (confident random head) in every export format."""
    folder = tmp_path_factory.mktemp("shipped")
    keras.utils.set_random_seed(1)
    clf = build_classifier(tiny_recipe(), len(CLASSES))
    head = clf.model.get_layer("predictions")
    kernel, bias = head.get_weights()
    head.set_weights([np.random.default_rng(2).normal(0, 3, kernel.shape).astype("float32"), bias])
    model = export.serving_model(clf.model, crop=request.param)
    export.save_keras(model, folder / "model.keras")
    (folder / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    export.export_savedmodel(model, folder / "savedmodel", class_names=CLASSES)
    export.export_tflite(model, folder / "model.tflite")
    return folder, request.param


def test_shipped_model_is_built_from_keras_layers_only(shipped):
    folder, crop = shipped
    modules = keras_modules(folder / "model.keras")
    assert {m for m, _ in modules} <= {"keras", "keras.layers", "keras.initializers",
                                       "keras.src.models.functional"}, modules
    assert ("keras.layers", "Resizing") in modules and ("keras.layers", "Rescaling") in modules
    model = keras.saving.load_model(folder / "model.keras", safe_mode=True)
    assert model.input_shape == (None, None, None, 3) and model.output_shape == (None, 3)
    resize = model.get_layer(export.RESIZE_LAYER)
    assert (resize.height, resize.width, resize.antialias) == (32, 32, True)
    assert resize.crop_to_aspect_ratio is crop
    loaded = load_run_model(folder)
    assert (loaded.input_size, loaded.crop) == (32, crop)


def test_without_autotransfer_every_format_predicts_what_autotransfer_predicts(shipped, tmp_path):
    folder, _ = shipped
    paths = _photos(tmp_path / "images")
    expected = _probabilities(folder, paths)
    assert np.ptp(expected, axis=0).max() > 0.05, "uninformative probabilities prove nothing"
    got = run_without_autotransfer(folder, paths, parts=("savedmodel", "tflite"))
    assert got["autotransfer_modules"].size == 0
    np.testing.assert_allclose(got["keras_uint8"], expected, atol=2e-6, rtol=0)
    np.testing.assert_allclose(got["keras_float"], got["keras_uint8"], atol=1e-7, rtol=0)
    np.testing.assert_allclose(got["keras_call"], got["keras_uint8"], atol=1e-6, rtol=0)
    np.testing.assert_allclose(got["savedmodel"], expected, atol=2e-6, rtol=0)
    assert (got["classes"] == np.asarray([CLASSES] * len(paths))).all()
    np.testing.assert_allclose(got["tflite"], expected, atol=1e-5, rtol=0)


def test_an_image_at_the_training_size_is_not_resampled(shipped):
    """Training and ``evaluate`` feed images already at the input size: the resize is exact (and
    a direct call runs BatchNormalization in inference mode, as ``predict`` does)."""
    folder, _ = shipped
    model = export.load_model(folder / "model.keras")
    x = np.random.default_rng(3).uniform(0, 255, (4, 32, 32, 3)).astype("float32")
    np.testing.assert_array_equal(np.asarray(model(x)),
                                  np.asarray(export.classifier_part(model)(x)))


def test_savedmodel_serve_endpoint_takes_decoded_images_of_any_size(shipped):
    import tensorflow as tf

    folder, _ = shipped
    served = tf.saved_model.load(str(folder / "savedmodel"))
    model = export.load_model(folder / "model.keras")
    x = np.random.default_rng(4).uniform(0, 255, (2, 50, 70, 3)).astype("float32")
    np.testing.assert_allclose(served.serve(x).numpy(), model.predict(x, verbose=0), atol=1e-6)


def test_wrong_number_of_class_names_is_refused(shipped, tmp_path):
    folder, _ = shipped
    with pytest.raises(InvalidParameterError, match="2 class names for a model with 3 outputs"):
        export.export_savedmodel(export.load_model(folder / "model.keras"), tmp_path / "sm",
                                 class_names=CLASSES[:2])


def test_onnx_export_matches_the_keras_classifier(shipped, tmp_path):
    """tf2onnx 1.17 converts the fixed-size classifier (the resize stays outside, as for TFLite)."""
    pytest.importorskip("tf2onnx", reason="needs autotransfer[onnx]")
    ort = pytest.importorskip("onnxruntime", reason="needs autotransfer[onnx]")
    folder, _ = shipped
    model = export.load_model(folder / "model.keras")
    path = export.export_onnx(model, tmp_path / "model.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [(i.name, i.shape[1:]) for i in session.get_inputs()] == [("image", [32, 32, 3])]
    images = [np.random.default_rng(5).uniform(0, 255, shape).astype("float32")
              for shape in ((40, 90, 3), (32, 32, 3), (300, 20, 3))]
    batch = np.stack([np.asarray(model.get_layer(export.RESIZE_LAYER)(x)) for x in images])
    expected = np.concatenate([model.predict(x[None], verbose=0) for x in images])
    np.testing.assert_allclose(session.run(None, {"image": batch})[0], expected, atol=1e-5)
    assert not list(tmp_path.glob(".*"))  # written atomically, no temporary file left


def test_a_model_of_an_older_run_still_predicts_with_its_fixed_size_transform(tmp_path):
    """Older runs saved a fixed-size model with the custom Preprocess layer; predict still reads
    them and applies the transform of their run.json (squash here)."""
    import json

    from autotransfer.backbones.layers import Preprocess
    from autotransfer.data.images import load_image

    inputs = keras.Input((16, 16, 3), name="image")
    x = Preprocess("tf", name="preprocess")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    old = keras.Model(inputs, outputs)
    old.get_layer("predictions").set_weights([np.diag([5.0, -5.0, 0.0]).astype("float32"),
                                              np.zeros(3, "float32")])
    old.save(tmp_path / "model.keras")
    (tmp_path / "labels.txt").write_text("\n".join(CLASSES) + "\n")
    (tmp_path / "run.json").write_text(json.dumps({"crop": False}))
    paths = _photos(tmp_path / "images")[-3:]
    loaded = load_run_model(tmp_path)
    assert (loaded.input_size, loaded.crop, export.resize_part(loaded.model)) == (16, False, None)
    expected = old.predict(np.stack([load_image(p, 16, crop=False) for p in paths]), verbose=0)
    np.testing.assert_allclose(_probabilities(tmp_path, paths), expected, atol=1e-6)
