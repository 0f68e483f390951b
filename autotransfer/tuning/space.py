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
adaptation_weight   ``domain_adaptation.weight`` (λ) of a method with a loss: 0 or DA09's weights
                    (rule DA11, :mod:`.adapting`)
==================  ===========================================================================

The ranges are declared policy: the params of rules TUNE03–TUNE10 in ``recipes/rules.yaml``
(:data:`RANGE_RULES`; ``Dimension.range_rule`` names the rule, docs/rules.md documents it), read by
one generic function, :func:`span`. With the rules' current params, and how the advisor's
reasons shape them (``Dimension.why`` says which applied):

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from autotransfer.errors import InvalidParameterError
from autotransfer.recipe.schema import Reason, Recipe
from autotransfer.tuning.dimensions import (AUG_MAGNITUDES, DIMENSIONS, HEAD_ONLY, Dimension,
                                            SearchSpace, finetune_phases, fmt, head_phases, number)
from autotransfer.tuning.runner_ups import excluded_backbones, runner_up_backbones
from autotransfer.tuning.trial_recipe import apply

__all__ = ["AUG_MAGNITUDES", "DIMENSIONS", "HEAD_ONLY", "RANGE_RULES", "Dimension", "SearchSpace",
           "apply", "excluded_backbones", "finetune_phases", "fmt", "head_phases", "range_params",
           "runner_up_backbones", "search_space", "span"]


def _reason(recipe: Recipe, paths: Iterable[str]) -> Reason | None:
    for path in paths:
        reason = recipe.reasons.get(path)
        if reason is not None:
            return reason
    return None


def _is_far(reason: Reason | None) -> bool:
    """The reason's rule measured data far from ImageNet (its own thresholds)."""
    if reason is None:
        return False
    ev, th = reason.evidence, reason.thresholds
    shift, far_shift = number(ev, "bn_shift"), number(th, "far_shift")
    entropy, far_entropy = number(ev, "entropy"), number(th, "far_entropy")
    return bool((shift is not None and far_shift is not None and shift > far_shift)
                or (entropy is not None and far_entropy is not None and entropy > far_entropy))


def _rule(reason: Reason | None) -> str:
    return reason.rule if reason is not None else ""


# ------------------------------------------------------------------------------ the ranges
#: the rule (recipes/rules.yaml) whose params give each dimension's range
RANGE_RULES = {"head_lr": "TUNE03", "finetune_lr": "TUNE03", "finetune_from": "TUNE04",
               "augmentation_scale": "TUNE05", "dropout": "TUNE06", "label_smoothing": "TUNE07",
               "weight_decay": "TUNE08", "epochs_scale": "TUNE09", "backbone": "TUNE10",
               "adaptation_weight": "DA11"}


def range_params() -> dict[str, dict[str, Any]]:
    """Each range rule's params, by rule id (one read of the rule base)."""
    from autotransfer.advisor.rules import load_rules

    wanted = set(RANGE_RULES.values())
    return {r.id: dict(r.params) for r in load_rules().rules if r.id in wanted}


def span(params: Mapping[str, Any], default: float, *, wide: bool = False,
         narrow: bool = False) -> tuple[float, float] | tuple[float, ...]:
    """The range a rule's params give around ``default``, by their ``scale``.

    ``log``: ×/÷ ``factor`` (``far_factor`` when ``wide``) within [``lowest``, ``highest``];
    ``linear``: ± ``delta`` within [``lowest``, ``highest``]; ``steps``: ± ``reach``
    (``far_reach`` when ``wide``) within [0, head only]; ``choice``: the factors ``low`` (or
    ``small_low`` when ``narrow``), 1 and ``high`` of the advised value.
    """
    scale = params["scale"]
    lowest, highest = float(params.get("lowest", -math.inf)), float(params.get("highest", math.inf))
    if scale == "log":
        factor = float(params["far_factor" if wide and "far_factor" in params else "factor"])
        return max(lowest, default / factor), min(highest, default * factor)
    if scale == "linear":
        delta = float(params["delta"])
        return max(lowest, default - delta), min(highest, default + delta)
    if scale == "steps":
        reach = int(params["far_reach"] if wide else params["reach"])
        return max(0, int(default) - reach), min(HEAD_ONLY, int(default) + reach)
    if scale == "choice":
        low = params["small_low"] if narrow and "small_low" in params else params["low"]
        return float(low), 1.0, float(params["high"])
    raise ValueError(f"unknown scale {scale!r} of a search range")


def _by(reason: Reason | None) -> str:
    return f" ({reason.rule})" if reason else ""


