"""Reading one image the same way everywhere: profiler, probes, training and prediction.

Formats are recognised by content; EXIF orientation is applied; only the first frame of an
animation is used; grayscale, palette, alpha, CMYK and 16-bit images become 8-bit RGB (transparent
pixels are composited on white). Images larger than ``max_pixels`` are refused before decoding
(decompression bombs): that is the one limit. Pillow's own guard (``Image.MAX_IMAGE_PIXELS``) is
raised to it where it is lower, never lowered, so it neither refuses an image autotransfer
accepts nor speaks of its own limit.
"""

from __future__ import annotations

import io
import os
import re
import stat
import threading
import warnings
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from autotransfer.data.formats import SUPPORTED_FORMATS, sniff_format
from autotransfer.errors import ImageDecodeError

#: Above this many pixels an image is refused as a probable decompression bomb (≈ 10k × 10k).
DEFAULT_MAX_PIXELS = 100_000_000

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_HIGH_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}
_WARNINGS_LOCK = threading.Lock()  # warnings.catch_warnings swaps process-wide state


def bomb_message(label: str, max_pixels: int, width: int | None = None,
                 height: int | None = None, pixels: int | None = None) -> str:
    """Why an image is refused as a probable decompression bomb, the limit, and how to raise it."""
    if width is not None and height is not None:
        size = f"{width}×{height} = {width * height:,} pixels"
    else:
        size = f"{pixels:,} pixels" if pixels is not None else "its pixel count"
    return (
        f"{label}: refused as a probable decompression bomb: {size} exceed autotransfer's limit "
        f"of {max_pixels:,} pixels. Downscale the image (training resizes it to a few hundred "
        "pixels a side anyway), or, if you trust the file, raise the limit with "
        "'autotransfer profile --max-pixels N' (max_pixels= in the Python API)."
    )


def _pillow_allows(max_pixels: int) -> None:
    """Make Pillow's guard (which warns above ``MAX_IMAGE_PIXELS``) no stricter than ours."""
    current = Image.MAX_IMAGE_PIXELS
    if current is not None and current < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels


def open_image(
    source: str | os.PathLike[str] | bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS, name: str = ""
) -> Image.Image:
    """Open an image lazily (header only) after checking its format and pixel count.

    Raises :class:`ImageDecodeError` for unsupported formats, unreadable headers and bombs, and
    for a path that is not a regular file (reading a pipe blocks forever; a device may never
    end).
    """
    label = name or (os.fspath(source) if not isinstance(source, bytes) else "<bytes>")
    data = source if isinstance(source, bytes) else None
    if data is None:
        if not stat.S_ISREG(os.stat(source).st_mode):
            raise ImageDecodeError(f"{label}: not a regular file (a folder, pipe, socket or "
                                   "device), so not an image. Pass image files.")
        with open(source, "rb") as handle:
            head = handle.read(16)
    else:
        head = data[:16]
    fmt = sniff_format(head)
    if fmt is None:
        raise ImageDecodeError(
            f"{label}: not a supported image (recognised by content: "
            f"{', '.join(SUPPORTED_FORMATS)}). Convert it to PNG or JPEG, or remove it."
        )
    _pillow_allows(max_pixels)
    # catch_warnings swaps process-wide state: one thread at a time (the probe decodes in threads)
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data) if data is not None else source, formats=[fmt])
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            # Pillow says "Image size (N pixels) exceeds limit of M pixels": M is not our limit
            found = re.search(r"\((\d+) pixels\)", str(exc))
            pixels = int(found.group(1)) if found else None
            raise ImageDecodeError(bomb_message(label, max_pixels, pixels=pixels)) from exc
        except UnidentifiedImageError as exc:
            raise ImageDecodeError(
                f"{label}: starts like a {fmt} file but its header is invalid. "
                "Re-export or remove the file."
            ) from exc
        except Exception as exc:  # Pillow raises many kinds for bad headers
            raise ImageDecodeError(
                f"{label}: the {fmt} header cannot be read ({exc}). Re-export or remove the file."
            ) from exc
    width, height = img.size
    if width <= 0 or height <= 0:
        img.close()
        raise ImageDecodeError(f"{label}: its {fmt} header claims {width}×{height} pixels. "
                               "Re-export or remove the file.")
    if width * height > max_pixels:
        img.close()
        raise ImageDecodeError(bomb_message(label, max_pixels, width, height))
    return img


def exif_orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1 = upright) of an opened image."""
    try:
        return int(img.getexif().get(0x0112, 1) or 1)
    except Exception:  # malformed EXIF: treat as upright
        return 1


def oriented_size(img: Image.Image) -> tuple[int, int]:
    """(width, height) after applying the EXIF orientation."""
    width, height = img.size
    return (height, width) if exif_orientation(img) in (5, 6, 7, 8) else (width, height)


def to_rgb(img: Image.Image) -> Image.Image:
    """Decode ``img`` (first frame), apply EXIF orientation and convert to 8-bit RGB."""
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)
    img.load()
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # malformed EXIF must not make a good image unusable
        pass
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in _HIGH_BIT_MODES:
        return Image.fromarray(_to_uint8(np.asarray(img)), mode="L").convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _to_uint8(array: np.ndarray) -> np.ndarray:
    """Scale a 16-bit, 32-bit or float single-channel array to 0..255."""
    arr = array.astype(np.float64)
    if array.dtype.kind == "f":
        lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
        if lo >= 0.0 and hi <= 1.0:
            arr = arr * 255.0
        elif hi > lo:
            arr = (arr - lo) * (255.0 / (hi - lo))
    elif arr.max(initial=0) > 255:
        arr = arr / 257.0  # full 16-bit range onto 8 bits
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)


def load_image(
    path: str | os.PathLike[str],
    size: int | Sequence[int] | None = None,
    *,
    crop: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Read ``path`` as an ``(H, W, 3)`` uint8 RGB array, optionally resized to ``size``.

    With ``crop`` the shorter side is resized and the centre cropped (aspect kept); otherwise the
    image is squashed to ``size``. JPEGs are decoded at a reduced scale when that is still at
    least ``size`` (libjpeg's DCT scaling), which makes large photos several times faster to read.
    """
    target = None if size is None else ((size, size) if isinstance(size, int) else tuple(size))
    try:
        img = open_image(path, max_pixels=max_pixels)
        with img:
            if target is not None and img.format == "JPEG":
                want = (target[1], target[0])  # (width, height) before EXIF rotation
                if exif_orientation(img) in (5, 6, 7, 8):
                    want = (want[1], want[0])
                img.draft(img.mode, want)
            rgb = to_rgb(img)
            if target is not None:
                width, height = target[1], target[0]
                if crop:
                    rgb = ImageOps.fit(rgb, (width, height), Image.Resampling.BILINEAR)
                else:
                    rgb = rgb.resize((width, height), Image.Resampling.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8)
    except (ImageDecodeError, MemoryError):
        raise
    except Exception as exc:  # Pillow raises OSError, SyntaxError, IndexError, EOFError …
        raise ImageDecodeError(
            f"{os.fspath(path)}: cannot be decoded ({exc}). Run 'autotransfer profile' on the "
            "dataset to list every broken file, then fix or remove them."
        ) from exc
