"""Choose the adaptation weight λ without target labels: train one run per candidate weight
(0 = the same method's architecture trained source-only) by the one trainer, score every run by
the unsupervised criterion (rule DA09's), keep the best.

When every phase of the recipe trains the head alone (frozen backbone, no hidden layer besides the
methods' bottleneck), one more candidate is scored by the same criterion: the recipe source-only
with its head fitted exactly (L-BFGS, ``head.solver: lbfgs``; folder ``exact_head``), which an
adapting recipe's gradient head (λ = 0 included) is not; on dslr → amazon it beat every adapted
candidate (docs/benchmarks/adapt.md). When it wins, the chosen recipe is that source-only recipe.

The runs share the source split (the recipe's seed), so their source validation images are the
same; the target images are read from their paths only. The returned recipe carries the chosen
``weight`` and, in ``reasons["domain_adaptation.weight"]``, every candidate's score.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autotransfer.errors import InvalidParameterError
from autotransfer.recipe.schema import N_GROUPS, Reason, Recipe

#: the rule id the choice is explained by; its params give the λ grid and the criterion
RULE = "DA09"
#: the source-only exact-head candidate's name (its scores' key and its run folder)
EXACT = "exact_head"


def rule_weights() -> tuple[float, ...]:
    """λ candidates besides 0: rule DA09's ``weights`` (comma-separated)."""
    from autotransfer.advisor.rules import rule_params

    return tuple(float(w) for w in str(rule_params(RULE)["weights"]).split(","))


def rule_criterion() -> str:
    """The unsupervised criterion that chooses λ: rule DA09's ``criterion``."""
    from autotransfer.advisor.rules import rule_params

    return str(rule_params(RULE)["criterion"])


@dataclass(frozen=True)
class WeightChoice:
    """The chosen weight, the recipe that carries it, and each candidate's run and score (the
    exact-head candidate's apart: ``exact_run``, ``exact_score``; ``exact_head`` when it won,
    ``weight`` then 0 and the recipe source-only)."""

    weight: float
    recipe: Recipe
    runs: dict[float, Path]
    scores: dict[float, float]
    criterion: str
    exact_head: bool = False
    exact_run: Path | None = None
    exact_score: float | None = None

    @property
    def named_scores(self) -> dict[str, float]:
        """Every candidate's score by name: ``"0"``, ``"0.3"``, …, and ``"exact_head"``."""
        named = {f"{w:g}": v for w, v in self.scores.items()}
        return named if self.exact_score is None else {**named, EXACT: self.exact_score}

    @property
    def chosen_run(self) -> Path:
        """The chosen candidate's run folder."""
        return self.exact_run if self.exact_head and self.exact_run else self.runs[self.weight]


def exact_head_fits(recipe: Recipe) -> bool:
    """Whether the source-only exact head is a candidate: every phase trains the head alone and
    the head has no hidden layer (a linear head on the frozen backbone's features)."""
    return recipe.head.hidden_units == 0 and all(p.trainable_from >= N_GROUPS
                                                 for p in recipe.phases)


def exact_head_recipe(recipe: Recipe) -> Recipe:
    """``recipe`` source-only (no adaptation) with its head fitted exactly (L-BFGS, C by
    cross-validation); the same backbone, phases, data, augmentation and seed."""
    data = recipe.to_dict()
    data["head"] = dict(data["head"], solver="lbfgs", hidden_units=0, lbfgs_c=None)
    data["domain_adaptation"] = {"method": "none"}
    data["name"] = f"{recipe.name}, exact head"
    return Recipe.model_validate(data)


def with_weight(recipe: Recipe, weight: float) -> Recipe:
    data = recipe.to_dict()
    data["domain_adaptation"]["weight"] = float(weight)
    return Recipe.model_validate(data)


