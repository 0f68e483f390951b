"""Inspect one candidate file: read it once, hash it, read its header, decode what must be.

Runs in worker threads or processes; returns plain data (a record or the problems found).
"""

from __future__ import annotations

import errno
import hashlib

import os
import stat
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from autotransfer.data.formats import (
    SNIFF_BYTES,
    extension_format,
    has_trailer,
    looks_like_image_name,
    sniff_format,
)
from autotransfer.data.images import exif_orientation, open_image, to_rgb
from autotransfer.data.layout import Candidate
from autotransfer.data.models import FileProblem, ImageRecord, problem
from autotransfer.errors import ImageDecodeError

Check = Literal["decode", "header"]

#: Images with a shorter side below this are flagged as probable thumbnails or icons.
TINY_SIDE = 8
#: Decoded at most at about this size for the grayscale test (JPEG DCT scaling makes it cheap).
_PROBE_SIDE = 64
#: Channels that differ by at most this (99th percentile) count as grayscale (JPEG chroma noise).
_GRAY_TOLERANCE = 4
#: Files above this size are not read into memory; no image in a training set is that large.
MAX_FILE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class Inspection:
    record: ImageRecord | None
    problems: tuple[FileProblem, ...]


def inspect_file(candidate: Candidate, check: Check, max_pixels: int) -> Inspection:
    """Inspect one file; never raises for anything the file itself can be."""
    problems: list[FileProblem] = list(_name_problems(candidate.rel))
    rel = candidate.rel

    def fail(code: str, message: str) -> Inspection:
        problems.append(problem(rel, code, message))
        return Inspection(None, tuple(problems))

    try:
        st = os.stat(candidate.path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return fail("symlink_loop", "Symbolic link loop.")
        if exc.errno == errno.ENOENT:
            return fail("broken_symlink", "The link's target does not exist.")
        return fail("unreadable", f"Cannot be read: {exc.strerror}.")
    if not stat.S_ISREG(st.st_mode):
        return fail("not_an_image", "Not a regular file.")
    if st.st_size == 0:
        return fail("zero_byte", "The file is empty (0 bytes).")
    try:
        with open(candidate.path, "rb") as handle:
            head = handle.read(SNIFF_BYTES)
            fmt = sniff_format(head)
            if fmt is None:
                if looks_like_image_name(rel):
                    return fail("unsupported_format", "Content is not a supported image format.")
                return fail("not_an_image", "Neither its content nor its name is an image's.")
            if st.st_size > MAX_FILE_BYTES:
                return fail("too_large", f"{st.st_size:,} bytes is larger than any sane image.")
            data = head + handle.read()
    except PermissionError:
        return fail("unreadable", "Permission denied.")
    except OSError as exc:
        return fail("unreadable", f"Cannot be read: {exc.strerror}.")

    announced = extension_format(rel)
    if announced != fmt:
        problems.append(problem(rel, "extension_mismatch",
                                f"Named like {announced or 'a non-image'} but is {fmt}."))
    sha = hashlib.blake2b(data, digest_size=16).hexdigest()
    complete = has_trailer(fmt, data)
    try:
        img = open_image(data, max_pixels=max_pixels, name=rel)
    except ImageDecodeError as exc:
        text = str(exc)
        if "decompression bomb" in text:
            code = "too_large"
        else:
            code = "truncated" if "truncat" in text.lower() else "undecodable"
        return fail(code, text.removeprefix(f"{rel}: "))
    with img:
        width, height = img.size  # the header's (a JPEG's draft decode below shrinks img.size)
        mode = img.mode
        grayscale: bool | None = None
        try:
            # decoded first, exactly as training reads it (to_rgb): a PNG's EXIF lookup decodes
            # it too, and a failure swallowed there would leave a broken file looking whole
            if check == "decode":
                grayscale = _decode_and_test_gray(img)
            if exif_orientation(img) in (5, 6, 7, 8):
                width, height = height, width
            frames = int(getattr(img, "n_frames", 1) or 1)  # seeks through every frame
            has_alpha = mode in ("RGBA", "LA", "PA") or "transparency" in img.info
        except Exception as exc:  # Pillow raises OSError, ValueError, SyntaxError, IndexError …
            text = str(exc) or type(exc).__name__
            code = "truncated" if ("truncat" in text.lower() or not complete) else "undecodable"
            return fail(code, f"Decoding failed: {text}")
        if check == "decode" and not complete:
            problems.append(problem(rel, "missing_end_marker", f"No {fmt} end marker."))
        elif not complete:
            return fail("truncated", f"The {fmt} end marker is missing: the file is cut short.")
    if min(width, height) < TINY_SIDE:
        problems.append(problem(rel, "tiny_image", f"Only {width}×{height} pixels."))
    record = ImageRecord(
        path=rel, label=candidate.label, split=candidate.split, format=fmt, width=width,
        height=height, mode=mode, frames=frames, file_size=st.st_size, sha=sha,
        grayscale=grayscale, has_alpha=has_alpha,
    )  # fmt: skip
    return Inspection(record, tuple(problems))


def _decode_and_test_gray(img: Image.Image) -> bool:
    """Decode the whole file as training does (:func:`to_rgb`; JPEG at reduced scale) and tell
    whether it is grayscale."""
    gray_mode = img.mode in ("L", "LA", "1", "I", "I;16", "I;16L", "I;16B", "F")
    if img.format == "JPEG":
        img.draft(img.mode, (_PROBE_SIDE, _PROBE_SIDE))
    rgb = to_rgb(img)
    if gray_mode:
        return True
    pixels = np.asarray(rgb, dtype=np.int16)
    if pixels.size == 0:
        return True
    spread = np.abs(pixels[..., 0] - pixels[..., 1]) + np.abs(pixels[..., 1] - pixels[..., 2])
    return bool(np.count_nonzero(spread > _GRAY_TOLERANCE) <= 0.01 * spread.size)


def _name_problems(rel: str) -> list[FileProblem]:
    found = []
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        found.append(problem(rel, "non_utf8_name", "The file name holds bytes that are not UTF-8."))
    if any(ch.isspace() for ch in rel.rsplit("/", 1)[-1]):
        found.append(problem(rel, "space_in_name", "The file name contains whitespace."))
    return found


