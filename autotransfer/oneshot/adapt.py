"""auto's adaptation to a target: the loss weight λ chosen without target labels (rule DA09, or
DA10 when the budget cannot hold the candidates, or the search's adapting trials: DA11), the
chosen candidate reused as the final model when it trained the same recipe on the same images,
and the gap before and after the final training.

The candidates are :func:`autotransfer.train.adaptation.choose_weight.choose_weight`'s runs (one
per λ of DA09's ``weights`` and λ = 0, and, when the recipe trains the head alone, the
source-only recipe with its head fitted exactly, ``exact_head``; scored by DA09's ``criterion``),
kept in ``adaptation_weight/`` of the run folder. Without a search the search's exact linear
head (rule DA11, :func:`autotransfer.tuning.adapting.probe_candidate`) competes by the same
criterion: beside DA09's candidates when DA09 has no exact head of its own (the recipe
fine-tunes, :func:`choose_in_budget`), else against the trained adapting final model
(:func:`versus_final`); it is kept when at least as good (the cheaper model wins ties,
:func:`~autotransfer.tuning.adapting.probe_kept`). The gap "before" is the advisor's (frozen
backbone), and, when the source-only candidate (λ = 0) trained, that model's; the gap "after" is
the final model's (:mod:`autotransfer.train.adaptation.trained_gap`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotransfer.advisor.rules import rule_text
from autotransfer.recipe.schema import Reason, Recipe
from autotransfer.train.adaptation.gap_report import BEFORE, gap_table  # train's report's too

CHOOSE, SKIP, SEARCHED = "DA09", "DA10", "DA11"
#: the candidates' folder inside the run folder
FOLDER = "adaptation_weight"
KEY = "domain_adaptation.weight"
#: the trained adapting final model's key among the scores (rule DA11 without candidates)
FINAL = "final"


@dataclass
class Adaptation:
    """What auto did about the target (``summary.json``'s ``adaptation``)."""

    method: str
    weight: float | None = None
    rule: str | None = None
    why: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    criterion: str | None = None
    seconds: float = 0.0
    #: the gap: ``before`` (advisor, frozen backbone), ``source_only`` (λ = 0 run), ``after``
    gap: dict[str, Any] = field(default_factory=dict)
    #: DA09's chosen candidate's folder in ``adaptation_weight/`` (``weight_<λ>``, ``exact_head``)
    candidate: str | None = None
    #: whether a search's trials were scored (DA11), not DA09's candidates
    searched: bool = False
    #: without a search, DA11's exact linear head against DA09's best candidate: its score,
    #: seconds, whether it was kept and why (``None``: not a candidate, DA09's exact head was)
    linear_probe: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "weight": self.weight, "rule": self.rule, "why": self.why,
                "scores": self.scores, "criterion": self.criterion,
                "seconds": round(self.seconds, 2), "gap": self.gap,
                "candidate": self.candidate, "linear_probe": self.linear_probe}


def grid() -> tuple[str, tuple[float, ...]]:
    """DA09's criterion and λ candidates besides 0 (its params)."""
    from autotransfer.train.adaptation.choose_weight import rule_criterion, rule_weights

    return rule_criterion(), rule_weights()


