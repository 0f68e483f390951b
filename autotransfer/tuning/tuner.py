"""``tune(dataset, recipe, out)``: refine a recipe with KerasTuner within a budget.

Folder ``out``::

    recipe.yaml          the recipe the search started from (trial 0 trains it unchanged)
    recipe.tuned.yaml    the refined recipe: changed fields carry a TUNE01 reason
    tuning.json          search space, trial table, changes, gain over trial 0 (TuneResult)
    tuning.md            the same for people
    splits.json          the training / validation images every trial used
    logs/trials/<id>/    each trial's HParams session for TensorBoard, written as the trial ends
    search/              KerasTuner's project: oracle.json, <tuner id>.json,
                         trial_<id>/{trial.json, recipe.yaml, trial_result.json, run/}

The search is split by concept: :mod:`.space` (the dimensions, rules TUNE03–TUNE10),
:mod:`.oracle` (trial 0 first, the deadline, the futility stop TUNE02), :mod:`.recipe_tuner`
(each trial), :mod:`.table` and :mod:`.summary` (the trial kept, TUNE01), :mod:`.provenance`
(the refined recipe's reasons), :mod:`.results` and :mod:`.markdown` (what is written).

Re-running the same call continues the search (KerasTuner reloads its oracle; an interrupted
trial continues from its last epoch); ``overwrite=True`` starts afresh. With KerasTuner's
``KERASTUNER_TUNER_ID`` / ``KERASTUNER_ORACLE_IP`` / ``KERASTUNER_ORACLE_PORT`` set, the process
whose id contains ``chief`` serves the oracle (and writes the results when the search ends) while
the others run trials (see docs/tuning.md).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from autotransfer._io import atomic_write_json, atomic_write_text
from autotransfer.durations import format_duration, parse_duration
from autotransfer.errors import InvalidConfigError, InvalidParameterError, TuningError
from autotransfer.recipe.io import load_recipe, save_recipe
from autotransfer.recipe.schema import Recipe
from autotransfer.train.splits import load_or_make
from autotransfer.tuning import distributed
from autotransfer.tuning.markdown import markdown
from autotransfer.tuning.results import PROJECT, TUNED_NAME, TrialRecord, TuneResult
from autotransfer.tuning.space import search_space
from autotransfer.tuning.summary import summarise
from autotransfer.tuning.table import trial_records

Progress = Callable[[str], None]
#: the HParams sessions of the trials, each written as the trial ends (train/tensorboard.py)
TRIAL_LOGS = "logs/trials"
__all__ = ["PROJECT", "TUNED_NAME", "TrialRecord", "TuneResult", "tune"]


def _write_results(result: TuneResult, recipe_path: Path | None) -> None:
    out = result.out
    if result.refined is not None:
        save_recipe(result.refined, out / TUNED_NAME)
        if recipe_path is not None and recipe_path.resolve().parent != out.resolve():
            save_recipe(result.refined, recipe_path.with_name(
                recipe_path.name.split(".")[0] + ".tuned" + recipe_path.suffix))
    atomic_write_json(out / "tuning.json", result.to_dict())
    atomic_write_text(out / "tuning.md", markdown(result))


class _LazySplits:
    """Splits computed on first use (a chief that only serves the oracle never needs them)."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._value: Any = None

    def __call__(self) -> Any:
        if self._value is None:
            self._value = self._make()
        return self._value


