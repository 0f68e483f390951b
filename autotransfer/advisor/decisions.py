"""The decision variables rules set, their types, and the recipe fields each one determines."""

from __future__ import annotations

from typing import Any

#: name -> (type, recipe key paths it determines, meaning). "{finetune}" expands to every
#: fine-tuning phase index, "{head}" to the head phase, "{phases}" to all phases.
DECISIONS: dict[str, tuple[type, tuple[str, ...], str]] = {
    "backbone": (str, ("backbone.name",), "the pretrained backbone"),
    "input_size": (int, ("backbone.input_size",), "input resolution in pixels"),
    "batch_size": (int, ("data.batch_size",), "images per training step"),
    "head_epochs": (int, ("phases.{head}.epochs",), "epochs of the head-only phase"),
    "finetune_epochs": (int, ("phases.{finetune}.epochs",), "epochs of fine-tuning, all phases"),
    "finetune_from": (int, ("phases.{finetune}.trainable_from",),
                      "first trainable layer group when fine-tuning (5: none, head only)"),
    "gradual": (bool, ("phases.{finetune}.trainable_from",),
                "unfreeze the last group first, then the deeper ones"),
    "head_lr": (float, ("phases.{head}.learning_rate",), "peak learning rate of the head phase"),
    "finetune_lr": (float, ("phases.{finetune}.learning_rate",), "peak learning rate when fine-tuning"),
    "group_lr_decay": (float, ("phases.{finetune}.group_lr_multipliers",),
                       "rate multiplier from one layer group to the previous (shallower) one"),
    "warmup_fraction": (float, ("phases.{finetune}.warmup_epochs",), "share of a fine-tuning phase spent warming up"),
    "schedule": (str, ("phases.{phases}.schedule",), "learning-rate decay schedule"),
    "optimizer": (str, ("phases.{phases}.optimizer",), "optimizer"),
    "weight_decay": (float, ("phases.{phases}.weight_decay",), "decoupled weight decay"),
    "bn_policy": (str, ("bn_policy",), "BatchNorm in inference mode ('frozen') or updating"),
    "dropout": (float, ("head.dropout",), "dropout before the classifier"),
    "head_solver": (str, ("head.solver",),
                    "how head-only phases fit the head: 'gradient' or 'lbfgs' (exact, C by CV)"),
    "label_smoothing": (float, ("regularization.label_smoothing",), "label smoothing"),
    "aug_strength": (float, ("augmentation.zoom", "augmentation.translation", "augmentation.rotation",
                             "augmentation.brightness", "augmentation.contrast"),
                     "augmentation magnitude in [0, 1]"),
    "hflip": (bool, ("augmentation.horizontal_flip",), "random horizontal mirroring"),
    "vflip": (bool, ("augmentation.vertical_flip",), "random vertical mirroring"),
    "rot90": (bool, ("augmentation.rotate90",), "random quarter turns"),
    "color_jitter": (bool, ("augmentation.saturation", "augmentation.hue"), "saturation and hue jitter"),
    "mixup_alpha": (float, ("augmentation.mixup_alpha",), "MixUp's Beta(α, α); 0 disables it"),
    "class_weighting": (str, ("data.class_weighting",), "loss weights against class imbalance"),
    "da_method": (str, ("domain_adaptation.method",),
                  "adaptation to the unlabelled target images (--target): 'none', "
                  "'adabn_target', 'coral', 'mmd', 'mcc', 'entropy', 'dann' or 'cdan'"),
    "adabn": (bool, ("domain_adaptation.method",), "re-estimate BN statistics on the target data (AdaBN)"),
    "patience": (int, ("early_stopping.patience",), "epochs without improvement before stopping"),
    "exclude_leaks": (bool, ("data.exclude_leaks",), "drop training images duplicated in held-out splits"),
    "precision": (str, ("precision",), "compute precision: 'float32', 'bfloat16' (Keras' "
                  "mixed_bfloat16 on a CPU) or 'auto' (the device's default)"),
    "epoch_scale": (float, (), "preset multiplier of the epoch counts"),
    "fast_resolution": (bool, (), "preset: allow a smaller input size than the backbone's default"),
    "epoch_estimate_s": (float, (), "estimated seconds of one fine-tuning epoch (0: not estimated)"),
}


def coerce(name: str, value: Any) -> Any:
    """Convert a rule's result to the decision's declared type (ints are rounded)."""
    kind = DECISIONS[name][0]
    if kind is int:
        return int(round(float(value)))
    if kind is float:
        return float(value)
    if kind is bool:
        return bool(value)
    return str(value)
