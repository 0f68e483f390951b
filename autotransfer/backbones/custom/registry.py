"""The registry of custom backbones in this process: :func:`register_backbone` (load, check,
measure, add to the catalog), :func:`load_backbone_file` for the YAML, and the undo of both."""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from autotransfer.backbones import catalog
from autotransfer.backbones.custom.loading import (_SOURCES, ModelSource, _all_layers,
                                                   _check_layers, _digest, _load,
                                                   _weights_digest)
from autotransfer.backbones.custom.rebuild import _rebuild, _up_to
from autotransfer.backbones.custom.settings import (BackboneSettings, _describe, _text,
                                                    preprocessing_mode, read_backbone_file)
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
    import keras

    if not callable(source):
        path = Path(source).expanduser()
        if not path.is_file():
            raise InvalidParameterError(f"Backbone model file '{path}' does not exist.")
        source = path.resolve()
    mode = preprocessing_mode(settings.preprocessing)
    original = _load(name, source)
    if settings.feature_layer is not None and not any(
            layer.name == settings.feature_layer for layer in _all_layers(original)):
        names = [layer.name for layer in _all_layers(original)]
        raise InvalidParameterError(
            f"feature_layer '{settings.feature_layer}' is not a layer of backbone '{name}'."
            f"{did_you_mean(settings.feature_layer, names)} Its layers, in order: "
            f"{', '.join(names[:60])}{', …' if len(names) > 60 else ''}.")
    original = _up_to(original, settings.feature_layer)
    reserved = [layer.name for layer in _all_layers(original) if layer.name in _RESERVED]
    if reserved:
        raise InvalidParameterError(
            f"Backbone '{name}' has layers named {reserved}; autotransfer adds layers of these "
            "names around a backbone. Rename them.")
    pairs: list[tuple[Any, Any]] = []
    size, min_size = settings.input_size, settings.min_input_size or settings.input_size
    try:
        inputs = keras.Input(shape=(size, size, 3), name="image")
        flat = keras.Model(inputs, _rebuild(original, inputs, pairs), name=name)
    except (ValueError, TypeError) as exc:
        raise InvalidParameterError(
            f"Backbone '{name}' does not build on {size}×{size} RGB images "
            f"({' '.join(str(exc).split())[:300]}). It must take one image input with 3 "
            "channels (channels last) of any size, or of input_size.") from None
    ends = _check_layers(name, flat, settings)
    features = (flat.get_layer(settings.feature_layer).output if settings.feature_layer
                else flat.output)
    if len(features.shape) != 4:
        raise InvalidParameterError(
            f"The feature layer of backbone '{name}' "
            f"('{settings.feature_layer or flat.layers[-1].name}') outputs shape "
            f"{tuple(features.shape)}, not a feature map (batch, height, width, channels): set "
            "feature_layer to the last convolutional block, before pooling and classifier.")
    cut = keras.Model(inputs, features, name=name)
    # a group ends where the next starts: the start layer's input (a tensor of this graph)
    cut_outputs = [cut.get_layer(e.removeprefix("before:")).input for e in ends] + [features]
    strides = [size // int(out.shape[1]) for out in cut_outputs]
    if min_size != size:
        try:
            small = keras.Input(shape=(min_size, min_size, 3))
            keras.Model(small, _rebuild(original, small, []))
        except (ValueError, TypeError) as exc:
            raise InvalidParameterError(
                f"Backbone '{name}' does not build at min_input_size {min_size} "
                f"({' '.join(str(exc).split())[:300]}). Raise min_input_size.") from None
    has_bn = any(isinstance(layer, keras.layers.BatchNormalization) for layer in cut.layers)
    bn = settings.bn_statistics or ("real" if has_bn else "absent")
    if bn != "absent" and not has_bn:
        raise InvalidParameterError(f"bn_statistics is '{bn}' but backbone '{name}' has no "
                                    "BatchNormalization layer before its feature layer.")
    settings_json = json.dumps(settings.model_dump(mode="json"), sort_keys=True).encode()
    if callable(source):
        for old, new in pairs:
            if old.weights:
                new.set_weights(old.get_weights())
        weights_id = _weights_digest(cut)
        file_name, sha = "", weights_id
        qualname = getattr(source, "__qualname__", repr(source))
        where = f"{getattr(source, '__module__', '?')}.{qualname}"
    else:
        from autotransfer.backbones.weights import file_sha256

        sha = file_sha256(source)
        file_name, where = str(source), str(source)
    identity = _digest(sha.encode(), settings_json)[:32]
    spec = BackboneSpec(
        name=name,
        family="Custom",
        constructor="autotransfer.backbones.custom.CustomBackbone",
        constructor_kwargs=(("backbone", name), ("feature_layer", settings.feature_layer),
                            ("bgr", mode.bgr), ("scale", mode.scale), ("offset", mode.offset)),
        default_input_size=size,
        min_input_size=min_size,
        preprocessing="none",  # built into the model (a Rescaling layer)
        feature_dim=int(features.shape[-1]),
        params=int(cut.count_params()),
        imagenet_top1=None,
        top1_source="",
        layer_groups=tuple(LayerGroup(g, end, s) for g, end, s in
                           zip(GROUP_NAMES, [*ends, None], strides, strict=True)),
        bn_statistics=bn,  # type: ignore[arg-type]
        weights=(WeightSource("custom", file_name, include_top=False, url=f"custom:{identity}",
                              sha256=sha),),
        license=settings.license,
        notes=(f"Your own backbone, from {where}; preprocessing {_text(settings.preprocessing)} "
               f"(built into the model). {settings.notes}").strip(),
        tags=("custom",),
    )
    del original, flat, cut
    _SOURCES[name] = source
    catalog.add_backbone(spec)
    return spec


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
