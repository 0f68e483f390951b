"""Bring your own backbone: register a Keras model so that autotransfer treats it like a catalog
entry (probe, advise, auto, train, tune).

A backbone is a ``.keras`` file (loaded with Keras' ``safe_mode=True`` and only when every layer
is one of Keras' built-in layers: nothing in a model file can run code) or a Python callable that
returns a ``keras.Model`` (your own code, so custom layers are fine). With it come:

* its **preprocessing**: how RGB pixels in [0, 255] become what it was trained on: a catalog mode
  (``"tf"``, ``"torch"``, ``"caffe"``, ``"lite"``, ``"none"``), ``{scale, offset}``
  (``x * scale + offset``) or ``{mean, std}`` (``(x / 255 - mean) / std``, torchvision's
  convention), optionally ``bgr: true``; it is built into the model with Keras' ``Rescaling``;
* its **layer groups**: the names of the four layers where ``stage_s4``, ``stage_s8``,
  ``stage_s16`` and ``stage_s32`` start (the stem starts at the input), so that "train from group
  k" means the same as for the catalog's backbones;
* its **input size** (default and minimum) and optionally the **feature layer** whose output is
  the feature map (default: the model's output; layers after it, e.g. your classifier, are cut).

Registration loads and checks the model once (TensorFlow is imported then) and returns a
:class:`~autotransfer.backbones.spec.BackboneSpec` with measured feature size, parameter count and
group strides. The same settings come from a small YAML file (:func:`load_backbone_file`, the
CLI's ``--backbone-file``). Registrations live in this process only: :func:`unregister_backbone`,
or the context managers :func:`custom_backbone` and :func:`backbone_files`, undo them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from autotransfer.backbones import catalog
from autotransfer.backbones.preprocessing import MODES, PreprocessingMode
from autotransfer.backbones.spec import GROUP_NAMES, BackboneSpec, LayerGroup, WeightSource
from autotransfer.errors import (InvalidConfigError, InvalidParameterError, ModelFileError,
                                 did_you_mean)

if TYPE_CHECKING:  # pragma: no cover
    import keras

#: what ``model=`` takes: a ``.keras`` file, or a callable returning a ``keras.Model``
ModelSource = str | os.PathLike[str] | Callable[[], Any]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: layer names the wrapper adds around the user's layers
_RESERVED = ("image", "preprocess", "avg_pool", "max_pool")

#: name -> the model source of each registered custom backbone
_SOURCES: dict[str, ModelSource] = {}
#: name -> the YAML file it was registered from (for the commands printed to the user)
_FILES: dict[str, Path] = {}

Triple = Annotated[list[float], Field(min_length=3, max_length=3)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ScaleOffset(_Strict):
    """``x * scale + offset`` on RGB (or BGR) pixels in [0, 255]."""

    scale: float | Triple
    offset: float | Triple = 0.0
    bgr: bool = False


class MeanStd(_Strict):
    """``(x / 255 - mean) / std`` (torchvision's convention: mean and std of pixels in [0, 1])."""

    mean: Triple
    std: Triple
    bgr: bool = False

    @model_validator(mode="after")
    def _unit_range(self) -> MeanStd:
        if any(not 0.0 <= m <= 1.0 for m in self.mean) or any(not 0.0 < s <= 1.0 for s in self.std):
            raise ValueError("mean and std are on the [0, 1] scale of torchvision (e.g. mean "
                             "[0.485, 0.456, 0.406], std [0.229, 0.224, 0.225]); for constants in "
                             "pixel units use {scale, offset}")
        return self


class BackboneSettings(_Strict):
    """Everything but the model itself; the YAML file adds ``name`` and ``model`` (a path)."""

    preprocessing: Literal["tf", "torch", "caffe", "lite", "none"] | ScaleOffset | MeanStd
    groups: list[str] = Field(
        min_length=len(GROUP_NAMES) - 1, max_length=len(GROUP_NAMES) - 1,
        description="The first layer of stage_s4, stage_s8, stage_s16 and stage_s32.")
    input_size: int = Field(ge=16, le=1024)
    min_input_size: int | None = Field(default=None, ge=16, le=1024)
    feature_layer: str | None = None
    bn_statistics: Literal["real", "folded", "absent"] | None = None
    license: str = "unknown"
    notes: str = ""

    @model_validator(mode="after")
    def _sizes(self) -> BackboneSettings:
        if self.min_input_size is not None and self.min_input_size > self.input_size:
            raise ValueError(f"min_input_size {self.min_input_size} is larger than input_size "
                             f"{self.input_size}")
        if len(set(self.groups)) != len(self.groups):
            raise ValueError(f"the group start layers must differ; got {self.groups}")
        return self


class BackboneFile(BackboneSettings):
    """The ``--backbone-file`` YAML: ``name``, ``model`` (a ``.keras`` path, relative to the
    YAML file) and the settings of :class:`BackboneSettings`."""

    name: str
    model: str


def preprocessing_mode(preprocessing: Any) -> PreprocessingMode:
    """The ``x -> flip? * scale + offset`` constants of a validated ``preprocessing`` value."""
    if isinstance(preprocessing, str):
        return MODES[preprocessing]
    if isinstance(preprocessing, MeanStd):
        scale = tuple(1.0 / (255.0 * s) for s in preprocessing.std)
        offset = tuple(-m / s for m, s in zip(preprocessing.mean, preprocessing.std, strict=True))
        return PreprocessingMode(preprocessing.bgr, scale, offset)  # type: ignore[arg-type]

    def triple(v: float | list[float]) -> tuple[float, float, float]:
        if isinstance(v, (int, float)):
            return (float(v),) * 3
        return tuple(map(float, v))  # type: ignore[return-value]

    return PreprocessingMode(preprocessing.bgr, triple(preprocessing.scale),
                             triple(preprocessing.offset))


def _describe(error: ValidationError) -> str:
    parts = []
    for e in error.errors():
        where = ".".join(str(p) for p in e["loc"]) or "(top level)"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)