def choose_in_budget(splits: Any, recipe: Recipe, target: Any, partial: Path, *,
                     seconds_left: Callable[[], float | None], sized_s: float | None,
                     factor: float, say: Callable[[str], None],
                     store: Any = None) -> tuple[Recipe, Adaptation]:
    """``recipe`` with its λ chosen by DA09 (or kept, DA10), and the record of the choice.

    ``seconds_left()`` is the budget left for training (``None``: no budget), ``sized_s`` the
    time one training of ``recipe`` was sized to, ``factor`` the final training's over one run's.
    When DA09's own exact head is no candidate (the recipe fine-tunes), the search's exact linear
    head is scored too and kept when at least as good (DA11, :func:`_versus_probe`; ``store``:
    the run's :class:`~autotransfer.tuning.activations.ActivationStore`, its frozen features).
    """
    from autotransfer.train.adaptation.choose_weight import choose_weight, exact_head_fits

    started = time.time()
    criterion, weights = grid()
    da = recipe.domain_adaptation
    record = Adaptation(method=da.method, weight=float(da.weight), criterion=criterion)
    left = seconds_left()
    if left is not None and sized_s is not None and left < (1 + factor) * sized_s:
        why = (f"the time left ({left:.0f} s) cannot hold the source-only candidate and the final "
               f"training ({1 + factor:.2f} × the {sized_s:.0f} s the recipe was sized to)")
        return _kept(recipe, record, why, {"seconds_left": round(left, 1),
                                           "sized_s": round(sized_s, 1)}, started)
    folder = partial / FOLDER
    say(f"Choosing the adaptation weight λ among 0, {', '.join(f'{w:g}' for w in weights)} by "
        f"{criterion}, without target labels (rule {CHOOSE}): training the source-only candidate")
    first = time.time()
    choose_weight(splits, recipe, target, folder, weights=(), criterion=criterion,
                  exact_head=False, progress=False)  # λ = 0 alone: its time sizes the rest
    run_s = time.time() - first
    left = seconds_left()
    exact = exact_head_fits(recipe)  # the source-only exact head: one more candidate
    more = len(weights) + int(exact)
    need = (more + factor) * run_s
    if left is not None and left < need:
        why = (f"after the source-only candidate ({run_s:.0f} s), the time left ({left:.0f} s) "
               f"cannot hold {more} more candidate(s) and the final training "
               f"({need:.0f} s)")
        return _kept(recipe, record, why, {"seconds_left": round(left, 1),
                                           "run_s": round(run_s, 1), "needed_s": round(need, 1)},
                     started)
    say(f"Training {more} more candidate(s) (λ = "
        f"{', '.join(f'{w:g}' for w in weights)}"
        + ("; the exact head, source-only" if exact else "") + ")")
    choice = choose_weight(splits, recipe, target, folder, weights=weights, criterion=criterion,
                           exact_head=exact, progress=False)
    record.rule, record.candidate = CHOOSE, choice.chosen_run.name
    record.weight = None if choice.exact_head else choice.weight
    record.method = choice.recipe.domain_adaptation.method
    record.why = choice.recipe.reasons[KEY].text
    record.scores = {k: round(v, 5) for k, v in choice.named_scores.items()}
    say((f"the exact head, source-only ({CHOOSE}): " if choice.exact_head
         else f"λ = {choice.weight:g} ({CHOOSE}): ") + record.why)
    chosen = choice.recipe
    if not exact:  # rule DA11: the search's exact linear head, the candidate DA09's is not
        left = seconds_left()
        chosen = _versus_probe(choice, recipe, record, target, folder, store=store, say=say,
                               deadline=None if left is None
                               else time.time() + left - factor * run_s)
    record.seconds = time.time() - started
    return chosen, record


def _versus_probe(choice: Any, recipe: Recipe, record: Adaptation, target: Any, folder: Path,
                  *, store: Any, deadline: float | None, say: Callable[[str], None]) -> Recipe:
    """Rule DA11 without a search: ``recipe``'s exact linear head (:func:`_scored_head`, on
    DA09's candidates' splits, its files in ``folder/search/trial_probe``) against DA09's best
    candidate ``choice``, by DA09's criterion (:func:`_meet`). By ``deadline`` (the final
    training's room kept) or not at all: a head not scored leaves DA09's choice. The recipe
    the final training trains."""
    from autotransfer.data.splits import DataSplits

    name = choice.criterion
    splits = DataSplits.load(choice.chosen_run / "splits.json")  # the candidates' images
    model, probe = _scored_head(recipe, splits, target, folder, name, store=store,
                                deadline=deadline, say=say)
    if probe.score is None:  # failed, or no time left: DA09's choice stands
        record.linear_probe = _head_info(probe, f"not scored: {probe.message}")
        return choice.recipe
    rival, best = max(choice.named_scores.items(), key=lambda kv: kv[1])
    evidence = {f"{name}@{k}": round(v, 5) for k, v in choice.named_scores.items()}
    head = _meet(record, model, probe, best, f"DA09's best candidate ({_named('λ ', rival)}: "
                 f"{best:.4f})", rival, evidence, say)
    return choice.recipe if head is None else head


