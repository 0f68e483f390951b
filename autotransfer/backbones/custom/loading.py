"""Loading the user's model safely (a ``.keras`` file in Keras' safe mode, built-in layers only,
or a callable) and checking its layer groups against the built model; digests that identify it.
TensorFlow is imported inside the functions only."""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autotransfer.backbones.custom.settings import BackboneSettings
from autotransfer.backbones.spec import GROUP_NAMES
from autotransfer.errors import InvalidParameterError, ModelFileError, did_you_mean

if TYPE_CHECKING:  # pragma: no cover
    import keras

#: what ``model=`` takes: a ``.keras`` file, or a callable returning a ``keras.Model``
ModelSource = str | os.PathLike[str] | Callable[[], Any]

#: name -> the model source of each registered custom backbone
_SOURCES: dict[str, ModelSource] = {}


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
