"""The facts rules read: a flat, documented namespace computed from the profile and the probes.

Unknown measurements are NaN, so every comparison with them is false and a rule that needs them
does not fire; ``*_known`` facts say so explicitly.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from autotransfer.backbones.catalog import get_backbone
from autotransfer.data.models import DatasetProfile
from autotransfer.probes.models import BackboneProbe, ProbeReport

NAN = float("nan")

#: Every fact, with what it means. Rules may read only these (checked when rules are loaded).
FACTS: dict[str, str] = {
    "n_train": "usable training images (the train split, or all images when there is none)",
    "n_classes": "number of classes",
    "per_class": "median number of training images per class",
    "min_per_class": "smallest number of training images in a class",
    "imbalance": "largest over smallest class count in the training split",
    "grayscale": "fraction of images whose channels are all equal",
    "median_side": "median of the shorter image side, in pixels",
    "aspect": "median width / height",
    "leaks": "exact-duplicate groups that span splits (evaluation leaks training data)",
    "conflicts": "exact-duplicate groups that span classes (label conflicts)",
    "broken": "files that could not be used (see the profile)",
    "has_val": "the dataset has its own validation split",
    "n_val": "images of the dataset's own validation split (0: none; the recipe holds out part "
    "of the training images)",
    "logme": "LogME of the chosen backbone on the sample (higher is better)",
    "logme_margin": "LogME of the chosen backbone minus the runner-up's (NaN with one candidate)",
    "knn_acc": "cross-validated k-NN accuracy of the chosen backbone's features on the sample",
    "linear_acc": "cross-validated linear-probe accuracy of the chosen backbone's features",
    "bn_known": "the BatchNorm-statistics shift could be measured for the chosen backbone",
    "bn_shift": "mean over layer groups of the BN-statistics shift (symmetric KL; NaN if unknown)",
    "early_shift": "BN shift of the first two groups (stem, stage_s4): low-level statistics",
    "deep_shift": "BN shift of the last two groups (stage_s16, stage_s32): high-level statistics",
    "entropy_known": "an ImageNet classifier was available to measure prediction entropy",
    "entropy": "mean ImageNet prediction entropy / ln(1000), in [0, 1] (NaN if unknown)",
    "adabn_known": "the linear probe was measured again after AdaBN on the sample",
    "adabn_linear_acc": "cross-validated linear-probe accuracy after AdaBN on the sample (NaN if "
                        "not measured)",
    "adabn_gain": "adabn_linear_acc minus linear_acc (same folds): > 0 when AdaBN helps",
    "orientation_known": "rotation and flip predictability were measured",
    "rotation_acc": "accuracy of predicting quarter-turn rotations from features (chance 0.25)",
    "flip_acc": "accuracy of predicting horizontal mirroring from features (chance 0.5)",
    "params_m": "parameters of the chosen backbone, in millions",
    "default_size": "default input size of the chosen backbone",
    "min_size": "smallest input size the chosen backbone accepts",
    "bn_folded": "the chosen backbone's weights have BatchNorm folded into the convolutions",
    "forward_ms": "milliseconds per image of the chosen backbone's forward pass at probe_size, "
                  "measured on this machine while probing (NaN if not measured)",
    "probe_size": "input size at which the chosen backbone was probed",
    "precision_known": "the chosen backbone's forward pass was timed in float32 and "
    "mixed_bfloat16 on this machine (not on a GPU, which has its own mixed precision)",
    "float32_ms": "milliseconds per image of the chosen backbone's forward pass in float32, "
    "timed alternately with mixed_bfloat16 on the same batches (NaN: not timed)",
    "bfloat16_ms": "the same in mixed_bfloat16 (NaN: not timed)",
    "bf16_speedup": "float32_ms / bfloat16_ms: above 1 when bfloat16 is faster (NaN: not timed)",
    "bf16_acc_delta": "linear-probe accuracy of the sample's bfloat16 features minus that of its "
    "float32 features, same folds (NaN: bfloat16 not faster, so not extracted)",
    "bf16_logme_delta": "LogME of the bfloat16 features minus that of the float32 features "
    "(NaN: not extracted)",
    "budget_s": "seconds one training of the recipe may take (NaN: no time budget)",
    "step_ms": "milliseconds per image of one training step of the advised recipe, timed as the "
    "trainer runs it while advising (NaN: not timed; autotransfer/probes/step_time.py)",
    "step_eval_ms": "milliseconds per image of the matching evaluation step (NaN: not timed)",
    "step_from": "the trainable_from at which the training step was timed (NaN: not timed)",
    "step_size": "the input size at which the training step was timed (NaN: not timed)",
    "step_overhead_s": "seconds an epoch costs besides its training batches and validation "
    "pass (fit's set-up, callbacks), measured with the training step (NaN: not measured)",
    "target_known": "unlabelled target images were given (--target) and the gap to them measured",
    "n_target": "usable images in the target folder (0 without one)",
    "gap_a": "proxy A-distance 2(1-2e) between source and target features, e the cross-validated "
             "error of a logistic-regression domain classifier, in [0, 2] (NaN: no target)",
    "gap_bn_known": "the BN-statistics shift between source and target could be measured",
    "gap_bn": "mean over layer groups of the BN-statistics shift between source and target "
              "(symmetric KL; NaN if unknown)",
    "gap_bn_early": "BN-statistics shift between source and target in the first two layer "
                    "groups (stem, stage_s4): low-level statistics (NaN if unknown)",
    "gap_bn_deep": "the same in the last two groups (stage_s16, stage_s32): high-level "
                   "statistics (NaN if unknown)",
    "class_shift": "total variation between the source linear probe's predicted-class histograms "
                   "on the source (cross-validated) and on the target, in [0, 1]",
    "pred_entropy_rise": "the source linear probe's mean prediction entropy / ln(classes) on the "
                         "target minus that on the source",
    "target_entropy_rise": "mean ImageNet prediction entropy / ln(1000) on the target minus that "
                           "on the source (NaN: no ImageNet classifier or no target)",
}


def _nan(value: float | None) -> float:
    return NAN if value is None else float(value)


def _mean(values: list[float | None]) -> float:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else NAN


def dataset_facts(profile: DatasetProfile) -> dict[str, Any]:
    """Facts that depend only on the dataset."""
    train = next((s for s in profile.splits if s.name == "train"), profile.splits[0])
    counts = [n for n in train.class_counts.values()]
    sides = sorted(min(r.width, r.height) for r in profile.records)
    return {
        "n_train": train.n_images,
        "n_classes": len(profile.classes),
        "per_class": float(statistics.median(counts)) if counts else 0.0,
        "min_per_class": min(counts) if counts else 0,
        "imbalance": profile.imbalance_ratio,
        "grayscale": _nan(profile.grayscale_fraction),
        "median_side": float(statistics.median(sides)) if sides else NAN,
        "aspect": profile.aspect.median if profile.aspect else NAN,
        "leaks": len(profile.leakage),
        "conflicts": len(profile.label_conflicts),
        "broken": len(profile.errors),
        "has_val": "val" in profile.split_names,
        "n_val": next((s.n_images for s in profile.splits if s.name == "val"), 0),
    }


def backbone_facts(probe: BackboneProbe, runner_up: BackboneProbe | None) -> dict[str, Any]:
    """Facts about the chosen backbone and how it sees the data."""
    spec = get_backbone(probe.backbone)
    shift = probe.bn_shift
    groups = list(shift.per_group.values())
    t = probe.transferability
    return {
        "logme": t.logme,
        "logme_margin": t.logme - runner_up.transferability.logme if runner_up else NAN,
        "knn_acc": t.knn_accuracy,
        "linear_acc": t.linear_probe_accuracy,
        "bn_known": shift.applicable,
        "bn_shift": _nan(shift.overall) if shift.applicable else NAN,
        "early_shift": _mean(groups[:2]) if shift.applicable else NAN,
        "deep_shift": _mean(groups[-2:]) if shift.applicable else NAN,
        "entropy_known": probe.imagenet is not None,
        "entropy": probe.imagenet.normalized_entropy if probe.imagenet else NAN,
        "params_m": spec.params / 1e6,
        "default_size": spec.default_input_size,
        "min_size": spec.min_input_size,
        "bn_folded": spec.bn_statistics == "folded" or shift.reason.startswith("BatchNorm is folded"),
        "adabn_known": probe.adabn is not None,
        "adabn_linear_acc": probe.adabn.adapted_linear_probe_accuracy if probe.adabn else NAN,
        "adabn_gain": probe.adabn.gain if probe.adabn else NAN,
        "forward_ms": _nan(probe.forward_ms),
        "probe_size": probe.input_size,
        **precision_facts(probe),
        **step_facts(probe),
    }


def step_facts(probe: BackboneProbe) -> dict[str, Any]:
    """The advised recipe's training step as timed while advising (autotransfer/advisor/cost.py
    turns it into an epoch time)."""
    s = probe.step
    if s is None:
        return {"step_ms": NAN, "step_eval_ms": NAN, "step_from": NAN, "step_size": NAN,
                "step_overhead_s": NAN}
    return {"step_ms": s.step_ms, "step_eval_ms": s.eval_ms, "step_from": s.trainable_from,
            "step_size": s.input_size,
            "step_overhead_s": NAN if s.overhead_s is None else s.overhead_s}


def precision_facts(probe: BackboneProbe) -> dict[str, Any]:
    """float32 vs mixed_bfloat16 for the chosen backbone (see autotransfer/probes/precision.py)."""
    p = probe.precision
    known = p is not None and p.measured
    bf16_acc = p.bfloat16_linear_probe_accuracy if known else None
    return {
        "precision_known": known,
        "float32_ms": _nan(p.float32_ms) if known else NAN,
        "bfloat16_ms": _nan(p.bfloat16_ms) if known else NAN,
        "bf16_speedup": _nan(p.speedup) if known else NAN,
        "bf16_acc_delta": NAN if bf16_acc is None else bf16_acc - _nan(p.linear_probe_accuracy),
        "bf16_logme_delta": (NAN if not known or p.bfloat16_logme is None
                             else p.bfloat16_logme - _nan(p.logme)),
    }


def budget_facts(time_budget: float | None) -> dict[str, Any]:
    """The time one training may take (``None``: no budget)."""
    return {"budget_s": NAN if time_budget is None else float(time_budget)}


def target_facts(probes: ProbeReport | None) -> dict[str, Any]:
    """The gap to the unlabelled target images (autotransfer/probes/domain_gap.py). Its
    ``evaluation`` (target class folders) is for evaluation only: no fact reads it."""
    g = probes.domain_gap if probes else None
    if g is None:
        return {"target_known": False, "n_target": 0, "gap_a": NAN, "gap_bn_known": False,
                "gap_bn": NAN, "gap_bn_early": NAN, "gap_bn_deep": NAN,
                "class_shift": NAN, "pred_entropy_rise": NAN, "target_entropy_rise": NAN}
    groups = list(g.bn_per_group.values())
    entropies = (g.source_entropy, g.target_entropy)
    return {
        "target_known": True,
        "n_target": g.n_target_images,
        "gap_a": g.a_distance,
        "gap_bn_known": g.bn_overall is not None,
        "gap_bn": _nan(g.bn_overall),
        "gap_bn_early": _mean(groups[:2]) if g.bn_overall is not None else NAN,
        "gap_bn_deep": _mean(groups[-2:]) if g.bn_overall is not None else NAN,
        "class_shift": g.class_tv,
        "pred_entropy_rise": g.target_pred_entropy - g.source_pred_entropy,
        "target_entropy_rise": NAN if None in entropies else entropies[1] - entropies[0],
    }


def orientation_facts(probes: ProbeReport | None) -> dict[str, Any]:
    o = probes.orientation if probes else None
    return {
        "orientation_known": o is not None,
        "rotation_acc": o.rotation_accuracy if o else NAN,
        "flip_acc": o.flip_accuracy if o else NAN,
    }


def is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)
