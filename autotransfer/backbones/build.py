"""Build a catalog backbone as a Keras model, and split a built model into its layer groups."""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from autotransfer.backbones.catalog import get_backbone
from autotransfer.backbones.spec import BackboneSpec
from autotransfer.backbones.weights import resolve_weights, unavailable_message
from autotransfer.errors import (AutoTransferError, InvalidConfigError, InvalidParameterError,
                                 WeightsFileError, WeightsUnavailableError)

if TYPE_CHECKING:  # pragma: no cover
    import keras

Weights = str | os.PathLike[str] | None


def _spec(spec_or_name: BackboneSpec | str) -> BackboneSpec:
    return spec_or_name if isinstance(spec_or_name, BackboneSpec) else get_backbone(spec_or_name)


def _constructor(spec: BackboneSpec) -> Any:
    module_name, _, attr = spec.constructor.rpartition(".")
    return getattr(importlib.import_module(module_name), attr)


def _check_input_size(spec: BackboneSpec, input_size: int | None, include_top: bool) -> int:
    size = spec.default_input_size if input_size is None else input_size
    if not isinstance(size, int) or isinstance(size, bool) or size < spec.min_input_size:
        raise InvalidParameterError(
            f"The 'input_size' of backbone '{spec.name}' must be an integer >= "
            f"{spec.min_input_size}; got {input_size!r} instead."
        )
    if include_top and size != spec.default_input_size:
        raise InvalidParameterError(
            f"With include_top=True, backbone '{spec.name}' needs its ImageNet input size "
            f"{spec.default_input_size}; got input_size={size}. Use include_top=False to change "
            "the input size."
        )
    return size


def _is_download_failure(exc: BaseException) -> bool:
    # Keras' get_file wraps HTTP and URL errors in a bare Exception("URL fetch failure on ...").
    return isinstance(exc, OSError) or "URL fetch failure" in str(exc)


def build_backbone(
    spec_or_name: BackboneSpec | str,
    input_size: int | None = None,
    weights: Weights = "imagenet",
    include_top: bool = False,
    *,
    pooling: str | None = "avg",
    include_preprocessing: bool = True,
    classifier_activation: str | None = "softmax",
) -> keras.Model:
    """Build a catalog backbone as a Keras model.

    Args:
        spec_or_name: a :class:`BackboneSpec` or a catalog name such as ``"mobilenet_v2"``.
        input_size: square input side in pixels (default: the spec's ``default_input_size``).
        weights: ``"imagenet"`` (resolved as described in :mod:`.weights`), a path to a weights
            file, or ``None`` for random initialisation.
        include_top: keep the 1000-class ImageNet classifier (then ``input_size`` must be the
            default one).
        pooling: ``"avg"``, ``"max"`` or ``None`` (feature map) when ``include_top`` is false.
        include_preprocessing: prepend the spec's preprocessing (Keras' own ``Rescaling``, after a
            channel flip for BGR modes) so the model takes RGB in [0, 255], whatever the
            backbone; with ``False`` the caller applies
            :func:`~autotransfer.backbones.preprocessing.preprocess_input` itself.
        classifier_activation: activation of the classifier (``None`` for logits).

    Raises:
        WeightsUnavailableError: the weights are neither given, cached, downloadable nor
            installed; the message says which file to put where or which package to install.
    """
    import keras

    from autotransfer.backbones.layers import preprocess

    spec = _spec(spec_or_name)
    size = _check_input_size(spec, input_size, include_top)
    weights_arg: Any = None
    if weights is not None:
        path = resolve_weights(spec, weights, include_top=include_top)
        weights_arg = str(path) if path is not None else "imagenet"

    shape = (size, size, 3)
    kwargs: dict[str, Any] = dict(spec.constructor_kwargs)
    kwargs.update(input_shape=shape, include_top=include_top, weights=weights_arg,
                  classifier_activation=classifier_activation)
    if not include_top:
        kwargs["pooling"] = pooling
    inputs = None
    if include_preprocessing and spec.preprocessing != "none":
        inputs = keras.Input(shape=shape, name="image")
        kwargs["input_tensor"] = preprocess(inputs, spec.preprocessing)
    try:
        model = _constructor(spec)(**kwargs)
    except AutoTransferError:
        raise
    except Exception as exc:
        if weights_arg is not None and weights_arg != "imagenet" and not isinstance(
                exc, MemoryError):  # a damaged or mismatched weights file of the user's (OSError,
            # ValueError; KeyError: a .keras zip without model.weights.h5; anything Keras raises)
            raise WeightsFileError(
                f"The weights file '{weights_arg}' cannot be loaded into {spec.name}: "
                f"{type(exc).__name__}: {str(exc)[:300]}. Check that it is {spec.name}'s "
                "weights file, complete and undamaged, or use weights: imagenet.") from None
        if weights_arg != "imagenet" or not _is_download_failure(exc):
            raise
        source = spec.weight_source(include_top)
        raise WeightsUnavailableError(unavailable_message(spec, source, str(exc))) from None
    if inputs is not None:  # a single input tensor, not the list Keras builds from input_tensor
        model = keras.Model(inputs, model.output, name=model.name)
    return model