def versus_final(record: Adaptation, final: Any, model_dir: Path, splits: Any, target: Any,
                 partial: Path, *, store: Any, deadline: float | None,
                 say: Callable[[str], None]) -> Recipe | None:
    """Rule DA11 without a search or DA09's candidates (DA10 kept λ, or a method without a
    loss): the final training ``final``'s exact linear head (:func:`_scored_head`, files in
    ``adaptation_weight/search/trial_probe``) against the trained adapting model in
    ``model_dir``, both scored by DA09's criterion on the target (:func:`_meet`); the head's
    recipe when it is kept, else ``None``. Compared only when the final model trained on
    ``splits``' training images alone (the criterion weighs the source validation loss);
    ``record`` says what was done and why."""
    from autotransfer.tuning.adapting import criterion
    from autotransfer.tuning.hypermodel import run_score

    recipe = final.recipe
    if record.rule in (CHOOSE, SEARCHED) or record.linear_probe is not None \
            or not recipe.domain_adaptation.needs_target:
        return None  # DA09's candidates or the search had it, or the final model adapts not
    keys = {"class_names", "train", "val"}
    if final.splits.model_dump(include=keys) != splits.model_dump(include=keys):
        record.linear_probe = _head_info(None, "not compared: the final model trained on the "
                                         "validation images the criterion weighs (PLAN04)")
        return None
    name = record.criterion = record.criterion or criterion()
    model, probe = _scored_head(recipe, splits, target, partial / FOLDER, name, store=store,
                                deadline=deadline, say=say)
    if probe.score is None:
        record.linear_probe = _head_info(probe, f"not scored: {probe.message}")
        return None
    left = None if deadline is None else deadline - time.time()
    if left is not None and probe.seconds is not None and left < probe.seconds:
        record.linear_probe = _head_info(
            probe, f"not compared: training it again as the final model (about "
                   f"{probe.seconds:.0f} s, as its scoring took) would run past the budget "
                   f"({max(left, 0.0):.0f} s left)")
        return None
    trained = run_score(model_dir, model.target, recipe, name)
    record.scores[FINAL] = round(trained, 5)
    return _meet(record, model, probe, trained, f"the adapting final model ({trained:.4f})",
                 FINAL, {f"{name}@{FINAL}": round(trained, 5)}, say)


def _scored_head(recipe: Recipe, splits: Any, target: Any, folder: Path, name: str, *,
                 store: Any, deadline: float | None, say: Callable[[str], None]
                 ) -> tuple[Any, Any]:
    """The search's exact linear head of ``recipe`` (the backbone frozen, the head fitted by
    L-BFGS, no adaptation), trained on ``splits`` and scored by ``name`` on the target as a
    search scores it (:func:`~autotransfer.tuning.adapting.probe_candidate`, rule DA11): the
    hypermodel it ran in and its :class:`~autotransfer.tuning.results.TrialRecord`."""
    from autotransfer.data.target import resolve_target
    from autotransfer.tuning.adapting import probe_candidate
    from autotransfer.tuning.hypermodel import RecipeHyperModel

    model = RecipeHyperModel(recipe, splits, store=store, target=resolve_target(target),
                             criterion=name)
    return model, probe_candidate(recipe, model, folder, deadline=deadline, say=say)


def _head_info(probe: Any, why: str, **more: Any) -> dict[str, Any]:
    """``Adaptation.linear_probe``: the exact linear head's score and seconds, and why."""
    from autotransfer.tuning.adapting import PROBE_TRIAL, RULE

    scored = {} if probe is None or probe.score is None else {
        "score": probe.score, "seconds": probe.seconds, "val_accuracy": probe.val_accuracy}
    return {"rule": RULE, "trial": PROBE_TRIAL, "kept": False, **scored, **more, "why": why}


