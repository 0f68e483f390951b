"""A KerasTuner ``HyperModel`` built from a recipe: ``build(hp)`` gives the trial's recipe,
``fit(hp, recipe)`` trains it with the recipe executor and returns the validation metrics.

* ``build`` declares the search space of :mod:`.space` on ``hp`` (defaults = the recipe's own
  values) and returns :func:`.space.apply` of the trial's values: a validated
  :class:`~autotransfer.recipe.schema.Recipe`, not a Keras model (the trainer builds the model).
* ``fit`` trains the trial's recipe in the trial's own run folder, on splits computed once for
  the whole search (every trial sees the same training and validation images).
* By default trials run in memory (:mod:`.trials`): the trainer's own phase executor
  (:mod:`autotransfer.train.executor`, the same typed phase records), with the activations
  of the frozen layer groups computed once and shared by every trial that freezes the same
  groups of the same backbone with the same augmentation — a trial that only changes what
  trains (rates, decay, dropout, smoothing, epochs) costs its training alone, seconds for
  head-only trials. ``shared_cache=False`` runs every trial through the full trainer instead
  (checkpoints, resume from the last epoch, logs, the saved model).
* A NaN loss or the wall-clock deadline stops a trial with :class:`TrialFailed` (a KerasTuner
  ``FailedTrialError``): the tuner records it and goes on.
* With ``target`` (unlabelled target images) a recipe that adapts to them trains every trial with
  its adaptation and the target, and ``fit`` also returns the trial's score under rule DA09's
  criterion, ``target_<criterion>``, the tuner's objective then (rule DA11, :mod:`.adapting`).
  The target's class folders, if any, are never read.
"""

from __future__ import annotations

import gc
import json
import math
import time
from collections.abc import Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import keras
import keras_tuner

from autotransfer._io import atomic_write_json
from autotransfer.data.splits import DataSplits
from autotransfer.recipe.schema import Recipe
from autotransfer.train.phases import PhaseRecord, total_epochs
from autotransfer.tuning.space import SearchSpace, apply, search_space

Progress = Callable[[str], None]
RESULT_FILE = "trial_result.json"


class TrialFailed(keras_tuner.errors.FailedTrialError):
    """A trial that cannot give a result (NaN loss, deadline, out of memory): skipped."""


class NaNGuard(keras.callbacks.Callback):
    """Fail the trial as soon as the training loss is NaN or infinite."""

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise TrialFailed(f"the training loss became {float(loss)} at batch {batch}")


class Deadline(keras.callbacks.Callback):
    """Fail the trial with ``reason`` when the wall clock passes ``deadline`` (``time.time()``
    seconds): checked after every training batch, when each ``fit`` starts and ends (so no
    scoring on the target starts past it), when a ``predict`` it is given starts and after each
    of its batches (an adapting trial's pass of the target images through the frozen prefix)
    and by :meth:`check`."""

    def __init__(self, deadline: float, reason: str = "stopped at the end of the time budget"
                 ) -> None:
        super().__init__()
        self.deadline = deadline
        self.reason = reason

    def check(self) -> None:
        if time.time() > self.deadline:
            raise TrialFailed(self.reason)

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.check()

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.check()

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self.check()

    def on_predict_begin(self, logs: dict[str, Any] | None = None) -> None:
        self.check()

    def on_predict_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.check()


def trial_failure(exc: Exception) -> TrialFailed:
    """``exc``, raised by a trial's training, as the :class:`TrialFailed` that records it."""
    from autotransfer.train.distribute import is_out_of_memory

    kind = "out of memory" if is_out_of_memory(exc) else type(exc).__name__
    return TrialFailed(f"{kind}: {str(exc)[:500]}")


def release_memory() -> None:
    """Drop Keras' global state and collect garbage between trials."""
    keras.backend.clear_session()
    gc.collect()


