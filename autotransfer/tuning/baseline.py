"""The linear probe as a candidate of every ``auto`` run that fine-tunes (rule SEL02).

A head fitted exactly on frozen features (``head.solver: lbfgs``, rule HEAD01) costs seconds on
cached features, and fine-tuning does not always beat it: on small or imbalanced data it can
lose. So ``auto`` trains the linear probe on the training split too, and keeps it unless the
fine-tuned candidate is right on significantly more validation images — images neither trained
on — than the probe: the cheaper model wins ties, and the time it saves is reported.

The paired test is one-sided, at ``alpha`` (SEL02's parameter):

* balanced data: the exact McNemar test of :func:`.selection.mcnemar` on the per-image results;
* imbalanced data (the training split's largest class over its smallest ``≥ imbalance_ratio``):
  the models are judged by **balanced accuracy**, and the test weights each validation image by
  the inverse of its class's validation count — then the statistic
  ``T = Σ w_i (right_fine-tuned − right_probe)`` over the discordant images is exactly ``K ×`` the
  difference in balanced accuracy. Under the null hypothesis (the two models exchangeable on each
  image) every discordant image's sign is a fair coin, so ``P(T_null ≥ T)`` is a paired
  sign-flip (randomisation) test; with equal weights it *is* the exact McNemar test. It is
  computed exactly (per class, the gains are binomial; their weighted sum is convolved) when there
  are at most ``exact_max`` outcomes, else from ``resamples`` seeded sign-flip draws.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotransfer.recipe.schema import N_GROUPS, Reason, Recipe
from autotransfer.tuning.selection import mcnemar

RULE = "SEL02"
PROBE = "linear probe"
FINE_TUNED = "fine-tuned"


def rule_params() -> dict[str, Any]:
    """SEL02's parameters (``alpha``, ``imbalance_ratio``, ``exact_max``, ``resamples``)."""
    from autotransfer.advisor.rules import load_rules

    return dict(load_rules().get(RULE).params)


def fine_tunes(recipe: Recipe) -> bool:
    """Whether any phase of ``recipe`` trains a layer group of the backbone."""
    return any(p.trainable_from < N_GROUPS for p in recipe.phases)


def linear_probe_recipe(recipe: Recipe) -> Recipe:
    """``recipe`` reduced to its head phase, the head fitted exactly (L-BFGS, HEAD01's solver).

    Same backbone, input size, data, seed, precision and AdaBN on the training images (before
    the head); no fine-tuning and no adaptation to target images.
    """
    data = recipe.model_dump()
    heads = [p for p in data["phases"] if p["trainable_from"] >= N_GROUPS]
    phase = dict(heads[0] if heads else data["phases"][0], trainable_from=N_GROUPS)
    phase["name"] = "head"
    data["phases"] = [phase]
    data["head"] = dict(data["head"], solver="lbfgs", hidden_units=0, lbfgs_c=None)
    da = data["domain_adaptation"]
    # AdaBN on the training images is part of the frozen features; the target methods (a loss,
    # or the target's BN statistics) belong to the adapted recipe, not to its linear probe
    data["domain_adaptation"] = (dict(da, before_phase=0) if da["method"] == "adabn"
                                 else {"method": "none"})
    data["name"] = recipe.name + ", linear probe"
    reasons = {k: v for k, v in recipe.reasons.items() if not k.startswith("phases.")}
    reasons["head.solver"] = Reason(
        rule=RULE, text=("The linear probe, a candidate against fine-tuning: the advised recipe's "
                         "backbone frozen, the head fitted exactly as a logistic regression "
                         "(L-BFGS, L2 strength by cross-validation on the training images)."),
        evidence={"advised": recipe.name}, thresholds={})
    data["reasons"] = reasons
    return Recipe.model_validate(data)


@dataclass(frozen=True)
class Candidate:
    """One model's per-image validation results (1: right) and what its training cost."""

    name: str
    correct: list[int]
    seconds: float | None = None


def balanced_accuracy(correct: list[int], labels: list[int]) -> float:
    """Mean recall over the classes present in ``labels`` (scikit-learn's definition)."""
    recalls = []
    for c in sorted(set(labels)):
        hits = [r for r, y in zip(correct, labels, strict=True) if y == c]
        recalls.append(sum(hits) / len(hits))
    return sum(recalls) / len(recalls) if recalls else 0.0


