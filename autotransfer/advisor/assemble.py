"""Turn the final decisions into a :class:`Recipe`, with the reason of every field."""

from __future__ import annotations

from typing import Any

from autotransfer.advisor.decisions import DECISIONS
from autotransfer.recipe.schema import (
    N_GROUPS,
    Augmentation,
    BackboneChoice,
    Data,
    DomainAdaptation,
    EarlyStopping,
    Head,
    Phase,
    Reason,
    Recipe,
    Regularization,
)

HEAD_ONLY = N_GROUPS  # trainable_from value of a head-only phase


def build_phases(d: dict[str, Any]) -> list[Phase]:
    """Head phase, then (gradual) fine-tuning phases, from the decisions."""
    common = dict(optimizer=d["optimizer"], schedule=d["schedule"], weight_decay=d["weight_decay"])
    phases = [Phase(name="head", epochs=d["head_epochs"], trainable_from=HEAD_ONLY,
                    learning_rate=d["head_lr"], **common)]
    start = d["finetune_from"]
    if start >= HEAD_ONLY:
        return phases
    stages = [start]
    if d["gradual"] and start < N_GROUPS - 1:
        stages = [N_GROUPS - 1, start]
    total = max(d["finetune_epochs"], len(stages))
    first = max(1, round(total / 3)) if len(stages) == 2 else total
    for index, trainable_from in enumerate(stages):
        epochs = first if index == 0 else total - first
        multipliers = [
            d["group_lr_decay"] ** (N_GROUPS - 1 - g) if g >= trainable_from else 0.0
            for g in range(N_GROUPS)
        ]
        warmup = round(d["warmup_fraction"] * epochs, 2)
        phases.append(Phase(
            name="finetune" if index == len(stages) - 1 else "finetune-last-group",
            epochs=epochs, trainable_from=trainable_from, learning_rate=d["finetune_lr"],
            warmup_epochs=warmup if warmup < epochs else 0.0,
            group_lr_multipliers=[round(m, 6) for m in multipliers], **common,
        ))  # fmt: skip
    return phases


def build_augmentation(d: dict[str, Any]) -> Augmentation:
    s = d["aug_strength"]
    return Augmentation(
        horizontal_flip=d["hflip"], vertical_flip=d["vflip"], rotate90=d["rot90"],
        rotation=0.0 if d["rot90"] else round(0.05 * s, 4), zoom=round(0.2 * s, 4),
        translation=round(0.1 * s, 4), brightness=round(0.2 * s, 4), contrast=round(0.2 * s, 4),
        saturation=round(0.2 * s, 4) if d["color_jitter"] else 0.0,
        hue=round(0.02 * s, 4) if d["color_jitter"] else 0.0, mixup_alpha=d["mixup_alpha"],
    )  # fmt: skip


def expand_paths(template: str, phases: list[Phase]) -> list[str]:
    """Expand ``{head}``, ``{finetune}`` and ``{phases}`` in a key path template."""
    indices = {
        "{head}": [i for i, p in enumerate(phases) if p.trainable_from == HEAD_ONLY],
        "{finetune}": [i for i, p in enumerate(phases) if p.trainable_from < HEAD_ONLY],
        "{phases}": list(range(len(phases))),
    }
    for key, values in indices.items():
        if key in template:
            return [template.replace(key, str(i)) for i in values]
    return [template]


def assemble(decisions: dict[str, Any], reasons: dict[str, Reason], *, name: str, seed: int = 0,
             weights: str = "imagenet") -> Recipe:
    """The recipe for ``decisions``; ``reasons`` (decision -> why) become per-field reasons.

    ``weights``: the backbone weights the recipe trains from (those that were probed)."""
    d = decisions
    phases = build_phases(d)
    field_reasons: dict[str, Reason] = {}
    for decision, (_, templates, _) in DECISIONS.items():
        if decision not in reasons:
            continue
        for template in templates:
            for path in expand_paths(template, phases):
                field_reasons.setdefault(path, reasons[decision])  # the first, most specific, wins
    return Recipe(
        name=name,
        seed=seed,
        backbone=BackboneChoice(name=d["backbone"], input_size=d["input_size"], weights=weights),
        data=Data(batch_size=d["batch_size"], class_weighting=d["class_weighting"],
                  exclude_leaks=d["exclude_leaks"]),
        head=Head(dropout=d["dropout"], solver=d["head_solver"]),
        bn_policy=d["bn_policy"],
        precision=d["precision"],
        phases=phases,
        augmentation=build_augmentation(d),
        regularization=Regularization(label_smoothing=d["label_smoothing"]),
        domain_adaptation=DomainAdaptation(
            method=d["da_method"] if d.get("da_method", "none") != "none"
            else ("adabn" if d["adabn"] else "none"), before_phase=0),
        early_stopping=EarlyStopping(patience=d["patience"]),
        reasons=dict(sorted(field_reasons.items())),
    )
