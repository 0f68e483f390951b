"""Reading images: by content, every colour mode to RGB, EXIF orientation, bombs refused."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from autotransfer.data.formats import has_trailer, sniff_format
from autotransfer.data.images import load_image, open_image
from autotransfer.errors import ImageDecodeError
from tests.data.builders import image_bytes, jpeg_with_orientation, png_with_size, write_image


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF"])
def test_every_supported_format_is_recognised_by_content_and_read(tmp_path, fmt):
    path = tmp_path / "misnamed.jpg"  # the extension lies for all but JPEG
    path.write_bytes(image_bytes(fmt, size=16))
    assert sniff_format(path.read_bytes()[:16]) == fmt
    arr = load_image(path)
    assert arr.shape == (16, 16, 3) and arr.dtype == np.uint8


def test_unknown_content_is_a_clear_error(tmp_path):
    path = tmp_path / "fake.png"
    path.write_bytes(b"this is not an image at all")
    with pytest.raises(ImageDecodeError, match="fake.png.*not a supported image"):
        load_image(path)


def test_gif_first_frame_is_used(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    arr = load_image(path)
    assert tuple(arr[4, 4]) == (255, 0, 0)


@pytest.mark.parametrize("orientation, expected_shape", [(1, (20, 40)), (6, (40, 20)), (3, (20, 40))])
def test_exif_orientation_is_applied(tmp_path, orientation, expected_shape):
    path = tmp_path / "o.jpg"
    path.write_bytes(jpeg_with_orientation(orientation))
    arr = load_image(path)
    assert arr.shape[:2] == expected_shape
    if orientation == 3:  # rotated 180°: the white half is now on the left
        assert arr[10, 5].mean() > 200 and arr[10, 35].mean() < 50
    if orientation == 1:
        assert arr[10, 5].mean() < 50 and arr[10, 35].mean() > 200


def test_grayscale_palette_and_cmyk_become_rgb(tmp_path):
    for mode in ("L", "P", "CMYK"):
        fmt = "JPEG" if mode == "CMYK" else "PNG"
        path = write_image(tmp_path / f"{mode}.img", fmt, size=16, mode=mode)
        arr = load_image(path)
        assert arr.shape == (16, 16, 3), mode
    gray = load_image(tmp_path / "L.img")
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])


def test_cmyk_colours_survive_conversion(tmp_path):
    path = tmp_path / "red.tif"
    Image.new("RGB", (8, 8), (255, 0, 0)).convert("CMYK").save(path, format="TIFF")
    r, g, b = load_image(path)[4, 4]
    assert r > 200 and g < 60 and b < 60


def test_transparency_is_composited_on_white(tmp_path):
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # fully transparent red
    path = tmp_path / "alpha.png"
    rgba.save(path)
    assert tuple(load_image(path)[0, 0]) == (255, 255, 255)


def test_sixteen_bit_grayscale_is_scaled_not_clipped(tmp_path):
    arr16 = np.full((8, 8), 32768, dtype=np.uint16)  # mid-gray in 16 bits
    path = tmp_path / "g16.png"
    Image.fromarray(arr16).save(path)
    value = load_image(path)[0, 0, 0]
    assert 120 <= value <= 135


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_with_size(60_000, 60_000))
    with pytest.raises(ImageDecodeError, match="bomb.png: refused as a probable decompression bomb"):
        open_image(path)
    path.write_bytes(png_with_size(5_000, 5_000))
    with pytest.raises(ImageDecodeError, match="5000×5000 = 25,000,000 pixels exceed "
                       "autotransfer's limit of 1,000,000 pixels"):
        open_image(path, max_pixels=1_000_000)


def test_bomb_message_gives_autotransfers_limit_and_how_to_raise_it(tmp_path):
    """Not Pillow's limit (178,956,970 or 89,478,485), which --max-pixels would not change."""
    path = tmp_path / "bomb.png"
    path.write_bytes(png_with_size(60_000, 60_000))
    with pytest.raises(ImageDecodeError) as caught:
        open_image(path)
    text = str(caught.value)
    assert "3,600,000,000 pixels exceed autotransfer's limit of 100,000,000 pixels" in text
    assert "--max-pixels" in text and "178956970" not in text and "89478485" not in text


