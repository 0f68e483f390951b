"""Synthetic facts, profiles and probe reports: the advisor is tested without TensorFlow."""

from __future__ import annotations

from typing import Any

from autotransfer.advisor.facts import NAN
from autotransfer.data.models import DatasetProfile, ImageRecord, SplitProfile, Stats
from autotransfer.probes.models import BackboneProbe, BNShift, ImageNetView, ProbeReport
from autotransfer.probes.orientation import Orientation
from autotransfer.probes.transferability import Transferability

GROUPS = ("stem", "stage_s4", "stage_s8", "stage_s16", "stage_s32")


def facts(**overrides: Any) -> dict[str, Any]:
    """Facts of a medium-sized, near-ImageNet, balanced colour dataset; override what matters."""
    base = dict(
        n_train=2000, n_classes=10, per_class=200.0, min_per_class=200, imbalance=1.0,
        grayscale=0.0, median_side=224.0, aspect=1.0, leaks=0, conflicts=0, broken=0,
        has_val=True, logme=0.5, logme_margin=0.1, knn_acc=0.9, linear_acc=0.92, bn_known=True,
        bn_shift=0.1, early_shift=0.1, deep_shift=0.1, entropy_known=True, entropy=0.3,
        orientation_known=True, rotation_acc=0.6, flip_acc=0.5, params_m=2.3, default_size=224,
        min_size=32, bn_folded=False, forward_ms=NAN, probe_size=224, budget_s=NAN,
        adabn_known=False, adabn_linear_acc=NAN, adabn_gain=NAN,
        precision_known=False, float32_ms=NAN, bfloat16_ms=NAN, bf16_speedup=NAN,
        bf16_acc_delta=NAN, bf16_logme_delta=NAN,
        target_known=False, n_target=0, gap_a=NAN, gap_bn_known=False, gap_bn=NAN,
        gap_bn_early=NAN, gap_bn_deep=NAN, class_shift=NAN, pred_entropy_rise=NAN,
        target_entropy_rise=NAN,
        n_val=0, step_ms=NAN, step_eval_ms=NAN, step_from=NAN, step_size=NAN,
        step_overhead_s=NAN,
    )
    unknown = set(overrides) - set(base)
    assert not unknown, unknown
    return {**base, **overrides}


def profile(counts: dict[str, int], *, side: int = 224, gray: float = 0.0, split: str | None = "train") -> DatasetProfile:
    records = [
        ImageRecord(path=f"{split or ''}/{label}/{i}.png", label=label, split=split, format="PNG",
                    width=side, height=side, mode="RGB", file_size=1000, sha=f"{label}{i}",
                    grayscale=i < gray * n, has_alpha=False)
        for label, n in counts.items() for i in range(n)
    ]
    stat = Stats(min=side, p05=side, median=side, mean=side, p95=side, max=side)
    one = Stats(min=1, p05=1, median=1, mean=1, p95=1, max=1)
    ratio = max(counts.values()) / min(counts.values())
    return DatasetProfile(
        root="/data/synthetic", layout="split_folders" if split else "class_folders",
        classes=sorted(counts), splits=[SplitProfile(name=split or "all", folder=split,
                                                     n_images=len(records), class_counts=counts)],
        n_images=len(records), n_files_seen=len(records), class_counts=counts,
        imbalance_ratio=ratio, imbalance_split=split or "all", width=stat, height=stat,
        aspect=one, file_size=stat, formats={"PNG": len(records)}, modes={"RGB": len(records)},
        grayscale_fraction=gray, alpha_fraction=0.0, animated_fraction=0.0, duplicates=[],
        problems=[], records=records, check="decode", workers=1, elapsed_s=0.1,
    )


def probe(backbone: str, logme: float, *, shift: float | None = 0.1, entropy: float | None = 0.3,
          linear: float = 0.9) -> BackboneProbe:
    per_group = dict.fromkeys(GROUPS, shift)
    return BackboneProbe(
        backbone=backbone, input_size=224, feature_dim=1280, n_samples=100,
        bn_shift=BNShift(applicable=shift is not None, reason="measured" if shift is not None else "BatchNorm is folded",
                         per_group=per_group, overall=shift,
                         peak_group="stem" if shift is not None else None, n_layers=10),
        imagenet=ImageNetView(mean_entropy=(entropy or 0) * 6.9, normalized_entropy=entropy,
                              top_concepts={}) if entropy is not None else None,
        imagenet_note="" if entropy is not None else "no classifier",
        transferability=Transferability(logme=logme, knn_accuracy=linear - 0.02,
                                        linear_probe_accuracy=linear, separability=1.0, folds=5,
                                        n_samples=100, feature_dim=1280),
        extract_s=1.0, measure_s=1.0, cached=False,
    )


def report(*probes: BackboneProbe, rotation: float = 0.6, flip: float = 0.5) -> ProbeReport:
    return ProbeReport(
        root="/data/synthetic", seed=0, n_samples=100, sample_per_class={}, decode_s=0.0,
        elapsed_s=1.0, probes=list(probes),
        orientation=Orientation(backbone=probes[0].backbone, n_images=50,
                                rotation_accuracy=rotation, flip_accuracy=flip),
    )


__all__ = ["NAN", "facts", "profile", "probe", "report"]
