"""``auto()``: the steps in order — profile, probe and advise, tune, final training, report.

It orchestrates: the decisions are rules applied by :mod:`.plan` (budget shares, no search),
:mod:`.final_plan` and :mod:`.final` (the final training), :mod:`autotransfer.tuning.baseline`
(SEL02) and the tuner; the run folder is :mod:`.folder`'s, the report :mod:`.report`'s.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autotransfer._io import atomic_write_json, atomic_write_text
from autotransfer.durations import format_duration, parse_duration
from autotransfer.oneshot import plan
from autotransfer.oneshot.final_plan import (advised_final, estimated_seconds, probe_final,
                                             refined_final)
from autotransfer.oneshot.folder import RunFolder, read_json
from autotransfer.oneshot.report import markdown_report, plot_trials, trials_plot_note
from autotransfer.oneshot.result import AutoResult
from autotransfer.recipe.io import save_recipe
from autotransfer.recipe.schema import Recipe
from autotransfer.tuning.results import trial_dir, trial_phases
from autotransfer.tuning.selection import val_correct
from autotransfer.tuning.tuner import tune

if TYPE_CHECKING:
    from autotransfer.data.splits import DataSplits
    from autotransfer.tuning.baseline import ProbeRun

Progress = Callable[[str], None]
STEPS = ("profile and probe", "advise", "tune", "final training", "evaluate and export", "report")
#: the search's folder inside the run folder
TUNING = "tuning"
#: the files of the final run (``model/``) that are the model, in its formats
EXPORTS = ("model.keras", "savedmodel", "model.tflite", "model.onnx")


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
    export_onnx: bool = False,
    overwrite: bool = False,
    seed: int = 0,
    precision: str = "auto",
    target: str | os.PathLike[str] | None = None,
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
        export_onnx: also convert the final model to ``model/model.onnx`` (tf2onnx, the ``onnx``
            extra: checked before any work), in the "evaluate and export" step, its time counted.
        overwrite: replace an existing ``out`` (and any interrupted ``out.partial``).
        seed: seed of the sample, the splits and the recipe.
        precision: ``"auto"`` (measured: rules PREC01/PREC02), ``"float32"`` or ``"bfloat16"``.
        target: unlabelled images from where the model will be used (a folder, any layout):
            the advisor measures the gap to them and rules DA04-DA08 choose the adaptation,
            which the search's trials (ranked by DA09's criterion on the target, rule DA11) and
            the final training run with them.
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

    started = time.time()
    budget = parse_duration(time_budget)
    if final not in plan.FINAL_MODES:
        raise InvalidParameterError(f"The 'final' parameter of auto must be 'auto', 'train+val' "
                                    f"or 'train'. Got {final!r} instead.")
    if export_onnx:  # the 'onnx' extra, before any work rather than after the training
        from autotransfer.train.export import require_onnx

        require_onnx("export_onnx=True (--onnx)")
    say = progress or (lambda text: None)
    dataset = Path(dataset)
    folder = RunFolder.prepare(dataset, out, overwrite)
    out, partial = folder.out, folder.partial
    shares = plan.Shares.from_rules()

    def step(i: int, text: str) -> None:
        say(f"[{i}/{len(STEPS)}] {text}")

    # 1-2: profile, probe, advise
    step(1, f"Profiling {dataset}" + (" (continuing an interrupted run)" if folder.resumed else ""))
    profile = profile_dataset(dataset)
    profile_seconds = time.time() - started
    floor_params = budget_floor.rule_params()
    if budget is not None:  # rule BUD03: refuse at once a budget below the fixed costs
        with folder.refused_cleanly():
            budget_floor.floor_before_probing(budget, profile_seconds, floor_params,
                                              shares.wrap_up_s)
    atomic_write_json(partial / "profile.json", profile.to_dict())
    from autotransfer._progress import ProbingText
    from autotransfer.probes.probe import default_candidates

    probing = ProbingText(len(backbones or default_candidates()))  # as advise shows it
    step(1, f"Probing {probing.backbones} candidate backbone(s)")
    advisor = Advisor(backbones=backbones, max_params_m=max_params_m, preset=preset, seed=seed,
                      weights=weights, precision=precision, target=target)
    advice = advisor.fit(profile, progress=lambda b, what: say(
        f"[1/{len(STEPS)}] {probing(b, what)}")).advice_
    splits = make_splits(profile, val_fraction=advice.recipe.data.val_fraction,
                         seed=advice.recipe.seed, exclude_leaks=advice.recipe.data.exclude_leaks)
    mode = plan.final_mode(final, bool(splits.test))
    # the frozen activations (and AdaBN'd backbone) computed once: by the linear probe, the
    # search's trials and the final training alike (issue 17)
    from autotransfer.tuning.activations import ActivationStore

    store = ActivationStore(splits)
    n_train, n_val = len(splits.train), len(splits.val)
    factor = shares.reserve_factor(mode, n_train, n_val)
    remaining = None if budget is None else max(1.0, budget - (time.time() - started))
    skip_search = skip_rule = None
    # the linear probe: a candidate of every run that fine-tunes (rule SEL02)
    probe, probe_note = None, "the advised recipe trains the head alone: it is the linear probe"
    # SEL02 compares on source validation images, which cannot see what adaptation buys on the
    # target: a recipe adapting to target images (DA04-DA10 decide it) has no SEL02 candidate
    # (rule DA11 compares the linear probe with it on the target instead)
    adapts = advice.recipe.domain_adaptation.needs_target
    if adapts:  # what rule DA11 did with the linear probe instead is said once it is known
        from autotransfer.oneshot.adapt import SEL02_ADAPTS

        probe_note = SEL02_ADAPTS.format(method=advice.recipe.domain_adaptation.method)
    if budget is not None:  # rule BUD03: refuse, before any training, a budget below the floor
        with folder.refused_cleanly():
            budget_floor.floor_after_probing(
                budget, time.time() - started,
                budget_floor.head_seconds(advice.facts, advice.recipe.backbone.input_size,
                                          floor_params,
                                          feature_dim=_feature_dim(advice.recipe)),
                shares.wrap_up_s, advice.facts)
    if remaining is not None:  # size the recipe to its share of the budget (PLAN01, BUD01, BUD02)
        def sized(seconds: float) -> Any:
            return decide(advice.profile, advice.probes, preset=preset, max_params_m=max_params_m,
                          allow=backbones, seed=seed, time_budget=seconds,
                          precision=precision)

        whole = sized(max(1.0, remaining - shares.wrap_up_s))
        if linear_probe.fine_tunes(whole.recipe) and not adapts:  # SEL02: size again
            probe_s = budget_floor.head_seconds(advice.facts, whole.recipe.backbone.input_size,
                                                floor_params,
                                                feature_dim=_feature_dim(whole.recipe)) or 0.0
            beside = sized(max(1.0, remaining - shares.wrap_up_s - probe_s))
            if linear_probe.fine_tunes(beside.recipe):
                probe, probe_note = _train_probe(splits, whole.recipe, partial, step, store)
                remaining = max(1.0, budget - (time.time() - started))
            else:  # no fine-tuned model that could not be compared with the linear probe
                probe_note = (
                    f"fine-tuning fits the budget only without the linear probe (about "
                    f"{probe_s:.0f} s, BUD03's estimate of a head-only training), so the advised "
                    "recipe trains the head alone (BUD02): it is the linear probe")
                remaining = max(1.0, remaining - probe_s)
        searched = plan.plan_search(sized, remaining, factor, trials, shares, budget_floor.RULE)
        advice, skip_search, skip_rule = searched.advice, searched.skipped, searched.rule
    elif linear_probe.fine_tunes(advice.recipe) and not adapts:
        probe, probe_note = _train_probe(splits, advice.recipe, partial, step, store)
    recipe = advice.recipe
    target_set = advisor.target_
    if target_set is not None and recipe.domain_adaptation.has_loss and trials <= 1 \
            and not skip_search:  # rule DA11: trial 0 alone would keep λ unchosen
        skip_rule = "DA11"
        skip_search = (f"one trial cannot choose the adaptation weight λ of "
                       f"'{recipe.domain_adaptation.method}': rule DA09 chooses it among its "
                       "candidates instead of a search")
    step(2, f"Advised {recipe.backbone.name} at {recipe.backbone.input_size} px, "
            f"{recipe.total_epochs} epochs at most")
    atomic_write_json(partial / "advice.json", advice.to_dict())
    save_recipe(recipe, partial / "recipe.yaml")
    advise_seconds = time.time() - started

    # 3: tune, keeping room for the final training
    remaining = None if budget is None else max(1.0, budget - advise_seconds)
    tuning = None
    if skip_search:
        step(3, f"No search ({skip_rule}): {skip_search}")
        refined = recipe
    else:
        # the search ends wrap_up_s before the budget (PLAN01): the final step's evaluation,
        # analysis, gap measurement and report come after the final training's reserve
        searching = None if remaining is None else max(1.0, remaining - shares.wrap_up_s)
        step(3, f"Tuning for {format_duration(searching)}, keeping room for the final training: "
                "its cost as the costliest trial measured it, with PLAN01's margin")
        tuning = tune(splits, recipe, partial / TUNING, trials=trials, time_budget=searching,
                      algorithm=algorithm, reserve_factor=factor, seed=None,
                      reserve_growth=plan.final_growth(mode, n_train, n_val),
                      stop_when_futile=not full_search, store=store,
                      # a recipe the advisor made not to adapt (DA04-DA08) trains without it
                      target=target_set if recipe.domain_adaptation.needs_target else None,
                      progress=lambda text: say(f"[3/{len(STEPS)}] {text}"))
        assert tuning.refined is not None  # tune raises when no trial completed
        refined = tuning.refined
        # tuning.json names its files where they are published, not in `out.partial`
        tuning = dataclasses.replace(tuning, out=out / TUNING)
        atomic_write_json(partial / TUNING / "tuning.json", tuning.to_dict())
        save_recipe(refined, partial / "recipe.tuned.yaml")
    adaptation = None
    if target_set is not None:  # rules DA09/DA10: the loss weight, chosen without target labels
        from autotransfer.oneshot import adapt

        adaptation = adapt.Adaptation(method=refined.domain_adaptation.method)
        if tuning is not None and tuning.objective:  # rule DA11: the search chose, λ included
            adaptation = adapt.searched(refined, tuning)
        elif tuning is None and refined.domain_adaptation.has_loss:
            sized_s = None if remaining is None else (
                remaining - shares.wrap_up_s if skip_rule in (plan.BINDS, plan.BELOW_FLOOR)
                else shares.trial_share(remaining, factor))
            refined, adaptation = adapt.choose_in_budget(
                splits, refined, target_set, partial, sized_s=sized_s, factor=factor,
                seconds_left=lambda: None if budget is None
                else budget - (time.time() - started) - shares.wrap_up_s,
                say=lambda text: say(f"[3/{len(STEPS)}] {text}"), store=store)
            recipe = refined  # the SEL02 comparison and the final training train the choice
            save_recipe(refined, partial / "recipe.adapted.yaml")
    tune_seconds = time.time() - started - advise_seconds
    val_labels = [splits.label_index(r) for r in splits.val]
    choice: Any = None if probe is not None else probe_note
    best_dir = None if tuning is None else trial_dir(partial / TUNING, tuning.best_trial)
    if probe is not None and tuning is not None:
        correct = val_correct(best_dir)
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
    from autotransfer.train.run import train

    best_phases = () if best_dir is None else trial_phases(best_dir)
    model_dir = folder.fresh("model")  # an interrupted final step starts over
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
                    export_tflite=export_tflite, feature_source=store, target=target_set,
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
    final_estimate = None
    if probe is not None and isinstance(choice, linear_probe.BaselineChoice) and choice.probe_kept:
        final_training = probe_final(probe, mode, splits)
    elif run is not None:
        final_training = advised_final(recipe, splits)
    else:
        left = (None if budget is None
                else budget - (time.time() - started) - shares.wrap_up_s)
        from autotransfer.tuning.final_cost import read_measured

        measured, kept = read_measured(None if best_dir is None else best_dir / "run",
                                       len(splits.val), store)
        final_training = refined_final(mode, refined, tuning, best_phases, splits, left,
                                       measured, kept, probe=probe)
        final_estimate = estimated_seconds(final_training, splits, measured, kept)
    reused, unreadable = (None, "") if run is not None or adaptation is None else \
        adapt.reuse_decision(adaptation, final_training, partial)
    said = "" if adaptation is None or run is not None else adapt.reuse_note(
        adaptation, reused, unreadable)
    if said:  # DA09's chosen candidate is the final model, or why it is trained again
        final_training = dataclasses.replace(final_training,
                                             note=f"{final_training.note} {said}")
    if reused is not None:
        step(4, said)
        run = adapt.reuse(reused, model_dir, final_training.recipe,
                          export_savedmodel=export_savedmodel, export_tflite=export_tflite)
    if run is None:
        step(4, final_training.step)
        run = train(final_training.splits, final_training.recipe, model_dir,
                    export_savedmodel=export_savedmodel, export_tflite=export_tflite,
                    feature_source=store, target=target_set,
                    objective=None if adaptation is None else adapt.final_objective(
                        final_training.recipe, target_set, store),
                    progress=lambda text: say(f"[4/{len(STEPS)}] {text}"))
    if adaptation is not None and tuning is None:  # rule DA11 without a search or candidates
        shutil.rmtree(partial / "adapted", ignore_errors=True)  # an interrupted run's
        head = adapt.versus_final(
            adaptation, final_training, model_dir, splits, target_set, partial, store=store,
            deadline=None if budget is None else started + budget - shares.wrap_up_s,
            say=lambda text: say(f"[4/{len(STEPS)}] {text}"))
        if head is not None:  # the adapting model stays in the run folder, for comparison
            os.replace(model_dir, partial / "adapted")
            final_training = dataclasses.replace(
                final_training, recipe=head, note=f"{final_training.note} The exact linear head "
                f"(rule {adaptation.rule}) replaced the adapting model (kept in adapted/).")
            # trained again, on purpose (rule DA11): the scored head was an in-memory trial that
            # writes no model, and only the trainer writes the run folder (model, metrics on val
            # and test, exports, reports); its frozen features come back from the store, so
            # what repeats is the exact solve (0.3 s of 32 s in tests/oneshot/test_adapt.py's
            # run, where both chose the same C by the same cross-validation)
            step(4, "Training the exact linear head as the final model (rule DA11)")
            run = train(final_training.splits, head, folder.fresh("model"),
                        export_savedmodel=export_savedmodel, export_tflite=export_tflite,
                        feature_source=store, target=target_set,
                        progress=lambda text: say(f"[4/{len(STEPS)}] {text}"))
    if adapts and probe is None and adaptation is not None:  # SEL02 did not compare: DA11 did
        choice = adapt.sel02_note(advice.recipe.domain_adaptation.method, adaptation, tuning)
    metrics = run.metrics
    final_seconds = time.time() - started - advise_seconds - tune_seconds
    if adaptation is not None:  # the gap before and after, in the final model's features
        step(5, "Measuring the source-target gap in the final model's features")
        adapt.measure_gaps(adaptation, advice, model_dir, splits, target_set,
                           final_training.recipe, partial)

    # 5-6: numbers, exports and report
    step(5, "Evaluated" + (" on the test split" if metrics.get("test") else ""))
    onnx_seconds = 0.0
    if export_onnx:
        from autotransfer.train.export import add_onnx

        step(5, "Converting the final model to ONNX (tf2onnx)")
        converted = time.time()
        add_onnx(model_dir)  # model/model.onnx, listed in model/run.json
        onnx_seconds = time.time() - converted
    info = read_json(model_dir / "run.json") or {}
    exports = tuple(f"model/{f}" for f in info.get("files", []) if f in EXPORTS)
    from autotransfer.oneshot.versus import check as forecast_check

    versus = forecast_check(advice.forecast, metrics,
                            final_fine_tunes=linear_probe.fine_tunes(final_training.recipe),
                            probe=probe, choice=choice,
                            head=None if adaptation is None
                            else adapt.head_measure(adaptation, tuning))
    seconds = time.time() - started
    budget_info = {"total": budget, "advise_seconds": advise_seconds,
                   "tune_seconds": tune_seconds, "final_seconds": final_seconds,
                   "reserve_factor": factor, "final": mode, "note": final_training.note,
                   "search_skipped": skip_search, "onnx_seconds": onnx_seconds if export_onnx
                   else None,
                   "rules": {"reserve_factor": plan.SHARES, "final": plan.FINAL_DATA,
                             "search_skipped": skip_rule}}
    step(6, "Writing the report")
    if tuning is not None and trials_plot_note(tuning) is None:  # one trial: said in words
        plot_trials(tuning, partial / "tuning.png")
    probe_seconds = 0.0 if probe is None else probe.seconds
    budget_info["linear_probe_seconds"] = probe_seconds
    # the final training's cost as the best trial measured it (PLAN01's reserve before its
    # margin, tuning/final_cost.py) against what the final step took
    budget_info["final_estimate"] = None if final_estimate is None or reused is not None else {
        **final_estimate, "measured_s": round(final_seconds, 1)}
    used = time.time() - started  # where the time went, and whether the budget was kept
    budget_info.update(budget_floor.use(budget, [
        ("profile", profile_seconds),
        ("probe and advise", advise_seconds - profile_seconds - probe_seconds),
        *([("linear probe (SEL02)", probe_seconds)] if probe is not None else []),
        ("tune", tune_seconds), ("final training, evaluation and export", final_seconds),
        *([("ONNX export (tf2onnx)", onnx_seconds)] if export_onnx else []),
        ("plots and report", used - advise_seconds - tune_seconds - final_seconds - onnx_seconds)],
        used))
    if budget_info["exceeded"]:
        say(f"Over the time budget of {format_duration(budget)} by "
            f"{format_duration(budget_info['over_seconds'])}: see section 6 of the report")
    result = AutoResult(out, advice, tuning, metrics, mode, budget_info, seconds, choice,
                        versus, exports, adaptation=adaptation)
    atomic_write_text(partial / "report.md", markdown_report(result, recipe, refined, profile))
    from autotransfer.report.html import write_html_report

    write_html_report(partial / "report.md")
    atomic_write_json(partial / "summary.json",
                      result.to_dict() | {"seconds": time.time() - started})
    folder.publish()
    say(f"Done in {format_duration(time.time() - started)}: {out / 'report.md'}")
    return dataclasses.replace(result, seconds=time.time() - started)


def _feature_dim(recipe: Recipe) -> int | None:
    """The pooled feature width of ``recipe``'s backbone (BUD03's cross-validation cost);
    ``None`` for a backbone not registered here."""
    from autotransfer.backbones.catalog import get_backbone
    from autotransfer.errors import AutoTransferError

    try:
        return int(get_backbone(recipe.backbone.name).feature_dim)
    except AutoTransferError:
        return None


def _train_probe(splits: DataSplits, recipe: Recipe, partial: Path,
                 step: Callable[[int, str], None], store: Any = None
                 ) -> tuple[ProbeRun | None, str]:
    """Rule SEL02: the linear probe of ``recipe`` on the training split, measured on validation
    (``linear_probe/``: its recipe and metrics), and a note. A probe that fails does not stop
    the run: the note says why it is not compared (report and ``summary.json``)."""
    from autotransfer.tuning.baseline import train_probe

    step(2, "Training the linear probe (frozen backbone, exact head), the cheap candidate that "
            "fine-tuning must beat (rule SEL02)")
    try:
        probe = train_probe(splits, recipe, partial / "linear_probe", store)
    except Exception as exc:  # noqa: BLE001 - recorded: the fine-tuned recipe still trains
        note = f"the linear probe failed ({type(exc).__name__}: {str(exc)[:300]})"
        step(2, f"Not compared with a linear probe: {note}")
        return None, note
    step(2, f"Linear probe: validation accuracy {probe.metrics['val']['accuracy']:.4f} in "
            f"{format_duration(probe.seconds)}")
    return probe, ""
