"""Input preprocessing of each backbone, as data, with one numpy and one Keras implementation.

Every mode maps RGB pixels in [0, 255] to what the network was trained on by (optionally)
reversing the channel order to BGR and then computing ``x * scale + offset`` per channel:

=========  ===========================================  =======================================
mode       meaning                                      used by
=========  ===========================================  =======================================
``tf``     scale to [-1, 1]: ``x / 127.5 - 1``          MobileNet, MobileNetV2, Inception, …
``torch``  ``(x / 255 - mean) / std`` (ImageNet stats)  DenseNet
``caffe``  BGR, minus the ImageNet BGR mean             ResNet50, VGG16
``lite``   ``(x - 127) / 128``                          EfficientNet-Lite
``none``   identity: the model rescales inside          EfficientNet(V2), MobileNetV3, ConvNeXt
=========  ===========================================  =======================================
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from autotransfer.errors import InvalidParameterError, unknown_name

_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])
_IMAGENET_STD = np.array([0.229, 0.224, 0.225])
_CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68])


@dataclass(frozen=True)
class PreprocessingMode:
    """``x -> (x[..., ::-1] if bgr else x) * scale + offset``, per channel."""

    bgr: bool
    scale: tuple[float, float, float]
    offset: tuple[float, float, float]


def _uniform(scale: float, offset: float) -> PreprocessingMode:
    return PreprocessingMode(False, (scale,) * 3, (offset,) * 3)


MODES: dict[str, PreprocessingMode] = {
    "tf": _uniform(1 / 127.5, -1.0),
    "torch": PreprocessingMode(
        False,
        tuple(float(v) for v in 1 / (255 * _IMAGENET_STD)),  # type: ignore[arg-type]
        tuple(float(v) for v in -_IMAGENET_MEAN / _IMAGENET_STD),  # type: ignore[arg-type]
    ),
    "caffe": PreprocessingMode(
        True, (1.0,) * 3, tuple(float(v) for v in -_CAFFE_MEAN_BGR)  # type: ignore[arg-type]
    ),
    "lite": _uniform(1 / 128, -127 / 128),
    "none": _uniform(1.0, 0.0),
}


def get_mode(mode: str) -> PreprocessingMode:
    """The constants of preprocessing ``mode``; unknown modes get a "did you mean" error."""
    try:
        return MODES[mode]
    except KeyError:
        raise unknown_name("preprocessing mode", mode, MODES) from None


def preprocess_input(images: np.ndarray, mode: str) -> np.ndarray:
    """Apply ``mode`` to RGB ``images`` in [0, 255] (channels last); returns float32."""
    spec = get_mode(mode)
    x = np.asarray(images, dtype=np.float32)
    if spec.bgr:
        x = x[..., ::-1]
    return (x * np.asarray(spec.scale, np.float32) + np.asarray(spec.offset, np.float32)).astype(
        np.float32
    )


def center_crop_resize(image: np.ndarray, size: int, crop_fraction: float = 0.875) -> np.ndarray:
    """The classic ImageNet evaluation transform: central crop, then bilinear resize.

    ``image`` is an RGB uint8 (or [0, 255] float) array of shape (H, W, 3). A square of side
    ``crop_fraction * min(H, W)`` is cut from the centre and resized to ``size`` × ``size``.
    Returns float32 RGB in [0, 255].
    """
    from PIL import Image

    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise InvalidParameterError(f"The 'image' parameter must be an RGB array of shape "
                                    f"(height, width, 3). Got shape {array.shape} instead.")
    height, width = array.shape[:2]
    side = max(1, int(round(min(height, width) * crop_fraction)))
    top, left = (height - side) // 2, (width - side) // 2
    crop = np.clip(array[top : top + side, left : left + side], 0, 255).astype(np.uint8)
    resized = Image.fromarray(crop).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float32)