def _meet(record: Adaptation, model: Any, probe: Any, best: float, rival: str, key: str,
          evidence: dict[str, Any], say: Callable[[str], None]) -> Recipe | None:
    """Rule DA11's decision between the scored exact linear head ``probe`` and the best
    adapting model (``rival``, scored ``best``, ``key`` among the scores): the head's recipe
    when it scores at least as well (:func:`~autotransfer.tuning.adapting.probe_kept`: the
    cheaper model wins ties), with DA11's reason; else ``None``. ``record`` says which, why."""
    from autotransfer.tuning.adapting import PROBE_TRIAL, RULE, probe_kept
    from autotransfer.tuning.trial_recipe import LINEAR_PROBE, apply

    name = str(model.criterion)
    record.scores[PROBE_TRIAL] = round(probe.score, 5)
    if not probe_kept(probe.score, best):
        why = (f"the exact linear head (rule {RULE}: the backbone frozen, the head fitted by "
               f"L-BFGS, no adaptation) scored {probe.score:.4f}, below {rival} by {name}")
        record.linear_probe = _head_info(probe, why, against=key)
        record.why = f"{record.why}; {why}" if record.why else why
        say(f"The adapting model is kept ({RULE}): {why}")
        return None
    why = (f"the exact linear head (the backbone frozen, the head fitted by L-BFGS, no "
           f"adaptation) scores {probe.score:.4f}, at least as well as {rival}, by {name} on "
           "the target without target labels: the cheaper model to train (an exact solve on "
           "the frozen features, no epochs, no adaptation) is kept")
    record.linear_probe = _head_info(probe, why, against=key) | {"kept": True}
    head = apply(model.recipe, {LINEAR_PROBE: True}, model.space)  # the recipe that was scored
    record.rule, record.why, record.method = RULE, why, head.domain_adaptation.method
    record.weight = record.candidate = None  # trained in memory: the final training trains it
    say(f"The exact linear head ({RULE}): {why}")
    reason = Reason(rule=RULE, text=why,
                    evidence={**evidence, f"{name}@{PROBE_TRIAL}": round(probe.score, 5)},
                    thresholds={"criterion": name})
    reasons = {k: v for k, v in head.reasons.items()
               if not k.startswith(("domain_adaptation", "phases.")) and k != "head.solver"}
    return head.model_copy(update={"reasons": {**reasons, KEY: reason, "head.solver": reason,
                                               "domain_adaptation.method": reason,
                                               "phases": reason}})


#: SEL02's note in a run whose recipe adapts to the target, before DA11's outcome is appended
SEL02_ADAPTS = ("the advised recipe adapts to the target images ({method}): the source validation "
                "split cannot tell what that buys on the target, so rule SEL02 does not compare "
                "the linear probe with it there")


