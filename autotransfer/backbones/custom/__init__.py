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

Modules, one concept each: :mod:`.settings` (the settings and YAML schema), :mod:`.loading` (safe
loading and layer checks), :mod:`.rebuild` (the model with its preprocessing) and
:mod:`.registry` (registration in this process).
"""

from __future__ import annotations

from autotransfer.backbones.custom.loading import ModelSource
from autotransfer.backbones.custom.rebuild import CustomBackbone
from autotransfer.backbones.custom.registry import (backbone_file_of, backbone_files,
                                                    custom_backbone, custom_backbones,
                                                    load_backbone_file, register_backbone,
                                                    unregister_backbone)
from autotransfer.backbones.custom.settings import (BackboneFile, BackboneSettings, MeanStd,
                                                    ScaleOffset, preprocessing_mode,
                                                    read_backbone_file)

__all__ = [
    "BackboneFile",
    "BackboneSettings",
    "CustomBackbone",
    "MeanStd",
    "ModelSource",
    "ScaleOffset",
    "backbone_file_of",
    "backbone_files",
    "custom_backbone",
    "custom_backbones",
    "load_backbone_file",
    "preprocessing_mode",
    "read_backbone_file",
    "register_backbone",
    "unregister_backbone",
]
