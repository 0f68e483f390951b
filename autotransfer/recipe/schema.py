"""The recipe schema (version 1): validated data, YAML or JSON, unknown keys rejected.

A recipe says everything the trainer needs — backbone, input size, phases with their frozen
groups and learning-rate schedules, BatchNorm policy, augmentation, regularisation, class
weighting, domain adaptation, early stopping, seed — and, in ``reasons``, which rule set each
field and on what measured evidence. The trainer executes any valid recipe unchanged; the tuner
searches around one.

Layer groups are the five groups of every catalog backbone (stem, stage_s4, stage_s8, stage_s16,
stage_s32); a phase trains the groups from ``trainable_from`` on (5 = backbone frozen, only the
head trains; 0 = everything trains).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from autotransfer._strict import StrictModel

SCHEMA_VERSION = 1
N_GROUPS = 5


#: Largest recipe seed: every library it seeds (NumPy, scikit-learn, TensorFlow) takes it, with
#: the offsets the trainer adds per phase and epoch.
MAX_SEED = 2**31 - 1


class _Strict(StrictModel):
    """A recipe section: strict (see :class:`autotransfer._strict.StrictModel`)."""


class Reason(_Strict):
    """Why a field has its value: the rule, the evidence it read, and a sentence for people."""

    # evidence records measurements as they were, NaN included ("not measured")
    model_config = ConfigDict(allow_inf_nan=True)

    rule: str = Field(description="Rule id, e.g. 'LR01', or 'preset:<name>' / 'user'.")
    text: str
    evidence: dict[str, float | int | str | bool | None] = Field(
        default_factory=dict, description="Measured values the rule read."
    )
    thresholds: dict[str, float | int | str | bool | None] = Field(
        default_factory=dict, description="The rule's parameters (from the rule base)."
    )


class BackboneChoice(_Strict):
    name: str
    input_size: int = Field(ge=16, le=1024)
    weights: str = Field(
        default="imagenet",
        description="'imagenet', a path to a weights file, or 'none' for random initialisation.",
    )


class Head(_Strict):
    pooling: Literal["avg", "max"] = "avg"
    dropout: float = Field(default=0.2, ge=0.0, lt=1.0)
    hidden_units: int = Field(default=0, ge=0, description="0: a single dense layer.")
    solver: Literal["gradient", "lbfgs"] = Field(
        default="gradient",
        description="How head-only phases train the head: 'gradient' (the phase's optimizer, "
        "epochs and early stopping) or 'lbfgs' (logistic regression fitted exactly on the frozen "
        "features, its L2 strength by k-fold cross-validation on the training images; needs "
        "hidden_units 0; the phase's rate, epochs, dropout and label smoothing are not used).")
    lbfgs_c: float | None = Field(
        default=None, gt=0.0,
        description="'lbfgs' only: the inverse L2 strength C; none: chosen by cross-validation.")

    @model_validator(mode="after")
    def _solver_fits(self) -> Head:
        if self.solver == "lbfgs" and self.hidden_units:
            raise ValueError(f"solver 'lbfgs' fits a linear head, but hidden_units is "
                             f"{self.hidden_units}; set hidden_units to 0 or solver to 'gradient'")
        return self


class Phase(_Strict):
    """One stage of training with a fixed set of trainable layer groups."""

    name: str
    epochs: int = Field(ge=1, le=1000)
    trainable_from: int = Field(ge=0, le=N_GROUPS, description="First trainable layer group; 5 = head only.")
    optimizer: Literal["adam", "adamw", "sgd"] = "adamw"
    learning_rate: float = Field(gt=0.0, lt=10.0, description="Peak rate of the head.")
    warmup_epochs: float = Field(default=0.0, ge=0.0)
    schedule: Literal["constant", "cosine", "linear", "step"] = "cosine"
    min_lr_ratio: float = Field(default=0.0, ge=0.0, le=1.0)
    group_lr_multipliers: list[float] = Field(
        default_factory=lambda: [1.0] * N_GROUPS,
        description="Rate multiplier of each layer group (discriminative rates); the head uses 1.",
    )
    weight_decay: float = Field(default=1e-4, ge=0.0, lt=1.0)
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0, description="SGD only.")

    @field_validator("group_lr_multipliers")
    @classmethod
    def _five_multipliers(cls, value: list[float]) -> list[float]:
        if len(value) != N_GROUPS or any(m < 0 for m in value):
            raise ValueError(f"needs {N_GROUPS} non-negative multipliers, one per layer group; got {value}")
        return value

    @model_validator(mode="after")
    def _warmup_fits(self) -> Phase:
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be below epochs ({self.epochs})")
        return self


class Augmentation(_Strict):
    """Operations and magnitudes, applied as Keras preprocessing layers (training only)."""

    horizontal_flip: bool = True
    vertical_flip: bool = False
    rotate90: bool = Field(default=False, description="Random multiples of 90°.")
    rotation: float = Field(default=0.0, ge=0.0, le=0.5, description="Max fraction of a full turn.")
    zoom: float = Field(default=0.1, ge=0.0, lt=1.0)
    translation: float = Field(default=0.1, ge=0.0, lt=1.0)
    brightness: float = Field(default=0.0, ge=0.0, le=1.0)
    contrast: float = Field(default=0.0, ge=0.0, le=1.0)
    saturation: float = Field(default=0.0, ge=0.0, le=1.0)
    hue: float = Field(default=0.0, ge=0.0, le=0.5)
    mixup_alpha: float = Field(default=0.0, ge=0.0, le=10.0, description="0 disables MixUp.")
    cutmix_alpha: float = Field(default=0.0, ge=0.0, le=10.0, description="0 disables CutMix.")


class Regularization(_Strict):
    label_smoothing: float = Field(default=0.0, ge=0.0, lt=0.5)


#: adaptation methods that add a loss on unlabelled target images to the training objective
LOSS_METHODS = ("coral", "mmd", "mcc", "entropy", "dann", "cdan")
#: methods that align *features*: something before the head's output layer must train
FEATURE_METHODS = ("coral", "mmd", "dann", "cdan")
#: methods that need the unlabelled target images (``train(..., target=DIR)``)
TARGET_METHODS = ("adabn_target", *LOSS_METHODS)


class DomainAdaptation(_Strict):
    """How the model adapts: to its own training data (``adabn``) or to unlabelled *target*
    images given to the trainer next to the recipe (every other method; see
    :mod:`autotransfer.train.adaptation`). The target folder is not part of the recipe: it is an
    argument of ``train`` (``--target DIR``), recorded in the run's metrics."""

    method: Literal["none", "adabn", "adabn_target", "coral", "mmd", "mcc", "entropy", "dann",
                    "cdan"] = Field(
        default="none",
        description="'adabn': BN statistics re-estimated on the training images before "
        "before_phase; 'adabn_target': the source-trained model's BN statistics replaced by the "
        "target images' after the last phase (Li et al. 2016); 'coral' (Sun & Saenko 2016), "
        "'mmd' (multi-kernel, Long et al. 2015), 'mcc' (Jin et al. 2020), 'entropy' (entropy "
        "minimisation on target predictions), 'dann' (Ganin et al. 2016), 'cdan' (Long et al. "
        "2018): weight x that loss added in every gradient phase.")
    before_phase: int = Field(default=0, ge=0, description="AdaBN re-estimates BN statistics on the target training data before this phase.")
    weight: float = Field(
        default=1.0, ge=0.0, le=100.0,
        description="Trade-off lambda of the adaptation loss (loss methods only; 0 trains as "
        "source-only while still reading the target images).")
    mcc_temperature: float = Field(default=2.5, gt=0.0, le=100.0,
                                   description="'mcc' only: softmax temperature of the target "
                                   "predictions (Jin et al. 2020 use 2.5).")
    discriminator_units: int = Field(default=256, ge=8, le=4096,
                                     description="'dann'/'cdan': width of the domain "
                                     "discriminator's two hidden layers.")
    ramp_steps: int = Field(default=1000, ge=0, le=1_000_000,
                            description="'dann'/'cdan': steps over which the gradient-reversal "
                            "coefficient grows from 0 to 1 (2/(1+exp(-10p))-1, Ganin et al.); "
                            "0: full strength from the first step.")
    cdan_entropy: bool = Field(default=True,
                               description="'cdan' only: weight target and source examples by "
                               "prediction certainty (CDAN+E).")
    bottleneck_units: int = Field(
        default=256, ge=0, le=4096,
        description="Feature-aligning methods with a frozen backbone: the head's hidden layer "
        "width used when head.hidden_units is 0 (the aligned features must be trainable, as in "
        "the reference implementations' bottleneck); 0 refuses such recipes instead.")

    @model_validator(mode="after")
    def _fields_fit_method(self) -> DomainAdaptation:
        if self.method not in LOSS_METHODS:
            loss_only = {"weight": 1.0, "mcc_temperature": 2.5, "discriminator_units": 256,
                         "ramp_steps": 1000, "cdan_entropy": True, "bottleneck_units": 256}
            changed = [k for k, default in loss_only.items() if getattr(self, k) != default]
            if changed:
                raise ValueError(f"{', '.join(changed)} only apply to the loss methods "
                                 f"({', '.join(LOSS_METHODS)}), not to method '{self.method}'; "
                                 "remove them or choose such a method")
        return self

    @property
    def needs_target(self) -> bool:
        """Whether the method reads unlabelled target images."""
        return self.method in TARGET_METHODS

    @property
    def has_loss(self) -> bool:
        return self.method in LOSS_METHODS


