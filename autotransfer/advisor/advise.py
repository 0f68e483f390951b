"""``advise``: dataset profile + probe measurements in, recipe + reasons out.

:func:`decide` is the pure core (no TensorFlow, deterministic). :class:`Advisor` and
:func:`advise` add the measuring: they profile and probe the dataset first.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict
from sklearn.base import BaseEstimator

from autotransfer.advisor.assemble import assemble
from autotransfer.advisor.candidates import Candidate, rank_candidates
from autotransfer.advisor.decisions import DECISIONS
from autotransfer.advisor.facts import (backbone_facts, budget_facts, dataset_facts,
                                        orientation_facts)
from autotransfer.advisor.presets import load_preset
from autotransfer.advisor.rules import Firing, RuleBase, load_rules
from autotransfer.data.models import DatasetProfile
from autotransfer.durations import parse_duration
from autotransfer.probes.models import ProbeReport
from autotransfer.recipe.schema import Reason, Recipe

#: ``precision`` values of :func:`decide` and :class:`Advisor`
PRECISIONS = ("auto", "float32", "bfloat16")


class Advice(BaseModel):
    """Everything the advisor measured and decided."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    preset: str
    profile: DatasetProfile
    probes: ProbeReport
    candidates: list[Candidate]
    facts: dict[str, Any]
    firings: list[Firing]
    warnings: list[str]
    recipe: Recipe

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, without the per-image records of the profile."""
        data = self.model_dump(mode="json", exclude={"profile": {"records"}})
        data["facts"] = {k: (None if isinstance(v, float) and v != v else v) for k, v in self.facts.items()}
        return data


def decide(
    profile: DatasetProfile,
    probes: ProbeReport,
    *,
    preset: str = "standard",
    max_params_m: float | None = None,
    allow: Sequence[str] | None = None,
    rules: RuleBase | None = None,
    seed: int = 0,
    time_budget: float | None = None,
    precision: str = "auto",
) -> Advice:
    """The recipe for ``profile`` given the ``probes``: pure, deterministic, explained.

    ``time_budget``: seconds one training of the recipe may take (rules BUD01/BUD02 shorten the
    fine-tuning to fit, from the forward pass timed while probing); ``None``: no limit.
    ``precision``: ``"auto"`` (rules PREC01/PREC02 decide from the timings measured while
    probing), or ``"float32"`` / ``"bfloat16"``: the user's choice, recorded as such.
    """
    _check_precision(precision)
    rulebase = rules or load_rules()
    chosen_preset = load_preset(preset)
    ranking_rule = next((r for r in rulebase.rules if r.kind == "rank"), None)
    tie = float(ranking_rule.params.get("tie_margin", 0.02)) if ranking_rule else 0.02
    candidates = rank_candidates(probes.probes, max_params_m=max_params_m, allow=allow, tie_margin=tie)
    best = candidates[0]
    probe = probes.get(best.backbone)
    runner_up = next((probes.get(c.backbone) for c in candidates[1:] if c.allowed), None)
    facts = {**dataset_facts(profile), **backbone_facts(probe, runner_up), **orientation_facts(probes),
             **budget_facts(time_budget)}

    decisions = {**chosen_preset.decisions, "backbone": best.backbone, "input_size": facts["default_size"]}
    final, firings = rulebase.evaluate(facts, decisions)

    reasons: dict[str, Reason] = {}
    for decision, (_, _, meaning) in DECISIONS.items():
        if decision in ("backbone",):
            continue
        reasons[decision] = Reason(
            rule=f"preset:{chosen_preset.name}",
            text=f"{meaning}: {final[decision]!r}, the '{chosen_preset.name}' preset's value "
            "(no rule changed it).",
        )
    reasons["input_size"] = Reason(rule="BB01", text=f"the default input size of {best.backbone}",
                                   evidence={"default_size": facts["default_size"]})
    for firing in firings:
        for decision in firing.set:
            reasons[decision] = Reason(rule=firing.rule, text=firing.text,
                                       evidence=firing.evidence, thresholds=firing.thresholds)
    reasons["backbone"] = _backbone_reason(candidates, ranking_rule.text if ranking_rule else "")
    if precision != "auto":  # the user's choice: no rule's precision is in force
        final["precision"] = precision
        firings = [f for f in firings if "precision" not in f.set]
        reasons["precision"] = Reason(
            rule="user", text=f"Compute precision {precision!r}: the user's choice (--precision), "
            "in place of the measured decision (rules PREC01/PREC02).",
            evidence={k: _plain_fact(facts[k]) for k in ("float32_ms", "bfloat16_ms")})
    recipe = assemble(final, reasons, name=f"advised for {os.path.basename(profile.root.rstrip('/'))}",
                      seed=seed, weights=probes.weights)
    warnings = [f.text for f in firings if f.kind == "warn"]
    return Advice(preset=chosen_preset.name, profile=profile, probes=probes, candidates=candidates,
                  facts=facts, firings=firings, warnings=warnings, recipe=recipe)


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        from autotransfer.errors import InvalidParameterError

        raise InvalidParameterError(f"The precision must be one of {', '.join(PRECISIONS)}; got "
                                    f"{precision!r} instead.")


def _plain_fact(value: Any) -> Any:
    return None if isinstance(value, float) and value != value else value


def _backbone_reason(candidates: list[Candidate], template: str) -> Reason:
    best = candidates[0]
    evidence: dict[str, Any] = {f"logme[{c.backbone}]": round(c.logme, 4) for c in candidates}
    evidence.update({f"linear_acc[{best.backbone}]": round(best.linear_acc, 4)})
    excluded = [f"{c.backbone} ({c.excluded_because})" for c in candidates if not c.allowed]
    others = [c for c in candidates[1:] if c.allowed]
    text = template.format(backbone=best.backbone)
    text += f" LogME {best.logme:.3f}, linear probe {best.linear_acc:.1%}"
    if others:
        text += f"; runner-up {others[0].backbone} at LogME {others[0].logme:.3f}"
    if excluded:
        text += f"; excluded: {', '.join(excluded)}"
    return Reason(rule="BB01", text=text + ".", evidence=evidence)


class Advisor(BaseEstimator):
    """Estimator-style advisor: ``Advisor(...).fit(dataset)`` measures, then decides.

    A scikit-learn estimator in its conventions: ``__init__`` only stores its arguments,
    ``get_params``/``set_params`` and a readable ``repr`` (the arguments that differ from their
    defaults) come from :class:`sklearn.base.BaseEstimator`, and ``sklearn.base.clone`` makes an
    unfitted copy.

    ``weights=None`` probes randomly initialised backbones (for tests with the tiny backbone).
    ``time_budget`` (``"20m"``, seconds): one training of the recipe should fit in it (rules BUD01
    and BUD02, from the forward pass timed while probing).
    ``precision``: ``"auto"`` times the chosen backbone in float32 and mixed_bfloat16 and lets
    rules PREC01/PREC02 decide; ``"float32"`` or ``"bfloat16"`` decides without measuring.
    ``verbose``: 1 (the default, as Keras' ``fit``: probing takes minutes) shows the progress
    on stderr when ``fit`` gets no ``progress`` callback; 0 is silent.
    Fitted attributes: ``profile_``, ``probes_``, ``candidates_``, ``facts_``, ``firings_``,
    ``warnings_``, ``recipe_`` and ``advice_`` (all of them, typed and serialisable).
    """

    def __init__(
        self,
        *,
        backbones: Sequence[str] | None = None,
        max_params_m: float | None = None,
        preset: str = "standard",
        per_class: int = 64,
        max_total: int = 1000,
        seed: int = 0,
        cache: bool = True,
        rules: RuleBase | None = None,
        weights: str | None = "imagenet",
        time_budget: str | float | None = None,
        precision: str = "auto",
        verbose: int = 1,
    ) -> None:
        self.backbones = backbones
        self.max_params_m = max_params_m
        self.preset = preset
        self.per_class = per_class
        self.max_total = max_total
        self.seed = seed
        self.cache = cache
        self.rules = rules
        self.weights = weights
        self.time_budget = time_budget
        self.precision = precision
        self.verbose = verbose

    def fit(self, dataset: str | os.PathLike[str] | DatasetProfile, progress: Any = None) -> Advisor:
        """Profile and probe ``dataset`` (a path or a profile), then decide.

        ``progress(backbone, what)`` hears each measuring step; without it, ``verbose=1`` shows
        them on stderr."""
        if progress is None and self.verbose:
            from autotransfer._progress import ProgressDisplay

            with ProgressDisplay(backbones=len(self.backbones) if self.backbones else None
                                 ) as display:
                return self.fit(dataset, progress=display.probing)
        from autotransfer.data.profile import profile_dataset
        from autotransfer.probes.probe import probe_dataset

        load_preset(self.preset)  # fail fast on a bad preset and budget, before any measuring
        _check_precision(self.precision)
        budget = parse_duration(self.time_budget)
        profile = dataset if isinstance(dataset, DatasetProfile) else profile_dataset(dataset)
        probes = probe_dataset(profile, self.backbones, per_class=self.per_class,
                               total=self.max_total, seed=self.seed, cache=self.cache,
                               weights=self.weights, progress=progress)
        def decided(probes: Any) -> Advice:
            return decide(profile, probes, preset=self.preset, max_params_m=self.max_params_m,
                          allow=self.backbones, rules=self.rules, seed=self.seed,
                          time_budget=budget, precision=self.precision)

        self.advice_ = decided(probes)
        da = self.advice_.recipe.reasons.get("domain_adaptation.method")
        if da is not None and da.rule == "DA01":
            # AdaBN advised on the shift alone: measure whether it helps the chosen backbone's
            # linear probe (one more pass over the sample), and decide again (DA02 / DA03)
            from autotransfer.probes.probe import measure_adabn

            probes = measure_adabn(probes, profile, self.advice_.recipe.backbone.name,
                                   per_class=self.per_class, total=self.max_total,
                                   weights=self.weights, cache=self.cache,
                                   progress=progress)
            self.advice_ = decided(probes)
        if self.precision == "auto":
            # time the chosen backbone in float32 and mixed_bfloat16 and compare its features
            # (cached with the probe's), then decide again (PREC01 / PREC02)
            from autotransfer.probes.probe import measure_precision

            probes = measure_precision(probes, profile, self.advice_.recipe.backbone.name,
                                       per_class=self.per_class, total=self.max_total,
                                       weights=self.weights, cache=self.cache,
                                       progress=progress)
            self.advice_ = decided(probes)
        self.profile_, self.probes_ = self.advice_.profile, self.advice_.probes
        self.candidates_, self.facts_ = self.advice_.candidates, self.advice_.facts
        self.firings_, self.warnings_ = self.advice_.firings, self.advice_.warnings
        self.recipe_ = self.advice_.recipe
        return self


def advise(dataset: str | os.PathLike[str] | DatasetProfile, **kwargs: Any) -> Advice:
    """Profile, probe and advise in one call; keyword arguments as for :class:`Advisor`."""
    progress = kwargs.pop("progress", None)
    return Advisor(**kwargs).fit(dataset, progress=progress).advice_