@dataclass(frozen=True)
class GroupLayers:
    """The layers of one layer group of a built model, in topological order."""

    name: str
    stride: int
    layers: tuple[str, ...]

    @property
    def first(self) -> str:
        return self.layers[0]

    @property
    def last(self) -> str:
        return self.layers[-1]


def inbound_layers(layer: Any) -> list[Any]:
    """The layers that feed ``layer`` (first call site), in the order of its inputs."""
    nodes = getattr(layer, "_inbound_nodes", [])
    if not nodes:
        return []
    return [node.operation for node in nodes[0].parent_nodes]


def _select(model: Any, spec: BackboneSpec, selector: str) -> Any:
    try:
        if selector.startswith("before:"):
            parents = inbound_layers(model.get_layer(selector.removeprefix("before:")))
            if len(parents) != 1:
                raise ValueError(f"it has {len(parents)} inputs, not 1")
            return parents[0]
        if "#" in selector:
            cls, _, index = selector.partition("#")
            return [op for op in model.operations if type(op).__name__ == cls][int(index)]
        return model.get_layer(selector)
    except (ValueError, IndexError) as exc:
        raise InvalidConfigError(
            f"Layer-group selector '{selector}' of backbone '{spec.name}' does not match model "
            f"'{model.name}' ({exc}). The catalog entry does not fit this Keras version."
        ) from None


def group_boundaries(model: Any, spec_or_name: BackboneSpec | str) -> list[int]:
    """For each layer group, the index in ``model.operations`` one past its last operation.

    ``model.operations`` is the model's graph in topological order: layers and the bare ops
    (``x + y``) that some Keras Applications use.
    """
    spec = _spec(spec_or_name)
    operations = model.operations
    index = {id(op): i for i, op in enumerate(operations)}
    stops: list[int] = []
    for group in spec.layer_groups:
        if group.end is None:
            stop = len(operations)
        else:
            stop = index[id(_select(model, spec, group.end))] + 1
        if stop <= (stops[-1] if stops else 0):
            raise InvalidConfigError(
                f"Layer group '{group.name}' of backbone '{spec.name}' ends at '{group.end}', "
                "before the previous group: the catalog's boundaries are out of order."
            )
        stops.append(stop)
    return stops


def layer_group_ranges(model: Any, spec_or_name: BackboneSpec | str) -> list[GroupLayers]:
    """Split a model built by :func:`build_backbone` into the spec's layer groups.

    Every layer belongs to exactly one group; groups are contiguous in topological order, so
    freezing "the first k groups" means setting ``trainable=False`` on the layers of
    ``groups[:k]``. Layers after the last boundary (head conv, pooling, classifier) belong to the
    last group.
    """
    import keras

    spec = _spec(spec_or_name)
    operations = model.operations
    groups: list[GroupLayers] = []
    start = 0
    for group, stop in zip(spec.layer_groups, group_boundaries(model, spec), strict=True):
        names = tuple(op.name for op in operations[start:stop] if isinstance(op, keras.Layer))
        groups.append(GroupLayers(group.name, group.stride, names))
        start = stop
    return groups