def sel02_note(method: str, record: Adaptation, tuning: Any = None) -> str:
    """SEL02's note (``summary.json``'s ``linear_probe.why``, the report's SEL02 section) in a
    run that adapts to the target with method ``method``: why SEL02 compares nothing, then what
    happened to the linear probe instead, as the final model shows it — rule DA11's exact linear
    head against the search's trials (``tuning``, a
    :class:`~autotransfer.tuning.results.TuneResult`) or against DA09's candidates or the
    adapting final model (``record.linear_probe``), or DA09's own source-only exact head."""
    from autotransfer.train.adaptation.choose_weight import EXACT
    from autotransfer.tuning.adapting import PROBE_TRIAL, RULE

    note = SEL02_ADAPTS.format(method=method)
    head = f"the linear probe (rule {RULE}'s exact linear head: the backbone frozen, L-BFGS)"
    by = f"by {record.criterion} on the target, without target labels"
    if tuning is not None and record.searched:
        scored = (tuning.selection or {}).get("linear_probe")
        if scored is None:
            return (f"{note}; {head} was not scored beside the search's trials (trial "
                    f"'{PROBE_TRIAL}' failed or was skipped: section 4), so the adapting trial "
                    f"{tuning.best_trial} is the final model's recipe")
        score = float(scored[record.criterion or ""]) if record.criterion in scored else None
        said = "" if score is None else f" {score:.4f}"
        if scored.get("kept"):
            return (f"{note}; instead {head} scored{said} {by}, beside the search's trials, at "
                    f"least as well as the best adapting trial: it is the final model "
                    f"(rule {RULE})")
        best = tuning.trial(tuning.best_trial)
        rival = "" if best is None or best.score is None else f" ({best.score:.4f})"
        return (f"{note}; instead {head} scored{said} {by}, beside the search's trials, below "
                f"trial {tuning.best_trial}{rival}: the adapting trial {tuning.best_trial} is "
                f"the final model's recipe (rule {RULE})")
    probe = record.linear_probe
    if probe is None:
        if record.rule == CHOOSE and EXACT in record.scores:
            chosen = record.candidate == EXACT
            return (f"{note}; instead rule {CHOOSE}'s candidates included the source-only exact "
                    f"head (the linear probe, fitted by L-BFGS), scored {record.scores[EXACT]:.4f}"
                    f" {by}: " + ("it was chosen and is the final model" if chosen else
                                  f"the {_chosen(record)} candidate scored higher and is the "
                                  "final model"))
        return f"{note}; no exact linear head was scored against it either"
    why = str(probe.get("why", ""))
    if why.startswith("not "):
        return f"{note}; {head} was {why}: the adapting model is the final model"
    kept = f"{head} is the final model" if probe.get("kept") else "the adapting model is the " \
        "final model"
    return f"{note}; instead rule {RULE} compared them on the target, and {kept}: {why}"


def _chosen(record: Adaptation) -> str:
    return f"λ = {record.weight:g}" if record.weight is not None else str(record.candidate)


def head_measure(record: Adaptation, tuning: Any = None) -> dict[str, Any] | None:
    """Rule DA11's exact linear head as :func:`autotransfer.oneshot.versus.check` reads it
    (``val_accuracy``: the training split's head on validation): without a search
    ``record.linear_probe``, after one the search's trial :data:`PROBE_TRIAL`; ``None`` when
    it was not scored."""
    from autotransfer.tuning.adapting import PROBE_TRIAL, RULE

    if record.linear_probe is not None or tuning is None:
        return record.linear_probe
    probe = tuning.trial(PROBE_TRIAL)
    if probe is None or probe.val_accuracy is None:
        return None
    return {"rule": RULE, "trial": PROBE_TRIAL, "kept": tuning.best_trial == PROBE_TRIAL,
            "score": probe.score, "val_accuracy": probe.val_accuracy}


def searched(recipe: Recipe, tuning: Any) -> Adaptation:
    """The record of an adapting search (rule DA11): the kept trial's λ, every trial's score."""
    da = recipe.domain_adaptation
    scores = {}
    for t in tuning.trials:
        if t.score is None:
            continue
        weight = t.values.get("adaptation_weight")
        scores[str(t.trial_id) + ("" if weight is None else f" (λ {float(weight):g})")] = round(
            float(t.score), 5)
    return Adaptation(method=da.method, weight=float(da.weight) if da.has_loss else None,
                      rule=SEARCHED, why=str(tuning.selection.get("why", "")), scores=scores,
                      criterion=tuning.objective.get("criterion"), seconds=tuning.seconds,
                      searched=True)


def reuse_decision(record: Adaptation, final: Any, partial: Path) -> tuple[Path | None, str]:
    """The run folder of DA09's chosen candidate when the final training ``final`` would train
    exactly it — the same recipe (name and reasons aside) on the same images — else ``None``;
    and why not when the candidate's files cannot be read (``""`` otherwise): an unreadable
    candidate is not reused, the final model is trained again."""
    from autotransfer.data.splits import DataSplits
    from autotransfer.errors import AutoTransferError
    from autotransfer.recipe.io import load_recipe
    from autotransfer.train.run import read_run_info

    if record.rule != CHOOSE or (record.weight is None and record.candidate is None):
        return None, ""
    folder = partial / FOLDER / (record.candidate or f"weight_{record.weight:g}")
    try:
        if read_run_info(folder) is None:
            return None, ""
        trained = load_recipe(folder / "recipe.yaml")
        if _training(trained) != _training(final.recipe):
            return None, ""
        candidate = DataSplits.load(folder / "splits.json")
    except AutoTransferError as exc:  # a damaged candidate: no reason to fail, train again
        return None, str(exc).split(". ", 1)[0]  # what is wrong, not the hint to fix it
    keys = {"class_names", "train", "val", "test"}
    same = candidate.model_dump(include=keys) == final.splits.model_dump(include=keys)
    return (folder, "") if same else (None, "")


