"""Write small real image files (and broken ones) for the dataset-layer tests."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def pattern(size: int = 32, seed: int = 0) -> np.ndarray:
    """A distinct RGB image per seed (uint8, size × size × 3)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(4, 4, 3), dtype=np.uint8)
    return np.kron(base, np.ones((size // 4, size // 4, 1), dtype=np.uint8))


def image_bytes(fmt: str = "PNG", size: int = 32, seed: int = 0, mode: str = "RGB", **save) -> bytes:
    img = Image.fromarray(pattern(size, seed))
    if mode != "RGB":
        img = img.convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **save)
    return buf.getvalue()


def write_image(path: Path, fmt: str = "PNG", size: int = 32, seed: int = 0, mode: str = "RGB",
                **save) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image_bytes(fmt, size, seed, mode, **save))
    return path


def make_class_folders(root: Path, classes: dict[str, int], fmt: str = "PNG", size: int = 32,
                       seed: int = 0) -> Path:
    """``root/<class>/<i>.png`` with ``classes[name]`` distinct images each."""
    n = seed
    for name, count in classes.items():
        for i in range(count):
            write_image(root / name / f"img_{i:03d}.{fmt.lower()}", fmt, size, seed=n)
            n += 1
    return root


def png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width × height`` (valid CRC) with a tiny body."""
    raw = image_bytes("PNG", 8)
    ihdr_start = 8
    length = struct.unpack(">I", raw[ihdr_start:ihdr_start + 4])[0]
    body = bytearray(raw[ihdr_start + 8:ihdr_start + 8 + length])
    body[0:8] = struct.pack(">II", width, height)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(body)) & 0xFFFFFFFF)
    return raw[:ihdr_start + 8] + bytes(body) + crc + raw[ihdr_start + 12 + length:]


def jpeg_with_orientation(orientation: int, width: int = 40, height: int = 20) -> bytes:
    """A JPEG stored ``width × height`` (left half black, right white) with an EXIF orientation."""
    arr = np.zeros((height, width, 3), dtype=np.uint8)
    arr[:, width // 2:] = 255
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    return buf.getvalue()