# --- loading the user's model (TensorFlow from here on) -----------------------------------------


def _load_keras_file(path: Path) -> keras.Model:
    """Load ``path`` with Keras' safe mode; refuse anything but Keras' built-in layers."""
    import keras

    if path.suffix != ".keras":
        raise ModelFileError(
            f"Backbone model '{path}' is not a .keras file. Save it with "
            "model.save('name.keras') (Keras 3), or register a Python callable that returns it.")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"Backbone model '{path}' is not a Keras zip archive: it is damaged "
                             "or of another format. Save it again with model.save('name.keras').")
    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises ValueError/TypeError with its own explanation
        reason = " ".join(str(exc).split())[:400]
        raise ModelFileError(
            f"Backbone model '{path}' cannot be loaded safely ({reason}). autotransfer loads "
            "model files only with Keras' safe_mode and without custom objects, so a file never "
            "runs code: rebuild the model from Keras' built-in layers (no Lambda or custom "
            "layers), or register a Python callable that returns it "
            "(autotransfer.register_backbone(name, model=make_model, ...))."
        ) from None
    foreign = sorted({type(layer).__name__ for layer in _all_layers(model)
                      if not type(layer).__module__.startswith("keras.")})
    if foreign:
        raise ModelFileError(
            f"Backbone model '{path}' uses layers that are not Keras built-ins "
            f"({', '.join(foreign)}). A model file must consist of Keras' own layers; register a "
            "Python callable that builds the model instead.")
    return model


def _all_layers(model: Any) -> Iterator[Any]:
    import keras

    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)


def _load(name: str, source: ModelSource) -> keras.Model:
    import keras

    if callable(source):
        model = source if isinstance(source, keras.Model) else source()
        if not isinstance(model, keras.Model):
            raise InvalidParameterError(
                f"The callable given for backbone '{name}' returned {type(model).__name__}, not a "
                "keras.Model.")
        return model
    return _load_keras_file(Path(source))


def _up_to(model: Any, feature_layer: str | None) -> Any:
    """``model`` cut at its top-level layer ``feature_layer``, so that a classifier after it (a
    ``Flatten`` + ``Dense`` of a fixed input size) does not stop other input sizes; a nested
    layer is cut after flattening instead."""
    import keras

    if feature_layer is None or not any(l.name == feature_layer for l in model.layers):
        return model
    try:
        return keras.Model(model.inputs, model.get_layer(feature_layer).output, name=model.name)
    except Exception:  # noqa: BLE001 - e.g. a Sequential without an Input: cut after flattening
        return model


def _clone_layer(layer: Any) -> Any:
    """A fresh copy of ``layer`` (same name and settings) that follows the global dtype policy
    when the original used plain float32, so mixed precision applies to it as to the catalog's."""
    config = layer.get_config()
    dtype = config.get("dtype")
    if isinstance(dtype, dict) and dtype.get("config", {}).get("name") == "float32":
        config.pop("dtype")
    elif dtype == "float32":
        config.pop("dtype")
    try:
        return type(layer).from_config(config)
    except Exception as exc:  # noqa: BLE001 - a custom layer's own get_config/from_config
        raise InvalidParameterError(
            f"Layer '{layer.name}' ({type(layer).__name__}) cannot be copied from its config "
            f"({' '.join(str(exc).split())[:200]}): give it a get_config() that returns every "
            "argument of its __init__.") from None