class EarlyStopping(_Strict):
    monitor: Literal["val_accuracy", "val_loss"] = "val_accuracy"
    patience: int = Field(default=3, ge=1)
    restore_best_weights: bool = True


class Data(_Strict):
    batch_size: int = Field(default=32, ge=1, le=4096)
    val_fraction: float = Field(default=0.2, gt=0.0, lt=1.0, description="Held out when the dataset has no val split.")
    class_weighting: Literal["none", "balanced"] = "none"
    crop: bool = Field(default=True, description="Resize the short side and centre-crop (else squash).")
    exclude_leaks: bool = True


class Recipe(_Strict):
    """A complete fine-tuning plan."""

    version: Literal[1] = SCHEMA_VERSION
    name: str = "recipe"
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    backbone: BackboneChoice
    data: Data = Data()
    head: Head = Head()
    bn_policy: Literal["frozen", "trainable"] = Field(
        default="frozen",
        description="'frozen': BN layers stay in inference mode with ImageNet (or AdaBN) statistics "
        "even when their group trains (Keras guide); 'trainable': BN of trainable groups updates.",
    )
    precision: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto",
        description="Compute precision. 'bfloat16': Keras' mixed_bfloat16 on a CPU (variables, "
        "loss and the softmax stay float32), chosen where it was measured faster with agreeing "
        "features (rule PREC01); 'float32'; 'auto': the device's default (float32 on a CPU). "
        "A GPU uses its own mixed precision (mixed_float16) unless this is 'float32'.")
    phases: list[Phase] = Field(min_length=1)
    augmentation: Augmentation = Augmentation()
    regularization: Regularization = Regularization()
    domain_adaptation: DomainAdaptation = DomainAdaptation()
    early_stopping: EarlyStopping = EarlyStopping()
    reasons: dict[str, Reason] = Field(default_factory=dict, description="Key path -> why.")

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        da = self.domain_adaptation
        if da.before_phase >= len(self.phases) and da.method in ("adabn", "adabn_target"):
            raise ValueError(
                f"domain_adaptation.before_phase is {self.domain_adaptation.before_phase} but the "
                f"recipe has {len(self.phases)} phase(s)"
            )
        if da.has_loss and all(self.solves_head(p) for p in self.phases):
            raise ValueError(
                f"domain_adaptation.method '{da.method}' adds a loss to gradient training, but "
                "every phase fits the head exactly (head.solver 'lbfgs'); set head.solver to "
                "'gradient' or add a phase that trains by gradient")
        if (da.method in FEATURE_METHODS and da.bottleneck_units and not self.head.hidden_units
                and self.head.solver == "lbfgs"):
            raise ValueError(
                f"domain_adaptation.method '{da.method}' adds a bottleneck layer to the head "
                f"({da.bottleneck_units} units), which head.solver 'lbfgs' cannot fit; set "
                "head.solver to 'gradient'")
        if (da.method in FEATURE_METHODS and da.bottleneck_units == 0
                and self.head.hidden_units == 0
                and all(p.trainable_from >= N_GROUPS for p in self.phases)):
            raise ValueError(
                f"domain_adaptation.method '{da.method}' aligns features, but nothing before the "
                "head's output layer trains (backbone frozen, head.hidden_units 0, "
                "bottleneck_units 0); set bottleneck_units or head.hidden_units above 0, or "
                "unfreeze a layer group")
        return self

    def solves_head(self, phase: Phase) -> bool:
        """Whether ``phase`` fits the head exactly (``head.solver`` 'lbfgs', only the head trains)."""
        return self.head.solver == "lbfgs" and phase.trainable_from >= N_GROUPS

    @property
    def total_epochs(self) -> int:
        return sum(p.epochs for p in self.phases)

    def reason_for(self, path: str) -> Reason | None:
        return self.reasons.get(path)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