def _training(recipe: Recipe) -> dict[str, Any]:
    return recipe.model_dump(mode="json", exclude={"reasons", "name"})


def reuse_note(record: Adaptation, reused: Path | None, unreadable: str = "") -> str:
    """The report's sentence on whether DA09's candidate is the final model (``unreadable``:
    why its files could not be read, from :func:`reuse_decision`)."""
    if reused is not None:
        which = ("source-only exact-head" if record.weight is None
                 else f"λ = {record.weight:g}")
        return (f"The final model is the {which} candidate that rule {CHOOSE} "
                f"chose ({FOLDER}/{reused.name}): it trained the same recipe on the same images, "
                "so it was not trained again.")
    if record.rule != CHOOSE:
        return ""
    if unreadable:
        return (f"Rule {CHOOSE}'s chosen candidate could not be read ({unreadable}), so the "
                "final model is trained again.")
    return (f"Rule {CHOOSE}'s candidates trained on the training split; the final training "
            "differs from the chosen one (other images, e.g. train + validation under PLAN04, or "
            "another recipe), so it is trained again.")


def reuse(folder: Path, model_dir: Path, recipe: Recipe, *, export_savedmodel: bool,
          export_tflite: bool) -> Any:
    """The candidate in ``folder`` as the final run ``model_dir``: copied, its recipe the final
    one (with DA09's reason) and named so in ``run.json``, ``metrics.json`` and the reports
    (written again from the final metrics), the exports asked for added; the
    :class:`RunResult`."""
    import json
    import shutil

    from autotransfer._io import atomic_write_json, atomic_write_text
    from autotransfer.recipe.io import save_recipe
    from autotransfer.report.html import HTML_NAME, write_html_report
    from autotransfer.train.report import markdown_report
    from autotransfer.train.run import RUN_FILE, RunResult

    shutil.copytree(folder, model_dir)
    save_recipe(recipe, model_dir / "recipe.yaml")
    metrics = json.loads((model_dir / "metrics.json").read_text(encoding="utf-8"))
    metrics["recipe"] = recipe.name  # the final model's identity, not the candidate's
    metrics["reused"] = {"from": f"{FOLDER}/{folder.name}", "rule": CHOOSE,
                         "why": "the chosen candidate trained the same recipe on the same "
                                "images as the final training would"}
    atomic_write_json(model_dir / "metrics.json", metrics)
    atomic_write_text(model_dir / "report.md", markdown_report(metrics))
    info = json.loads((model_dir / RUN_FILE).read_text(encoding="utf-8"))
    info["recipe"] = recipe.name
    if (model_dir / HTML_NAME).is_file() or HTML_NAME in info.get("files", []):
        write_html_report(model_dir / "report.md")
    if export_savedmodel or export_tflite:
        from autotransfer.train import export

        shipped = export.load_model(model_dir / "model.keras")
        if export_savedmodel:
            export.export_savedmodel(shipped, model_dir / "savedmodel",
                                     class_names=info["class_names"])
            info["files"].append("savedmodel")
        if export_tflite:
            export.export_tflite(shipped, model_dir / "model.tflite")
            info["files"].append("model.tflite")
    atomic_write_json(model_dir / RUN_FILE, info)
    return RunResult(model_dir, model_dir / "model.keras", metrics)


