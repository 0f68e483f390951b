"""The frozen record that describes one pretrained backbone (pure Python: no TensorFlow).

Modelled on timm's pretrained config (everything about a model in one frozen dataclass) and
fastai's ``model_meta`` (where to cut, how to split into layer groups).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

#: How inputs in RGB [0, 255] are mapped to what the network was trained on. See
#: :mod:`autotransfer.backbones.preprocessing` for the exact constants.
Preprocessing = Literal["tf", "torch", "caffe", "lite", "none"]

#: ``real``: BatchNorm layers hold the running statistics of training. ``folded``: BN was folded
#: into the convolutions before release; the BN layers hold placeholder statistics (mean 0,
#: variance ~1) and must stay in inference mode. ``absent``: the network has no BatchNorm.
BNStatistics = Literal["real", "folded", "absent"]

#: Every backbone is split into these five groups, in this order: the stem, then the stages that
#: bring the feature map to output stride 4, 8, 16 and 32 (the last one includes the head conv).
#: "Freeze the first k groups" therefore means the same thing for every backbone.
GROUP_NAMES: tuple[str, ...] = ("stem", "stage_s4", "stage_s8", "stage_s16", "stage_s32")


@dataclass(frozen=True)
class LayerGroup:
    """One contiguous block of layers; the groups of a backbone partition its layers in order.

    ``end`` selects the group's last layer (a cut of the graph: every later layer depends on it):

    * ``"name"``: the layer called ``name``;
    * ``"before:name"``: the single input layer of ``name`` (the next group starts at ``name``);
    * ``"Class#i"``: the ``i``-th layer of class ``Class`` in topological order (for layers
      that Keras names automatically, whose names change from one session to the next);
    * ``None``: the last layer of the model (the last group; includes the classifier if any).

    ``stride`` is the output stride of the feature map at ``end`` (verified by the tests).
    """

    name: str
    end: str | None
    stride: int


@dataclass(frozen=True)
class WeightSource:
    """Where pretrained weights for one variant (with or without classifier) come from.

    ``kind="keras"``: a file Keras downloads from ``url`` and caches as
    ``$KERAS_HOME/models/<file_name>``. ``kind="package"``: a file shipped inside the pip
    distribution ``package`` (import name ``module``), at ``<module dir>/<file_name>``.
    ``sha256``: the file's digest, checked before a package file is used (Keras checks its own
    downloads). ``kind="custom"``: a backbone the user registered
    (:mod:`autotransfer.backbones.custom`); ``file_name`` is its ``.keras`` file (absolute, its
    ``sha256`` recorded at registration) or ``""`` for a Python callable, and ``url`` an identity
    of the registration (``custom:<digest of the file or weights and of the settings>``).
    """

    kind: Literal["keras", "package", "custom"]
    file_name: str
    include_top: bool
    url: str | None = None
    package: str | None = None
    module: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class BackboneSpec:
    """Everything autotransfer needs to know to use one pretrained backbone well."""

    name: str
    family: str
    #: dotted path of a callable with the Keras Applications signature
    #: (``input_shape``, ``include_top``, ``weights``, ``input_tensor``, ``classes``,
    #: ``classifier_activation``).
    constructor: str
    default_input_size: int
    min_input_size: int
    preprocessing: Preprocessing
    feature_dim: int
    #: parameters without the classifier (``include_top=False``), as Keras counts them
    params: int
    #: ImageNet-1k top-1 accuracy in percent (single 224-ish centre crop) and its source
    imagenet_top1: float | None
    top1_source: str
    layer_groups: tuple[LayerGroup, ...]
    bn_statistics: BNStatistics
    weights: tuple[WeightSource, ...]
    license: str
    constructor_kwargs: tuple[tuple[str, Any], ...] = ()
    notes: str = ""
    tags: tuple[str, ...] = field(default=())

    @property
    def params_millions(self) -> float:
        return self.params / 1e6

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.layer_groups)

    @property
    def has_pretrained_weights(self) -> bool:
        return bool(self.weights)

    def weight_source(self, include_top: bool = False) -> WeightSource | None:
        """The weight source for the variant with or without the ImageNet classifier."""
        for source in self.weights:
            if source.include_top == include_top:
                return source
        return None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (for ``--json`` output and reports)."""
        data = asdict(self)
        data["constructor_kwargs"] = dict(self.constructor_kwargs)
        data["layer_groups"] = [asdict(g) for g in self.layer_groups]
        data["weights"] = [asdict(w) for w in self.weights]
        data["tags"] = list(self.tags)
        return data