def weighted_mcnemar(base_correct: list[int], challenger_correct: list[int], labels: list[int],
                     *, exact_max: int = 1_000_000, resamples: int = 100_000,
                     seed: int = 0) -> dict[str, Any]:
    """One-sided paired sign-flip test that ``challenger`` has the higher balanced accuracy.

    Each image weighs ``1 / (its class's count in labels)``; ``p = P(T_null ≥ T_observed)`` with
    ``T = Σ weight × (challenger right − base right)`` (see the module's docstring). ``gain``:
    the difference in balanced accuracy (``T / number of classes``).
    """
    import numpy as np

    if not len(base_correct) == len(challenger_correct) == len(labels):
        raise ValueError(f"paired results need the same images: {len(base_correct)}, "
                         f"{len(challenger_correct)} results and {len(labels)} labels")
    classes = sorted(set(labels))
    counts = {c: labels.count(c) for c in classes}
    scale = math.lcm(*counts.values()) if counts else 1
    weight = {c: scale // counts[c] for c in classes}  # integer weights: exact comparisons
    gained = {c: 0 for c in classes}
    lost = {c: 0 for c in classes}
    for a, b, y in zip(base_correct, challenger_correct, labels, strict=True):
        if b and not a:
            gained[y] += 1
        elif a and not b:
            lost[y] += 1
    m = [gained[c] + lost[c] for c in classes]
    w = [weight[c] for c in classes]
    observed = sum(wc * (gained[c] - lost[c]) for wc, c in zip(w, classes, strict=True))
    outcomes = math.prod(mc + 1 for mc in m)
    if sum(m) == 0:
        p, method = 1.0, "exact"
    elif outcomes <= exact_max:
        dist: dict[int, float] = {0: 1.0}
        for mc, wc in zip(m, w, strict=True):
            if mc == 0:
                continue
            step = {wc * (2 * g - mc): math.comb(mc, g) / 2.0 ** mc for g in range(mc + 1)}
            new: dict[int, float] = {}
            for t, pt in dist.items():
                for s, ps in step.items():
                    new[t + s] = new.get(t + s, 0.0) + pt * ps
            dist = new
        p, method = min(1.0, sum(pt for t, pt in dist.items() if t >= observed)), "exact"
    else:
        rng = np.random.default_rng(seed)  # float weights: the integer ones may not fit int64
        draws = rng.binomial(np.asarray(m), 0.5, size=(resamples, len(m)))
        inverse = np.asarray([1.0 / counts[c] for c in classes])
        t = (2 * draws - np.asarray(m)) @ inverse
        t_observed = sum((gained[c] - lost[c]) / counts[c] for c in classes)
        p = float((1 + np.count_nonzero(t >= t_observed - 1e-9)) / (1 + resamples))
        method = f"sign-flip, {resamples} draws"
    return {"gained": sum(gained.values()), "lost": sum(lost.values()),
            "n_images": len(labels), "p": float(p), "method": method,
            "gain": observed / scale / len(classes) if classes else 0.0}


@dataclass(frozen=True)
class BaselineChoice:
    """Which of the linear probe and the fine-tuned candidate ``auto`` keeps, and why (SEL02)."""

    winner: str  # PROBE or FINE_TUNED
    metric: str  # "accuracy" or "balanced accuracy"
    scores: dict[str, dict[str, Any]]  # per candidate: accuracy, balanced_accuracy, seconds
    test: dict[str, Any]
    alpha: float
    imbalance: float | None
    imbalance_ratio: float
    time_saved_s: float | None
    why: str
    rule: str = RULE
    measured_on: str = field(default="the validation split")

    @property
    def probe_kept(self) -> bool:
        return self.winner == PROBE

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def compare(probe: Candidate, finetuned: Candidate, labels: list[int], *,
            imbalance: float | None, params: dict[str, Any] | None = None,
            measured_on: str = "the validation split") -> BaselineChoice:
    """Keep the linear probe unless ``finetuned`` beats it beyond chance on the same images.

    ``labels``: the images' classes (in the order of the per-image results); ``imbalance``: the
    training split's largest over smallest class count (the advisor's ``imbalance`` fact), which
    decides whether balanced accuracy is the measure (at ``imbalance_ratio`` or more).
    """
    params = rule_params() if params is None else params
    alpha, ratio = float(params["alpha"]), float(params["imbalance_ratio"])
    imbalanced = imbalance is not None and imbalance == imbalance and imbalance >= ratio
    if imbalanced:
        test = weighted_mcnemar(probe.correct, finetuned.correct, labels,
                                exact_max=int(params.get("exact_max", 1_000_000)),
                                resamples=int(params.get("resamples", 100_000)))
        test["test"] = ("one-sided paired sign-flip test of balanced accuracy (inverse class "
                        "weights)")
    else:
        test = mcnemar(probe.correct, finetuned.correct) | {"method": "exact",
                                                            "test": "one-sided exact McNemar"}
    metric = "balanced accuracy" if imbalanced else "accuracy"
    scores = {c.name: {"accuracy": sum(c.correct) / max(1, len(c.correct)),
                       "balanced_accuracy": balanced_accuracy(c.correct, labels),
                       "seconds": None if c.seconds is None else round(c.seconds, 1)}
              for c in (probe, finetuned)}
    key = "balanced_accuracy" if imbalanced else "accuracy"
    wins = test["p"] <= alpha and scores[finetuned.name][key] > scores[probe.name][key]
    saved = (None if probe.seconds is None or finetuned.seconds is None
             else round(max(0.0, finetuned.seconds - probe.seconds), 1))
    better = scores[finetuned.name][key] > scores[probe.name][key]
    why = (f"on {measured_on}, {len(labels)} images, the fine-tuned recipe has {metric} "
           f"{scores[finetuned.name][key]:.4f}, the linear probe {scores[probe.name][key]:.4f}; "
           f"it gets {test['gained']} image(s) right that the probe gets wrong and "
           f"{test['lost']} the reverse: {test['test']} p = {test['p']:.3g} "
           f"{'≤' if wins else '>'} {alpha:g}, ")
    if imbalanced:
        why = (f"the classes are imbalanced ({imbalance:.2f}:1 ≥ {ratio:g}), so they are judged by "
               "balanced accuracy: " + why)
    why += ("a gain beyond chance: the fine-tuned model is kept" if wins else
            ("a gain within chance" if better else "no gain")
            + ": the cheaper linear probe is kept"
            + (f" ({saved:.0f} s less training than the fine-tuned recipe)"
               if saved is not None and saved > 0 else ""))
    return BaselineChoice(winner=FINE_TUNED if wins else PROBE, metric=metric, scores=scores,
                          test=test, alpha=alpha, imbalance=imbalance, imbalance_ratio=ratio,
                          time_saved_s=None if wins else saved, why=why, measured_on=measured_on)


@dataclass(frozen=True)
class ProbeRun:
    """The linear probe trained on the training split and measured on the validation split."""

    recipe: Recipe
    metrics: dict[str, Any] = field(repr=False)
    seconds: float

    @property
    def candidate(self) -> Candidate:
        return Candidate(PROBE, [int(v) for v in self.metrics["val"]["correct"]], self.seconds)


def train_probe(splits: Any, recipe: Recipe, out: Path, store: Any = None) -> ProbeRun:
    """Train :func:`linear_probe_recipe` of ``recipe`` on ``splits``' training images, in memory
    (:func:`.trials.run_trial`: ``out/recipe.yaml``, ``out/metrics.json``, no model); ``store``:
    the :class:`~autotransfer.tuning.activations.ActivationStore` to share its frozen features
    with the search and the final training (default: its own)."""
    from autotransfer.tuning.hypermodel import release_memory
    from autotransfer.tuning.trials import ActivationStore, run_trial

    probe = linear_probe_recipe(recipe)
    started = time.perf_counter()
    try:
        metrics = run_trial(probe, store if store is not None else ActivationStore(splits),
                            out).metrics
    finally:
        release_memory()
    return ProbeRun(probe, metrics, time.perf_counter() - started)


def markdown(choice: BaselineChoice | None, note: str | None = None) -> list[str]:
    """The report's lines on the linear probe against the fine-tuned recipe."""
    if choice is None:
        return [f"No comparison with a linear probe (rule {RULE}): {note}" if note else
                f"No comparison with a linear probe (rule {RULE})."]
    lines = ["| candidate | accuracy | balanced accuracy | training |", "|---|---|---|---|"]
    for name, s in choice.scores.items():
        mark = " **kept**" if name == choice.winner else ""
        secs = "–" if s["seconds"] is None else f"{s['seconds']:.0f} s"
        lines.append(f"| {name}{mark} | {s['accuracy']:.4f} | {s['balanced_accuracy']:.4f} | "
                     f"{secs} |")
    lines += ["", f"**{RULE}**: {choice.why}."]
    if choice.time_saved_s:  # None, or 0 when the probe took as long
        lines.append(f"Time saved: the linear probe trains in {choice.time_saved_s:.0f} s less "
                     "than the fine-tuned recipe.")
    return lines
