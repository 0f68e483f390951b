"""The search space around a recipe, and trial values back to a recipe (pure: no TensorFlow).

:func:`search_space` reads a :class:`~autotransfer.recipe.schema.Recipe` (and the reasons the
advisor recorded in it) and returns a declarative :class:`SearchSpace`: one :class:`Dimension` per
tunable hyperparameter, whose ``default`` is the recipe's own value, with its range, scale and a
sentence saying why the range is what it is. :func:`apply` maps a trial's values back to a valid
recipe; the defaults map to the recipe itself, unchanged (trial 0 *is* the advised recipe).

Dimensions (each only where the recipe has something to tune):

==================  ===========================================================================
name                what it changes
==================  ===========================================================================
head_lr             peak rate of the head-only phase(s); log range around the advised value
                    (not searched when ``head.solver`` is 'lbfgs': the head is fitted exactly)
finetune_lr         peak rate of the fine-tuning phase(s), all scaled by the same factor
finetune_from       first trainable layer group of the deepest fine-tuning phase (5: head only)
augmentation_scale  one factor on every augmentation magnitude (zoom, translation, rotation,
                    brightness, contrast, saturation, hue); 1 = as advised; three values only:
                    each needs its own frozen activations (see :mod:`.trials`)
dropout             ``head.dropout``
label_smoothing     ``regularization.label_smoothing``
weight_decay        one factor on every phase's weight decay, log range; 1 = as advised
epochs_scale        one factor on every phase's epochs (and warm-up): ×0.5, ×1 or ×2
backbone            the advised backbone or a runner-up of the probes (``BB01`` evidence)
==================  ===========================================================================

How the advisor's reasons shape the ranges (``Dimension.why`` says which applied):

* learning rates: ×/÷ 4 around the advised value; ×/÷ 6 when ``LR01`` saw data far from ImageNet
  (its ``bn_shift`` above its ``far_shift``), where the right rate is less certain; the
  fine-tuning rate never above half the head's advised rate (a diverged trial wastes its time);
* unfreeze depth: one group either side; two when ``FZ01``/``FZ02`` measured far data (a large
  BN-statistics shift or ImageNet entropy); only "head only" or one group when ``FZ03`` chose a
  linear probe because a class is tiny (fine-tuning deeper is what that rule rules out);
* augmentation magnitude: ×0.5, ×1 or ×1.5 of the advised strength (×0.75 instead of ×0.5 when
  ``AUG01`` saw small classes, fewer than its ``small`` images per class);
* dropout ±0.15, label smoothing ±0.1 (within [0, 0.3]), weight decay ×/÷ 10, schedule length
  ×0.5, ×1 or ×2 of the epochs ``LR03`` chose (early stopping still ends a phase early).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from autotransfer.errors import InvalidParameterError
from autotransfer.recipe.schema import N_GROUPS, Phase, Reason, Recipe

HEAD_ONLY = N_GROUPS

#: every dimension :func:`search_space` knows, in the order they are registered
DIMENSIONS = ("head_lr", "finetune_lr", "finetune_from", "augmentation_scale", "dropout",
              "label_smoothing", "weight_decay", "epochs_scale", "backbone")

#: the augmentation fields ``augmentation_scale`` multiplies, with their schema maxima
AUG_MAGNITUDES: dict[str, float] = {
    "zoom": 0.95, "translation": 0.95, "rotation": 0.5, "brightness": 1.0, "contrast": 1.0,
    "saturation": 1.0, "hue": 0.5,
}


@dataclass(frozen=True)
class Dimension:
    """One hyperparameter of the search: default (the recipe's value), range, scale, why."""

    name: str
    kind: Literal["float", "int", "choice"]
    default: Any
    low: float | None = None
    high: float | None = None
    sampling: Literal["linear", "log"] = "linear"
    values: tuple[Any, ...] = ()
    why: str = ""
    rule: str = ""
    fields: tuple[str, ...] = ()

    def contains(self, value: Any) -> bool:
        if self.kind == "choice":
            return value in self.values
        assert self.low is not None and self.high is not None
        return self.low - 1e-12 <= value <= self.high + 1e-12

    def describe_range(self) -> str:
        if self.kind == "choice":
            return "{" + ", ".join(str(v) for v in self.values) + "}"
        scale = " (log)" if self.sampling == "log" else ""
        return f"[{_fmt(self.low)}, {_fmt(self.high)}]{scale}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["values"] = list(self.values)
        data["fields"] = list(self.fields)
        return data


@dataclass(frozen=True)
class SearchSpace:
    """The dimensions of a search around one recipe."""

    dimensions: tuple[Dimension, ...]
    notes: tuple[str, ...] = field(default=())

    def __iter__(self) -> Any:
        return iter(self.dimensions)

    def __len__(self) -> int:
        return len(self.dimensions)

    def __getitem__(self, name: str) -> Dimension:
        for dim in self.dimensions:
            if dim.name == name:
                return dim
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dimensions]

    def defaults(self) -> dict[str, Any]:
        """The recipe's own values: trial 0."""
        return {d.name: d.default for d in self.dimensions}

    def changed(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The entries of ``values`` that differ from the defaults."""
        return {d.name: values[d.name] for d in self.dimensions
                if d.name in values and not _same(values[d.name], d.default)}

    def register(self, hp: Any) -> dict[str, Any]:
        """Declare every dimension on a KerasTuner ``HyperParameters``; returns the values."""
        values: dict[str, Any] = {}
        for d in self.dimensions:
            if d.kind == "float":
                values[d.name] = hp.Float(d.name, min_value=d.low, max_value=d.high,
                                          sampling=d.sampling, default=d.default)
            elif d.kind == "int":
                values[d.name] = hp.Int(d.name, min_value=int(d.low), max_value=int(d.high),
                                        default=int(d.default))
            else:
                values[d.name] = hp.Choice(d.name, list(d.values), default=d.default)
        return values

    def to_dict(self) -> dict[str, Any]:
        return {"dimensions": [d.to_dict() for d in self.dimensions], "notes": list(self.notes)}


# ------------------------------------------------------------------------------------- helpers
def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


def head_phases(recipe: Recipe) -> list[int]:
    return [i for i, p in enumerate(recipe.phases) if p.trainable_from >= HEAD_ONLY]


def finetune_phases(recipe: Recipe) -> list[int]:
    return [i for i, p in enumerate(recipe.phases) if p.trainable_from < HEAD_ONLY]


def _reason(recipe: Recipe, paths: Iterable[str]) -> Reason | None:
    for path in paths:
        reason = recipe.reasons.get(path)
        if reason is not None:
            return reason
    return None


def _num(mapping: Mapping[str, Any], key: str) -> float | None:
    value = mapping.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return None if value != value else float(value)  # NaN -> None


def _is_far(reason: Reason | None) -> bool:
    """The reason's rule measured data far from ImageNet (its own thresholds)."""
    if reason is None:
        return False
    ev, th = reason.evidence, reason.thresholds
    shift, far_shift = _num(ev, "bn_shift"), _num(th, "far_shift")
    entropy, far_entropy = _num(ev, "entropy"), _num(th, "far_entropy")
    return bool((shift is not None and far_shift is not None and shift > far_shift)
                or (entropy is not None and far_entropy is not None and entropy > far_entropy))


def _rule(reason: Reason | None) -> str:
    return reason.rule if reason is not None else ""


def _log_range(value: float, factor: float, lo: float = 1e-7,
               hi: float = 9.0) -> tuple[float, float]:
    return max(lo, value / factor), min(hi, value * factor)


def runner_up_backbones(recipe: Recipe, limit: int = 2) -> list[str]:
    """Runner-up backbones in the recipe's ``BB01`` evidence (``logme[<name>]``), best first."""
    reason = recipe.reasons.get("backbone.name")
    if reason is None:
        return []
    scores = {k[len("logme["):-1]: v for k, v in reason.evidence.items()
              if k.startswith("logme[") and k.endswith("]") and isinstance(v, (int, float))}
    ranked = sorted(scores, key=lambda name: -float(scores[name]))
    excluded = reason.text.split("excluded:", 1)[1] if "excluded:" in reason.text else ""
    others = [n for n in ranked if n != recipe.backbone.name and n not in excluded]
    return others[:limit]


# ------------------------------------------------------------------------------ the space
def search_space(
    recipe: Recipe,
    *,
    backbones: Sequence[str] | None = None,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
) -> SearchSpace:
    """The search space centred on ``recipe``.

    Args:
        recipe: the recipe to refine (its values become the defaults).
        backbones: alternative backbones to try besides the recipe's own (default: the runner-ups
            recorded in the recipe's ``BB01`` reason; ``[]`` to keep the backbone fixed).
        include: only these dimensions (default: all that apply, see :data:`DIMENSIONS`).
        exclude: leave these dimensions out.
    """
    wanted = set(DIMENSIONS if include is None else include) - set(exclude)
    unknown = wanted - set(DIMENSIONS)
    if unknown:
        raise InvalidParameterError(
            f"The 'include' parameter of search_space must name dimensions among "
            f"{', '.join(DIMENSIONS)}. Got {sorted(unknown)} instead.")
    dims: list[Dimension] = []
    notes: list[str] = []
    heads, fines = head_phases(recipe), finetune_phases(recipe)

    if "head_lr" in wanted and heads and recipe.head.solver == "lbfgs":
        rule = _rule(recipe.reasons.get("head.solver"))
        notes.append("head_lr is not searched: head.solver 'lbfgs' fits the head exactly, its L2 "
                     "strength by cross-validation" + (f" ({rule})" if rule else ""))
    elif "head_lr" in wanted and heads:
        lr = recipe.phases[heads[0]].learning_rate
        paths = [f"phases.{i}.learning_rate" for i in heads]
        reason = _reason(recipe, paths)
        factor = 6.0 if _is_far(reason) else 4.0
        low, high = _log_range(lr, factor)
        why = (f"head learning rate: log range ×/÷ {factor:g} around the advised {lr:.3g}"
               + (f" ({reason.rule})" if reason else "")
               + ("; wider because the data is far from ImageNet" if factor > 4 else ""))
        dims.append(Dimension("head_lr", "float", lr, low, high, "log", why=why,
                              rule=_rule(reason), fields=tuple(paths)))

    if "finetune_lr" in wanted and fines:
        lr = recipe.phases[fines[-1]].learning_rate
        paths = [f"phases.{i}.learning_rate" for i in fines]
        reason = _reason(recipe, paths)
        factor = 6.0 if _is_far(reason) else 4.0
        low, high = _log_range(lr, factor)
        ceiling = 0.5 * recipe.phases[heads[0]].learning_rate if heads else high
        capped = lr <= ceiling < high
        high = ceiling if capped else high
        why = (f"fine-tuning learning rate: log range ×/÷ {factor:g} around the advised {lr:.3g}"
               + (f" ({reason.rule})" if reason else "")
               + ("; wider because the data is far from ImageNet" if factor > 4 else "")
               + (f", at most half the head's rate ({ceiling:.3g}): fine-tuning runs at a lower "
                  "rate than the head, or it destroys the pretrained features" if capped else "")
               + ("; every fine-tuning phase scales by the same factor" if len(fines) > 1 else ""))
        dims.append(Dimension("finetune_lr", "float", lr, low, high, "log", why=why,
                              rule=_rule(reason), fields=tuple(paths)))

    if "finetune_from" in wanted:
        depth = recipe.phases[fines[-1]].trainable_from if fines else HEAD_ONLY
        paths = [f"phases.{i}.trainable_from" for i in (fines or heads)]
        reason = _reason(recipe, paths)
        rule = _rule(reason)
        if rule == "FZ03" or not fines:
            low, high = HEAD_ONLY - 1, HEAD_ONLY
            why = ("unfreeze depth: head only or the last group; the recipe trains the head alone "
                   + {"FZ03": "(a linear probe, FZ03's choice when a class is tiny)",
                      "FZ04": "(FZ04: a linear probe already separates the classes)",
                      "BUD02": "(BUD02: fine-tuning does not fit the time budget)"}.get(
                          rule or "", "(a linear probe)")
                   + ", so deeper fine-tuning is left out")
        else:
            reach = 2 if _is_far(reason) or rule == "FZ02" else 1
            low, high = max(0, depth - reach), min(HEAD_ONLY, depth + reach)
            why = (f"unfreeze depth: {reach} group(s) either side of the advised {depth}"
                   + (f" ({rule})" if rule else "") + (
                       "; two because the data is far from ImageNet" if reach == 2 else "")
                   + " (5 = head only)")
        if high > low:
            dims.append(Dimension("finetune_from", "int", depth, low, high, why=why, rule=rule,
                                  fields=tuple(paths)))

    aug = recipe.augmentation
    if "augmentation_scale" in wanted and any(getattr(aug, f) > 0 for f in AUG_MAGNITUDES):
        paths = [f"augmentation.{f}" for f in AUG_MAGNITUDES if getattr(aug, f) > 0]
        reason = _reason(recipe, paths)
        small = reason is not None and reason.rule == "AUG01" and _small_classes(reason)
        low = 0.75 if small else 0.5
        why = (f"augmentation magnitude: ×{low:g}, ×1 or ×1.5 of the advised strength"
               + (f" ({reason.rule})" if reason else "")
               + ("; not much weaker, because the classes are small" if small else "")
               + "; three values, because each one needs its own frozen activations")
        dims.append(Dimension("augmentation_scale", "choice", 1.0, values=(low, 1.0, 1.5),
                              why=why, rule=_rule(reason), fields=tuple(paths)))

    if "dropout" in wanted:
        d = recipe.head.dropout
        reason = recipe.reasons.get("head.dropout")
        low, high = max(0.0, d - 0.15), min(0.7, d + 0.15)
        dims.append(Dimension("dropout", "float", d, low, high,
                              why=f"dropout ±0.15 around the advised {d:g}"
                              + (f" ({reason.rule})" if reason else ""),
                              rule=_rule(reason), fields=("head.dropout",)))

    if "label_smoothing" in wanted:
        s = recipe.regularization.label_smoothing
        reason = recipe.reasons.get("regularization.label_smoothing")
        low, high = max(0.0, s - 0.1), min(0.3, s + 0.1)
        dims.append(Dimension("label_smoothing", "float", s, low, high,
                              why=f"label smoothing ±0.1 around the advised {s:g}"
                              + (f" ({reason.rule})" if reason else ""),
                              rule=_rule(reason), fields=("regularization.label_smoothing",)))

    if "weight_decay" in wanted and any(p.weight_decay > 0 for p in recipe.phases):
        wd = max(p.weight_decay for p in recipe.phases)
        paths = [f"phases.{i}.weight_decay" for i in range(len(recipe.phases))]
        reason = _reason(recipe, paths)
        dims.append(Dimension("weight_decay", "float", 1.0, 0.1, 10.0, "log",
                              why=f"weight decay: ×/÷ 10 around the advised {wd:.3g}"
                              + (f" ({reason.rule})" if reason else ""),
                              rule=_rule(reason), fields=tuple(paths)))

    if "epochs_scale" in wanted:
        paths = [f"phases.{i}.epochs" for i in range(len(recipe.phases))]
        reason = _reason(recipe, paths)
        dims.append(Dimension("epochs_scale", "choice", 1.0, values=(0.5, 1.0, 2.0),
                              why="schedule length: ×0.5, ×1 or ×2 of the advised epochs "
                              f"({', '.join(str(p.epochs) for p in recipe.phases)})"
                              + (f" ({reason.rule})" if reason else ""),
                              rule=_rule(reason), fields=tuple(paths)))

    if "backbone" in wanted:
        others = runner_up_backbones(recipe) if backbones is None else [
            b for b in backbones if b != recipe.backbone.name]
        if others and recipe.backbone.weights.lower() not in ("imagenet", "none", "random"):
            notes.append("backbone: not searched, the recipe loads weights from a file")
            others = []
        if others:
            reason = recipe.reasons.get("backbone.name")
            values = (recipe.backbone.name, *dict.fromkeys(others))
            dims.append(Dimension("backbone", "choice", recipe.backbone.name, values=values,
                                  why="backbone: the advised one or the probes' runner-up(s) "
                                  + ", ".join(others) + (f" ({reason.rule})" if reason else ""),
                                  rule=_rule(reason), fields=("backbone.name",)))
    return SearchSpace(tuple(dims), tuple(notes))


def _small_classes(reason: Reason) -> bool:
    per_class, small = _num(reason.evidence, "per_class"), _num(reason.thresholds, "small")
    return per_class is not None and small is not None and per_class < small


# ------------------------------------------------------------------------------ values -> recipe
def apply(recipe: Recipe, values: Mapping[str, Any], space: SearchSpace | None = None) -> Recipe:
    """The recipe of a trial: ``recipe`` with ``values`` applied.

    Values equal to the recipe's own (the space's defaults) change nothing, so
    ``apply(recipe, space.defaults()) == recipe``. Reasons are left as they are (the tuner
    records its own provenance for the refined recipe). Unknown names are refused.
    """
    space = space if space is not None else search_space(recipe)
    known = set(space.names) | {"tuner/epochs", "tuner/initial_epoch", "tuner/bracket",
                                "tuner/round", "tuner/trial_id"}
    unknown = set(values) - known
    if unknown:
        raise InvalidParameterError(
            f"The 'values' parameter of apply must only name dimensions of the search space "
            f"({', '.join(space.names)}). Got {sorted(unknown)} instead.")
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
    if "tuner/epochs" in values:  # Hyperband: a fraction of the recipe's epochs
        _scale_epochs(data, float(values["tuner/epochs"]) / max(1, recipe.total_epochs))
    da = data["domain_adaptation"]
    if da["method"] != "none" and da["before_phase"] >= len(data["phases"]):
        da["before_phase"] = 0
    return Recipe.model_validate(data)


def _clip(value: float, low: float, high: float) -> float:
    return float(min(high, max(low, value)))


def _decay(recipe: Recipe, phase: Phase, index: int) -> float:
    """The per-group rate decay of a phase: from its multipliers, else LR02's, else 0.5."""
    m = phase.group_lr_multipliers
    live = [g for g in range(N_GROUPS) if m[g] > 0 and g >= phase.trainable_from]
    if len(live) >= 2 and m[live[-1]] > 0:
        return float((m[live[0]] / m[live[-1]]) ** (1.0 / (live[-1] - live[0])))
    reason = recipe.reasons.get(f"phases.{index}.group_lr_multipliers")
    decay = _num(reason.thresholds, "decay") if reason is not None else None
    return decay if decay is not None else 0.5


def _set_depth(recipe: Recipe, phases: list[dict[str, Any]], depth: int) -> list[dict[str, Any]]:
    fines = finetune_phases(recipe)
    if depth >= HEAD_ONLY:  # head only: the fine-tuning phases go
        kept = [p for i, p in enumerate(phases) if i not in fines]
        return kept
    if not fines:  # the recipe is head only: add one fine-tuning phase after the head
        head = phases[-1]
        multipliers = [0.5 ** (N_GROUPS - 1 - g) if g >= depth else 0.0 for g in range(N_GROUPS)]
        new = dict(head, name="finetune", trainable_from=depth,
                   learning_rate=head["learning_rate"] * 0.1, warmup_epochs=0.0,
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
