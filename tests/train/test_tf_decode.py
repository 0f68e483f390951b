"""The in-graph decoder of the SavedModel signature gives the reader's pixels, exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from autotransfer.data.images import load_image
from autotransfer.train.tf_decode import decode, exif_orientation
from tests.conftest import SHARED_DATASETS


def _asymmetric(height: int = 37, width: int = 53) -> np.ndarray:
    """An image whose every rotation and mirror is different (a gradient plus noise)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 / width, y * 255 / height, (x + 2 * y) % 256], -1)
    return np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)


_decode_graph = tf.function(decode, input_signature=[tf.TensorSpec((), tf.string)])


def _decoded(path: Path) -> np.ndarray:
    """Decoded in a graph, as the SavedModel signature decodes."""
    return _decode_graph(tf.constant(path.read_bytes())).numpy()


@pytest.mark.parametrize("byte_order", ["<", ">"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_jpeg_exif_orientation_is_applied_as_the_reader_applies_it(orientation, byte_order,
                                                                    tmp_path):
    exif = Image.Exif()
    exif[0x010F] = "camera maker"  # another tag before the orientation
    exif[0x0112] = orientation
    exif[0x0131] = "software"
    path = tmp_path / f"o{orientation}.jpg"
    Image.fromarray(_asymmetric()).save(path, exif=exif.tobytes() if byte_order == "<" else
                                        _big_endian(exif), quality=92)
    with Image.open(path) as img:
        assert img.getexif().get(0x0112) == orientation  # the file says what the test claims
    assert int(exif_orientation(tf.constant(path.read_bytes()))) == orientation
    expected = load_image(path)
    got = _decoded(path)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got, expected)


def _big_endian(exif: Image.Exif) -> bytes:
    """EXIF in Motorola byte order (Pillow writes Intel order)."""
    from PIL import TiffImagePlugin

    ifd = TiffImagePlugin.ImageFileDirectory_v2(prefix=b"MM")
    for tag, value in exif.items():
        ifd[tag] = value
    return b"Exif\x00\x00" + b"MM\x00\x2a\x00\x00\x00\x08" + ifd.tobytes(8)


def test_damaged_or_absent_exif_counts_as_upright(tmp_path):
    path = tmp_path / "plain.jpg"
    Image.fromarray(_asymmetric()).save(path)
    assert int(exif_orientation(tf.constant(path.read_bytes()))) == 1
    data = path.read_bytes()
    broken = data[:2] + b"\xff\xe1\x00\x10Exif\x00\x00II\x2a\x00\xff\xff\xff\x7f" + data[2:]
    assert int(exif_orientation(tf.constant(broken))) == 1
    assert int(exif_orientation(tf.constant(b"Exif\x00\x00"))) == 1


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P", "L", "RGB"])
def test_png_alpha_goes_on_white_as_the_reader_puts_it(mode, tmp_path):
    rgba = np.concatenate([_asymmetric(), np.linspace(0, 255, 37 * 53).reshape(37, 53, 1)],
                          -1).astype(np.uint8)
    img = Image.fromarray(rgba, "RGBA")
    if mode == "P":
        img = img.convert("RGB").quantize(16)
        img.info["transparency"] = 3
    elif mode != "RGBA":
        img = img.convert(mode)
    path = tmp_path / f"{mode}.png"
    img.save(path, **({"transparency": 3} if mode == "P" else {}))
    np.testing.assert_array_equal(_decoded(path), load_image(path))


def test_real_photos_decode_to_the_readers_pixels():
    photos = sorted((SHARED_DATASETS / "hymenoptera").rglob("*.jpg"))[::20]
    if not photos:
        pytest.skip(f"needs the shared dataset {SHARED_DATASETS / 'hymenoptera'}")
    for path in photos:
        np.testing.assert_array_equal(_decoded(path), load_image(path), err_msg=str(path))
