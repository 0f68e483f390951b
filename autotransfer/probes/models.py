"""Typed, serialisable results of the probes."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from autotransfer.probes.domain_gap import DomainGap
from autotransfer.probes.orientation import Orientation
from autotransfer.probes.precision import PrecisionCheck
from autotransfer.probes.step_time import StepTiming
from autotransfer.probes.transferability import Transferability


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BNShift(_Model):
    """BatchNorm-statistics shift of one backbone on the sample."""

    applicable: bool
    reason: str = Field(description="Why the measure does or does not apply.")
    per_group: dict[str, float | None] = Field(
        description="Median over the group's BN layers of the channel-mean symmetric KL."
    )
    overall: float | None = Field(description="Mean of the group shifts.")
    peak_group: str | None = Field(description="The layer group with the largest shift.")
    n_layers: int


class ImageNetView(_Model):
    """What the ImageNet classifier of the backbone sees in the data."""

    mean_entropy: float = Field(description="Mean prediction entropy in nats (max ln 1000 = 6.91).")
    normalized_entropy: float = Field(description="mean_entropy / ln(1000), in [0, 1].")
    top_concepts: dict[str, list[tuple[str, float]]] = Field(
        description="Per class: ImageNet concepts predicted top-1 and the share of images."
    )


class AdaBNCheck(_Model):
    """The sample's linear probe with ImageNet's BN statistics and with re-estimated ones (AdaBN)."""

    linear_probe_accuracy: float = Field(description="With ImageNet's BN statistics.")
    adapted_linear_probe_accuracy: float = Field(
        description="With every BN layer's statistics re-estimated on the sample (same folds).")
    knn_accuracy: float
    adapted_knn_accuracy: float
    n_samples: int
    n_adapted: int | None = Field(
        default=None, description="Sample images the BN statistics were re-estimated on (evenly "
        "spread over it); None in a record made before the count was kept.")
    seconds: float = Field(description="Seconds for the AdaBN pass and the second extraction "
                           "(0 when cached).")

    @property
    def gain(self) -> float:
        """Adapted minus ImageNet linear-probe accuracy: > 0 when AdaBN helps."""
        return self.adapted_linear_probe_accuracy - self.linear_probe_accuracy

    def describe(self) -> str:
        n = self.n_samples
        on = (f"the sample (AdaBN; linear probe on {n} images)" if self.n_adapted is None else
              f"{self.n_adapted} of the {n} sample images (AdaBN)" if self.n_adapted < n else
              f"all {n} sample images (AdaBN)")
        return (f"linear probe {self.linear_probe_accuracy:.1%} with ImageNet's BatchNorm "
                f"statistics, {self.adapted_linear_probe_accuracy:.1%} with statistics "
                f"re-estimated on {on}")


class BackboneProbe(_Model):
    """Every measurement of one backbone on the sample."""

    backbone: str
    input_size: int
    feature_dim: int
    n_samples: int
    bn_shift: BNShift
    imagenet: ImageNetView | None
    imagenet_note: str = Field(description="Why there is no ImageNet view, when there is none.")
    transferability: Transferability
    extract_s: float = Field(description="Seconds for the forward pass (0 when cached).")
    forward_ms: float | None = Field(
        default=None, description="Milliseconds per image of the steady-state forward pass at "
        "input_size on this machine, measured when the features were extracted (kept with the "
        "cached features); None when not measured.")
    measure_s: float = Field(description="Seconds for the statistics on the features.")
    cached: bool = Field(description="Features came from the on-disk cache.")
    adabn: AdaBNCheck | None = Field(
        default=None, description="The linear probe after AdaBN on the sample; None when not "
        "measured (BN folded or absent, or AdaBN not in question: see Advisor.fit).")
    precision: PrecisionCheck | None = Field(
        default=None, description="The forward pass timed in float32 and mixed_bfloat16 and "
        "whether the features agree; None when not measured (see Advisor.fit).")
    step: StepTiming | None = Field(
        default=None, description="One training step of the advised recipe timed as the trainer "
        "runs it (the cost model's calibration); None when not measured (see Advisor.fit).")


class ProbeReport(_Model):
    """The probes of several backbones on one dataset sample."""

    root: str
    seed: int
    weights: str = Field(default="imagenet", description="The weights probed: 'imagenet', a "
                         "weights file, or 'none' (randomly initialised backbones).")
    n_samples: int
    sample_per_class: dict[str, int]
    decode_s: float = Field(description="Seconds spent decoding the sample (all input sizes).")
    elapsed_s: float
    probes: list[BackboneProbe]
    orientation: Orientation | None = Field(
        default=None, description="Whether rotations and mirror images are distinguishable."
    )
    domain_gap: DomainGap | None = Field(
        default=None, description="How far the unlabelled target images (--target) are from the "
        "source sample, for the chosen backbone; None without a target.")

    def ranked(self) -> list[BackboneProbe]:
        """Probes by decreasing LogME."""
        return sorted(self.probes, key=lambda p: p.transferability.logme, reverse=True)

    def get(self, backbone: str) -> BackboneProbe:
        return next(p for p in self.probes if p.backbone == backbone)
