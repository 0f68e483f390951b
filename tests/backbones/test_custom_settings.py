"""A custom backbone's settings file is read strictly (no TensorFlow): a boolean is never read as a
number, and an error names the file, the key, what it holds and what to write instead."""

from __future__ import annotations

import pytest
import yaml

from autotransfer.backbones.custom.settings import (BackboneSettings, MeanStd, ScaleOffset,
                                                    read_backbone_file)
from autotransfer.errors import InvalidConfigError

GOOD = {"name": "my_net", "model": "net.keras", "groups": ["a", "b", "c", "d"], "input_size": 64,
        "preprocessing": {"scale": 1, "offset": [0, 0.5, 1]}}


def _write(tmp_path, **changes):
    path = tmp_path / "my_net.yaml"
    path.write_text(yaml.safe_dump({**GOOD, **changes}), encoding="utf-8")
    return path


def test_numbers_and_every_form_of_preprocessing_are_read(tmp_path):
    config = read_backbone_file(_write(tmp_path))
    assert config.preprocessing == ScaleOffset(scale=1.0, offset=[0.0, 0.5, 1.0])
    config = read_backbone_file(_write(tmp_path, preprocessing={"mean": [0.5] * 3,
                                                                "std": [0.25] * 3, "bgr": True}))
    assert isinstance(config.preprocessing, MeanStd) and config.preprocessing.bgr
    assert read_backbone_file(_write(tmp_path, preprocessing="torch")).preprocessing == "torch"


@pytest.mark.parametrize(("changes", "key", "got", "kind"), [
    ({"preprocessing": {"scale": True}}, "preprocessing.scale", "true", "number"),
    ({"preprocessing": {"scale": 1, "offset": [0, True, 0]}}, "preprocessing.offset",
     "[0, true, 0]", "number"),
    ({"preprocessing": {"mean": [True, 0.4, 0.4], "std": [0.2] * 3}}, "preprocessing.mean",
     "[true, 0.4, 0.4]", "number"),
    ({"input_size": True}, "input_size", "true", "whole number"),
    ({"min_input_size": False}, "min_input_size", "false", "whole number"),
])
def test_a_boolean_is_not_read_as_a_number(tmp_path, changes, key, got, kind):
    path = _write(tmp_path, **changes)
    with pytest.raises(InvalidConfigError) as caught:
        read_backbone_file(path)
    message = str(caught.value)
    assert f"Backbone file '{path}' is invalid: {key}: expects a {kind}, not true/false" in message
    assert f"write the {kind} itself" in message and f"(got {got})" in message
    # only the problem: not the errors of the forms of preprocessing the value is not meant as
    assert "Extra inputs" not in message and "Field required" not in message
    assert "Input should be 'tf'" not in message


def test_the_python_settings_refuse_a_boolean_too():
    with pytest.raises(ValueError, match="expects a number, not true/false"):
        BackboneSettings(preprocessing={"scale": 1, "offset": True}, groups=["a", "b", "c", "d"],
                         input_size=64)


def test_nan_is_not_a_setting(tmp_path):
    path = _write(tmp_path, preprocessing={"scale": float("nan")})
    with pytest.raises(InvalidConfigError, match=r"preprocessing\.scale.*finite number"):
        read_backbone_file(path)


def test_an_unknown_name_says_which_names_exist(tmp_path):
    path = _write(tmp_path, preprocessing="tff")
    with pytest.raises(InvalidConfigError) as caught:
        read_backbone_file(path)
    assert ("preprocessing: Input should be 'tf', 'torch', 'caffe', 'lite' or 'none' "
            "(got \"tff\")") in str(caught.value)
