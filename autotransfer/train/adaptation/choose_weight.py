"""Choose the adaptation weight λ without target labels: train one run per candidate weight
(0 = the same method's architecture trained source-only) by the one trainer, score every run by
the unsupervised criterion (rule DA09's), keep the best.

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

from autotransfer.recipe.schema import Reason, Recipe

#: the rule id the choice is explained by; its params give the λ grid and the criterion
RULE = "DA09"


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
    """The chosen weight, the recipe that carries it, and each candidate's run and score."""

    weight: float
    recipe: Recipe
    runs: dict[float, Path]
    scores: dict[float, float]
    criterion: str


def with_weight(recipe: Recipe, weight: float) -> Recipe:
    data = recipe.to_dict()
    data["domain_adaptation"]["weight"] = float(weight)
    return Recipe.model_validate(data)


def choose_weight(dataset: Any, recipe: Recipe, target: Any, out: str | os.PathLike[str], *,
                  weights: Sequence[float] | None = None, criterion: str | None = None,
                  **train_kwargs: Any) -> WeightChoice:
    """Train ``recipe`` with each weight in ``(0, *weights)`` into ``out/weight_<w>`` (finished
    runs are reused) and choose by ``criterion`` (both default to rule DA09's params);
    ``target`` is a folder or a ``TargetSet``."""
    from autotransfer.data.splits import DataSplits
    from autotransfer.data.target import resolve_target
    from autotransfer.train.adaptation.target_images import target_images
    from autotransfer.train.adaptation.validate import candidate_outputs, choose
    from autotransfer.train.data import TrainingInputs
    from autotransfer.train.inference import load_run_model
    from autotransfer.train.run import read_run_info, train

    if not recipe.domain_adaptation.has_loss:
        raise ValueError(f"method '{recipe.domain_adaptation.method}' has no weight to choose")
    criterion = criterion or rule_criterion()
    weights = rule_weights() if weights is None else weights
    target_set = resolve_target(target)
    candidates = sorted({0.0, *(float(w) for w in weights)})
    out = Path(out)
    runs: dict[float, Path] = {}
    outputs = {}
    images = target_images(target_set, recipe.backbone.input_size, crop=recipe.data.crop)
    for w in candidates:
        folder = out / f"weight_{w:g}"
        if read_run_info(folder) is None:
            train(dataset, with_weight(recipe, w), folder, target=target_set, **train_kwargs)
        runs[w] = folder
        splits = DataSplits.load(folder / "splits.json")
        inputs = TrainingInputs(splits, recipe.backbone.input_size, crop=recipe.data.crop)
        model = load_run_model(folder).model
        outputs[w] = candidate_outputs(f"{w:g}", model, inputs.eval_set("val", 32), images)
    choice = choose({f"{w:g}": o for w, o in outputs.items()}, criterion)
    chosen = float(choice.name)
    reason = Reason(rule=RULE, text=f"weight {chosen:g} for '{recipe.domain_adaptation.method}' "
                    + choice.text,
                    evidence={f"{criterion}@{k}": round(v, 5) for k, v in choice.scores.items()},
                    thresholds={"criterion": criterion,
                                "candidates": ",".join(f"{w:g}" for w in candidates)})
    final = with_weight(recipe, chosen).model_copy(
        update={"reasons": {**recipe.reasons, "domain_adaptation.weight": reason}})
    return WeightChoice(chosen, final, runs, {float(k): v for k, v in choice.scores.items()},
                        criterion)
