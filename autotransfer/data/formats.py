"""Image formats recognised by their content (magic bytes), never by the file extension."""

from __future__ import annotations

#: Formats autotransfer reads, by Pillow's format name.
SUPPORTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF")

#: Extensions that announce an image; used only to tell "broken image" from "not an image".
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".dib", ".webp", ".tif",
        ".tiff", ".heic", ".heif", ".avif", ".jp2", ".ico", ".ppm", ".pgm", ".pbm", ".pnm",
    }
)  # fmt: skip

#: Bytes needed to recognise every supported format.
SNIFF_BYTES = 16

#: What a well-formed file of each format ends with (used to find truncated files cheaply).
_TRAILERS: dict[str, tuple[bytes, ...]] = {
    "JPEG": (b"\xff\xd9",),
    "PNG": (b"IEND\xaeB`\x82",),
}


def sniff_format(head: bytes) -> str | None:
    """Return the Pillow format name for the leading bytes of a file, or ``None``."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head.startswith(b"BM") and len(head) >= 14:
        return "BMP"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    return None


def extension_format(name: str) -> str | None:
    """The format a file name's extension announces (``None`` when it announces none we read)."""
    ext = name.rsplit(".", 1)[-1].lower() if "." in name else ""
    return {
        "jpg": "JPEG", "jpeg": "JPEG", "jpe": "JPEG", "jfif": "JPEG", "png": "PNG", "gif": "GIF",
        "bmp": "BMP", "dib": "BMP", "webp": "WEBP", "tif": "TIFF", "tiff": "TIFF",
    }.get(ext)  # fmt: skip


def looks_like_image_name(name: str) -> bool:
    """True when the extension announces an image (of any format, supported or not)."""
    dot = name.rfind(".")
    return dot >= 0 and name[dot:].lower() in IMAGE_EXTENSIONS


def has_trailer(fmt: str, data: bytes) -> bool:
    """True when ``data`` ends like a complete file of format ``fmt`` (or the format has no trailer).

    JPEG and PNG writers sometimes pad after the end marker, so the last 64 bytes are searched.
    """
    if fmt == "GIF":
        return data.rstrip(b"\x00").endswith(b"\x3b")
    trailers = _TRAILERS.get(fmt)
    if not trailers:
        return True
    tail = data[-64:]
    return any(t in tail for t in trailers)
