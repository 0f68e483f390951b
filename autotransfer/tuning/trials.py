"""Tuning trials in memory: the trainer's phase executor, with the search's shared activations.

:func:`run_trial` executes a recipe with :class:`~autotransfer.train.executor.PhaseExecutor` —
the very loop of :func:`autotransfer.train.train` — with the search's
:class:`~autotransfer.tuning.activations.ActivationStore` as its feature source (which also keeps
the backbone's weights after AdaBN for the next trials). It returns the same typed
:class:`~autotransfer.train.phases.PhaseRecord` per phase as the trainer.

What it leaves out: checkpoints and resume (a trial is short; an interrupted one runs again),
TensorBoard logs, plots, the saved model, the out-of-memory batch halving and distribution
strategies. The final model is always trained by :func:`autotransfer.train.train`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras

from autotransfer._io import atomic_write_json
from autotransfer.recipe.io import save_recipe
from autotransfer.recipe.schema import Recipe
from autotransfer.train.executor import ExecutionHooks, PhaseExecutor
from autotransfer.train.phases import AdaBNRecord, ExecState, PhaseRecord
from autotransfer.train.run import RunMetrics
from autotransfer.tuning.activations import DEFAULT_STORE_BYTES, ActivationStore

__all__ = ["DEFAULT_STORE_BYTES", "ActivationStore", "TrialResult", "run_trial"]


@dataclass(frozen=True)
class TrialResult(RunMetrics):
    """A trial's ``metrics.json`` content and its typed phase records."""

    metrics: dict[str, Any] = field(repr=False)
    phases: tuple[PhaseRecord, ...]
    adabn: AdaBNRecord | None = None


class _Progress(ExecutionHooks):
    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say

    def progress(self, text: str) -> None:
        self.say(text)


def run_trial(recipe: Recipe, store: ActivationStore, out: Path, *,
              callbacks: Sequence[Any] = (), progress: Callable[[str], None] | None = None,
              objective: Any = None) -> TrialResult:
    """Execute ``recipe`` as the trainer would, sharing frozen activations; the trial's result.

    Writes ``out/recipe.yaml`` and ``out/metrics.json`` (no model: the final training saves it).
    The precision policy is the trainer's for ``recipe.precision``
    (:mod:`autotransfer.train.precision`), restored afterwards. ``objective``: a
    :class:`~autotransfer.train.objective.PhaseObjective` (default: supervised).
    """
    from autotransfer.train.precision import run_policy

    with run_policy(recipe.precision):
        return _run_trial(recipe, store, out, callbacks=callbacks, progress=progress,
                          objective=objective)


def _run_trial(recipe: Recipe, store: ActivationStore, out: Path, *,
               callbacks: Sequence[Any], progress: Callable[[str], None] | None,
               objective: Any) -> TrialResult:
    from autotransfer.train.metrics import classification_metrics
    from autotransfer.train.model import build_classifier

    say = progress or (lambda text: None)
    started = time.perf_counter()
    store.reused_seconds = 0.0
    out.mkdir(parents=True, exist_ok=True)
    save_recipe(recipe, out / "recipe.yaml")
    inputs = store.training_inputs(recipe)
    bs = recipe.data.batch_size
    keras.utils.set_random_seed(recipe.seed)
    clf = build_classifier(recipe, inputs.n_classes)
    executor = PhaseExecutor(recipe, clf, inputs, source=store, objective=objective,
                             hooks=_Progress(say), callbacks=callbacks, measure_adabn=False)
    state = executor.run(ExecState(batch_size=bs))
    val = classification_metrics(inputs.val_labels, executor.val_probabilities(bs),
                                 inputs.class_names)
    phases = state.phases
    metrics = {"kind": "in-memory trial (shared frozen activations)", "val": val,
               "precision": keras.mixed_precision.global_policy().name,
               "phases": [p.to_dict() for p in phases], "n_train": inputs.n_train,
               "batch_size": bs,
               "adabn": None if state.adabn is None else state.adabn.to_dict(),
               "store": {"hits": store.hits, "misses": store.misses,
                         "extractions": store.extractions, "bytes": store.bytes()},
               "seconds_total": time.perf_counter() - started,
               # the decoded images are reused too, but the trainer streams them, so decoding is
               # part of its epochs, not a cost of its own
               "seconds_reused": store.reused_seconds}
    atomic_write_json(out / "metrics.json", metrics)
    return TrialResult(metrics, phases, state.adabn)