def final_objective(recipe: Recipe, target: Any, store: Any) -> Any:
    """The final training's adaptation to ``target``, reusing the target images' frozen features
    that the search's trials computed (kept with ``store``); ``None`` when the recipe adapts to
    no target (the trainer's default then)."""
    if target is None or not recipe.domain_adaptation.needs_target:
        return None
    from autotransfer.tuning.hypermodel import shared_target_features
    from autotransfer.tuning.trials import TrialAdaptation

    return TrialAdaptation(recipe, target, shared_target_features(store))


def _named(label: str, key: str) -> str:
    """A candidate's name in the report: ``λ 0.3``, ``trial 2``, or an exact head's (DA09's,
    or DA11's exact linear head beside DA09's candidates)."""
    from autotransfer.train.adaptation.choose_weight import EXACT
    from autotransfer.tuning.adapting import PROBE_TRIAL, RULE

    if key == EXACT:
        return "exact head (source-only, L-BFGS)"
    if key == PROBE_TRIAL and label != "trial ":
        return f"exact linear head ({RULE}: frozen backbone, L-BFGS, no adaptation)"
    if key == FINAL and label != "trial ":
        return "the adapting model (trained as the final model)"
    return f"{label}{key}"


def _kept(recipe: Recipe, record: Adaptation, why: str, evidence: dict[str, Any],
          started: float) -> tuple[Recipe, Adaptation]:
    text = rule_text(SKIP, {"weight": record.weight, "why": why})
    reason = Reason(rule=SKIP, text=text, evidence=evidence, thresholds={})
    record.rule, record.why, record.seconds = SKIP, text, time.time() - started
    return recipe.model_copy(update={"reasons": {**recipe.reasons, KEY: reason}}), record


def measure_gaps(record: Adaptation, advice: Any, model_dir: Path, splits: Any, target: Any,
                 recipe: Recipe, partial: Path) -> None:
    """Fill ``record.gap``: the advisor's gap, the source-only candidate's (when it trained) and
    the final model's, each the proxy A-distance and the predicted-class move (TV)."""
    from autotransfer.oneshot.folder import read_json
    from autotransfer.train.adaptation.trained_gap import run_gap
    from autotransfer.train.run import read_run_info

    measured = advice.probes.domain_gap
    if measured is not None:
        record.gap["before"] = {"a_distance": measured.a_distance,
                                "class_tv": measured.class_tv,
                                "measured_on": f"frozen {measured.backbone} features, source "
                                "probe sample against a target sample (the advisor's)"}
    def trained(folder: Path) -> dict[str, Any]:  # train(target=) measured it: metrics.json
        done = read_json(folder / "metrics.json") or {}
        return done.get("domain_gap") or run_gap(
            folder, splits, target, image_size=recipe.backbone.input_size,
            crop=recipe.data.crop).to_dict()

    zero = partial / FOLDER / "weight_0"
    if read_run_info(zero) is not None:
        record.gap["source_only"] = trained(zero)
    record.gap["after"] = trained(model_dir)


def markdown(record: Adaptation | None) -> list[str]:
    """The report's subsection: the adaptation, its weight and why, the gap before and after."""
    if record is None:
        return []
    out = ["", "### Adaptation to the target: the gap before and after", "",
           f"Method **{record.method}**"
           + (f", loss weight λ = {record.weight:g}" if record.weight is not None else "")
           + (f" (rule {record.rule}: {record.why})" if record.rule else "") + ".", ""]
    if record.scores:
        what, label = ("Trials", "trial ") if record.searched else ("Candidates", "λ ")
        out += [f"{what} scored by {record.criterion} (higher is better, no target label "
                "read): " + ", ".join(f"{_named(label, k)}: {v:.4f}"
                                      for k, v in record.scores.items())
                + f"; {record.seconds:.0f} s.", ""]
    probe = record.linear_probe or {}
    if str(probe.get("why", "")).startswith("not "):  # DA11's head: failed, no time, PLAN04
        out += [f"The exact linear head (rule {probe['rule']}) was {probe['why']}.", ""]
    table = gap_table([(BEFORE, record.gap.get("before")),
                       ("source-only trained (λ = 0)", record.gap.get("source_only")),
                       ("after (final model)", record.gap.get("after"))])
    return out + table
