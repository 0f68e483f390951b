"""A weights file of the user's that Keras cannot load — a ``.keras`` zip without weights in
it, an HDF5 file whose inside is garbage — is a WeightsFileError naming the file and what to
do (a zip without ``model.weights.h5`` made Keras raise KeyError: it was exit 70)."""

from __future__ import annotations

import os
import zipfile

import pytest

from autotransfer.errors import WeightsFileError

pytest.importorskip("tensorflow")


@pytest.mark.parametrize("name", ["no_weights.keras", "garbage.weights.h5"])
def test_a_weights_file_keras_cannot_load_is_named(tmp_path, name):
    from autotransfer.backbones.build import build_backbone

    path = tmp_path / name
    if name.endswith(".keras"):
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("config.json", "{}")
    else:
        path.write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(4096))
    with pytest.raises(WeightsFileError) as caught:
        build_backbone("mobilenet_v3_small", 32, weights=str(path))
    message = str(caught.value)
    assert str(path) in message and "use weights: imagenet" in message