def _rebuild(model: Any, x: Any, pairs: list[tuple[Any, Any]]) -> Any:
    """Apply copies of ``model``'s layers to ``x``, flattening nested models, so that every layer
    is a top-level layer of the result (the layer groups select them by name)."""
    import keras

    if isinstance(model, keras.Sequential):
        for layer in model.layers:
            nested = isinstance(layer, keras.Model)
            x = _rebuild(layer, x, pairs) if nested else _call(layer, x, pairs)
        return x
    if not hasattr(model, "_run_through_graph"):
        raise InvalidParameterError(
            f"Backbone model '{model.name}' is a subclassed keras.Model; autotransfer needs a "
            "functional or Sequential model to find its layers by name.")
    if len(model.inputs) != 1:
        raise InvalidParameterError(f"Backbone model '{model.name}' has {len(model.inputs)} "
                                    "inputs; a backbone takes one image input.")

    def operation_fn(op: Any) -> Any:
        if isinstance(op, keras.Model):
            return lambda inner, *args, **kwargs: _rebuild(op, inner, pairs)
        if isinstance(op, keras.layers.Layer):
            new = _clone_layer(op)
            pairs.append((op, new))
            return new
        try:  # a bare operation (x + y): a copy too, so that its first call is in this graph
            return type(op).from_config(op.get_config())
        except Exception:  # noqa: BLE001 - an operation Keras cannot copy: share it (no state)
            return op

    return model._run_through_graph(x, operation_fn=operation_fn)


def _call(layer: Any, x: Any, pairs: list[tuple[Any, Any]]) -> Any:
    new = _clone_layer(layer)
    pairs.append((layer, new))
    return new(x)


def _rescale(x: Any, mode: PreprocessingMode) -> Any:
    import keras
    import numpy as np

    if mode.bgr:
        x = keras.ops.flip(x, axis=-1)
    if mode.scale == (1.0,) * 3 and mode.offset == (0.0,) * 3:
        return x
    uniform = len(set(mode.scale)) == 1 and len(set(mode.offset)) == 1
    scale: Any = mode.scale[0] if uniform else np.asarray(mode.scale, dtype="float32")
    offset: Any = mode.offset[0] if uniform else np.asarray(mode.offset, dtype="float32")
    return keras.layers.Rescaling(scale, offset, name="preprocess")(x)


def CustomBackbone(  # noqa: N802 - Keras Applications signature
    input_shape: tuple[int, ...] | None = None,
    include_top: bool = False,
    weights: str | None = None,
    input_tensor: Any = None,
    pooling: str | None = None,
    classes: int = 1000,
    classifier_activation: str | None = "softmax",
    *,
    backbone: str,
    feature_layer: str | None = None,
    bgr: bool = False,
    scale: tuple[float, ...] = (1.0, 1.0, 1.0),
    offset: tuple[float, ...] = (0.0, 0.0, 0.0),
) -> keras.Model:
    """Build the registered backbone ``backbone`` (the constructor its spec names).

    The result takes RGB in [0, 255] (its preprocessing is a built-in ``Rescaling`` layer), holds
    copies of the user's layers up to ``feature_layer`` as top-level layers, then pooling.
    ``weights``: ``None`` (fresh initialisation), the registered ``.keras`` file or
    ``"imagenet"`` (the model's own weights), or another weights file of the same architecture.
    """
    import keras

    from autotransfer.backbones.layers import classifier_or_pooling, model_input

    if include_top:
        raise InvalidParameterError(f"Custom backbone '{backbone}' has no ImageNet classifier; "
                                    "build it with include_top=False.")
    source = _SOURCES.get(backbone)
    if source is None:
        raise InvalidConfigError(f"Custom backbone '{backbone}' is not registered in this "
                                 "process; register it (or pass its --backbone-file) again.")
    original = _up_to(_load(backbone, source), feature_layer)
    x, inputs = model_input(input_shape, input_tensor)
    x = _rescale(x, PreprocessingMode(bgr, tuple(scale), tuple(offset)))  # type: ignore[arg-type]
    pairs: list[tuple[Any, Any]] = []
    x = _rebuild(original, x, pairs)
    flat = keras.Model(inputs, x, name=backbone)
    if feature_layer is not None:
        flat = keras.Model(inputs, flat.get_layer(feature_layer).output, name=backbone)
    if weights is not None:
        for old, new in pairs:
            if old.weights:
                new.set_weights(old.get_weights())
        own = (isinstance(source, (str, os.PathLike))
               and os.path.realpath(weights) == os.path.realpath(source))
        if weights != "imagenet" and not own:
            flat.load_weights(weights)
    out = classifier_or_pooling(flat.output, include_top=False, pooling=pooling, classes=classes,
                                classifier_activation=classifier_activation, dropout=0.0)
    return keras.Model(inputs, out, name=backbone)


