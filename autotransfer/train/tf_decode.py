"""Decoding an encoded image inside a TensorFlow graph as autotransfer's reader decodes it.

For the SavedModel's bytes signature (:func:`autotransfer.train.export.export_savedmodel`), which
runs in TF Serving or Vertex AI where Pillow is not available. It matches
:func:`autotransfer.data.images.load_image` (Pillow) on what matters in practice:

* JPEG: libjpeg's accurate integer DCT (Pillow's default; TensorFlow's default is the fast one),
  then the EXIF orientation (tags 1-8, as ``ImageOps.exif_transpose``) read from the APP1 segment;
* PNG with alpha (RGBA, grey + alpha, palette transparency): composited on white with Pillow's
  integer rounding;
* other formats (GIF's first frame, BMP): TensorFlow's decoder, RGB.

A malformed EXIF block counts as upright, as in the reader.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

#: EXIF is searched for in the first bytes only (APP1 comes before the image data)
_HEAD = 65536
_EXIF = b"Exif\x00\x00"
_ORIENTATION_TAG = 0x0112
_MAX_ENTRIES = 256


def _uint(raw: Any, little: Any, size: int) -> Any:
    """The unsigned integer of ``size`` bytes at the start of uint8 vector(s) ``raw``."""
    weights = tf.constant([256**i for i in range(size)], tf.int64)
    values = tf.cast(raw[..., :size], tf.int64)
    return tf.where(little, tf.reduce_sum(values * weights, -1),
                    tf.reduce_sum(values * weights[::-1], -1))


def exif_orientation(data: Any) -> Any:
    """The EXIF orientation (int32, 1 when absent or unreadable) of encoded JPEG ``data``."""
    head = tf.strings.substr(data, 0, _HEAD)
    parts = tf.strings.split(head, sep=_EXIF, maxsplit=1)
    found = tf.size(parts) == 2
    # bytes after "Exif\0\0" (the TIFF block), zero-padded so that every read below is in range
    tiff = tf.strings.join([tf.cond(found, lambda: parts[-1], lambda: tf.constant(b"")),
                            tf.constant(b"\x00" * (8 + 2 + 12 * _MAX_ENTRIES))])
    raw = tf.io.decode_raw(tiff, tf.uint8)
    little = tf.equal(tf.strings.substr(tiff, 0, 2), b"II")
    valid = found & (little | tf.equal(tf.strings.substr(tiff, 0, 2), b"MM"))
    length = tf.cast(tf.strings.length(tiff), tf.int64) - (2 + 12 * _MAX_ENTRIES)
    ifd = _uint(raw[4:8], little, 4)
    valid &= (ifd >= 8) & (ifd < length)
    ifd = tf.where(valid, ifd, 0)
    count = tf.minimum(_uint(raw[ifd:ifd + 2], little, 2), _MAX_ENTRIES)
    entries = tf.reshape(raw[ifd + 2:ifd + 2 + 12 * _MAX_ENTRIES], (_MAX_ENTRIES, 12))
    tags = _uint(entries, little, 2)
    hits = (tags == _ORIENTATION_TAG) & (tf.range(_MAX_ENTRIES, dtype=tf.int64) < count)
    first = tf.argmax(tf.cast(hits, tf.int32), output_type=tf.int64)
    value = _uint(entries[first, 8:10], little, 2)
    ok = valid & tf.reduce_any(hits) & (value >= 1) & (value <= 8)
    return tf.cast(tf.where(ok, value, 1), tf.int32)


def apply_orientation(image: Any, orientation: Any) -> Any:
    """``image`` turned upright, as Pillow's ``ImageOps.exif_transpose`` does."""
    transpose = lambda x: tf.transpose(x, (1, 0, 2))  # noqa: E731
    branches = [
        lambda: image,                                 # 1: upright
        lambda: image[:, ::-1],                        # 2: mirrored
        lambda: image[::-1, ::-1],                     # 3: rotated 180
        lambda: image[::-1],                           # 4: flipped
        lambda: transpose(image),                      # 5: transposed
        lambda: tf.image.rot90(image, 3),              # 6: rotated 90 clockwise
        lambda: transpose(image)[::-1, ::-1],          # 7: transversed
        lambda: tf.image.rot90(image, 1),              # 8: rotated 90 counter-clockwise
    ]
    return tf.switch_case(orientation - 1, branches)


def _on_white(rgba: Any) -> Any:
    """RGBA composited on opaque white with the integer arithmetic of Pillow's
    ``alpha_composite`` (libImaging/AlphaComposite.c, 7 precision bits; on an opaque background
    its two coefficients are ``128 * alpha`` and ``128 * (255 - alpha)``)."""
    src = tf.cast(rgba[..., :3], tf.int32)
    alpha = tf.cast(rgba[..., 3:], tf.int32)
    tmp = 128 * (src * alpha + 255 * (255 - alpha)) + 128 * 128
    div255 = tf.bitwise.right_shift(tf.bitwise.right_shift(tmp, 8) + tmp, 8)
    return tf.cast(tf.bitwise.right_shift(div255, 7), tf.uint8)


def decode(data: Any) -> Any:
    """One encoded image (scalar string) -> uint8 RGB ``(height, width, 3)``."""
    magic = tf.strings.substr(data, 0, 8)
    is_jpeg = tf.equal(tf.strings.substr(magic, 0, 3), b"\xff\xd8\xff")
    is_png = tf.equal(magic, b"\x89PNG\r\n\x1a\n")

    def jpeg() -> Any:
        image = tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")
        return apply_orientation(image, exif_orientation(data))

    def png() -> Any:
        return _on_white(tf.io.decode_png(data, channels=4))

    def other() -> Any:
        return tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)

    image = tf.case([(is_jpeg, jpeg), (is_png, png)], default=other, exclusive=True)
    image.set_shape((None, None, 3))
    return image
