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
from autotransfer.advisor.cost import ESTIMATE_KEY
from autotransfer.advisor.decisions import DECISIONS
from autotransfer.advisor.forecast import Forecast, ProbeFigures, load_forecast
from autotransfer.advisor.forecast import forecast as forecast_accuracy
from autotransfer.advisor.facts import (backbone_facts, budget_facts, dataset_facts,
                                        orientation_facts, target_facts)
from autotransfer.advisor.presets import load_preset
from autotransfer.advisor.rules import Firing, Rule, RuleBase, load_rules
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
    forecast: Forecast | None = None  # expected held-out accuracy (recipes/forecast.yaml)

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
             **budget_facts(time_budget), **target_facts(probes)}

    decisions = {**chosen_preset.decisions, "backbone": best.backbone,
                 "input_size": facts["default_size"], "da_method": "none"}
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
    if final["da_method"] == "none":  # no adaptation to a target: the AdaBN decision explains
        reasons.pop("da_method")       # domain_adaptation.method (DA04's firing says why)
    reasons["backbone"] = _backbone_reason(candidates, ranking_rule)
    if precision != "auto":  # the user's choice: no rule's precision is in force
        final["precision"] = precision
        firings = [f for f in firings if "precision" not in f.set]
        reasons["precision"] = Reason(
            rule="user", text=f"Compute precision {precision!r}: the user's choice (--precision), "
            "in place of the measured decision (rules PREC01/PREC02).",
            evidence={k: _plain_fact(facts[k]) for k in ("float32_ms", "bfloat16_ms")})
    recipe = assemble(final, reasons, name=f"advised for {os.path.basename(profile.root.rstrip('/'))}",
                      seed=seed, weights=probes.weights)
    estimate = reasons.get("epoch_estimate_s")
    if estimate is not None and estimate.rule == "COST01":  # carried into every run's metrics
        recipe = recipe.model_copy(update={"reasons": {**recipe.reasons, ESTIMATE_KEY: estimate}})
    warnings = [f.text for f in firings if f.kind == "warn"]
    return Advice(preset=chosen_preset.name, profile=profile, probes=probes, candidates=candidates,
                  facts=facts, firings=firings, warnings=warnings, recipe=recipe,
                  forecast=_forecast(probe, facts, recipe))


def _forecast(probe: Any, facts: dict[str, Any], recipe: Recipe) -> Forecast | None:
    """The held-out accuracy expected of a linear probe and of ``recipe`` (issue 18's study,
    ``recipes/forecast.yaml``); None where no forecast model is fitted."""
    model = load_forecast()
    if model is None:
        return None
    t = probe.transferability
    figures = ProbeFigures(linear_probe_accuracy=t.linear_probe_accuracy,
                           knn_accuracy=t.knn_accuracy, n_sample=t.n_samples,
                           n_train=max(int(facts["n_train"]), t.n_samples),
                           n_classes=max(2, int(facts["n_classes"])),
                           n_fit=_fit_size(facts, recipe))
    return forecast_accuracy(model, figures,
                             fine_tunes=any(p.trainable_from < 5 for p in recipe.phases))


def _fit_size(facts: dict[str, Any], recipe: Recipe) -> int:
    """Images the recipe trains on: the training split less the validation images it holds out
    when the dataset has no validation split of its own."""
    n_train = int(facts["n_train"])
    if facts.get("has_val"):
        return max(2, n_train)
    return max(2, round(n_train * (1 - recipe.data.val_fraction)))


def _time_step(advice: Advice, profile: DatasetProfile, advisor: Advisor,
               progress: Any) -> ProbeReport | None:
    """The probes with one training step of ``advice``'s recipe timed as the trainer would run
    it (:func:`~autotransfer.probes.probe.measure_step`, cached with the probe's features), for
    the epoch estimate of rule COST01; None when the recipe does not fine-tune."""
    from autotransfer.probes.probe import measure_step

    r = advice.recipe
    tuned = [p.trainable_from for p in r.phases if p.trainable_from < 5]
    if not tuned:
        return None
    aug = r.augmentation
    return measure_step(advice.probes, profile, r.backbone.name,
                        input_size=r.backbone.input_size, trainable_from=min(tuned),
                        batch_size=r.data.batch_size, bn_frozen=r.bn_policy == "frozen",
                        mixes=aug.mixup_alpha > 0 or aug.cutmix_alpha > 0,
                        precision="bfloat16" if r.precision == "bfloat16" else "float32",
                        per_class=advisor.per_class, total=advisor.max_total,
                        cache=advisor.cache, progress=progress, augmentation=aug)


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        from autotransfer.errors import InvalidParameterError

        raise InvalidParameterError(f"The precision must be one of {', '.join(PRECISIONS)}; got "
                                    f"{precision!r} instead.")


def _plain_fact(value: Any) -> Any:
    return None if isinstance(value, float) and value != value else value