# --- registration --------------------------------------------------------------------------------


def _check_layers(name: str, model: Any, settings: BackboneSettings) -> list[str]:
    """Check the feature layer and the group starts against the built model; return ``end``
    selectors of the first four groups."""
    import keras

    from autotransfer.backbones.build import inbound_layers

    names = [layer.name for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]

    def unknown(what: str, layer: str) -> InvalidParameterError:
        return InvalidParameterError(
            f"{what} '{layer}' is not a layer of backbone '{name}'.{did_you_mean(layer, names)} "
            f"Its layers, in order: {', '.join(names[:60])}{', …' if len(names) > 60 else ''}.")

    if settings.feature_layer is not None and settings.feature_layer not in names:
        raise unknown("feature_layer", settings.feature_layer)
    order = {op_name: i for i, op_name in enumerate(op.name for op in model.operations)}
    ends, previous = [], -1
    for group, start in zip(GROUP_NAMES[1:], settings.groups, strict=True):
        if start not in names:
            raise unknown(f"The start of group {group}", start)
        parents = inbound_layers(model.get_layer(start))
        if len(parents) != 1:
            raise InvalidParameterError(
                f"Group {group} of backbone '{name}' starts at '{start}', which has "
                f"{len(parents)} inputs; a group must start at a layer with one input (where the "
                "network can be cut), e.g. the first layer of a stage.")
        if order[parents[0].name] <= previous:
            raise InvalidParameterError(
                f"Group {group} of backbone '{name}' starts at '{start}', which is not after the "
                f"start of the previous group: give the starts of {', '.join(GROUP_NAMES[1:])} in "
                "order.")
        previous = order[parents[0].name]
        ends.append(f"before:{start}")
    _check_cuts(name, model, settings.groups, ends)
    return ends


def _check_cuts(name: str, model: Any, starts: Sequence[str], ends: Sequence[str]) -> None:
    """Refuse a group start that a connection skips over: training cuts the network there (the
    frozen part runs once, the rest on its output), so only one tensor may cross."""
    from autotransfer.backbones.build import inbound_layers

    index = {id(op): i for i, op in enumerate(model.operations)}
    cuts = [index[id(inbound_layers(model.get_layer(e.removeprefix("before:")))[0])]
            for e in ends]
    for nodes in model._nodes_by_depth.values():  # this model's own graph (Keras 3)
        for node in nodes:
            child = index.get(id(node.operation))
            for parent_node in node.parent_nodes:
                parent = index.get(id(parent_node.operation))
                if child is None or parent is None:
                    continue
                for group, start, cut in zip(GROUP_NAMES[1:], starts, cuts, strict=True):
                    if parent < cut < child:
                        raise InvalidParameterError(
                            f"Group {group} of backbone '{name}' cannot start at '{start}': "
                            f"'{node.operation.name}' after it also takes the output of "
                            f"'{parent_node.operation.name}' from before it (a skip "
                            "connection), so the network cannot be cut there. Start the group "
                            "where a single tensor flows, e.g. at the first layer of a stage.")


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part + b"\0")
    return h.hexdigest()


def _weights_digest(model: Any) -> str:
    import keras
    import numpy as np

    h = hashlib.sha256()
    for w in model.weights:
        h.update(w.path.encode() + b"\0")
        h.update(np.ascontiguousarray(keras.ops.convert_to_numpy(w)).tobytes())
    return h.hexdigest()


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


def _text(preprocessing: Any) -> str:
    if isinstance(preprocessing, str):
        return f"'{preprocessing}'"
    return json.dumps(preprocessing.model_dump(mode="json"))


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


def read_backbone_file(path: str | os.PathLike[str]) -> BackboneFile:
    """Read and validate a backbone YAML (``yaml.safe_load``; unknown keys are refused)."""
    import yaml

    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InvalidConfigError(f"Cannot read backbone file '{file}': "
                                 f"{exc.strerror or exc}.") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InvalidConfigError(f"Backbone file '{file}' is not valid YAML: "
                                 f"{' '.join(str(exc).split())}.") from None
    if not isinstance(data, dict):
        raise InvalidConfigError(f"Backbone file '{file}' must be a mapping with name, model, "
                                 "preprocessing, groups and input_size.")
    try:
        return BackboneFile.model_validate(data)
    except ValidationError as exc:
        raise InvalidConfigError(f"Backbone file '{file}' is invalid: {_describe(exc)}. See "
                                 "the README, 'Bring your own backbone'.") from None


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
