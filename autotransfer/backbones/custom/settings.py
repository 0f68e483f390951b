"""The settings of a custom backbone and its ``--backbone-file`` YAML (pydantic models, no
TensorFlow): preprocessing, layer groups, input sizes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, ValidationError, model_validator

from autotransfer._strict import StrictModel
from autotransfer.backbones.preprocessing import MODES, PreprocessingMode
from autotransfer.backbones.spec import GROUP_NAMES
from autotransfer.errors import InvalidConfigError

Triple = Annotated[list[float], Field(min_length=3, max_length=3)]


class _Strict(StrictModel):
    """Strict settings: no unknown key, NaN, infinity, or boolean read as a number."""


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


def _preprocessing_kind(value: Any) -> str:
    """Which form of ``preprocessing`` a value is meant as (its keys tell), so that an error
    names that form's problem alone, not every form's."""
    if isinstance(value, dict):
        return "mean/std" if {"mean", "std"} & value.keys() else "scale/offset"
    if isinstance(value, (ScaleOffset, MeanStd)):
        return "mean/std" if isinstance(value, MeanStd) else "scale/offset"
    return "name"


#: a named mode, ``{scale, offset}`` or ``{mean, std}``
Preprocessing = Annotated[
    Annotated[Literal["tf", "torch", "caffe", "lite", "none"], Tag("name")]
    | Annotated[ScaleOffset, Tag("scale/offset")] | Annotated[MeanStd, Tag("mean/std")],
    Discriminator(_preprocessing_kind)]


class BackboneSettings(_Strict):
    """Everything but the model itself; the YAML file adds ``name`` and ``model`` (a path)."""

    preprocessing: Preprocessing
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


_TAGS = ("name", "scale/offset", "mean/std")  # the forms of preprocessing, not keys of the file


def _describe(error: ValidationError) -> str:
    parts = []
    for e in error.errors():
        where = ".".join(str(p) for p in e["loc"] if p not in _TAGS) or "(top level)"
        got = e.get("input")
        shown = ("" if isinstance(got, dict) or got is None or e["type"] == "missing"
                 else f" (got {json.dumps(got, default=str)})")
        parts.append(f"{where}: {e['msg'].removeprefix('Value error, ')}{shown}")
    return "; ".join(parts)


def _text(preprocessing: Any) -> str:
    if isinstance(preprocessing, str):
        return f"'{preprocessing}'"
    return json.dumps(preprocessing.model_dump(mode="json"))


def read_backbone_file(path: str | os.PathLike[str]) -> BackboneFile:
    """Read and validate a backbone YAML (a safe loader; unknown and repeated keys are
    refused)."""
    import yaml

    from autotransfer._io import safe_yaml

    file = Path(path)
    try:
        data = safe_yaml(file.read_text(encoding="utf-8"))
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