class RecipeHyperModel(keras_tuner.HyperModel):
    """The search around ``recipe`` on the fixed ``splits``.

    Args:
        recipe: the recipe to refine (trial 0 trains it unchanged).
        splits: training / validation (/ test) images, the same for every trial (or a function
            that computes them on first use).
        space: the search space (default: :func:`.space.search_space` of ``recipe``).
        shared_cache: run trials in memory with frozen activations shared across trials
            (:mod:`.trials`); ``False``: every trial through :func:`autotransfer.train.train`.
        train_kwargs: extra keyword arguments of :func:`autotransfer.train.train`.
        store: the :class:`~autotransfer.tuning.activations.ActivationStore` the trials share
            (default: a new one on ``splits``); give one to reuse it afterwards, e.g. as the
            final training's ``feature_source``.
        target: the unlabelled target images (a
            :class:`~autotransfer.data.target.TargetSet`) an adapting recipe trains with; its
            trials are scored by ``criterion`` (default: rule DA09's).
    """

    def __init__(self, recipe: Recipe, splits: DataSplits | Callable[[], DataSplits], *,
                 space: SearchSpace | None = None,
                 shared_cache: bool = True, train_kwargs: dict[str, Any] | None = None,
                 progress: Progress | None = None, store: Any = None, target: Any = None,
                 criterion: str | None = None) -> None:
        super().__init__(name="recipe", tunable=True)
        self.recipe = recipe
        self._splits = splits
        self.space = space if space is not None else search_space(recipe)
        self.shared_cache = shared_cache
        self.train_kwargs = dict(train_kwargs or {})
        self.progress = progress
        from autotransfer.tuning.activations import ActivationStore

        #: the frozen activations shared by the trials (and, passed on, the final training)
        self.store = store if store is not None else ActivationStore(splits)
        self.target = target
        if target is not None and criterion is None:
            from autotransfer.tuning.adapting import criterion as rule_criterion

            criterion = rule_criterion()
        #: rule DA11: the criterion that scores adapting trials (``None``: no target)
        self.criterion = criterion
        #: the target images' frozen features, shared by trials with the same prefix (kept with
        #: the store, so that a final training given the store reuses them too)
        self.target_features: MutableMapping[str, Any] = shared_target_features(self.store)

    @property
    def splits(self) -> DataSplits:
        return self._splits if isinstance(self._splits, DataSplits) else self._splits()

    def build(self, hp: Any) -> Recipe:
        values = self.space.register(hp)
        extra = {k: v for k, v in hp.values.items() if k.startswith("tuner/")}
        return apply(self.recipe, {**values, **extra}, self.space)

    def fit(self, hp: Any, model: Recipe, *args: Any, trial_dir: str | Path | None = None,
            callbacks: Sequence[Any] = (), **kwargs: Any) -> dict[str, float]:
        """Train the trial's recipe ``model`` in ``trial_dir/run``; the validation metrics."""
        from autotransfer.train.run import partial_dir, train

        if trial_dir is None:
            raise ValueError("RecipeHyperModel.fit needs the trial's folder (trial_dir=...)")
        recipe = model
        trial_dir = Path(trial_dir)
        run_dir = trial_dir / "run"
        started = time.perf_counter()
        done = trial_dir / RESULT_FILE
        if done.is_file():  # finished before an interruption, not yet reported
            return json.loads(done.read_text(encoding="utf-8"))["objective"]
        result: Any
        adapting = self.target is not None and recipe.domain_adaptation.needs_target
        score = None
        if self.shared_cache:
            result, score = self.in_memory(recipe, run_dir, callbacks, adapting=adapting)
            kind = "in memory"
        else:
            guards = [NaNGuard(), *callbacks]
            resume = (partial_dir(run_dir) / "recipe.yaml").is_file()
            extra = {"target": self.target} if adapting else {}
            result = train(self.splits, recipe, run_dir, resume=resume, callbacks=guards,
                           progress=self.progress, **extra, **self.train_kwargs)
            if adapting:
                _check_deadlines(guards)  # scoring on the target takes a pass over it
                score = run_score(run_dir, self.target, recipe, str(self.criterion))
            kind = "trainer" + (" (resumed)" if resume else "")
        objective = self.objective(result, score, time.perf_counter() - started)
        val = result.metrics["val"]
        atomic_write_json(done, {"objective": objective, "kind": kind,
                                 "phases": _phase_summary(result.phases),
                                 "val_correct": val.get("correct")})
        return objective

    def in_memory(self, recipe: Recipe, run_dir: Path, callbacks: Sequence[Any] = (), *,
                  adapting: bool) -> tuple[Any, float | None]:
        """Run ``recipe`` as an in-memory trial (:func:`.trials.run_trial`, on the shared
        store) behind the NaN guard, adapting to the target when ``adapting``; its
        :class:`~.trials.TrialResult` and its target score (``None`` when not adapting)."""
        from autotransfer.tuning import trials

        guards = [NaNGuard(), *callbacks]
        adaptation = (trials.TrialAdaptation(recipe, self.target, self.target_features,
                                             callbacks=guards) if adapting else None)
        result = trials.run_trial(recipe, self.store, run_dir, callbacks=guards,
                                  progress=self.progress, objective=adaptation,
                                  criterion=self.criterion)
        score = result.metrics["target_score"]["score"] if adapting else None
        return result, score

    def objective(self, result: Any, score: float | None, seconds: float) -> dict[str, float]:
        """A trial's objective values from its result (``score``: its target score, rule
        DA11); :class:`TrialFailed` when the validation loss or the score is not finite."""
        metrics, phases = result.metrics, result.phases
        epochs = total_epochs(phases)
        val = metrics["val"]
        if not math.isfinite(float(val["loss"])):
            raise TrialFailed(f"the validation loss is {val['loss']}")
        # cold_seconds: what the trial would have taken without the work it reused from earlier
        # trials (AdaBN, frozen activations); a final training on other images redoes it
        objective = {"val_accuracy": float(val["accuracy"]), "val_loss": float(val["loss"]),
                     "val_balanced_accuracy": float(val.get("balanced_accuracy", val["accuracy"])),
                     "seconds": seconds,
                     "cold_seconds": seconds + float(metrics.get("seconds_reused", 0.0)),
                     # of which frozen features (computed or reused): the final training of
                     # auto reuses them from the same store (oracle.keep_for_final)
                     "feature_seconds": feature_seconds(phases) if self.shared_cache else 0.0,
                     "epochs": float(epochs)}
        if score is not None:  # rule DA11: the tuner's objective for an adapting search
            from autotransfer.tuning.adapting import metric

            if not math.isfinite(score):
                raise TrialFailed(f"the {self.criterion} score on the target is {score}")
            objective[metric(str(self.criterion))] = float(score)
        return objective