def choose_weight(dataset: Any, recipe: Recipe, target: Any, out: str | os.PathLike[str], *,
                  weights: Sequence[float] | None = None, criterion: str | None = None,
                  exact_head: bool | None = None, **train_kwargs: Any) -> WeightChoice:
    """Train ``recipe`` with each weight in ``(0, *weights)`` into ``out/weight_<w>`` (finished
    runs are reused) and choose by ``criterion`` (both default to rule DA09's params);
    ``target`` is a folder or a ``TargetSet``. ``exact_head`` (default: when
    :func:`exact_head_fits`) adds the source-only exact-head candidate (``out/exact_head``)."""
    from autotransfer.data.splits import DataSplits
    from autotransfer.data.target import resolve_target
    from autotransfer.train.adaptation.target_images import target_images
    from autotransfer.train.adaptation.validate import candidate_outputs, choose
    from autotransfer.train.data import TrainingInputs
    from autotransfer.train.inference import load_run_model
    from autotransfer.train.run import read_run_info, train

    if not recipe.domain_adaptation.has_loss:
        raise InvalidParameterError(
            f"choose_weight needs a recipe whose domain_adaptation.method has a loss weight: "
            f"method '{recipe.domain_adaptation.method}' of recipe '{recipe.name}' has no weight "
            "to choose.")
    criterion = criterion or rule_criterion()
    weights = rule_weights() if weights is None else weights
    candidates = sorted({0.0, *(float(w) for w in weights)})
    exact_head = exact_head_fits(recipe) if exact_head is None else exact_head
    if exact_head and not exact_head_fits(recipe):
        raise InvalidParameterError(
            f"choose_weight(exact_head=True) needs a recipe whose every phase trains a linear "
            f"head alone (head.hidden_units 0 and every phase's trainable_from {N_GROUPS}, the "
            f"backbone frozen): recipe '{recipe.name}' does not. Pass exact_head=None (decide "
            "from the recipe) or False, or give such a recipe.")
    target_set = resolve_target(target)
    out = Path(out)
    runs: dict[float, Path] = {}
    outputs = {}
    images = target_images(target_set, recipe.backbone.input_size, crop=recipe.data.crop)
    trained = [(f"{w:g}", out / f"weight_{w:g}", with_weight(recipe, w)) for w in candidates]
    if exact_head:
        trained.append((EXACT, out / EXACT, exact_head_recipe(recipe)))
    for name, folder, candidate in trained:
        if read_run_info(folder) is None:
            train(dataset, candidate, folder, target=target_set, **train_kwargs)
        splits = DataSplits.load(folder / "splits.json")
        inputs = TrainingInputs(splits, recipe.backbone.input_size, crop=recipe.data.crop)
        model = load_run_model(folder).model
        outputs[name] = candidate_outputs(name, model, inputs.eval_set("val", 32), images)
    runs = {w: out / f"weight_{w:g}" for w in candidates}
    choice = choose(outputs, criterion)
    method = recipe.domain_adaptation.method
    names = ",".join([*(f"{w:g}" for w in candidates), *([EXACT] if exact_head else [])])
    evidence = {f"{criterion}@{k}": round(v, 5) for k, v in choice.scores.items()}
    thresholds = {"criterion": criterion, "candidates": names}
    scores = {float(k): v for k, v in choice.scores.items() if k != EXACT}
    exact_score = choice.scores.get(EXACT)
    also = ("; the exact head (source-only, L-BFGS) was a candidate too, as every phase "
            "trains the head alone" if exact_head else "")
    if choice.name != EXACT:
        chosen = float(choice.name)
        reason = Reason(rule=RULE, text=f"weight {chosen:g} for '{method}' " + choice.text + also,
                        evidence=evidence, thresholds=thresholds)
        final = with_weight(recipe, chosen).model_copy(
            update={"reasons": {**recipe.reasons, "domain_adaptation.weight": reason}})
        return WeightChoice(chosen, final, runs, scores, criterion, False,
                            out / EXACT if exact_head else None, exact_score)
    text = ("no adaptation: the exact head (the source-only recipe with its head fitted "
            "exactly, L-BFGS, L2 strength by cross-validation on the training images) scored "
            "best, above every "
            f"'{method}' weight including its gradient-trained λ = 0 head; " + choice.text)
    reason = Reason(rule=RULE, text=text, evidence=evidence, thresholds=thresholds)
    exact = exact_head_recipe(recipe)
    kept = {k: v for k, v in recipe.reasons.items()
            if not k.startswith("domain_adaptation") and k != "head.solver"}
    final = exact.model_copy(update={"name": recipe.name, "reasons": {
        **kept, "domain_adaptation.weight": reason, "domain_adaptation.method": reason,
        "head.solver": reason}})
    return WeightChoice(0.0, final, runs, scores, criterion, True, out / EXACT, exact_score)
