"""The profiler's verdict on a file is training's: a file the profile passes is one the reader
decodes, and no damaged file makes the profiler itself fail.

Damaged copies of real files of every format (cut short, bytes flipped, bytes inserted; made
from fixed seeds) once broke both: a PNG whose EXIF lookup decoded it and swallowed the error
passed the profile and then stopped training; a GIF or TIFF whose frame count cannot be read
raised IndexError, TypeError or SyntaxError out of the profiler."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
from PIL import Image

from autotransfer.data.images import load_image
from autotransfer.data.inspect import inspect_file
from autotransfer.data.layout import Candidate
from autotransfer.errors import ImageDecodeError


def _originals() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8))
              for _ in range(4)]

    def save(fmt: str, animated: bool = True, **options) -> bytes:
        buffer = io.BytesIO()
        extra = {"save_all": True, "append_images": frames[1:]} if animated else {}
        frames[0].save(buffer, format=fmt, **extra, **options)
        return buffer.getvalue()

    return {"gif": save("GIF"), "tiff": save("TIFF"),
            "tiff_lzw": save("TIFF", compression="tiff_lzw"), "apng": save("PNG"), "png": save("PNG", animated=False),
            "webp": save("WEBP"), "jpeg": save("JPEG", animated=False, progressive=True),
            "bmp": save("BMP", animated=False)}


def _damaged(data: bytes, seed: int) -> bytes:
    r = random.Random(seed)
    out = bytearray(data)
    if seed % 3 == 0:
        return bytes(out[: r.randrange(16, len(out))])
    if seed % 3 == 1:
        for _ in range(r.randrange(1, 8)):
            out[r.randrange(16, len(out))] = r.randrange(256)
        return bytes(out)
    at = r.randrange(16, len(out))
    return bytes(out[:at]) + bytes(r.randrange(256) for _ in range(r.randrange(1, 50))) + bytes(
        out[at:])


@pytest.mark.parametrize("fmt", sorted(_originals()))
def test_a_file_the_profile_passes_is_one_training_reads(tmp_path, fmt):
    original = _originals()[fmt]
    refused = 0
    for seed in range(45):
        path = tmp_path / f"{fmt}_{seed}.img"
        path.write_bytes(_damaged(original, seed))
        inspection = inspect_file(Candidate(str(path), path.name, "a", None), "decode",
                                  100_000_000)  # never raises
        try:
            load_image(path, (32, 32))
        except ImageDecodeError:
            refused += 1
            assert inspection.record is None, (seed, inspection.problems)
    assert refused > 0  # the damage is real: some copies cannot be read


def test_a_png_broken_in_its_pixel_data_is_refused_by_the_profile(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(_damaged(_originals()["png"], 4))  # bytes flipped in its pixel data
    with pytest.raises(ImageDecodeError, match="broken data stream"):
        load_image(path, (32, 32))
    inspection = inspect_file(Candidate(str(path), path.name, "a", None), "decode", 10**8)
    assert inspection.record is None
    assert [p.code for p in inspection.problems] == ["undecodable"]
