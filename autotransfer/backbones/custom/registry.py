"""The registry of custom backbones in this process: :func:`register_backbone` (load, check,
measure, add to the catalog), :func:`load_backbone_file` for the YAML, and the undo of both."""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from pydantic import ValidationError

from autotransfer.backbones import catalog
from autotransfer.backbones.custom.loading import (_SOURCES, ModelSource, _all_layers,
                                                   _check_layers, _digest, _load,
                                                   _weights_digest)
from autotransfer.backbones.custom.rebuild import _rebuild, _up_to
from autotransfer.backbones.custom.settings import (BackboneSettings, _describe, _text,
                                                    preprocessing_mode, read_backbone_file)
from autotransfer.backbones.preprocessing import PreprocessingMode
from autotransfer.backbones.spec import GROUP_NAMES, BackboneSpec, LayerGroup, WeightSource
from autotransfer.errors import InvalidConfigError, InvalidParameterError, did_you_mean

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: layer names the wrapper adds around the user's layers
_RESERVED = ("image", "preprocess", "avg_pool", "max_pool")

#: name -> the YAML file it was registered from (for the commands printed to the user)
_FILES: dict[str, Path] = {}


def register_backbone(
    name: str,
    model: ModelSource,
    *,
    preprocessing: Any,
    groups: Sequence[str],
    input_size: int,
    min_input_size: int | None = None,
    feature_layer: str | None = None,
    bn_statistics: str | None = None,
    license: str = "unknown",  # noqa: A002 - the catalog's field name
    notes: str = "",
    replace: bool = False,
) -> BackboneSpec:
    """Register your own Keras backbone under ``name``; returns its :class:`BackboneSpec`.

    Args:
        name: letters, digits, ``_ . -`` (at most 64); not a catalog name.
        model: a ``.keras`` file (safe mode; Keras' built-in layers only), a callable that
            returns a functional or Sequential ``keras.Model``, or such a model itself.
        preprocessing: ``"tf"``, ``"torch"``, ``"caffe"``, ``"lite"``, ``"none"``,
            ``{"scale": s, "offset": o}`` or ``{"mean": [...], "std": [...]}`` (optionally with
            ``"bgr": True``); see the module docstring.
        groups: the names of the first layers of stage_s4, stage_s8, stage_s16 and stage_s32.
        input_size: the default square input side; ``min_input_size`` the smallest (default:
            the same).
        feature_layer: the layer whose output is the feature map (default: the model's output).
        bn_statistics: ``"real"``, ``"folded"`` or ``"absent"`` (default: ``"real"`` when the
            model has BatchNormalization layers, ``"absent"`` otherwise).
        replace: replace an earlier registration of ``name``.

    Raises:
        InvalidParameterError: a setting is invalid, a layer name is unknown (with close
            matches), or the model does not build at its input sizes.
        ModelFileError: the ``.keras`` file cannot be loaded safely.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidParameterError(
            f"Backbone name {name!r} is not valid: use 1 to 64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit.")
    if catalog.is_catalog_name(name):
        raise InvalidParameterError(
            f"'{name}' is a catalog backbone; give your own backbone another name.")
    if name in _SOURCES and not replace:
        raise InvalidParameterError(
            f"A custom backbone '{name}' is already registered; unregister it first "
            "(autotransfer.unregister_backbone) or pass replace=True.")
    try:
        settings = BackboneSettings(
            preprocessing=preprocessing, groups=list(groups) if not isinstance(groups, str)
            else groups, input_size=input_size, min_input_size=min_input_size,
            feature_layer=feature_layer, bn_statistics=bn_statistics, license=license,
            notes=notes)
    except ValidationError as exc:
        raise InvalidParameterError(
            f"The settings of backbone '{name}' are invalid: {_describe(exc)}.") from None
    return _register(name, model, settings)


def _register(name: str, source: ModelSource, settings: BackboneSettings) -> BackboneSpec:
    """Load, check and measure the backbone, then add its spec to the catalog."""
    source = _resolved(source)
    mode = preprocessing_mode(settings.preprocessing)
    original = _feature_part(name, _load(name, source), settings.feature_layer)
    size, min_size = settings.input_size, settings.min_input_size or settings.input_size
    pairs: list[tuple[Any, Any]] = []
    flat = _rebuilt(name, original, size, pairs)
    ends = _check_layers(name, flat, settings)
    cut = _feature_model(name, flat, settings.feature_layer)
    if min_size != size:
        _check_min_size(name, original, min_size)
    bn = _bn_statistics(name, cut, settings.bn_statistics)
    spec = _spec(name, settings, mode, cut, ends, bn, _origin(source, cut, pairs, settings))
    del original, flat, cut
    _SOURCES[name] = source
    catalog.add_backbone(spec)
    return spec


def _resolved(source: ModelSource) -> ModelSource:
    """A callable as it is; a model file as its absolute path (it must exist)."""
    if callable(source):
        return source
    path = Path(source).expanduser()
    if not path.is_file():
        raise InvalidParameterError(f"Backbone model file '{path}' does not exist.")
    return path.resolve()


def _feature_part(name: str, original: Any, feature_layer: str | None) -> Any:
    """The user's model up to ``feature_layer`` (which must be one of its layers), checked for
    the layer names autotransfer adds around it."""
    names = [layer.name for layer in _all_layers(original)]
    if feature_layer is not None and feature_layer not in names:
        raise InvalidParameterError(
            f"feature_layer '{feature_layer}' is not a layer of backbone '{name}'."
            f"{did_you_mean(feature_layer, names)} Its layers, in order: "
            f"{', '.join(names[:60])}{', …' if len(names) > 60 else ''}.")
    original = _up_to(original, feature_layer)
    reserved = [layer.name for layer in _all_layers(original) if layer.name in _RESERVED]
    if reserved:
        raise InvalidParameterError(
            f"Backbone '{name}' has layers named {reserved}; autotransfer adds layers of these "
            "names around a backbone. Rename them.")
    return original


def _rebuilt(name: str, original: Any, size: int, pairs: list[tuple[Any, Any]]) -> Any:
    """``original`` rebuilt as one flat functional model on ``size``² RGB images (its layers'
    ``(original, copy)`` pairs appended to ``pairs``)."""
    import keras

    try:
        inputs = keras.Input(shape=(size, size, 3), name="image")
        return keras.Model(inputs, _rebuild(original, inputs, pairs), name=name)
    except (ValueError, TypeError) as exc:
        raise InvalidParameterError(
            f"Backbone '{name}' does not build on {size}×{size} RGB images "
            f"({' '.join(str(exc).split())[:300]}). It must take one image input with 3 "
            "channels (channels last) of any size, or of input_size.") from None


def _feature_model(name: str, flat: Any, feature_layer: str | None) -> Any:
    """``flat`` cut at its feature layer, which must output a feature map."""
    import keras

    features = flat.get_layer(feature_layer).output if feature_layer else flat.output
    if len(features.shape) != 4:
        raise InvalidParameterError(
            f"The feature layer of backbone '{name}' "
            f"('{feature_layer or flat.layers[-1].name}') outputs shape "
            f"{tuple(features.shape)}, not a feature map (batch, height, width, channels): set "
            "feature_layer to the last convolutional block, before pooling and classifier.")
    return keras.Model(flat.input, features, name=name)


def _check_min_size(name: str, original: Any, min_size: int) -> None:
    """Refuse a backbone that does not build at its smallest input size."""
    import keras

    try:
        small = keras.Input(shape=(min_size, min_size, 3))
        keras.Model(small, _rebuild(original, small, []))
    except (ValueError, TypeError) as exc:
        raise InvalidParameterError(
            f"Backbone '{name}' does not build at min_input_size {min_size} "
            f"({' '.join(str(exc).split())[:300]}). Raise min_input_size.") from None


def _bn_statistics(name: str, cut: Any, given: str | None) -> str:
    """The ``bn_statistics`` setting, defaulted from (and checked against) the model."""
    import keras

    has_bn = any(isinstance(layer, keras.layers.BatchNormalization) for layer in cut.layers)
    bn = given or ("real" if has_bn else "absent")
    if bn != "absent" and not has_bn:
        raise InvalidParameterError(f"bn_statistics is '{bn}' but backbone '{name}' has no "
                                    "BatchNormalization layer before its feature layer.")
    return bn


class _Origin(NamedTuple):
    """Where the weights come from: the file (empty for a callable), their SHA-256, a
    description of the source, and the identity of weights and settings together."""

    file_name: str
    sha: str
    where: str
    identity: str


def _origin(source: ModelSource, cut: Any, pairs: list[tuple[Any, Any]],
            settings: BackboneSettings) -> _Origin:
    """A model file is identified by its SHA-256; a callable's model by its weights, copied
    into the rebuilt layers first."""
    settings_json = json.dumps(settings.model_dump(mode="json"), sort_keys=True).encode()
    if callable(source):
        for old, new in pairs:
            if old.weights:
                new.set_weights(old.get_weights())
        sha = _weights_digest(cut)
        qualname = getattr(source, "__qualname__", repr(source))
        file_name, where = "", f"{getattr(source, '__module__', '?')}.{qualname}"
    else:
        from autotransfer.backbones.weights import file_sha256

        sha = file_sha256(source)
        file_name, where = str(source), str(source)
    return _Origin(file_name, sha, where, _digest(sha.encode(), settings_json)[:32])


def _spec(name: str, settings: BackboneSettings, mode: PreprocessingMode, cut: Any,
          ends: Sequence[str], bn: str, origin: _Origin) -> BackboneSpec:
    """The catalog entry of the checked backbone (``mode``: its preprocessing, parsed)."""
    size = settings.input_size
    # a group ends where the next starts: the start layer's input (a tensor of this graph)
    cut_outputs = [cut.get_layer(e.removeprefix("before:")).input for e in ends] + [cut.output]
    strides = [size // int(out.shape[1]) for out in cut_outputs]
    return BackboneSpec(
        name=name,
        family="Custom",
        constructor="autotransfer.backbones.custom.CustomBackbone",
        constructor_kwargs=(("backbone", name), ("feature_layer", settings.feature_layer),
                            ("bgr", mode.bgr), ("scale", mode.scale), ("offset", mode.offset)),
        default_input_size=size,
        min_input_size=settings.min_input_size or size,
        preprocessing="none",  # built into the model (a Rescaling layer)
        feature_dim=int(cut.output.shape[-1]),
        params=int(cut.count_params()),
        imagenet_top1=None,
        top1_source="",
        layer_groups=tuple(LayerGroup(g, end, s) for g, end, s in
                           zip(GROUP_NAMES, [*ends, None], strides, strict=True)),
        bn_statistics=bn,  # type: ignore[arg-type]
        weights=(WeightSource("custom", origin.file_name, include_top=False,
                              url=f"custom:{origin.identity}", sha256=origin.sha),),
        license=settings.license,
        notes=(f"Your own backbone, from {origin.where}; preprocessing "
               f"{_text(settings.preprocessing)} (built into the model). {settings.notes}"
               ).strip(),
        tags=("custom",),
    )


def unregister_backbone(name: str) -> None:
    """Forget the custom backbone ``name`` (no error when it is not registered)."""
    _SOURCES.pop(name, None)
    _FILES.pop(name, None)
    catalog.remove_backbone(name)


def custom_backbones() -> list[str]:
    """The names of the custom backbones registered in this process, sorted."""
    return sorted(_SOURCES)


@contextlib.contextmanager
def custom_backbone(name: str, model: ModelSource, **settings: Any) -> Iterator[BackboneSpec]:
    """``with custom_backbone(name, model=..., ...) as spec:`` registers for the block only."""
    spec = register_backbone(name, model, **settings)
    try:
        yield spec
    finally:
        unregister_backbone(name)


def load_backbone_file(path: str | os.PathLike[str], *, replace: bool = False) -> BackboneSpec:
    """Register the backbone a YAML file describes (its ``model`` path is relative to the file)."""
    file = Path(path)
    config = read_backbone_file(file)
    model = Path(config.model).expanduser()
    if not model.is_absolute():
        model = file.parent / model
    if not model.is_file():
        raise InvalidConfigError(f"Backbone file '{file}' names the model '{config.model}', "
                                 f"but '{model}' does not exist.")
    settings = BackboneSettings(**config.model_dump(exclude={"name", "model"}))
    try:
        spec = register_backbone(config.name, model, replace=replace,
                                 **settings.model_dump(exclude={"preprocessing"}),
                                 preprocessing=settings.preprocessing)
    except InvalidParameterError as exc:
        raise InvalidConfigError(f"Backbone file '{file}': {exc}") from None
    _FILES[spec.name] = file
    return spec


def backbone_file_of(name: str) -> Path | None:
    """The YAML file the custom backbone ``name`` was registered from, if any."""
    return _FILES.get(name)


@contextlib.contextmanager
def backbone_files(paths: Sequence[str | os.PathLike[str]]) -> Iterator[list[BackboneSpec]]:
    """Register the backbones of ``paths`` for the block only (what the CLI's ``--backbone-file``
    does for one command)."""
    specs: list[BackboneSpec] = []
    try:
        for path in paths:
            specs.append(load_backbone_file(path))
        yield specs
    finally:
        for spec in specs:
            unregister_backbone(spec.name)
