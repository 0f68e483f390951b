"""A trial's values back to a recipe (pure): :func:`apply`; the defaults give the recipe itself.

Besides the space's dimensions, one value no oracle draws: :data:`LINEAR_PROBE` (``True``) turns
the trial into the recipe's exact linear head (:func:`~.baseline.linear_probe_recipe`: the
backbone frozen, the head fitted by L-BFGS, no adaptation to target images), the candidate an
adapting search scores beside its trials (rule DA11, :mod:`.adapting`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from autotransfer.errors import InvalidParameterError
from autotransfer.recipe.schema import N_GROUPS, Phase, Recipe
from autotransfer.tuning.dimensions import (AUG_MAGNITUDES, HEAD_ONLY, SearchSpace,
                                            finetune_phases, head_phases, number)

#: the rule whose params shape a new or deeper fine-tuning phase (recipes/rules.yaml)
DEPTH_RULE = "TUNE04"
#: the value that makes a trial the recipe's exact linear head (no dimension: never drawn)
LINEAR_PROBE = "linear_probe"


def _depth_params() -> dict[str, Any]:
    from autotransfer.advisor.rules import rule_params

    return rule_params(DEPTH_RULE)


def apply(recipe: Recipe, values: Mapping[str, Any], space: SearchSpace | None = None) -> Recipe:
    """The recipe of a trial: ``recipe`` with ``values`` applied.

    Values equal to the recipe's own (the space's defaults) change nothing, so
    ``apply(recipe, space.defaults()) == recipe``. Reasons are left as they are (the tuner
    records its own provenance for the refined recipe). Unknown names are refused.
    """
    if space is None:
        from autotransfer.tuning.space import search_space

        space = search_space(recipe)
    known = set(space.names) | {LINEAR_PROBE, "tuner/epochs", "tuner/initial_epoch",
                                "tuner/bracket", "tuner/round", "tuner/trial_id"}
    unknown = set(values) - known
    if unknown:
        raise InvalidParameterError(
            f"The 'values' parameter of apply must only name dimensions of the search space "
            f"({', '.join(space.names)}). Got {sorted(unknown)} instead.")
    if values.get(LINEAR_PROBE):  # rule DA11: the exact linear head, its other values unused
        from autotransfer.tuning.baseline import linear_probe_recipe

        return linear_probe_recipe(recipe).model_copy(update={"reasons": dict(recipe.reasons)})
    changed = space.changed(values)
    data = recipe.model_dump()
    phases: list[dict[str, Any]] = data["phases"]

    if "head_lr" in changed:
        factor = float(changed["head_lr"]) / float(space["head_lr"].default)
        for i in head_phases(recipe):
            phases[i]["learning_rate"] = _clip(phases[i]["learning_rate"] * factor, 1e-8, 9.99)
    if "finetune_lr" in changed:
        factor = float(changed["finetune_lr"]) / float(space["finetune_lr"].default)
        for i in finetune_phases(recipe):
            phases[i]["learning_rate"] = _clip(phases[i]["learning_rate"] * factor, 1e-8, 9.99)
    if "weight_decay" in changed:
        for p in phases:
            p["weight_decay"] = _clip(p["weight_decay"] * float(changed["weight_decay"]), 0.0, 0.99)
    if "augmentation_scale" in changed:
        scale = float(changed["augmentation_scale"])
        for name, top in AUG_MAGNITUDES.items():
            value = data["augmentation"][name] * scale
            data["augmentation"][name] = round(_clip(value, 0.0, top), 6)
    if "dropout" in changed:
        data["head"]["dropout"] = _clip(float(changed["dropout"]), 0.0, 0.95)
    if "label_smoothing" in changed:
        smoothing = float(changed["label_smoothing"])
        data["regularization"]["label_smoothing"] = _clip(smoothing, 0.0, 0.49)
    if "finetune_from" in changed:
        data["phases"] = _set_depth(recipe, phases, int(changed["finetune_from"]))
    if "backbone" in changed:
        _set_backbone(recipe, data, str(changed["backbone"]))
    if "epochs_scale" in changed:
        _scale_epochs(data, float(changed["epochs_scale"]), cap=False)
    if "adaptation_weight" in changed:  # rule DA11: λ searched over 0 and DA09's weights
        data["domain_adaptation"]["weight"] = float(changed["adaptation_weight"])
    if "tuner/epochs" in values:  # Hyperband: a fraction of the recipe's epochs
        _scale_epochs(data, float(values["tuner/epochs"]) / max(1, recipe.total_epochs))
    da = data["domain_adaptation"]
    if da["method"] != "none" and da["before_phase"] >= len(data["phases"]):
        da["before_phase"] = 0
    return Recipe.model_validate(data)


def _clip(value: float, low: float, high: float) -> float:
    return float(min(high, max(low, value)))


def _decay(recipe: Recipe, phase: Phase, index: int) -> float:
    """The per-group rate decay of a phase: from its multipliers, else LR02's, else TUNE04's."""
    m = phase.group_lr_multipliers
    live = [g for g in range(N_GROUPS) if m[g] > 0 and g >= phase.trainable_from]
    if len(live) >= 2 and m[live[-1]] > 0:
        return float((m[live[0]] / m[live[-1]]) ** (1.0 / (live[-1] - live[0])))
    reason = recipe.reasons.get(f"phases.{index}.group_lr_multipliers")
    decay = number(reason.thresholds, "decay") if reason is not None else None
    return decay if decay is not None else float(_depth_params()["decay"])


def _set_depth(recipe: Recipe, phases: list[dict[str, Any]], depth: int) -> list[dict[str, Any]]:
    fines = finetune_phases(recipe)
    if depth >= HEAD_ONLY:  # head only: the fine-tuning phases go
        kept = [p for i, p in enumerate(phases) if i not in fines]
        return kept
    if not fines:  # the recipe is head only: add one fine-tuning phase after the head
        head = phases[-1]
        params = _depth_params()
        multipliers = [float(params["decay"]) ** (N_GROUPS - 1 - g) if g >= depth else 0.0
                       for g in range(N_GROUPS)]
        new = dict(head, name="finetune", trainable_from=depth,
                   learning_rate=head["learning_rate"] * float(params["new_rate"]),
                   warmup_epochs=0.0,
                   group_lr_multipliers=[round(m, 6) for m in multipliers])
        return [*phases, new]
    last = fines[-1]
    phase = recipe.phases[last]
    decay = _decay(recipe, phase, last)
    deep = dict(phases[last])
    old = list(deep["group_lr_multipliers"])
    anchor = old[phase.trainable_from] if old[phase.trainable_from] > 0 else 1.0
    deep["group_lr_multipliers"] = [
        0.0 if g < depth else (old[g] if g >= phase.trainable_from and old[g] > 0
                               else round(anchor * decay ** (phase.trainable_from - g), 6))
        for g in range(N_GROUPS)]
    deep["trainable_from"] = depth
    # earlier (gradual) fine-tuning phases that would now train as deep or deeper merge into it
    merged = [i for i in fines[:-1] if recipe.phases[i].trainable_from <= depth]
    deep["epochs"] = deep["epochs"] + sum(phases[i]["epochs"] for i in merged)
    out = []
    for i, p in enumerate(phases):
        if i in merged:
            continue
        out.append(deep if i == last else p)
    return out


def _set_backbone(recipe: Recipe, data: dict[str, Any], name: str) -> None:
    from autotransfer.backbones.catalog import get_backbone

    old, new = get_backbone(recipe.backbone.name), get_backbone(name)
    size = recipe.backbone.input_size
    if size == old.default_input_size:
        size = new.default_input_size
    data["backbone"]["name"] = name
    data["backbone"]["input_size"] = max(size, new.min_input_size)
    if new.bn_statistics != "real" and data["domain_adaptation"]["method"] == "adabn":
        data["domain_adaptation"]["method"] = "none"
    if new.bn_statistics == "folded" and data["bn_policy"] == "trainable":
        data["bn_policy"] = "frozen"


def _scale_epochs(data: dict[str, Any], factor: float, cap: bool = True) -> None:
    factor = min(1.0, factor) if cap else factor
    for p in data["phases"]:
        old = p["epochs"]
        p["epochs"] = min(1000, max(1, int(round(old * factor))))
        p["warmup_epochs"] = round(p["warmup_epochs"] * p["epochs"] / old, 2)
        if p["warmup_epochs"] >= p["epochs"]:
            p["warmup_epochs"] = 0.0