def _backbone_reason(candidates: list[Candidate], rule: Rule | None) -> Reason:
    """Rule BB01's reason: its text filled with the ranking (the best, runner-up, excluded)."""
    best = candidates[0]
    evidence: dict[str, Any] = {f"logme[{c.backbone}]": round(c.logme, 4) for c in candidates}
    evidence.update({f"linear_acc[{best.backbone}]": round(best.linear_acc, 4)})
    evidence.update({f"excluded[{c.backbone}]": c.excluded_because
                     for c in candidates if not c.allowed})
    excluded = [f"{c.backbone} ({c.excluded_because})" for c in candidates if not c.allowed]
    others = [c for c in candidates[1:] if c.allowed]
    values = {"backbone": best.backbone, "logme": best.logme, "linear_acc": best.linear_acc,
              "runner_up": f"{others[0].backbone} at LogME {others[0].logme:.3f}" if others
              else "none", "excluded": ", ".join(excluded) or "none"}
    text = rule.explain(values) if rule is not None else f"{best.backbone} ranks first."
    return Reason(rule=rule.id if rule is not None else "BB01", text=text, evidence=evidence,
                  thresholds=dict(rule.params) if rule is not None else {})


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
    ``target``: a folder of unlabelled images from where the model will be used (any layout;
    class folders in it only evaluate): the gap between the training images and these is
    measured for the chosen backbone (:mod:`autotransfer.probes.domain_gap`) and rules DA04-DA08
    decide whether and how to adapt to them (``domain_adaptation.method``).
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
        target: str | os.PathLike[str] | None = None,
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
        self.target = target
        self.verbose = verbose

    def fit(self, dataset: str | os.PathLike[str] | DatasetProfile, progress: Any = None) -> Advisor:
        """Profile and probe ``dataset`` (a path or a profile), then decide.

        ``progress(backbone, what)`` hears each measuring step; without it, ``verbose=1`` shows
        them on stderr."""
        if progress is None and self.verbose:
            from autotransfer._progress import ProgressDisplay
            from autotransfer.probes.probe import default_candidates  # those probe_dataset takes

            with ProgressDisplay(backbones=len(self.backbones or default_candidates())
                                 ) as display:
                return self.fit(dataset, progress=display.probing)
        from autotransfer.data.profile import profile_dataset
        from autotransfer.probes.probe import probe_dataset

        load_preset(self.preset)  # fail fast on a bad preset and budget, before any measuring
        _check_precision(self.precision)
        budget = parse_duration(self.time_budget)
        profile = dataset if isinstance(dataset, DatasetProfile) else profile_dataset(dataset)
        target = None
        if self.target is not None:  # refuse a bad target folder before any measuring
            from autotransfer.data.target import read_target

            target = read_target(self.target, profile)

        def decided(probes: Any) -> Advice:
            return decide(profile, probes, preset=self.preset, max_params_m=self.max_params_m,
                          allow=self.backbones, rules=self.rules, seed=self.seed,
                          time_budget=budget, precision=self.precision)

        from autotransfer.probes.sample import forget_sample_images

        try:  # the sample's decoded images are kept for the measurements below, then released,
            # also when one fails or is interrupted
            probes = probe_dataset(profile, self.backbones, per_class=self.per_class,
                                   total=self.max_total, seed=self.seed, cache=self.cache,
                                   weights=self.weights, progress=progress)
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
            if target is not None:
                # the gap between the training images and the target's, for the chosen backbone
                # (its cached features reused), then decide again (DA04-DA08)
                from autotransfer.probes.domain_gap import measure_domain_gap

                chosen = probes.get(self.advice_.recipe.backbone.name)
                gap = measure_domain_gap(profile, target, chosen.backbone,
                                         per_class=self.per_class, total=self.max_total,
                                         seed=self.seed,
                                         input_size=chosen.input_size, weights=self.weights,
                                         cache=self.cache, progress=progress)
                probes = probes.model_copy(update={"domain_gap": gap})
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
            # one training step of the recipe (unsized: the depth it would train at) timed as the
            # trainer runs it, cached with the probe's features: the epoch estimate (COST01)
            timed = _time_step(decide(profile, probes, preset=self.preset,
                                      max_params_m=self.max_params_m, allow=self.backbones,
                                      rules=self.rules, seed=self.seed,
                                      precision=self.precision), profile, self, progress)
            if timed is not None:
                probes = timed
                self.advice_ = decided(probes)
        finally:
            forget_sample_images()
        self.target_ = target  # the TargetSet read (None without a target)
        self.profile_, self.probes_ = self.advice_.profile, self.advice_.probes
        self.candidates_, self.facts_ = self.advice_.candidates, self.advice_.facts
        self.firings_, self.warnings_ = self.advice_.firings, self.advice_.warnings
        self.recipe_ = self.advice_.recipe
        return self


def advise(dataset: str | os.PathLike[str] | DatasetProfile, **kwargs: Any) -> Advice:
    """Profile, probe and advise in one call; keyword arguments as for :class:`Advisor`."""
    progress = kwargs.pop("progress", None)
    return Advisor(**kwargs).fit(dataset, progress=progress).advice_