def tune(
    dataset: str | os.PathLike[str] | Any,
    recipe: Recipe | str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] = "tuning",
    *,
    trials: int = 10,
    time_budget: str | float | None = None,
    overwrite: bool = False,
    algorithm: str = "bayesian",
    backbones: Sequence[str] | None = None,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] = (),
    reserve_factor: float = 0.0,
    reserve_growth: float = 1.0,
    stop_when_futile: bool = False,
    shared_cache: bool = True,
    seed: int | None = None,
    advisor_kwargs: dict[str, Any] | None = None,
    train_kwargs: dict[str, Any] | None = None,
    progress: Progress | None = None,
    verbose: int = 1,
    store: Any = None,
    target: str | os.PathLike[str] | Any = None,
) -> TuneResult:
    """Refine ``recipe`` on ``dataset`` with KerasTuner; trial 0 trains ``recipe`` unchanged.

    Args:
        dataset: a dataset path or :class:`~autotransfer.data.splits.DataSplits`.
        recipe: a :class:`Recipe` or recipe file; ``None`` asks the advisor first
            (``advisor_kwargs`` go to :class:`~autotransfer.advisor.advise.Advisor`).
        out: the tuning folder (see the module's docstring).
        trials: at most this many trials in all (a resumed search counts the earlier ones).
        time_budget: wall-clock limit of this invocation (``"30m"``, seconds, or ``None``): no
            trial starts once it is spent (nor one that would likely not finish); a trial still
            running well past it is stopped and recorded as failed. Trial 0 always runs.
        overwrite: start afresh instead of continuing the search in ``out``.
        algorithm: ``"bayesian"`` (default), ``"hyperband"`` or ``"random"``.
        backbones: alternatives to the recipe's backbone (default: the runner-ups in its
            ``BB01`` reason; ``[]`` keeps the backbone fixed).
        include, exclude: which dimensions of :mod:`.space` to search.
        reserve_factor: keep this many times the longest completed trial's duration free at the
            end of the budget (``auto`` keeps room for the final training, whichever trial wins),
            the trial's frozen features left out: the final training reuses them from ``store``
            except, with ``reserve_growth`` = (train + validation) / train, those of the images
            it adds (:meth:`.oracle.AdvisedFirstMixin.keep_for_final`).
        stop_when_futile: start no trial after trial 0 when trial 0 gets so few validation images
            wrong that no trial could beat it beyond chance (rule TUNE02, decided by the oracle:
            :func:`.selection.futile`; ``auto`` does this). A distributed search's chief stops
            too, when it can read trial 0's folder (a shared ``out``).
        shared_cache: run trials in memory, sharing the frozen layers' activations across
            trials (:mod:`.trials`; head-only trials take seconds); ``False`` runs every trial
            through :func:`autotransfer.train.train` (checkpoints: an interrupted trial
            continues from its last epoch; each trial saves its model).
        train_kwargs: extra arguments of :func:`autotransfer.train.train` for every trial.
        progress: called with a short description of each step.
        store: the :class:`~autotransfer.tuning.activations.ActivationStore` the in-memory
            trials share (default: a new one); ``auto`` passes its own, to reuse it afterwards.
        target: unlabelled images from where the model will be used (a folder or a
            :class:`~autotransfer.data.target.TargetSet`). A recipe that adapts to them needs
            it: every trial then trains with the adaptation and the target, and trials are
            ranked by rule DA09's criterion on the target instead of validation accuracy, λ
            searched over 0 and DA09's weights (rule DA11, :mod:`.adapting`; TUNE01's test and
            TUNE02's stop, on source validation images, do not apply). The recipe's exact
            linear head is scored by the same criterion besides the trials (trial ``probe``)
            and kept when it scores at least as well. Class folders in it are never read.
        verbose: 1 (the default, as ``auto``: a search takes minutes) shows the steps and trials
            on stderr, with bars and the time left of the budget, when no ``progress`` is given
            (the CLI's display); 0 is silent.

    Raises:
        InvalidParameterError: a bad argument, or ``out`` holds a search that started from another
            recipe (pass ``overwrite=True``).
        TuningError: no trial completed; or the recipe as given fails (its own error is raised).
    """
    if progress is None and verbose:  # the CLI's display on stderr, as auto(verbose=1)
        arguments = {k: v for k, v in locals().items() if k not in ("progress", "verbose")}
        from autotransfer._progress import ProgressDisplay

        with ProgressDisplay(parse_duration(time_budget)) as display:
            return tune(**arguments, progress=display.say, verbose=0)
    started = time.time()
    budget = parse_duration(time_budget)
    if not isinstance(trials, int) or trials < 1:
        raise InvalidParameterError(f"The 'trials' parameter of tune must be an integer >= 1. "
                                    f"Got {trials!r} instead.")
    from autotransfer.tuning.oracle import ALGORITHMS, make_oracle

    if algorithm not in ALGORITHMS:
        raise InvalidParameterError(f"The 'algorithm' parameter of tune must be one of "
                                    f"{', '.join(ALGORITHMS)}. Got {algorithm!r} instead.")
    say = progress or (lambda text: None)
    out = Path(out)
    my_role = distributed.role()
    recipe_path = None if recipe is None or isinstance(recipe, Recipe) else Path(recipe)
    advised = recipe is None
    if recipe is None:
        from autotransfer.advisor.advise import Advisor

        say("Advising a recipe to start from")
        kwargs = dict(advisor_kwargs or {})
        if target is not None and kwargs.get("target") is None:  # so the recipe can adapt
            from autotransfer.data.target import TargetSet

            kwargs["target"] = target.root if isinstance(target, TargetSet) else target
        recipe = Advisor(**kwargs).fit(dataset).recipe_
    elif not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    if seed is not None:
        recipe = recipe.model_copy(update={"seed": seed})

    from autotransfer.data.target import resolve_target
    from autotransfer.tuning import adapting

    adapts = adapting.adapts(recipe)
    if target is not None and not adapts:
        if advised:
            reason = recipe.reasons.get("domain_adaptation.method")
            rule = f", rule {reason.rule}" if getattr(reason, "rule", None) else ""
            say(f"The advised recipe does not adapt to the target (domain_adaptation.method "
                f"'{recipe.domain_adaptation.method}'{rule}): the trials train without it")
        else:
            raise InvalidConfigError(
                f"Recipe '{recipe.name}' does not adapt to target images: its "
                f"domain_adaptation.method is '{recipe.domain_adaptation.method}', and --target "
                "is used only by a recipe that adapts. Run `autotransfer advise DATASET --target "
                "DIR` to make one (or set domain_adaptation.method), or leave --target out.")
    target_set = resolve_target(target)
    if adapts and target_set is None:
        from autotransfer.train.adaptation import objective_for

        objective_for(recipe, None)  # the clear error: the method needs target images
    criterion = adapting.criterion() if adapts else None
    if adapts and stop_when_futile:
        say(f"Adapting trials are ranked by {criterion} on the target ({adapting.RULE}): "
            "TUNE02's stop, on source validation images, does not apply")
        stop_when_futile = False
    space = search_space(recipe, backbones=backbones, include=include, exclude=exclude)
    fresh = overwrite and my_role != "worker"  # a worker never deletes the shared search
    started_from = out / "recipe.yaml"
    if fresh:
        for name in (PROJECT, TUNED_NAME, "tuning.json", "tuning.md", "splits.json", TRIAL_LOGS):
            stale = out / name
            if stale.is_dir():
                shutil.rmtree(stale)
            elif stale.exists():
                stale.unlink()
    if started_from.is_file() and not fresh:
        previous = load_recipe(started_from)
        if previous.to_dict() != recipe.to_dict():
            raise InvalidParameterError(
                f"The search in '{out}' started from a different recipe ({started_from}). "
                "Re-run with the same recipe to continue it, pass --overwrite to start afresh, or "
                "choose another --out.")
    splits = _LazySplits(lambda: load_or_make(dataset, recipe, out / "splits.json",
                                              resume=not fresh))
    if my_role != "chief":  # fail fast on the data, before writing; a chief only serves the oracle
        say("Reading the dataset")
        splits()
    out.mkdir(parents=True, exist_ok=True)
    if my_role != "worker" or not started_from.is_file():
        save_recipe(recipe, started_from)

    from autotransfer.tuning.hypermodel import RecipeHyperModel

    if adapts and target_set is not None and my_role != "chief":
        from autotransfer.data.target import check_apart_from

        check_apart_from(target_set, splits())
    hypermodel = RecipeHyperModel(recipe, splits, space=space, shared_cache=shared_cache,
                                  target=target_set if adapts else None, criterion=criterion,
                                  train_kwargs=train_kwargs, progress=say, store=store)
    oracle = make_oracle(algorithm, max_trials=trials, seed=recipe.seed,
                         epochs=recipe.total_epochs, n_dimensions=len(space),
                         objective_name=adapting.metric(criterion) if criterion else "val_accuracy")
    deadline = None if budget is None else started + budget
    oracle.deadline = deadline
    oracle.tuning_dir = out
    oracle.stop_when_futile = stop_when_futile
    # the reserve counts a trial's frozen features as reused only while this store keeps them
    oracle.feature_store = hypermodel.store if shared_cache else None
    # the reserve counts evaluating these splits' validation and test images, store or not
    oracle.splits = lambda: hypermodel.store.splits
    hard = None if budget is None else started + budget * 1.1 + 30
    from autotransfer.tuning.recipe_tuner import RecipeTuner

    stopped = ""
    # KerasTuner prints to stdout; keep stdout for --json
    with contextlib.redirect_stdout(sys.stderr):
        tuner = RecipeTuner(oracle, hypermodel, directory=str(out), project_name=PROJECT,
                            overwrite=False, hard_deadline=hard,
                            progress=say, trial_logs=out / TRIAL_LOGS)
        if my_role != "worker":  # resumed: the trials' durations are known already; the
            # oracle computes it again as each trial ends (a chief: each worker's, rule PLAN01)
            oracle.keep_for_final(reserve_factor, reserve_growth)
            if not stop_when_futile:  # a search resumed without the flag runs on
                oracle.stop_reason = ""
        say(f"Searching: {len(space)} hyperparameter(s), up to {trials} trial(s), budget "
            f"{format_duration(budget)}" + ("" if my_role == "local" else f" ({my_role})"))
        probe = None
        if criterion is not None and my_role == "local":  # rule DA11: first, in the budget,
            # bounded so trial 0 (PLAN01's sizing does not count the head) is never starved
            probe = adapting.probe_candidate(recipe, hypermodel, out,
                                             deadline=adapting.probe_deadline(oracle), say=say)
        try:
            tuner.search(verbose=0)
        except RecipeTuner.fatal as exc:
            raise exc.error from None
        except RuntimeError as exc:
            if "consecutive failures" not in str(exc):
                raise
            stopped = "stopped after 3 consecutive failed trials"
    seconds = time.time() - started
    if my_role == "worker":
        return TuneResult(out, "worker", recipe, space, [
            TrialRecord(trial_id=t, status="RAN", values={}, changed={}) for t in tuner.ran],
            stopped_because=stopped or "the chief stopped the search", seconds=seconds,
            algorithm=algorithm)
    if not stopped:
        n = len(oracle.trials)
        stopped = (oracle.stop_reason if oracle.stop_reason else
                   f"reached {trials} trial(s)" if n >= trials else
                   "the time budget was spent" if deadline is not None and oracle.out_of_time()
                   else "the search space is exhausted")
    records = trial_records(oracle, space)
    if criterion is not None:  # rule DA11: the exact linear head competes on the same score
        if probe is None:  # a chief's workers ran the trials; it scores the head at the end,
            # within the search's budget (skipped, and recorded as such, once it is spent)
            probe = adapting.probe_candidate(recipe, hypermodel, out, deadline=deadline, say=say)
        records.append(probe)
    from autotransfer.train.tensorboard import write_trials  # the HParams dashboard's sessions
    from autotransfer.tuning.space import apply

    write_trials(out / TRIAL_LOGS, records,
                 lambda t: apply(recipe, t.values, space))
    if criterion is not None:  # rule DA11: the best score on the target, no target label
        result = adapting.summarise(out, recipe, space, records, role_name=my_role,
                                    stopped=stopped, seconds=seconds, algorithm=algorithm,
                                    name=criterion)
    else:
        result = summarise(out, recipe, space, records, role_name=my_role, stopped=stopped,
                           seconds=seconds, algorithm=algorithm)
    _write_results(result, recipe_path)
    if result.refined is None:
        failures = "; ".join(f"trial {t.trial_id}: {t.message}" for t in records if t.message)
        raise TuningError(f"No trial of the search in '{out}' completed "
                          f"({failures or 'none ran'}). "
                          "See the trial folders under "
                          f"'{out / PROJECT}' and fix the recipe or the data.")
    if criterion is not None:
        say(f"Kept trial {result.best_trial} ({adapting.RULE}): {result.selection['why']}")
    elif result.selection.get("replace") is False:
        say(f"Keeping the recipe as given: trial {result.selection['candidate']} was best, but "
            f"{result.selection['why']}")
    else:
        say(f"Best trial {result.best_trial}: validation accuracy {result.best_accuracy:.4f}"
            + (f" ({result.gain:+.4f} over the recipe as given)" if result.gain is not None
               else ""))
    return result