def test_max_pixels_is_the_one_limit_not_pillows(tmp_path):
    """Pillow warns above 89.5 M pixels and refuses above 179 M; max_pixels decides alone."""
    path = tmp_path / "big.png"
    path.write_bytes(png_with_size(10_000, 9_500))  # 95 M: within the default limit
    with open_image(path) as img:
        assert img.size == (10_000, 9_500)
    path.write_bytes(png_with_size(15_000, 15_000))  # 225 M: above Pillow's hard limit
    with pytest.raises(ImageDecodeError, match="225,000,000 pixels exceed .* 100,000,000"):
        open_image(path)
    with open_image(path, max_pixels=300_000_000) as img:
        assert img.size == (15_000, 15_000)


def test_resize_with_crop_keeps_aspect_and_squash_does_not(tmp_path):
    path = tmp_path / "wide.jpg"
    path.write_bytes(jpeg_with_orientation(1, width=400, height=100))
    cropped = load_image(path, 32)
    squashed = load_image(path, 32, crop=False)
    assert cropped.shape == squashed.shape == (32, 32, 3)
    # the centre crop of a half-black/half-white image straddles the edge; the squash keeps both
    assert squashed[:, :8].mean() < 40 and squashed[:, -8:].mean() > 215
    assert cropped[:, :8].mean() < 40 and cropped[:, -8:].mean() > 215
    assert abs(int(cropped[:, 12:20].mean()) - int(squashed[:, 12:20].mean())) < 128


def test_large_jpeg_is_decoded_at_reduced_scale_to_the_same_picture(tmp_path):
    path = tmp_path / "big.jpg"
    big = Image.fromarray(np.kron(np.eye(4, dtype=np.uint8) * 255, np.ones((512, 512), np.uint8)))
    big.convert("RGB").save(path, quality=95)
    small = load_image(path, 64)
    assert small.shape == (64, 64, 3)
    diag = [small[i * 16 + 8, i * 16 + 8].mean() for i in range(4)]
    off = [small[i * 16 + 8, ((i + 1) % 4) * 16 + 8].mean() for i in range(4)]
    assert min(diag) > 200 and max(off) < 50


def test_trailer_check_finds_truncation():
    data = image_bytes("JPEG", 32)
    assert has_trailer("JPEG", data)
    assert not has_trailer("JPEG", data[: len(data) // 2])
    png = image_bytes("PNG", 32)
    assert has_trailer("PNG", png) and not has_trailer("PNG", png[:-20])
    gif = image_bytes("GIF", 32)
    assert has_trailer("GIF", gif) and not has_trailer("GIF", gif[:-5])
    assert has_trailer("BMP", b"BM whatever")  # no trailer to check


def test_reading_never_modifies_the_file(tmp_path):
    path = tmp_path / "o.jpg"
    path.write_bytes(jpeg_with_orientation(6))
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    load_image(path, 16)
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before
    assert Image.open(io.BytesIO(before[0])).getexif()[0x0112] == 6


@pytest.mark.timeout(30)  # before the fix, reading the pipe blocked forever
def test_a_pipe_or_folder_named_like_an_image_is_refused_without_blocking(tmp_path):
    import os

    from autotransfer.cli.predict import expand_images

    pipe = tmp_path / "photos" / "pipe.png"
    pipe.parent.mkdir()
    os.mkfifo(pipe)
    os.mkfifo(tmp_path / "photos" / "unnamed_pipe")
    folder = tmp_path / "photos" / "folder.jpg"
    folder.mkdir()
    for path in (pipe, folder):
        with pytest.raises(ImageDecodeError, match=f"{path.name}: not a regular file"):
            load_image(path)
    write_image(tmp_path / "photos" / "real.png")
    found = expand_images([str(tmp_path / "photos")])  # the unnamed pipe is never opened
    assert [os.path.basename(f) for f in found.files] == ["pipe.png", "real.png"]
    assert found.not_images == {str(tmp_path / "photos"): 1}
