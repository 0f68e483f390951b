"""Backbone zoo: the catalog of pretrained models, their weights, and how to build them.

Importing this package (and the catalog) does not import TensorFlow; building does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from autotransfer._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "BackboneSpec": "autotransfer.backbones.spec",
    "LayerGroup": "autotransfer.backbones.spec",
    "WeightSource": "autotransfer.backbones.spec",
    "GROUP_NAMES": "autotransfer.backbones.spec",
    "get_backbone": "autotransfer.backbones.catalog",
    "list_backbones": "autotransfer.backbones.catalog",
    "backbone_names": "autotransfer.backbones.catalog",
    "WeightStatus": "autotransfer.backbones.weights",
    "weight_status": "autotransfer.backbones.weights",
    "resolve_weights": "autotransfer.backbones.weights",
    "build_backbone": "autotransfer.backbones.build",
    "register_backbone": "autotransfer.backbones.custom",
    "unregister_backbone": "autotransfer.backbones.custom",
    "custom_backbone": "autotransfer.backbones.custom",
    "load_backbone_file": "autotransfer.backbones.custom",
    "backbone_files": "autotransfer.backbones.custom",
    "layer_group_ranges": "autotransfer.backbones.build",
    "GroupLayers": "autotransfer.backbones.build",
    "preprocess_input": "autotransfer.backbones.preprocessing",
    "center_crop_resize": "autotransfer.backbones.preprocessing",
    "imagenet_class_names": "autotransfer.backbones.imagenet_labels",
    "decode_predictions": "autotransfer.backbones.imagenet_labels",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:  # pragma: no cover
    from autotransfer.backbones.build import GroupLayers, build_backbone, layer_group_ranges
    from autotransfer.backbones.catalog import backbone_names, get_backbone, list_backbones
    from autotransfer.backbones.custom import (backbone_files, custom_backbone,
                                               load_backbone_file, register_backbone,
                                               unregister_backbone)
    from autotransfer.backbones.imagenet_labels import decode_predictions, imagenet_class_names
    from autotransfer.backbones.preprocessing import center_crop_resize, preprocess_input
    from autotransfer.backbones.spec import GROUP_NAMES, BackboneSpec, LayerGroup, WeightSource
    from autotransfer.backbones.weights import WeightStatus, resolve_weights, weight_status