# ------------------------------------------------------------------------------ the space
def search_space(
    recipe: Recipe,
    *,
    backbones: Sequence[str] | None = None,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
) -> SearchSpace:
    """The search space centred on ``recipe``; the ranges are the rules of :data:`RANGE_RULES`.

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
    ranges = range_params()
    dims: list[Dimension] = []
    notes: list[str] = []
    for name, build in _BUILDERS:  # in the order of the table in the module's docstring
        if name in wanted:
            dim = build(recipe, ranges.get(RANGE_RULES[name], {}), notes, backbones)
            if dim is not None:
                dims.append(dim)
    return SearchSpace(tuple(dims), tuple(notes))


def _dimension(name: str, kind: Literal["float", "int", "choice"], default: Any,
               bounds: tuple[float, ...], paths: Sequence[str], why: str, reason: Reason | None,
               sampling: Literal["linear", "log"] = "linear") -> Dimension:
    low, high, values = ((None, None, tuple(bounds)) if kind == "choice"
                         else (bounds[0], bounds[1], ()))
    return Dimension(name, kind, default, low, high, sampling, values, why=why,
                     rule=_rule(reason), fields=tuple(paths), range_rule=RANGE_RULES[name])


def _head_lr(recipe: Recipe, params: Mapping[str, Any], notes: list[str],
             backbones: Sequence[str] | None) -> Dimension | None:
    heads = head_phases(recipe)
    if not heads:
        return None
    if recipe.head.solver == "lbfgs":
        rule = _rule(recipe.reasons.get("head.solver"))
        notes.append("head_lr is not searched: head.solver 'lbfgs' fits the head exactly, its L2 "
                     "strength by cross-validation" + (f" ({rule})" if rule else ""))
        return None
    lr = recipe.phases[heads[0]].learning_rate
    paths = [f"phases.{i}.learning_rate" for i in heads]
    reason = _reason(recipe, paths)
    far = _is_far(reason)
    factor = params["far_factor" if far else "factor"]
    why = (f"head learning rate: log range ×/÷ {factor:g} around the advised {lr:.3g}"
           + _by(reason) + ("; wider because the data is far from ImageNet" if far else ""))
    return _dimension("head_lr", "float", lr, span(params, lr, wide=far), paths, why, reason,
                      "log")


def _finetune_lr(recipe: Recipe, params: Mapping[str, Any], notes: list[str],
                 backbones: Sequence[str] | None) -> Dimension | None:
    heads, fines = head_phases(recipe), finetune_phases(recipe)
    if not fines:
        return None
    lr = recipe.phases[fines[-1]].learning_rate
    paths = [f"phases.{i}.learning_rate" for i in fines]
    reason = _reason(recipe, paths)
    far = _is_far(reason)
    factor = params["far_factor" if far else "factor"]
    low, high = span(params, lr, wide=far)
    ceiling = (params["finetune_ceiling"] * recipe.phases[heads[0]].learning_rate
               if heads else high)
    capped = lr <= ceiling < high
    high = ceiling if capped else high
    why = (f"fine-tuning learning rate: log range ×/÷ {factor:g} around the advised {lr:.3g}"
           + _by(reason) + ("; wider because the data is far from ImageNet" if far else "")
           + (f", at most {_of_head(params['finetune_ceiling'])} ({ceiling:.3g}): "
              "fine-tuning runs at a lower rate than the head, or it destroys the pretrained "
              "features" if capped else "")
           + ("; every fine-tuning phase scales by the same factor" if len(fines) > 1 else ""))
    return _dimension("finetune_lr", "float", lr, (low, high), paths, why, reason, "log")


def _finetune_from(recipe: Recipe, params: Mapping[str, Any], notes: list[str],
                   backbones: Sequence[str] | None) -> Dimension | None:
    heads, fines = head_phases(recipe), finetune_phases(recipe)
    depth = recipe.phases[fines[-1]].trainable_from if fines else HEAD_ONLY
    paths = [f"phases.{i}.trainable_from" for i in (fines or heads)]
    reason = _reason(recipe, paths)
    rule = _rule(reason)
    if rule == params["narrow_after"] or not fines:
        low, high = HEAD_ONLY - 1, HEAD_ONLY
        why = ("unfreeze depth: head only or the last group; the recipe trains the head alone "
               + {"FZ03": "(a linear probe, FZ03's choice when a class is tiny)",
                  "FZ04": "(FZ04: a linear probe already separates the classes)",
                  "BUD02": "(BUD02: fine-tuning does not fit the time budget)"}.get(
                      rule or "", "(a linear probe)")
               + ", so deeper fine-tuning is left out")
    else:
        wide = _is_far(reason) or rule == params["wide_after"]
        low, high = span(params, depth, wide=wide)
        reach = params["far_reach" if wide else "reach"]
        why = (f"unfreeze depth: {reach} group(s) either side of the advised {depth}"
               + (f" ({rule})" if rule else "") + (
                   "; two because the data is far from ImageNet" if wide else "")
               + f" ({HEAD_ONLY} = head only)")
    if high <= low:
        return None
    return _dimension("finetune_from", "int", depth, (low, high), paths, why, reason)


def _augmentation_scale(recipe: Recipe, params: Mapping[str, Any], notes: list[str],
                        backbones: Sequence[str] | None) -> Dimension | None:
    aug = recipe.augmentation
    if not any(getattr(aug, f) > 0 for f in AUG_MAGNITUDES):
        return None
    paths = [f"augmentation.{f}" for f in AUG_MAGNITUDES if getattr(aug, f) > 0]
    reason = _reason(recipe, paths)
    small = reason is not None and reason.rule == "AUG01" and _small_classes(reason)
    values = span(params, 1.0, narrow=small)
    why = (f"augmentation magnitude: ×{values[0]:g}, ×1 or ×{values[-1]:g} of the advised "
           "strength" + _by(reason)
           + ("; not much weaker, because the classes are small" if small else "")
           + "; three values, because each one needs its own frozen activations")
    return _dimension("augmentation_scale", "choice", 1.0, values, paths, why, reason)


def _head_field(name: str, path: str, what: str) -> _Builder:
    """A dimension of one recipe field, ± the rule's ``delta`` (dropout, label smoothing)."""

    def build(recipe: Recipe, params: Mapping[str, Any], notes: list[str],
              backbones: Sequence[str] | None) -> Dimension | None:
        value = float(_field(recipe, path))
        reason = recipe.reasons.get(path)
        return _dimension(name, "float", _field(recipe, path), span(params, value), [path],
                          f"{what} ±{params['delta']:g} around the advised {value:g}"
                          + _by(reason), reason)

    return build


