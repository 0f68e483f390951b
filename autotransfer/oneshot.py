"""``auto(dataset)``: a folder of images in, a deployable model and a report out, in one call.

profile → probe → advise → tune (trial 0 = the advised recipe) → final training with the refined
recipe → evaluation on the test split → exports → ``report.md`` that tells the story.

The module is called ``oneshot`` (not ``auto``) so that ``autotransfer.auto`` stays the function:
a submodule of that name would replace it as an attribute of the package once imported.

**Budget.** ``time_budget`` covers the whole call. Profiling and probing come first (their time is
measured, not guessed). The advised recipe is then sized so that one training of it takes
``remaining / (1 + factor + SEARCH_SHARE)`` (rules BUD01 and BUD02 shorten fine-tuning, or drop it,
from the forward pass timed while probing): room for trial 0, the final training and some search.
When the budget *binds* a fine-tuning schedule — sized to that share, BUD01 shortens it or BUD02
drops fine-tuning, while the whole budget would hold more of it — no search runs
(:func:`search_skipped`): every trial would come out of the final model's training, and one or
two trials beyond trial 0 cannot tell a better recipe from chance. The advised recipe is then
sized to the whole budget and trained once, as the final model. Otherwise
tuning gets the rest, keeping free at its end room for the final
training: ``reserve = factor × (the longest completed trial's duration)``, updated after every
trial, so that whichever trial wins can be trained again (trials run in memory and save no model; the final model is trained by the
recipe executor, :func:`autotransfer.train.train`, with checkpoints, plots and exports):

* ``final="train+val"`` (the default when the dataset has a test split, so the held-out numbers
  stay honest): the refined recipe on train + validation, every phase for the epochs at which the
  best trial was best, no early stopping; ``factor = 1.2 × (n_train + n_val) / n_train``. When
  the best trial's last phase was still improving at its last epoch, that phase is lengthened
  (at most doubled) to use the time left, from the trial's measured epoch times (reason
  ``FINAL`` in the final recipe);
* ``final="train"`` (the default without a test split: the validation split is then the only
  held-out data and must stay out of training): the refined recipe on the tuning splits, with its
  early stopping; ``factor = 1.2``.

A budget below what every run needs is refused, saying the minimum (rule BUD03,
:mod:`autotransfer.budget`): right after profiling when it is below the fixed costs, otherwise
after probing, before any training, from the image count and the measured forward pass. When
only its share for trial 0 is below the cheapest training, no search runs: the advised recipe
trains once. ``summary.json`` and the report say how much of the budget each step used, and
whether it was exceeded.

**Never worse than the linear probe (rule SEL02,** :mod:`autotransfer.tuning.baseline`**).** When
the advised recipe fine-tunes, the linear probe (its backbone frozen, the head fitted exactly) is
trained on the training split right after advising — seconds, out of the budget, before the
recipe is sized — and measured on the validation split. With a search, the best trial is
compared with it on the same validation images; without one, the advised recipe first trains
on the training split (early stopping on validation; it is not refitted on train + validation),
is compared, and is kept as trained only if it wins. The fine-tuned candidate is kept only when
a one-sided paired test finds it better beyond chance (balanced accuracy on imbalanced data);
otherwise the linear probe is the final model, refitted like the winner of a search.

Folder ``out`` (assembled in ``out.partial``, renamed when complete)::

    report.md           the story: data, measurements, decisions and why, tuning, final numbers
    report.html         the same story as one self-contained page (pictures embedded)
    summary.json        AutoResult: numbers, files, the budget split
    profile.json        the dataset profile          advice.json   measurements and decisions
    recipe.yaml         the advised recipe           recipe.tuned.yaml   the refined recipe
    tuning/             the search (see autotransfer.tuning.tuner), tuning.png (two trials or
                        more; one trial is said in words in the report)
    model/              the final run: model.keras, labels.txt, metrics.json, plots,
                        predictions.csv, mistakes.png, gradcam.png, [savedmodel/]
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotransfer._io import atomic_write_json, atomic_write_text
from autotransfer.durations import format_duration, parse_duration
from autotransfer.errors import RunDirectoryError
from autotransfer.recipe.io import save_recipe
from autotransfer.recipe.schema import Reason, Recipe
from autotransfer.train.run import RunMetrics
from autotransfer.tuning.selection import val_correct

Progress = Callable[[str], None]
#: share of one training's time kept for the search beyond trial 0 when sizing the recipe
SEARCH_SHARE = 0.5
#: share of the time left that a lengthened final training may plan to use
FINAL_MARGIN = 0.85
#: seconds kept for evaluating, exporting and writing the report after the final training
WRAP_UP_S = 20.0
STEPS = ("profile and probe", "advise", "tune", "final training", "evaluate and export", "report")


@dataclass(frozen=True)
class AutoResult(RunMetrics):
    """What ``auto`` produced."""

    out: Path
    advice: Any = field(repr=False)
    tuning: Any = field(repr=False)  # None when the search was skipped (see search_skipped)
    metrics: dict[str, Any] = field(repr=False)
    final: str
    budget: dict[str, Any]
    seconds: float
    #: rule SEL02: the linear probe against the fine-tuned recipe (a BaselineChoice), or why
    #: they were not compared (a sentence)
    linear_probe: Any = field(default=None, repr=False)

    @property
    def model_path(self) -> Path:
        return self.out / "model" / "model.keras"

    @property
    def report_path(self) -> Path:
        return self.out / "report.md"

    @property
    def html_report_path(self) -> Path:
        """``report.html``: the same story as one self-contained page."""
        return self.out / "report.html"

    def to_dict(self) -> dict[str, Any]:
        t = self.tuning
        tuning = {"skipped": self.budget.get("search_skipped")} if t is None else {
            "trials": len(t.trials), "baseline_val_accuracy": t.baseline_accuracy,
            "best_val_accuracy": t.best_accuracy, "gain": t.gain, "best_trial": t.best_trial,
            "changes": t.changes, "selection": t.selection, "stopped_because": t.stopped_because}
        return {"out": str(self.out), "model": str(self.model_path),
                "report": str(self.report_path), "report_html": str(self.html_report_path),
                "final": self.final,
                "val_accuracy": self.val_accuracy, "test_accuracy": self.test_accuracy,
                "backbone": self.advice.recipe.backbone.name if t is None or t.refined is None
                else t.refined.backbone.name,
                "tuning": tuning, "linear_probe": _probe_summary(self.linear_probe),
                "budget": self.budget, "seconds": self.seconds}


def _probe_summary(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return {"compared": False, "why": value}
    return {"compared": True} | value.to_dict()


def _merge_train_val(splits: Any) -> Any:
    return splits.model_copy(update={"train": [*splits.train, *splits.val],
                                     "val_source": splits.val_source + " (also trained on)"})


def final_recipe(refined: Recipe, phases: list[dict[str, Any]], *,
                 seconds_left: float | None = None, growth: float = 1.0) -> Recipe:
    """``refined`` with each phase's epochs fixed at the best trial's best epoch, no early stop.

    When the best trial's last phase was still improving at its last epoch (best there, not
    stopped early) and ``seconds_left`` is given, that phase is lengthened — by at most as many
    epochs again — to what the time left affords, from the trial's measured seconds (phases and
    epochs) times ``growth`` (the final training set over the trial's). The reason says so.
    """
    data = refined.model_dump()
    reasons = dict(refined.reasons)
    for p, record in zip(data["phases"], phases, strict=False):
        best = record.get("best_epoch")
        run = record.get("epochs_run") or p["epochs"]
        p["epochs"] = max(1, int(best) + 1 if best is not None else int(run))
        if p["warmup_epochs"] >= p["epochs"]:
            p["warmup_epochs"] = 0.0
    extra = _extra_epochs(phases, len(data["phases"]), seconds_left, growth)
    if extra:
        last, record = len(data["phases"]) - 1, phases[-1]
        p = data["phases"][last]
        before = p["epochs"]
        p["epochs"] = before + extra["epochs"]
        p["warmup_epochs"] = round(p["warmup_epochs"] * p["epochs"] / before, 2)
        reasons[f"phases.{last}.epochs"] = Reason(
            rule="FINAL",
            text=(f"The best trial's phase '{p['name']}' was still improving at its last epoch "
                  f"({before}); {extra['seconds_left']:.0f} s were left, at about "
                  f"{extra['epoch_s']:.0f} s per epoch on the final training set, so it trains "
                  f"{extra['epochs']} more epoch(s) (at most as many again)."),
            evidence={"best_epoch": record.get("best_epoch"), "epochs_run": record.get("epochs_run"),
                      "seconds_left": round(extra["seconds_left"], 1),
                      "epoch_s": round(extra["epoch_s"], 2), "base_s": round(extra["base_s"], 1),
                      "growth": round(growth, 3)},
            thresholds={"margin": FINAL_MARGIN})
    data["reasons"] = reasons
    data["early_stopping"] = dict(data["early_stopping"], restore_best_weights=False,
                                  patience=max(p["epochs"] for p in data["phases"]) + 1)
    data["name"] = refined.name + ", final"
    return Recipe.model_validate(data)


def reuse_head_c(refined: Recipe, phases: list[dict[str, Any]], trial: str | None) -> Recipe:
    """``refined`` with ``head.lbfgs_c`` fixed at the L2 strength that the best trial's
    cross-validation chose, for a final training on the trial's own splits.

    The final model then solves the same problem as the trial without cross-validating it again
    (the same images, views and folds would choose the same ``C``, and the cross-validation is
    most of the head's time). A recipe that fixes ``C`` itself, or whose
    trial fitted no head exactly, is returned unchanged.
    """
    if refined.head.solver != "lbfgs" or refined.head.lbfgs_c is not None:
        return refined
    fits = [r["solver"] for r in phases
            if isinstance(r.get("solver"), dict) and r["solver"].get("chosen_by") == "cross-validation"]
    if not fits:
        return refined
    fit = fits[-1]
    data = refined.model_dump()
    data["head"]["lbfgs_c"] = float(fit["c"])
    data["reasons"] = dict(refined.reasons) | {"head.lbfgs_c": Reason(
        rule="FINAL",
        text=(f"The final model trains on trial {trial}'s splits: its head keeps the L2 strength "
              f"C={fit['c']:.3g} that trial's {fit['folds']}-fold cross-validation chose "
              f"(accuracy {fit['cv_accuracy']:.4f}) instead of cross-validating the same images "
              "again."),
        evidence={"trial": trial, "c": float(fit["c"]), "folds": fit["folds"],
                  "cv_accuracy": fit["cv_accuracy"]},
        thresholds={})}
    return Recipe.model_validate(data)


def _extra_epochs(phases: list[dict[str, Any]], n_phases: int, seconds_left: float | None,
                  growth: float) -> dict[str, float] | None:
    """How many epochs the last phase can add in ``seconds_left``; ``None`` when it should not."""
    import statistics

    if seconds_left is None or len(phases) != n_phases or not phases:
        return None
    record = phases[-1]
    run, best = record.get("epochs_run") or 0, record.get("best_epoch")
    still_improving = (best is not None and run > 0 and best == run - 1
                       and not record.get("stopped_early") and run >= record.get("epochs_planned", run))
    epochs = record.get("epoch_seconds") or []
    if not still_improving or not epochs:
        return None
    epoch_s = statistics.median(epochs) * growth
    base_s = sum(float(r.get("seconds") or 0.0) for r in phases) * growth
    n = int((FINAL_MARGIN * seconds_left - base_s) // max(epoch_s, 1e-9))
    n = min(n, int(run))
    if n < 1:
        return None
    return {"epochs": n, "epoch_s": epoch_s, "base_s": base_s, "seconds_left": seconds_left}


def auto(
    dataset: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    *,
    time_budget: str | float | None = "30m",
    trials: int = 30,
    preset: str = "standard",
    backbones: Sequence[str] | None = None,
    max_params_m: float | None = None,
    weights: str | None = "imagenet",
    algorithm: str = "bayesian",
    final: str = "auto",
    full_search: bool = False,
    export_savedmodel: bool = False,
    export_tflite: bool = False,
    overwrite: bool = False,
    seed: int = 0,
    precision: str = "auto",
    progress: Progress | None = None,
    verbose: int = 1,
) -> AutoResult:
    """Turn the folder ``dataset`` into a tuned, evaluated, exported model and a report.

    Args:
        dataset: the images (class folders, split folders or a CSV manifest).
        out: the folder to create [default: ``runs/<dataset name>``]; it appears only when
            everything is written (assembled in ``<out>.partial``; an interrupted call continues
            there, the search included).
        time_budget: wall-clock budget of the whole call (``"30m"``, seconds, ``None``).
        trials: at most this many tuning trials (the budget usually decides first).
        preset, backbones, max_params_m: the advisor's (see :class:`~autotransfer.Advisor`).
        weights: ``"imagenet"``, or ``None`` for randomly initialised backbones (tests).
        algorithm: KerasTuner's search: ``"bayesian"``, ``"hyperband"`` or ``"random"``.
        final: ``"auto"``, ``"train+val"`` or ``"train"`` (see the module's docstring).
        full_search: search to the budget even when trial 0 leaves no significant gain possible
            (by default the search stops after trial 0 then: see
            :func:`autotransfer.tuning.selection.futile`).
        export_savedmodel, export_tflite: also export a SavedModel / a TFLite model.
        overwrite: replace an existing ``out`` (and any interrupted ``out.partial``).
        seed: seed of the sample, the splits and the recipe.
        precision: ``"auto"`` (measured: rules PREC01/PREC02), ``"float32"`` or ``"bfloat16"``.
        progress: called with a short description of each step.
        verbose: 1 (the default, as Keras' ``fit``: the call takes minutes) shows the steps on
            stderr, with bars and the time left of the budget, when no ``progress`` is given;
            0 is silent.

    Raises :class:`~autotransfer.errors.TimeBudgetError` (rule BUD03) for a budget below what
    every run needs, saying the minimum: after profiling when it is below the fixed costs,
    otherwise after probing, before any training.
    """
    if progress is None and verbose:  # the same display as the CLI's, on stderr
        arguments = {k: v for k, v in locals().items() if k not in ("progress", "verbose")}
        from autotransfer._progress import ProgressDisplay

        with ProgressDisplay(parse_duration(time_budget)) as display:
            return auto(**arguments, progress=display.say, verbose=0)
    from autotransfer import budget as budget_floor
    from autotransfer.advisor.advise import Advisor, decide
    from autotransfer.data.profile import profile_dataset
    from autotransfer.data.splits import make_splits
    from autotransfer.errors import InvalidParameterError
    from autotransfer.tuning import baseline as linear_probe
    from autotransfer.tuning.tuner import tune

    started = time.time()
    budget = parse_duration(time_budget)
    if final not in ("auto", "train+val", "train"):
        raise InvalidParameterError(f"The 'final' parameter of auto must be 'auto', 'train+val' "
                                    f"or 'train'. Got {final!r} instead.")
    say = progress or (lambda text: None)
    dataset = Path(dataset)
    out = Path(out) if out is not None else Path("runs") / dataset.resolve().name
    partial = out.with_name(out.name + ".partial")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        if not overwrite:
            raise RunDirectoryError(f"'{out}' already exists. Choose another --out, or pass "
                                    "--overwrite to replace it.")
        shutil.rmtree(out)
    if overwrite and partial.exists():
        shutil.rmtree(partial)
    resumed = partial.exists()
    partial.mkdir(parents=True, exist_ok=True)

    def step(i: int, text: str) -> None:
        say(f"[{i}/{len(STEPS)}] {text}")

    # 1-2: profile, probe, advise
    step(1, f"Profiling {dataset}" + (" (continuing an interrupted run)" if resumed else ""))
    profile = profile_dataset(dataset)
    profile_seconds = time.time() - started
    floor_params = budget_floor.rule_params()
    if budget is not None:  # rule BUD03: refuse at once a budget below the fixed costs
        with _refused_cleanly(partial, resumed):
            budget_floor.floor_before_probing(budget, profile_seconds, floor_params, WRAP_UP_S)
    atomic_write_json(partial / "profile.json", profile.to_dict())
    step(1, "Probing the candidate backbones")
    advisor = Advisor(backbones=backbones, max_params_m=max_params_m, preset=preset, seed=seed,
                      weights=weights, precision=precision)
    advice = advisor.fit(profile, progress=lambda b, what: say(
        f"[1/{len(STEPS)}] Probing: {b + ': ' if b else ''}{what}")).advice_
    splits = make_splits(profile, val_fraction=advice.recipe.data.val_fraction,
                         seed=advice.recipe.seed, exclude_leaks=advice.recipe.data.exclude_leaks)
    mode = final
    if mode == "auto":
        mode = "train+val" if splits.test else "train"
    n_train, n_val = len(splits.train), len(splits.val)
    factor = 1.2 * (n_train + n_val) / max(1, n_train) if mode == "train+val" else 1.2
    remaining = None if budget is None else max(1.0, budget - (time.time() - started))
    skip_search = None
    # the linear probe: a candidate of every run that fine-tunes (rule SEL02)
    probe, probe_note = None, "the advised recipe trains the head alone: it is the linear probe"
    if budget is not None:  # rule BUD03: refuse, before any training, a budget below the floor
        with _refused_cleanly(partial, resumed):
            budget_floor.floor_after_probing(
                budget, time.time() - started,
                budget_floor.head_seconds(advice.facts, advice.recipe.backbone.input_size,
                                          floor_params), WRAP_UP_S, advice.facts)
    if remaining is not None:  # size the recipe to its share of the budget (rules BUD01, BUD02)
        def sized(seconds: float) -> Any:
            return decide(advice.profile, advice.probes, preset=preset, max_params_m=max_params_m,
                          allow=backbones, seed=seed, time_budget=seconds,
                          precision=precision)

        whole = sized(max(1.0, remaining - WRAP_UP_S))
        if linear_probe.fine_tunes(whole.recipe):  # rule SEL02, out of the budget: size again
            probe_s = budget_floor.head_seconds(advice.facts, whole.recipe.backbone.input_size,
                                                floor_params) or 0.0
            beside = sized(max(1.0, remaining - WRAP_UP_S - probe_s))
            if linear_probe.fine_tunes(beside.recipe):
                probe, probe_note = _train_probe(splits, whole.recipe, partial, step)
                remaining = max(1.0, budget - (time.time() - started))
            else:  # no fine-tuned model that could not be compared with the linear probe
                probe_note = (
                    f"fine-tuning fits the budget only without the linear probe (about "
                    f"{probe_s:.0f} s, BUD03's estimate of a head-only training), so the advised "
                    "recipe trains the head alone (BUD02): it is the linear probe")
                remaining = max(1.0, remaining - probe_s)
            whole = sized(max(1.0, remaining - WRAP_UP_S))
        advice = sized(remaining / (1.0 + factor + SEARCH_SHARE))
        skip_search = search_skipped(advice.recipe, whole.recipe, trials)
        if not skip_search and any(f.rule == budget_floor.RULE for f in advice.firings):
            skip_search = (f"its share of the budget is below the cheapest training (rule "
                           f"{budget_floor.RULE}): trial 0 and the final training would not both "
                           "fit. The advised recipe gets the whole budget and trains once.")
        if skip_search:
            advice = whole
    elif linear_probe.fine_tunes(advice.recipe):
        probe, probe_note = _train_probe(splits, advice.recipe, partial, step)
    recipe = advice.recipe
    step(2, f"Advised {recipe.backbone.name} at {recipe.backbone.input_size} px, "
            f"{recipe.total_epochs} epochs at most")
    atomic_write_json(partial / "advice.json", advice.to_dict())
    save_recipe(recipe, partial / "recipe.yaml")
    advise_seconds = time.time() - started

    # 3: tune, keeping room for the final training
    remaining = None if budget is None else max(1.0, budget - advise_seconds)
    tuning = None
    if skip_search:
        step(3, f"No search: {skip_search}")
        refined = recipe
    else:
        step(3, f"Tuning for {format_duration(remaining)}, keeping {factor:.2f} × the longest "
                "trial's time for the final training")
        tuning = tune(splits, recipe, partial / "tuning", trials=trials, time_budget=remaining,
                      algorithm=algorithm, reserve_factor=factor, seed=None,
                      stop_when_futile=not full_search,
                      progress=lambda text: say(f"[3/{len(STEPS)}] {text}"))
        assert tuning.refined is not None  # tune raises when no trial completed
        refined = tuning.refined
        # tuning.json names its files where they are published, not in `out.partial`
        tuning = dataclasses.replace(tuning, out=out / "tuning")
        atomic_write_json(partial / "tuning" / "tuning.json", tuning.to_dict())
        save_recipe(refined, partial / "recipe.tuned.yaml")
    tune_seconds = time.time() - started - advise_seconds
    val_labels = [splits.label_index(r) for r in splits.val]
    choice: Any = None if probe is not None else probe_note
    if probe is not None and tuning is not None:
        correct = val_correct(partial / "tuning" / "search" / f"trial_{tuning.best_trial}")
        if not linear_probe.fine_tunes(refined):
            choice = f"the search's best recipe (trial {tuning.best_trial}) trains the head alone"
        elif correct is None:
            choice = f"trial {tuning.best_trial} recorded no per-image validation results"
        else:
            best = tuning.trial(tuning.best_trial)
            choice = linear_probe.compare(
                probe.candidate,
                linear_probe.Candidate(linear_probe.FINE_TUNED, correct,
                                       None if best is None else best.seconds),
                val_labels, imbalance=profile.imbalance_ratio,
                measured_on=f"the validation split (trial {tuning.best_trial})")
            say(f"[3/{len(STEPS)}] Linear probe against fine-tuning (SEL02): {choice.why}")

    # 4: final training, by the recipe executor
    from autotransfer.train.run import partial_dir, train

    best_metrics = None if tuning is None else _read_json(
        partial / "tuning" / "search" / f"trial_{tuning.best_trial}" / "run" / "metrics.json")
    model_dir = partial / "model"
    if model_dir.exists():
        shutil.rmtree(model_dir)  # an interrupted final step starts over
    shutil.rmtree(partial_dir(model_dir), ignore_errors=True)
    run = None
    if probe is not None and tuning is None and not linear_probe.fine_tunes(recipe):
        choice = ("sized to the budget, the advised recipe trains the head alone: it is the "
                  "linear probe")
    elif probe is not None and tuning is None:  # SEL02 needs the fine-tuned recipe on validation
        step(4, "Training the advised recipe on the training split: the validation split, which "
                "neither trained on, compares it with the linear probe (rule SEL02)")
        trained = time.time()
        shutil.rmtree(partial / "fine-tuned", ignore_errors=True)  # from an interrupted run
        run = train(splits, recipe, model_dir, export_savedmodel=export_savedmodel,
                    export_tflite=export_tflite,
                    progress=lambda text: say(f"[4/{len(STEPS)}] {text}"))
        choice = linear_probe.compare(
            probe.candidate, linear_probe.Candidate(
                linear_probe.FINE_TUNED, [int(v) for v in run.metrics["val"]["correct"]],
                time.time() - trained), val_labels, imbalance=profile.imbalance_ratio,
            measured_on="the validation split (which also decided the fine-tuned recipe's early "
                        "stopping)")
        say(f"[4/{len(STEPS)}] Linear probe against fine-tuning (SEL02): {choice.why}")
        if choice.probe_kept:  # the fine-tuned model stays in the run folder, for comparison
            os.replace(model_dir, partial / "fine-tuned")
            run = None
        else:
            mode = "train"
    if probe is not None and isinstance(choice, linear_probe.BaselineChoice) and choice.probe_kept:
        recipe_final, final_splits, final_note = _probe_final(probe, mode, splits)
        step(4, "Final training of the linear probe (rule SEL02: fine-tuning did not beat it "
                "beyond chance)")
    elif run is not None:
        recipe_final, final_splits = recipe, splits
        final_note = (f"Trained with the advised recipe on the training split ({n_train} images), "
                      "with early stopping on the validation split, which then compared it with "
                      "the linear probe (rule SEL02): no search ran, and the fine-tuned recipe "
                      "was measured before the final model was chosen, so the validation images "
                      "stay out of its training.")
    elif mode == "train+val":
        left = None if budget is None else budget - (time.time() - started) - WRAP_UP_S
        recipe_final = final_recipe(refined, (best_metrics or {}).get("phases") or [],
                                    seconds_left=left, growth=(n_train + n_val) / max(1, n_train))
        lengthened = [r.text for r in recipe_final.reasons.values() if r.rule == "FINAL"]
        which = ("the advised recipe, for its own epochs" if tuning is None else
                 f"the refined recipe, each phase for the epochs at which trial "
                 f"{tuning.best_trial} was best")
        step(4, f"Final training on train + validation with {which} "
                f"({recipe_final.total_epochs} epochs"
                + (", the last phase lengthened: it was still improving" if lengthened else "")
                + ")")
        final_note = (
            f"Trained on train + validation ({n_train + n_val} images) with {which}; the "
            "validation numbers of this model are on images it trained on: the test split is the "
            "held-out measure." + "".join(f" {text}" for text in lengthened))
        final_splits = _merge_train_val(splits)
    else:
        recipe_final = refined
        if tuning is not None:
            recipe_final = reuse_head_c(refined, (best_metrics or {}).get("phases") or [],
                                        tuning.best_trial)
        kind = "advised" if tuning is None else "refined"
        step(4, f"Final training with the {kind} recipe")
        kept_c = recipe_final.reasons.get("head.lbfgs_c")
        final_note = (f"Trained with the {kind} recipe on the tuning splits (no test split: the "
                      "validation images stay out of training, and "
                      + ("decided early stopping)." if tuning is None else
                         "chose among the trials).")
                      + (f" {kept_c.text}" if kept_c is not None and kept_c.rule == "FINAL"
                         else ""))
        final_splits = splits
    if run is None:
        run = train(final_splits, recipe_final, model_dir, export_savedmodel=export_savedmodel,
                    export_tflite=export_tflite,
                    progress=lambda text: say(f"[4/{len(STEPS)}] {text}"))
    metrics = run.metrics
    final_seconds = time.time() - started - advise_seconds - tune_seconds

    # 5-6: numbers and report
    step(5, "Evaluating" + (" on the test split" if metrics.get("test") else ""))
    seconds = time.time() - started
    budget_info = {"total": budget, "advise_seconds": advise_seconds,
                   "tune_seconds": tune_seconds, "final_seconds": final_seconds,
                   "reserve_factor": factor, "final": mode, "note": final_note,
                   "search_skipped": skip_search}
    step(6, "Writing the report")
    from autotransfer.tuning.report import trials_plot_note

    if tuning is not None and trials_plot_note(tuning) is None:  # one trial: said in words
        _plot_trials(tuning, partial / "tuning.png")
    probe_seconds = 0.0 if probe is None else probe.seconds
    budget_info["linear_probe_seconds"] = probe_seconds
    used = time.time() - started  # where the time went, and whether the budget was kept
    budget_info.update(budget_floor.use(budget, [
        ("profile", profile_seconds),
        ("probe and advise", advise_seconds - profile_seconds - probe_seconds),
        *([("linear probe (SEL02)", probe_seconds)] if probe is not None else []),
        ("tune", tune_seconds), ("final training, evaluation and export", final_seconds),
        ("plots and report", used - advise_seconds - tune_seconds - final_seconds)], used))
    if budget_info["exceeded"]:
        say(f"Over the time budget of {format_duration(budget)} by "
            f"{format_duration(budget_info['over_seconds'])}: see section 6 of the report")
    from autotransfer.tuning.report import markdown_report

    result = AutoResult(out, advice, tuning, metrics, mode, budget_info, seconds, choice)
    atomic_write_text(partial / "report.md", markdown_report(result, recipe, refined, profile))
    from autotransfer.report.html import write_html_report

    write_html_report(partial / "report.md")
    atomic_write_json(partial / "summary.json",
                      result.to_dict() | {"seconds": time.time() - started})
    if out.is_dir():
        out.rmdir()
    os.replace(partial, out)
    say(f"Done in {format_duration(time.time() - started)}: {out / 'report.md'}")
    return AutoResult(out, advice, tuning, metrics, mode, budget_info, time.time() - started,
                      choice)


def _train_probe(splits: Any, recipe: Recipe, partial: Path, step: Callable[[int, str], None]
                 ) -> tuple[Any, str]:
    """Rule SEL02: the linear probe of ``recipe`` on the training split, measured on validation
    (``linear_probe/``: its recipe and metrics), and a note. A probe that fails does not stop
    the run: the note says why it is not compared (report and ``summary.json``)."""
    from autotransfer.tuning.baseline import train_probe

    step(2, "Training the linear probe (frozen backbone, exact head), the cheap candidate that "
            "fine-tuning must beat (rule SEL02)")
    try:
        probe = train_probe(splits, recipe, partial / "linear_probe")
    except Exception as exc:  # noqa: BLE001 - recorded: the fine-tuned recipe still trains
        note = f"the linear probe failed ({type(exc).__name__}: {str(exc)[:300]})"
        step(2, f"Not compared with a linear probe: {note}")
        return None, note
    step(2, f"Linear probe: validation accuracy {probe.metrics['val']['accuracy']:.4f} in "
            f"{format_duration(probe.seconds)}")
    return probe, ""


def _probe_final(probe: Any, mode: str, splits: Any) -> tuple[Recipe, Any, str]:
    """The final training of the linear probe that SEL02 kept: recipe, splits and the note."""
    if mode == "train+val":
        merged = _merge_train_val(splits)
        return probe.recipe, merged, (
            f"The linear probe was kept (rule SEL02, section 4): trained on train + validation "
            f"({len(merged.train)} images), its head's L2 strength cross-validated on them; the "
            "validation numbers of this model are on images it trained on: the test split is the "
            "held-out measure.")
    recipe = reuse_head_c(probe.recipe, probe.metrics.get("phases") or [], "linear probe")
    return recipe, splits, (
        "The linear probe was kept (rule SEL02, section 4): trained on the tuning splits (no test "
        "split: the validation images stay out of training, and compared it with fine-tuning), "
        "with the L2 strength its cross-validation chose.")


@contextmanager
def _refused_cleanly(partial: Path, resumed: bool) -> Iterator[None]:
    """A refused budget leaves no half-made run folder behind (an interrupted one stays)."""
    from autotransfer.errors import TimeBudgetError

    try:
        yield
    except TimeBudgetError:
        if not resumed:
            shutil.rmtree(partial, ignore_errors=True)
        raise


def search_skipped(split: Recipe, whole: Recipe, trials: int) -> str | None:
    """Why ``auto`` should not search (``None``: it should).

    ``split`` is the advised recipe sized to one share of the budget (room for trial 0, the final
    training and some search), ``whole`` the same advice sized to the whole budget. When the
    budget binds a fine-tuning schedule — BUD01 shortened it, or BUD02 dropped fine-tuning, to
    fit a share — every trial of the search comes out of the final model's training, and a search
    of one or two trials beyond trial 0 cannot tell a better recipe from chance. The whole budget
    then goes to the advised recipe.
    """
    if trials <= 1:
        return None  # the caller asked for trial 0 only: tune() runs it
    fine_tunes = any(p.trainable_from < 5 for p in whole.phases)
    if not fine_tunes or split.total_epochs >= whole.total_epochs:
        return None
    shorter = sum(p.epochs for p in split.phases if p.trainable_from < 5)
    longer = sum(p.epochs for p in whole.phases if p.trainable_from < 5)
    return (f"sized to a share of the budget, the advised recipe fine-tunes for {shorter} "
            f"epoch(s) (BUD01/BUD02), against {longer} with the whole budget: a search would "
            "take its trials out of the final model's training, and with so few trials it cannot "
            "tell a better recipe from chance. The advised recipe gets the whole budget.")


def _read_json(path: Path) -> dict[str, Any] | None:
    import json

    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _plot_trials(tuning: Any, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [t for t in tuning.trials if t.val_accuracy is not None]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(tuning.trials) + 2), 3.2))
    colours = ["tab:green" if t.trial_id == tuning.best_trial else
               "tab:blue" if not t.changed else "tab:gray" for t in rows]
    ax.bar([t.trial_id for t in rows], [t.val_accuracy for t in rows], color=colours)
    for t in tuning.trials:
        if t.val_accuracy is None:
            ax.bar([t.trial_id], [0.0])
            ax.text(t.trial_id, 0.02, "failed", rotation=90, ha="center", va="bottom", fontsize=7)
    if tuning.baseline_accuracy is not None:
        ax.axhline(tuning.baseline_accuracy, color="tab:blue", linestyle="--", linewidth=1,
                   label="trial 0 (advised)")
        ax.legend(loc="lower right", fontsize=8)
    low = min([t.val_accuracy for t in rows] or [0.0])
    ax.set_ylim(max(0.0, low - 0.1), 1.0)
    ax.set_xlabel("trial")
    ax.set_ylabel("validation accuracy")
    ax.set_title("Tuning trials (green: best, blue: the advised recipe)", fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
