"""The classifier a recipe describes: backbone + head, and what each phase makes trainable.

The model is *flat*: the backbone's layers and the head's layers live in one functional graph, so
any layer-group boundary can be used to split it (see :mod:`.feature_cache`). Every layer is
one of Keras' own; what is shipped wraps this graph in a resize (see :mod:`.export`).

BatchNorm policy (stated, not implied):

* ``frozen``: every BatchNorm layer has ``trainable = False`` in every phase. In Keras 3 that
  keeps it in inference mode (ImageNet, or AdaBN, statistics) *and* fixes its scale and offset,
  even when the rest of its group trains.
* ``trainable``: BatchNorm layers of trainable groups update their statistics (batch statistics
  in training) and their scale and offset; those of frozen groups stay frozen, in inference mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import keras

from autotransfer.backbones.build import GroupLayers, build_backbone, layer_group_ranges
from autotransfer.backbones.catalog import get_backbone
from autotransfer.backbones.spec import BackboneSpec
from autotransfer.errors import InvalidConfigError

HEAD_GROUP = "head"
#: values of ``backbone.weights`` that mean random initialisation
RANDOM_WEIGHTS = ("none", "random")


@dataclass
class Classifier:
    """A built classifier and its layer groups (5 backbone groups, then the head)."""

    model: keras.Model
    backbone: keras.Model
    spec: BackboneSpec
    groups: list[GroupLayers]
    head_layers: tuple[str, ...]
    bn_policy: str
    trainable_from: int | None = field(default=None)

    @property
    def group_names(self) -> list[str]:
        return [g.name for g in self.groups] + [HEAD_GROUP]

    def group_of(self) -> dict[str, int]:
        """``layer name -> group index`` (5 for the head)."""
        index = {name: i for i, g in enumerate(self.groups) for name in g.layers}
        index.update({name: len(self.groups) for name in self.head_layers})
        return index

    def boundary(self, trainable_from: int) -> Any:
        """The tensor where group ``trainable_from`` starts (``None`` for 0: nothing frozen)."""
        if trainable_from <= 0:
            return None
        if trainable_from >= len(self.groups):
            return self.backbone.output
        from autotransfer.backbones.build import group_boundaries

        stop = group_boundaries(self.backbone, self.spec)[trainable_from - 1]
        return self.backbone.operations[stop - 1].output


def _weights_arg(recipe: Any, spec: BackboneSpec) -> str | None:
    weights = recipe.backbone.weights
    if weights.lower() in RANDOM_WEIGHTS:
        return None
    if weights == "imagenet" and not spec.has_pretrained_weights:
        raise InvalidConfigError(
            f"backbone.weights is 'imagenet' but backbone '{spec.name}' has no pretrained weights. "
            "Set backbone.weights to 'none' for random initialisation, or pick another backbone."
        )
    return weights


def check_recipe(recipe: Any) -> BackboneSpec:
    """Refuse what the trainer cannot honour, with the reason; returns the backbone spec."""
    spec = get_backbone(recipe.backbone.name)
    if recipe.backbone.input_size < spec.min_input_size:
        raise InvalidConfigError(
            f"backbone.input_size is {recipe.backbone.input_size} but '{spec.name}' needs at least "
            f"{spec.min_input_size} pixels."
        )
    if recipe.bn_policy == "trainable" and spec.bn_statistics == "folded":
        raise InvalidConfigError(
            f"bn_policy is 'trainable' but '{spec.name}' has BatchNorm folded into its "
            "convolutions (placeholder statistics): its BN layers must stay in inference mode. "
            "Use bn_policy: frozen."
        )
    method = recipe.domain_adaptation.method
    if method in ("adabn", "adabn_target") and spec.bn_statistics != "real":
        raise InvalidConfigError(
            f"domain_adaptation.method is '{method}' but '{spec.name}' has "
            f"{'no BatchNorm' if spec.bn_statistics == 'absent' else 'folded BatchNorm'}, so there "
            "are no statistics to re-estimate. Set domain_adaptation.method to 'none'."
        )
    _weights_arg(recipe, spec)
    return spec


def head_hidden_units(recipe: Any) -> int:
    """Width of the head's hidden layer: ``head.hidden_units``, else the adaptation bottleneck
    of a feature-aligning method (its aligned features must be trainable)."""
    from autotransfer.recipe.schema import FEATURE_METHODS

    da = recipe.domain_adaptation
    if recipe.head.hidden_units or da.method not in FEATURE_METHODS:
        return int(recipe.head.hidden_units)
    return int(da.bottleneck_units)


def build_classifier(recipe: Any, n_classes: int, *,
                     weights: str | None | bool = True) -> Classifier:
    """Backbone (pooled as ``recipe.head.pooling``) + dropout + [hidden dense] + softmax.

    ``weights=True`` uses the recipe's weights; ``False``/``None`` random initialisation (for
    rebuilding a model whose weights are loaded next). The output layer computes in float32
    even under mixed precision.
    """
    spec = check_recipe(recipe)
    weights_arg = _weights_arg(recipe, spec) if weights is True else (weights or None)
    backbone = build_backbone(spec, recipe.backbone.input_size, weights=weights_arg,
                              pooling=recipe.head.pooling)
    x = backbone.output
    head: list[str] = []
    hidden = head_hidden_units(recipe)
    if hidden:
        x = keras.layers.Dense(hidden, activation="relu", name="head_hidden")(x)
        head.append("head_hidden")
    if recipe.head.dropout > 0:
        x = keras.layers.Dropout(recipe.head.dropout, name="head_dropout")(x)
        head.append("head_dropout")
    outputs = keras.layers.Dense(n_classes, activation="softmax", dtype="float32",
                                 name="predictions")(x)
    head.append("predictions")
    model = keras.Model(backbone.input, outputs, name=f"{spec.name}_classifier")
    groups = layer_group_ranges(backbone, spec)
    return Classifier(model, backbone, spec, groups, tuple(head), recipe.bn_policy)


def set_trainable(clf: Classifier, trainable_from: int) -> dict[str, int]:
    """Freeze groups ``< trainable_from``; apply the BN policy. Returns trainable counts per group.

    Call ``compile()`` afterwards: Keras only sees a change of ``trainable`` when it compiles.
    """
    clf.model.trainable = True
    for index, group in enumerate(clf.groups):
        for name in group.layers:
            layer = clf.model.get_layer(name)
            is_bn = isinstance(layer, keras.layers.BatchNormalization)
            layer.trainable = index >= trainable_from and not (is_bn and clf.bn_policy == "frozen")
    for name in clf.head_layers:
        clf.model.get_layer(name).trainable = True
    clf.trainable_from = trainable_from
    return trainable_weight_counts(clf)


def trainable_weight_counts(clf: Classifier) -> dict[str, int]:
    """Number of trainable scalar parameters in each group (and the head)."""
    counts = {name: 0 for name in clf.group_names}
    names = clf.group_names
    for layer_name, index in clf.group_of().items():
        layer = clf.model.get_layer(layer_name)
        counts[names[index]] += sum(int(w.numpy().size) for w in layer.trainable_weights)
    return counts


def variable_multipliers(clf: Classifier, multipliers: list[float]) -> list[tuple[Any, float]]:
    """``(trainable variable, rate multiplier)`` pairs: the group's multiplier, 1 for the head."""
    result: list[tuple[Any, float]] = []
    for layer_name, index in clf.group_of().items():
        value = 1.0 if index >= len(clf.groups) else float(multipliers[index])
        for variable in clf.model.get_layer(layer_name).trainable_weights:
            result.append((variable, value))
    return result