def _weight_decay(recipe: Recipe, params: Mapping[str, Any], notes: list[str],
                  backbones: Sequence[str] | None) -> Dimension | None:
    if not any(p.weight_decay > 0 for p in recipe.phases):
        return None
    wd = max(p.weight_decay for p in recipe.phases)
    paths = [f"phases.{i}.weight_decay" for i in range(len(recipe.phases))]
    reason = _reason(recipe, paths)
    return _dimension("weight_decay", "float", 1.0, span(params, 1.0), paths,
                      f"weight decay: ×/÷ {params['factor']:g} around the advised {wd:.3g}"
                      + _by(reason), reason, "log")


def _epochs_scale(recipe: Recipe, params: Mapping[str, Any], notes: list[str],
                  backbones: Sequence[str] | None) -> Dimension | None:
    paths = [f"phases.{i}.epochs" for i in range(len(recipe.phases))]
    reason = _reason(recipe, paths)
    values = span(params, 1.0)
    return _dimension("epochs_scale", "choice", 1.0, values, paths,
                      f"schedule length: ×{values[0]:g}, ×1 or ×{values[-1]:g} of the advised "
                      f"epochs ({', '.join(str(p.epochs) for p in recipe.phases)})"
                      + _by(reason), reason)


def _backbone(recipe: Recipe, params: Mapping[str, Any], notes: list[str],
              backbones: Sequence[str] | None) -> Dimension | None:
    limit = int(params["runner_ups"])
    others = runner_up_backbones(recipe, limit) if backbones is None else [
        b for b in backbones if b != recipe.backbone.name]
    bb01 = recipe.reasons.get("backbone.name")
    if backbones is None and bb01 is not None and excluded_backbones(bb01) is None:
        notes.append(f"backbone: not searched, the recipe's {bb01.rule} reason does not say "
                     "which probed backbones your constraints excluded; name the ones to try "
                     "(backbones=[...], --backbones)")
    if others and recipe.backbone.weights.lower() not in ("imagenet", "none", "random"):
        notes.append("backbone: not searched, the recipe loads weights from a file")
        others = []
    if not others:
        return None
    return _dimension("backbone", "choice", recipe.backbone.name,
                      (recipe.backbone.name, *dict.fromkeys(others)), ["backbone.name"],
                      "backbone: the advised one or the probes' runner-up(s) " + ", ".join(others)
                      + _by(bb01), bb01)


def _adaptation_weight(recipe: Recipe, params: Mapping[str, Any], notes: list[str],
                       backbones: Sequence[str] | None) -> Dimension | None:
    """Rule DA11: λ of an adapting recipe's loss (:mod:`.adapting`)."""
    from autotransfer.tuning.adapting import weight_dimension

    return weight_dimension(recipe)


_Builder = Callable[[Recipe, Mapping[str, Any], list[str], Sequence[str] | None],
                    Dimension | None]
#: each dimension's builder, in the order of the space
_BUILDERS: tuple[tuple[str, _Builder], ...] = (
    ("head_lr", _head_lr), ("finetune_lr", _finetune_lr), ("finetune_from", _finetune_from),
    ("augmentation_scale", _augmentation_scale),
    ("dropout", _head_field("dropout", "head.dropout", "dropout")),
    ("label_smoothing", _head_field("label_smoothing", "regularization.label_smoothing",
                                    "label smoothing")),
    ("weight_decay", _weight_decay), ("epochs_scale", _epochs_scale), ("backbone", _backbone),
    ("adaptation_weight", _adaptation_weight))


def _field(recipe: Recipe, path: str) -> Any:
    value: Any = recipe
    for part in path.split("."):
        value = getattr(value, part)
    return value


def _of_head(value: float) -> str:
    return {0.5: "half the head's rate", 1.0: "the head's rate"}.get(
        value, f"{value:g} times the head's rate")


def _small_classes(reason: Reason) -> bool:
    per_class, small = number(reason.evidence, "per_class"), number(reason.thresholds, "small")
    return per_class is not None and small is not None and per_class < small
