"""The catalog: complete, consistent, pure Python, with helpful errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from autotransfer.backbones.catalog import backbone_names, get_backbone, list_backbones
from autotransfer.backbones.preprocessing import MODES
from autotransfer.backbones.spec import GROUP_NAMES
from autotransfer.errors import UnknownNameError

REQUIRED = {
    "mobilenet", "mobilenet_025", "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large",
    "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3",
    "efficientnet_v2_b0", "efficientnet_v2_b1", "efficientnet_v2_b2", "resnet50", "resnet50_v2",
    "inception_v3", "vgg16", "xception", "densenet121", "convnext_tiny", "efficientnet_lite0",
    "efficientnet_lite1", "efficientnet_lite2", "test_tiny",
}


def test_catalog_has_the_required_backbones() -> None:
    assert set(backbone_names()) == REQUIRED


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_every_record_is_consistent(name: str) -> None:
    spec = get_backbone(name)
    assert spec.group_names == GROUP_NAMES
    assert spec.layer_groups[-1].end is None
    assert all(g.end for g in spec.layer_groups[:-1])
    strides = [g.stride for g in spec.layer_groups]
    assert strides == sorted(strides) and strides[-1] == 32
    assert spec.preprocessing in MODES
    assert spec.min_input_size <= spec.default_input_size
    assert spec.feature_dim > 0 and spec.params > 0
    assert spec.bn_statistics in ("real", "folded", "absent")
    if spec.imagenet_top1 is not None:
        assert 40 < spec.imagenet_top1 < 90 and spec.top1_source
    for source in spec.weights:
        if source.kind == "keras":
            assert source.url and source.url.endswith("/" + source.file_name)
        else:
            assert source.package and source.module
    if "test" not in spec.tags:
        assert spec.weight_source(False) is not None and spec.weight_source(True) is not None
    json.dumps(spec.to_dict())


def test_mobilenet_v3_small_records_folded_batchnorm() -> None:
    spec = get_backbone("mobilenet_v3_small")
    assert spec.bn_statistics == "folded"
    assert "folded" in spec.notes
    assert get_backbone("mobilenet_v2").bn_statistics == "real"


def test_unknown_name_suggests_close_matches() -> None:
    with pytest.raises(UnknownNameError) as info:
        get_backbone("mobilenetv2")
    message = str(info.value)
    assert "Unknown backbone 'mobilenetv2'" in message and "'mobilenet_v2'" in message
    assert isinstance(info.value, KeyError)


def test_list_backbones_filters_with_shell_patterns() -> None:
    assert [s.name for s in list_backbones("efficientnet_lite*")] == [
        "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"]
    assert "test_tiny" not in [s.name for s in list_backbones()]
    assert [s.name for s in list_backbones("test_*")] == ["test_tiny"]
    assert len(list_backbones(include_test=True)) == len(REQUIRED)
    assert list_backbones("nothing*") == []


def test_catalog_and_weight_status_do_not_import_tensorflow() -> None:
    code = (
        "import sys\n"
        "from autotransfer.backbones import list_backbones, weight_status\n"
        "[weight_status(s) for s in list_backbones()]\n"
        "print('tensorflow' in sys.modules or 'keras' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
