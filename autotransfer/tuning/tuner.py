"""``tune(dataset, recipe, out)``: refine a recipe with KerasTuner within a budget.

Folder ``out``::

    recipe.yaml          the recipe the search started from (trial 0 trains it unchanged)
    recipe.tuned.yaml    the refined recipe: changed fields carry a TUNE reason
    tuning.json          search space, trial table, changes, gain over trial 0 (TuneResult)
    tuning.md            the same for people
    splits.json          the training / validation images every trial used
    search/              KerasTuner's project: oracle.json, <tuner id>.json,
                         trial_<id>/{trial.json, recipe.yaml, trial_result.json, run/}

Re-running the same call continues the search (KerasTuner reloads its oracle; an interrupted
trial continues from its last epoch); ``overwrite=True`` starts afresh. With KerasTuner's
``KERASTUNER_TUNER_ID`` / ``KERASTUNER_ORACLE_IP`` / ``KERASTUNER_ORACLE_PORT`` set, the process
whose id contains ``chief`` serves the oracle (and writes the results when the search ends) while
the others run trials (see docs/tuning.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotransfer._io import atomic_write_json, atomic_write_text
from autotransfer.durations import format_duration, parse_duration
from autotransfer.errors import (AutoTransferError, DistributedTuningError, InvalidParameterError,
                                 TuningError)
from autotransfer.recipe.io import load_recipe, save_recipe
from autotransfer.recipe.schema import Reason, Recipe
from autotransfer.tuning.selection import decide as decide_selection
from autotransfer.tuning.selection import futile, val_correct
from autotransfer.tuning.space import SearchSpace, apply, search_space

Progress = Callable[[str], None]
PROJECT = "search"
TUNED_NAME = "recipe.tuned.yaml"


@dataclass(frozen=True)
class TrialRecord:
    """One row of the trial table."""

    trial_id: str
    status: str
    values: dict[str, Any]
    changed: dict[str, Any]
    tuner_id: str | None = None
    val_accuracy: float | None = None
    val_loss: float | None = None
    seconds: float | None = None
    epochs: float | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class TuneResult:
    """What a search produced (on a worker of a distributed search: only its own trials)."""

    out: Path
    role: str
    recipe: Recipe
    space: SearchSpace
    trials: list[TrialRecord]
    refined: Recipe | None = None
    baseline_trial: str | None = None
    best_trial: str | None = None
    gain: float | None = None
    changes: list[dict[str, Any]] = field(default_factory=list)
    stopped_because: str = ""
    seconds: float = 0.0
    algorithm: str = "bayesian"
    #: how the kept trial was chosen (see :mod:`.selection`): the candidate, the test, why
    selection: dict[str, Any] = field(default_factory=dict)

    @property
    def refined_path(self) -> Path:
        return self.out / TUNED_NAME

    def trial(self, trial_id: str | None) -> TrialRecord | None:
        return next((t for t in self.trials if t.trial_id == trial_id), None)

    @property
    def baseline_accuracy(self) -> float | None:
        t = self.trial(self.baseline_trial)
        return None if t is None else t.val_accuracy

    @property
    def best_accuracy(self) -> float | None:
        t = self.trial(self.best_trial)
        return None if t is None else t.val_accuracy

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "role": self.role, "algorithm": self.algorithm,
                "recipe": str(self.out / "recipe.yaml"),
                "refined_recipe": str(self.refined_path) if self.refined is not None else None,
                "baseline_trial": self.baseline_trial, "best_trial": self.best_trial,
                "baseline_val_accuracy": self.baseline_accuracy,
                "best_val_accuracy": self.best_accuracy, "gain": self.gain,
                "changes": self.changes, "stopped_because": self.stopped_because,
                "selection": self.selection,
                "seconds": self.seconds, "space": self.space.to_dict(),
                "trials": [t.to_dict() for t in self.trials]}


# ----------------------------------------------------------------------------- distribution
def role() -> str:
    """'chief', 'worker' (KerasTuner's distributed mode) or 'local'; raises
    :class:`~autotransfer.errors.DistributedTuningError` on malformed or unsafe settings."""
    from autotransfer.tuning.distributed import settings

    return settings().role


# ----------------------------------------------------------------------------- the tuner
def _tuner_class() -> type:
    import keras_tuner
    from keras_tuner.src.engine import base_tuner

    from autotransfer.tuning import distributed
    from autotransfer.tuning.hypermodel import Deadline, TrialFailed, release_memory

    class FatalTrial(keras_tuner.errors.FatalError):
        """The advised recipe itself cannot be trained: every trial would fail the same way."""

        def __init__(self, error: BaseException) -> None:
            super().__init__(str(error))
            self.error = error

    class RecipeTuner(base_tuner.BaseTuner):
        """Runs each trial's recipe with the trainer (a BaseTuner: no Keras model here)."""

        fatal = FatalTrial

        def __init__(self, *args: Any, hard_deadline: float | None = None,
                     reserve_factor: float = 0.0, stop_when_futile: bool = False,
                     progress: Progress | None = None, **kwargs: Any) -> None:
            self.hard_deadline = hard_deadline
            self.reserve_factor = reserve_factor
            self.stop_when_futile = stop_when_futile
            self.progress = progress
            self.ran: list[str] = []
            super().__init__(*args, **kwargs)
            distributed.authenticate_worker(self)

        def _say(self, text: str) -> None:
            if self.progress is not None:
                self.progress(text)

        def search(self, *args: Any, **kwargs: Any) -> None:
            """KerasTuner's search; the chief serves its oracle behind the token check."""
            if role() == "chief":
                distributed.serve_chief(self, verbose=kwargs.get("verbose", 1), say=self._say)
                return
            with distributed.refused_as_error():
                super().search(*args, **kwargs)

        def run_trial(self, trial: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
            if not str(trial.trial_id).isdigit():  # it names a folder: it must not escape
                raise FatalTrial(DistributedTuningError(
                    f"The chief sent the trial id {str(trial.trial_id)[:40]!r}, which is not a "
                    "number as KerasTuner's own ids are: refusing it, since it names the trial's "
                    "folder. Check that KERASTUNER_ORACLE_IP points at your own chief."))
            hp = trial.hyperparameters
            recipe = self.hypermodel.build(hp)
            trial_dir = Path(self.get_trial_dir(trial.trial_id))
            save_recipe(recipe, trial_dir / "recipe.yaml")
            changed = self.hypermodel.space.changed(hp.values)
            first = not changed
            self._say(f"Trial {trial.trial_id}: " + (
                "the recipe as given" if first else ", ".join(
                    f"{k}={_short(v)}" for k, v in changed.items())))
            callbacks = []
            if self.hard_deadline is not None and not first:
                callbacks.append(Deadline(self.hard_deadline))
            try:
                return self.hypermodel.fit(hp, recipe, trial_dir=trial_dir, callbacks=callbacks)
            except TrialFailed:
                raise
            except AutoTransferError as exc:
                if first:
                    raise FatalTrial(exc) from exc
                raise TrialFailed(f"{type(exc).__name__}: {exc}") from exc
            except Exception as exc:  # noqa: BLE001 - a failed trial is recorded and skipped
                from autotransfer.train.distribute import is_out_of_memory

                kind = "out of memory" if is_out_of_memory(exc) else type(exc).__name__
                raise TrialFailed(f"{kind}: {str(exc)[:500]}") from exc
            finally:
                release_memory()

        def on_trial_end(self, trial: Any) -> None:
            self.ran.append(trial.trial_id)
            super().on_trial_end(trial)
            oracle = self.oracle
            if self.reserve_factor and hasattr(oracle, "keep_for_final"):  # not on a worker
                oracle.keep_for_final(self.reserve_factor)
            status = getattr(trial, "status", "")
            self._say(f"Trial {trial.trial_id} {str(status).lower()}")
            if (self.stop_when_futile and hasattr(oracle, "stop_reason")
                    and str(status) == "COMPLETED"
                    and not self.hypermodel.space.changed(trial.hyperparameters.values)):
                verdict = futile(val_correct(Path(self.get_trial_dir(trial.trial_id))))
                if verdict is not None:
                    oracle.stop_reason = "stopped after trial 0: " + verdict["why"]
                    oracle.save()
                    self._say(f"No further trials: {verdict['why']}")

        def save_model(self, trial_id: Any, model: Any, step: int = 0) -> None:
            """Nothing to do: trials run with the trainer save their model in their run folder,
            in-memory trials keep none (the final training saves the model)."""

        def load_model(self, trial: Any) -> Any:
            """The model of a trial run with ``shared_cache=False``."""
            from autotransfer.train.export import load_model

            return load_model(Path(self.get_trial_dir(trial.trial_id)) / "run" / "model.keras")

    return RecipeTuner


def _py(value: Any) -> Any:
    """Plain Python numbers (KerasTuner's Bayesian oracle proposes NumPy scalars)."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        return value.item()
    return value


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


# ----------------------------------------------------------------------------- results
def _last_line(message: str | None) -> str:
    lines = [ln.strip() for ln in (message or "").strip().splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def trial_records(oracle: Any, space: SearchSpace) -> list[TrialRecord]:
    """The trial table of a (chief or local) oracle, by trial id."""
    records = []
    tuner_of = getattr(oracle, "tuner_of", {})
    for trial_id in sorted(oracle.trials):
        t = oracle.trials[trial_id]

        def metric(name: str, t: Any = t) -> float | None:
            return float(t.metrics.get_last_value(name)) if t.metrics.exists(name) else None

        values = {k: _py(v) for k, v in t.hyperparameters.values.items()}
        records.append(TrialRecord(
            trial_id=trial_id, status=str(t.status), values=values,
            changed=space.changed({k: v for k, v in values.items() if not k.startswith("tuner/")}),
            tuner_id=tuner_of.get(trial_id), val_accuracy=metric("val_accuracy"),
            val_loss=metric("val_loss"), seconds=metric("seconds"), epochs=metric("epochs"),
            message=_last_line(t.message) if str(t.status) != "COMPLETED" else ""))
    return records


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: data}


def recipe_changes(before: Recipe, after: Recipe) -> list[dict[str, Any]]:
    """The fields that differ, as ``{"path", "before", "after"}`` (phases compared one by one)."""
    a = before.model_dump(mode="json", exclude={"reasons", "name"})
    b = after.model_dump(mode="json", exclude={"reasons", "name"})
    if len(a["phases"]) != len(b["phases"]):
        def summary(r: dict[str, Any]) -> str:
            return "; ".join(f"{p['name']}: from group {p['trainable_from']}, {p['epochs']} epochs"
                             for p in r["phases"])

        changes = [{"path": "phases", "before": summary(a), "after": summary(b)}]
        a.pop("phases"), b.pop("phases")
    else:
        changes = []
        a["phases"] = {str(i): p for i, p in enumerate(a["phases"])}
        b["phases"] = {str(i): p for i, p in enumerate(b["phases"])}
    fa, fb = _flatten(a), _flatten(b)
    for path in fa:
        if fa[path] != fb.get(path):
            changes.append({"path": path, "before": fa[path], "after": fb.get(path)})
    return changes


def _scalar(value: Any) -> float | int | str | bool | None:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value)


def with_provenance(advised: Recipe, refined: Recipe, changes: list[dict[str, Any]], *,
                    best: TrialRecord, baseline: TrialRecord | None, n_trials: int,
                    space: SearchSpace, selection: dict[str, Any] | None = None) -> Recipe:
    """``refined`` with a TUNE reason on every changed field (the others keep theirs)."""
    reasons = dict(refined.reasons)
    base_acc = baseline.val_accuracy if baseline is not None else None
    gain = None if base_acc is None or best.val_accuracy is None else best.val_accuracy - base_acc
    if len(refined.phases) != len(advised.phases):  # phase indices moved: keep the non-phase ones
        reasons = {k: v for k, v in reasons.items() if not k.startswith("phases.")}
    for change in changes:
        path = change["path"]
        earlier = advised.reasons.get(path)
        dims = [d for d in space if any(path == f or path.startswith(f + ".") for f in d.fields)
                or (path == "phases" and d.name == "finetune_from")]
        text = (f"tuning changed {path} from {_short(change['before'])} to "
                f"{_short(change['after'])}: validation accuracy {best.val_accuracy:.4f}")
        text += (f", {gain:+.4f} over trial 0 (the advised recipe, {base_acc:.4f})"
                 if gain is not None else " (trial 0 did not complete)")
        text += f"; best of {n_trials} trial(s), trial {best.trial_id}"
        test = (selection or {}).get("test")
        text += (f" (exact McNemar p = {test['p']:.3g}: {test['gained']} validation image(s) "
                 f"gained, {test['lost']} lost)." if test else ".")
        evidence: dict[str, Any] = {
            "before": _scalar(change["before"]), "after": _scalar(change["after"]),
            "trial": best.trial_id, "val_accuracy": best.val_accuracy,
            "val_accuracy_trial0": base_acc, "gain": gain, "trials": n_trials,
            "advised_by": earlier.rule if earlier is not None else None,
            "mcnemar_p": test["p"] if test else None}
        thresholds: dict[str, Any] = {}
        for d in dims:
            if d.kind == "choice":
                thresholds[f"{d.name}.values"] = ",".join(str(v) for v in d.values)
            else:
                thresholds[f"{d.name}.low"], thresholds[f"{d.name}.high"] = d.low, d.high
        if test:
            thresholds["alpha"] = selection["alpha"]
        reasons[path] = Reason(rule="TUNE", text=text, evidence=evidence, thresholds=thresholds)
    return refined.model_copy(update={"reasons": dict(sorted(reasons.items())),
                                      "name": f"{advised.name} (tuned)"})


def summarise(out: Path, recipe: Recipe, space: SearchSpace, records: list[TrialRecord], *,
              role_name: str, stopped: str, seconds: float, algorithm: str) -> TuneResult:
    """Pick the best trial, build the refined recipe and its provenance."""
    done = [t for t in records if t.status == "COMPLETED" and t.val_accuracy is not None]
    baselines = [t for t in done if not t.changed]
    baseline = (max(baselines, key=lambda t: float(t.values.get("tuner/epochs", 0)))
                if baselines else None)
    if not done:
        return TuneResult(out, role_name, recipe, space, records, None, None, None, None, [],
                          stopped, seconds, algorithm)
    # the best validation accuracy; a tie with trial 0 keeps the recipe (the prior: a tie is no
    # evidence of a gain), other ties go to the lower validation loss
    best = max(done, key=lambda t: (t.val_accuracy, not t.changed, -(t.val_loss if t.val_loss
                                                                     is not None else 1e9)))
    selection: dict[str, Any] = {"candidate": best.trial_id}
    if best.changed and baseline is not None:  # ... and it must beat trial 0 by more than chance
        search = out / PROJECT
        selection |= decide_selection(val_correct(search / f"trial_{baseline.trial_id}"),
                                      val_correct(search / f"trial_{best.trial_id}"))
        if not selection["replace"]:
            best = baseline
    values = {k: v for k, v in best.values.items() if not k.startswith("tuner/")}
    refined = apply(recipe, values, space)
    changes = recipe_changes(recipe, refined)
    refined = with_provenance(recipe, refined, changes, best=best, baseline=baseline,
                              n_trials=len(records), space=space, selection=selection)
    gain = (None if baseline is None or best.val_accuracy is None
            else best.val_accuracy - (baseline.val_accuracy or 0.0))
    return TuneResult(out, role_name, recipe, space, records, refined,
                      baseline.trial_id if baseline else None, best.trial_id, gain, changes,
                      stopped, seconds, algorithm, selection)


def markdown(result: TuneResult) -> str:
    """The tuning report: space, trial table, changes, gain."""
    lines = ["# Tuning", ""]
    base, best = result.baseline_accuracy, result.best_accuracy
    lines.append(f"{len(result.trials)} trial(s), {result.algorithm} search, "
                 f"{format_duration(result.seconds)}; {result.stopped_because or 'done'}.")
    if base is not None and best is not None:
        lines.append(f"Validation accuracy: trial 0 (the recipe as given) {base:.4f}, best "
                     f"(trial {result.best_trial}) {best:.4f}, gain {result.gain:+.4f}.")
    lines += ["", "## Search space", "", "| hyperparameter | default | range | why |",
              "|---|---|---|---|"]
    for d in result.space:
        lines.append(f"| {d.name} | {_short(d.default)} | {d.describe_range()} | {d.why} |")
    for note in result.space.notes:
        lines.append(f"\n- {note}")
    lines += ["", "## Trials", "", "| trial | tuner | status | val accuracy | val loss | seconds | "
              "changed from the recipe |", "|---|---|---|---|---|---|---|"]
    for t in result.trials:
        acc = "–" if t.val_accuracy is None else f"{t.val_accuracy:.4f}"
        loss = "–" if t.val_loss is None else f"{t.val_loss:.4f}"
        secs = "–" if t.seconds is None else f"{t.seconds:.0f}"
        changed = (", ".join(f"{k}={_short(v)}" for k, v in t.changed.items())
                   or "(none: the recipe)")
        if t.message:
            changed += f" — {t.message}"
        mark = " **best**" if t.trial_id == result.best_trial else ""
        lines.append(f"| {t.trial_id}{mark} | {t.tuner_id or ''} | {t.status.lower()} | {acc} | "
                     f"{loss} | {secs} | {changed} |")
    lines += ["", "## Changes", ""]
    why = result.selection.get("why")
    if not result.changes:
        lines.append(f"None: trial {result.selection['candidate']} had the best validation "
                     f"accuracy, but {why}." if why and not result.selection.get("replace")
                     else "None: no trial beat the recipe as given, which is kept.")
    elif why:
        lines.append(f"Trial {result.best_trial} replaces the recipe: {why}.")
        lines.append("")
    for c in result.changes:
        lines.append(f"- `{c['path']}`: {_short(c['before'])} → {_short(c['after'])}")
    return "\n".join(lines) + "\n"


def _write_results(result: TuneResult, recipe_path: Path | None) -> None:
    out = result.out
    if result.refined is not None:
        save_recipe(result.refined, out / TUNED_NAME)
        if recipe_path is not None and recipe_path.resolve().parent != out.resolve():
            save_recipe(result.refined, recipe_path.with_name(
                recipe_path.name.split(".")[0] + ".tuned" + recipe_path.suffix))
    atomic_write_json(out / "tuning.json", result.to_dict())
    atomic_write_text(out / "tuning.md", markdown(result))


# ----------------------------------------------------------------------------- tune()
def _splits(dataset: Any, recipe: Recipe, out: Path, fresh: bool) -> Any:
    from autotransfer.data.splits import DataSplits, make_splits

    path = out / "splits.json"
    if isinstance(dataset, DataSplits):
        out.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or fresh:
            dataset.save(path)
        return dataset
    if path.is_file() and not fresh:
        return DataSplits.load(path)
    from autotransfer.data.profile import profile_dataset

    splits = make_splits(profile_dataset(dataset), val_fraction=recipe.data.val_fraction,
                         seed=recipe.seed, exclude_leaks=recipe.data.exclude_leaks)
    out.mkdir(parents=True, exist_ok=True)
    splits.save(path)
    return splits


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
    stop_when_futile: bool = False,
    shared_cache: bool = True,
    seed: int | None = None,
    advisor_kwargs: dict[str, Any] | None = None,
    train_kwargs: dict[str, Any] | None = None,
    progress: Progress | None = None,
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
            end of the budget (``auto`` keeps room for the final training, whichever trial wins).
        stop_when_futile: start no trial after trial 0 when trial 0 gets so few validation images
            wrong that no trial could beat it beyond chance (:func:`.selection.futile`; ``auto``
            does this). Local searches only: a distributed one runs its trials.
        shared_cache: run trials in memory, sharing the frozen layers' activations across
            trials (:mod:`.trials`; head-only trials take seconds); ``False`` runs every trial
            through :func:`autotransfer.train.train` (checkpoints: an interrupted trial
            continues from its last epoch; each trial saves its model).
        train_kwargs: extra arguments of :func:`autotransfer.train.train` for every trial.
        progress: called with a short description of each step.

    Raises:
        InvalidParameterError: a bad argument, or ``out`` holds a search that started from another
            recipe (pass ``overwrite=True``).
        TuningError: no trial completed; or the recipe as given fails (its own error is raised).
    """
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
    my_role = role()
    recipe_path = None if recipe is None or isinstance(recipe, Recipe) else Path(recipe)
    if recipe is None:
        from autotransfer.advisor.advise import Advisor

        say("Advising a recipe to start from")
        recipe = Advisor(**(advisor_kwargs or {})).fit(dataset).recipe_
    elif not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    if seed is not None:
        recipe = recipe.model_copy(update={"seed": seed})

    space = search_space(recipe, backbones=backbones, include=include, exclude=exclude)
    fresh = overwrite and my_role != "worker"  # a worker never deletes the shared search
    started_from = out / "recipe.yaml"
    if fresh:
        for name in (PROJECT, TUNED_NAME, "tuning.json", "tuning.md", "splits.json"):
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    if started_from.is_file() and not fresh:
        previous = load_recipe(started_from)
        if previous.to_dict() != recipe.to_dict():
            raise InvalidParameterError(
                f"The search in '{out}' started from a different recipe ({started_from}). "
                "Re-run with the same recipe to continue it, pass --overwrite to start afresh, or "
                "choose another --out.")
    splits = _LazySplits(lambda: _splits(dataset, recipe, out, fresh))
    if my_role != "chief":  # fail fast on the data, before writing; a chief only serves the oracle
        say("Reading the dataset")
        splits()
    out.mkdir(parents=True, exist_ok=True)
    if my_role != "worker" or not started_from.is_file():
        save_recipe(recipe, started_from)

    from autotransfer.tuning.hypermodel import RecipeHyperModel

    hypermodel = RecipeHyperModel(recipe, splits, space=space, shared_cache=shared_cache,
                                  train_kwargs=train_kwargs, progress=say)
    oracle = make_oracle(algorithm, max_trials=trials, seed=recipe.seed,
                         epochs=recipe.total_epochs, n_dimensions=len(space))
    deadline = None if budget is None else started + budget
    oracle.deadline = deadline
    hard = None if budget is None else started + budget * 1.1 + 30
    Tuner = _tuner_class()
    stopped = ""
    # KerasTuner prints to stdout; keep stdout for --json
    with contextlib.redirect_stdout(sys.stderr):
        tuner = Tuner(oracle, hypermodel, directory=str(out), project_name=PROJECT,
                      overwrite=False, hard_deadline=hard, reserve_factor=reserve_factor,
                      stop_when_futile=stop_when_futile and my_role == "local", progress=say)
        if my_role != "worker":  # resumed: the trials' durations are known already
            oracle.keep_for_final(reserve_factor)
            if not stop_when_futile:  # a search resumed without the flag runs on
                oracle.stop_reason = ""
        say(f"Searching: {len(space)} hyperparameter(s), up to {trials} trial(s), budget "
            f"{format_duration(budget)}" + ("" if my_role == "local" else f" ({my_role})"))
        try:
            tuner.search(verbose=0)
        except Tuner.fatal as exc:
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
    result = summarise(out, recipe, space, records, role_name=my_role, stopped=stopped,
                       seconds=seconds, algorithm=algorithm)
    _write_results(result, recipe_path)
    if result.refined is None:
        failures = "; ".join(f"trial {t.trial_id}: {t.message}" for t in records if t.message)
        raise TuningError(f"No trial of the search in '{out}' completed "
                          f"({failures or 'none ran'}). "
                          "See the trial folders under "
                          f"'{out / PROJECT}' and fix the recipe or the data.")
    if result.selection.get("replace") is False:
        say(f"Keeping the recipe as given: trial {result.selection['candidate']} was best, but "
            f"{result.selection['why']}")
    else:
        say(f"Best trial {result.best_trial}: validation accuracy {result.best_accuracy:.4f}"
            + (f" ({result.gain:+.4f} over the recipe as given)" if result.gain is not None
               else ""))
    return result
