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
"""

from __future__ import annotations

import gc
import json
import math
import time
from collections.abc import Callable, Sequence
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
    """Fail the trial when the wall clock passes ``deadline`` (``time.time()`` seconds)."""

    def __init__(self, deadline: float) -> None:
        super().__init__()
        self.deadline = deadline

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        if time.time() > self.deadline:
            raise TrialFailed("stopped at the end of the time budget")


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
    """

    def __init__(self, recipe: Recipe, splits: DataSplits | Callable[[], DataSplits], *,
                 space: SearchSpace | None = None,
                 shared_cache: bool = True, train_kwargs: dict[str, Any] | None = None,
                 progress: Progress | None = None, store: Any = None) -> None:
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
        guards = [NaNGuard(), *callbacks]
        from autotransfer.tuning import trials

        result: Any
        if self.shared_cache:
            result = trials.run_trial(recipe, self.store, run_dir, callbacks=guards,
                                      progress=self.progress)
            kind = "in memory"
        else:
            resume = (partial_dir(run_dir) / "recipe.yaml").is_file()
            result = train(self.splits, recipe, run_dir, resume=resume, callbacks=guards,
                           progress=self.progress, **self.train_kwargs)
            kind = "trainer" + (" (resumed)" if resume else "")
        metrics, phases = result.metrics, result.phases
        epochs = total_epochs(phases)
        val = metrics["val"]
        if not math.isfinite(float(val["loss"])):
            raise TrialFailed(f"the validation loss is {val['loss']}")
        seconds = time.perf_counter() - started
        # cold_seconds: what the trial would have taken without the work it reused from earlier
        # trials (AdaBN, frozen activations); a final training on other images redoes it
        objective = {"val_accuracy": float(val["accuracy"]), "val_loss": float(val["loss"]),
                     "val_balanced_accuracy": float(val.get("balanced_accuracy", val["accuracy"])),
                     "seconds": seconds,
                     "cold_seconds": seconds + float(metrics.get("seconds_reused", 0.0)),
                     "epochs": float(epochs)}
        atomic_write_json(done, {"objective": objective, "kind": kind,
                                 "phases": _phase_summary(phases),
                                 "val_correct": val.get("correct")})
        return objective


def _phase_summary(phases: Sequence[PhaseRecord]) -> list[dict[str, Any]]:
    return [{"name": p.name, "epochs_run": p.epochs_run, "best_epoch": p.best_epoch,
             "stopped_early": p.stopped_early} for p in phases]