def shared_target_features(store: Any) -> MutableMapping[str, Any]:
    """The target images' frozen features kept with ``store`` (by prefix; see
    :class:`~autotransfer.tuning.trials.TrialAdaptation`; an
    :class:`~autotransfer.tuning.activations.ActivationStore` keeps them in its budget), a new
    empty mapping the first time for any other store."""
    shared = getattr(store, "target_features", None)
    if shared is None:
        shared = {}
        store.target_features = shared
    return shared


def _check_deadlines(callbacks: Sequence[Any]) -> None:
    """Fail the trial now if it ran past a :class:`Deadline` among ``callbacks``."""
    for callback in callbacks:
        if isinstance(callback, Deadline):
            callback.check()


def run_score(run_dir: Path, target: Any, recipe: Recipe, criterion: str) -> float:
    """The score under ``criterion`` of the model a trainer run saved in ``run_dir`` (its source
    validation split and the target images; no target label)."""
    from autotransfer.data.splits import DataSplits
    from autotransfer.train.adaptation.selection import scores
    from autotransfer.train.adaptation.target_images import target_images
    from autotransfer.train.adaptation.validate import candidate_outputs
    from autotransfer.train.data import TrainingInputs
    from autotransfer.train.inference import load_run_model

    splits = DataSplits.load(run_dir / "splits.json")
    inputs = TrainingInputs(splits, recipe.backbone.input_size, crop=recipe.data.crop)
    images = target_images(target, recipe.backbone.input_size, crop=recipe.data.crop)
    outputs = candidate_outputs("trial", load_run_model(run_dir).model,
                                inputs.eval_set("val", 32), images)
    return float(scores(outputs, (criterion,))[criterion])


def feature_seconds(phases: Sequence[PhaseRecord]) -> float:
    """Seconds of the frozen features the phases trained on, computed or reused."""
    return float(sum(p.features.build_seconds + p.features.reused_seconds for p in phases))


def _phase_summary(phases: Sequence[PhaseRecord]) -> list[dict[str, Any]]:
    return [{"name": p.name, "epochs_run": p.epochs_run, "best_epoch": p.best_epoch,
             "stopped_early": p.stopped_early} for p in phases]
