"""Tuning trials in memory: the trainer's phase executor, with the search's shared activations.

:func:`run_trial` executes a recipe with :class:`~autotransfer.train.executor.PhaseExecutor` —
the very loop of :func:`autotransfer.train.train` — with the search's
:class:`~autotransfer.tuning.activations.ActivationStore` as its feature source (which also keeps
the backbone's weights after AdaBN for the next trials). It returns the same typed
:class:`~autotransfer.train.phases.PhaseRecord` per phase as the trainer.

A recipe that adapts to target images (rule DA11) runs with :class:`TrialAdaptation` as its
objective: the recipe's own adaptation (:mod:`autotransfer.train.adaptation`), the target's frozen
features shared by the trials that share the prefix; the trial is then scored by rule DA09's
criterion (:func:`score`: its features and predictions on the source validation split and the
target images, no target label), ``metrics["target_score"]``. When the adaptation swaps in the
target's BN statistics after the phases (``adabn_target``), the trial's validation metrics are
those of the model as it then is, through the whole model — what
:func:`autotransfer.train.train` reports for the model it ships — not of the frozen features
computed before the swap.

What it leaves out: checkpoints and resume (a trial is short; an interrupted one runs again),
TensorBoard logs, plots, the saved model, the out-of-memory batch halving and distribution
strategies. The final model is always trained by :func:`autotransfer.train.train`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from autotransfer._io import atomic_write_json
from autotransfer.recipe.io import save_recipe
from autotransfer.recipe.schema import Recipe
from autotransfer.train.adaptation.phase_objective import TargetAdaptation
from autotransfer.train.executor import (ExecutionHooks, PhaseExecutor, prefix_shareable,
                                         prefix_state_key)
from autotransfer.train.objective import PhaseContext, PhaseTraining
from autotransfer.train.phases import AdaBNRecord, ExecState, PhaseRecord
from autotransfer.train.run import RunMetrics
from autotransfer.tuning.activations import DEFAULT_STORE_BYTES, ActivationStore

__all__ = ["DEFAULT_STORE_BYTES", "ActivationStore", "TrialAdaptation", "TrialResult",
           "outputs", "run_trial", "score", "swapped_statistics"]


@dataclass(frozen=True)
class TrialResult(RunMetrics):
    """A trial's ``metrics.json`` content and its typed phase records."""

    metrics: dict[str, Any] = field(repr=False)
    phases: tuple[PhaseRecord, ...]
    adabn: AdaBNRecord | None = None


class TrialAdaptation(TargetAdaptation):
    """The recipe's adaptation to ``target`` in a trial (rule DA11).

    ``shared`` maps a frozen prefix (its weights' key and boundary) to the target images'
    features through it: trials that share the prefix compute them once (as the
    :class:`~autotransfer.tuning.activations.ActivationStore` does for the source images; its
    ``target_features`` keeps them in its budget, least recently used dropped first). The
    last phase's target features are kept (``last_target``) for the trial's score. The
    trial's deadlines among ``callbacks`` (:class:`~autotransfer.tuning.hypermodel.Deadline`,
    rule PLAN01) are checked while those features are computed, after every batch.
    """

    def __init__(self, recipe: Recipe, target: Any, shared: MutableMapping[str, np.ndarray],
                 callbacks: Sequence[Any] = ()) -> None:
        from autotransfer.tuning.hypermodel import Deadline

        super().__init__(recipe, target)
        self.callbacks = [c for c in callbacks if isinstance(c, Deadline)]
        self.shared = shared
        self.last_target: np.ndarray | None = None
        #: the phase whose frozen features ``last_target`` matches
        self.last_phase: int | None = None

    def training(self, context: PhaseContext) -> PhaseTraining:
        self.last_target, self.last_phase = None, context.index  # a phase on images: none
        return super().training(context)

    def target_features(self, context: PhaseContext, prefix: keras.Model) -> np.ndarray:
        key = None
        if prefix_shareable(context.recipe, context.index):  # no earlier phase trained it
            # a loss method runs no AdaBN (one method per recipe): the prefix is the pretrained one
            key = json.dumps([prefix_state_key(context.recipe, context.inputs, None,
                                               context.batch_size),
                              context.phase.trainable_from])
        x = self.shared.get(key) if key is not None else None
        if x is None:
            x = super().target_features(context, prefix)
            if key is not None:
                self.shared[key] = x
        self.last_target = x
        return x


def swapped_statistics(objective: Any) -> bool:
    """Whether ``objective`` replaced the model's BN statistics after the phases (``adabn_target``:
    the target's): the last phase's frozen features, computed before, are then stale."""
    return (isinstance(objective, TargetAdaptation)
            and objective.record.get("adabn_target") is not None)


def score(executor: PhaseExecutor, objective: TrialAdaptation, criterion: str,
          batch_size: int) -> float:
    """The trained classifier's score under ``criterion`` (higher is better), from its
    penultimate features and predictions on the source validation split and the target images
    (on the last phase's frozen features when it trained on them; through the whole model when
    it did not, or when AdaBN swapped in the target's statistics). No target label is read."""
    from autotransfer.train.adaptation.selection import scores

    return float(scores(outputs(executor, objective, batch_size), (criterion,))[criterion])


def outputs(executor: PhaseExecutor, objective: TrialAdaptation, batch_size: int) -> Any:
    """What :func:`score` scores: the trained classifier's penultimate features and predictions
    on the source validation split and the target images (a ``CandidateOutputs``)."""
    from autotransfer.train.adaptation.model import features_and_predictions
    from autotransfer.train.adaptation.selection import CandidateOutputs
    from autotransfer.train.adaptation.validate import candidate_outputs

    features, inputs, clf = executor.last_features, executor.inputs, executor.clf
    last_phase = len(executor.recipe.phases) - 1
    if (features is not None and objective.last_target is None
            and executor.recipe.solves_head(executor.recipe.phases[last_phase])
            and not swapped_statistics(objective)):  # an exact head: target through its prefix
        context = PhaseContext(executor.recipe, last_phase, clf, inputs, features, batch_size)
        prefix = context.prefix_model()
        assert prefix is not None
        objective.target_features(context, prefix)  # shared with trials on the same prefix
        objective.last_phase = last_phase
    if (features is None or objective.last_target is None
            or objective.last_phase != last_phase or swapped_statistics(objective)):
        return candidate_outputs("trial", clf.model, inputs.eval_set("val", batch_size),
                                 objective.images(), batch_size)
    last = executor.recipe.phases[-1].trainable_from
    pair = features_and_predictions(keras.Model(clf.boundary(last), clf.model.output))
    f_val, p_val = pair.predict(features.val, batch_size=batch_size, verbose=0)
    f_t, p_t = pair.predict(objective.last_target, batch_size=batch_size, verbose=0)
    return CandidateOutputs("trial", np.asarray(p_val),
                            np.asarray(inputs.val_labels, dtype=np.int64),
                            np.asarray(f_val), np.asarray(p_t), np.asarray(f_t))


class _Progress(ExecutionHooks):
    """Progress lines, and the last phase's compiled training optimizer (what the trainer's
    checkpoints write: :func:`checkpoint_seconds`)."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.optimizer: Any = None

    def progress(self, text: str) -> None:
        self.say(text)

    def on_compiled(self, state: ExecState, record: Any, optimizer: Any,
                    steps_per_epoch: int) -> None:
        self.optimizer = optimizer


def run_trial(recipe: Recipe, store: ActivationStore, out: Path, *,
              callbacks: Sequence[Any] = (), progress: Callable[[str], None] | None = None,
              objective: Any = None, criterion: str | None = None) -> TrialResult:
    """Execute ``recipe`` as the trainer would, sharing frozen activations; the trial's result.

    Writes ``out/recipe.yaml`` and ``out/metrics.json`` (no model: the final training saves it).
    The precision policy is the trainer's for ``recipe.precision``
    (:mod:`autotransfer.train.precision`), restored afterwards. ``objective``: a
    :class:`~autotransfer.train.objective.PhaseObjective` (default: supervised); a
    :class:`TrialAdaptation` with ``criterion`` also scores the trial (``metrics["target_score"]``,
    rule DA11).
    """
    from autotransfer.train.precision import run_policy

    with run_policy(recipe.precision):
        return _run_trial(recipe, store, out, callbacks=callbacks, progress=progress,
                          objective=objective, criterion=criterion)


def _run_trial(recipe: Recipe, store: ActivationStore, out: Path, *,
               callbacks: Sequence[Any], progress: Callable[[str], None] | None,
               objective: Any, criterion: str | None) -> TrialResult:
    from autotransfer.train.metrics import classification_metrics
    from autotransfer.train.model import build_classifier

    say = progress or (lambda text: None)
    started = time.perf_counter()
    store.reused_seconds, store.used = 0.0, []
    out.mkdir(parents=True, exist_ok=True)
    save_recipe(recipe, out / "recipe.yaml")
    inputs = store.training_inputs(recipe)
    bs = recipe.data.batch_size
    keras.utils.set_random_seed(recipe.seed)
    clf = build_classifier(recipe, inputs.n_classes)
    hooks = _Progress(say)
    executor = PhaseExecutor(recipe, clf, inputs, source=store, objective=objective,
                             hooks=hooks, callbacks=callbacks, measure_adabn=False)
    state = executor.run(ExecState(batch_size=bs))
    scored = None
    if isinstance(objective, TrialAdaptation) and criterion is not None:
        say(f"Scoring the trial by {criterion} on the target images, without target labels")
        scored = outputs(executor, objective, bs)
    if swapped_statistics(objective):  # the model as it ends, as ``train`` measures and ships it
        val_probs = (executor.image_probabilities("val", bs) if scored is None
                     else scored.source_val_probs)  # the same pass, when the trial is scored
    else:
        val_probs = executor.val_probabilities(bs)
    val = classification_metrics(inputs.val_labels, val_probs, inputs.class_names)
    phases = state.phases
    metrics = {"kind": "in-memory trial (shared frozen activations)", "val": val,
               "precision": keras.mixed_precision.global_policy().name,
               "phases": [p.to_dict() for p in phases], "n_train": inputs.n_train,
               "batch_size": bs,
               "adabn": None if state.adabn is None else state.adabn.to_dict(),
               "store": {"hits": store.hits, "misses": store.misses,
                         "extractions": store.extractions, "bytes": store.bytes(),
                         # what it took or kept: the oracle's reserve asks whether still kept
                         "keys": sorted(set(store.used))},
               "seconds_total": time.perf_counter() - started,
               # the decoded images are reused too, but the trainer streams them, so decoding is
               # part of its epochs, not a cost of its own
               "seconds_reused": store.reused_seconds}
    if isinstance(objective, TargetAdaptation):
        metrics["domain_adaptation"] = objective.record
    if scored is not None:
        from autotransfer.train.adaptation.selection import scores

        metrics["target_score"] = {"criterion": criterion, "rule": "DA11",
                                   "score": float(scores(scored, (criterion,))[criterion])}
    # the final training writes checkpoints (phase ends, epochs as CKPT01 spaces them); a trial
    # writes none: one is timed here, for the final training's cost (tuning/final_cost.py, PLAN01)
    metrics["checkpoint_seconds"] = checkpoint_seconds(clf.model, out / "checkpoint_timing",
                                                       optimizer=hooks.optimizer)
    metrics["seconds_total"] = time.perf_counter() - started
    atomic_write_json(out / "metrics.json", metrics)
    return TrialResult(metrics, phases, state.adabn)


def checkpoint_seconds(model: Any, folder: Path, *, optimizer: Any = None) -> float:
    """Seconds of one checkpoint of ``model`` as the trainer writes it on an improving epoch
    (``train/_runner.py``): its weights, ``optimizer``'s variables (the phase's compiled training
    model's — on cached features the suffix's, not ``model``'s) and a copy of the best weights,
    in ``folder``, removed afterwards."""
    import shutil

    from autotransfer.train.checkpoint import CheckpointManager

    started = time.perf_counter()
    try:
        CheckpointManager(folder).save("epoch", model, {}, optimizer=optimizer,
                                       best_model_weights=model.get_weights())
        return time.perf_counter() - started
    finally:
        shutil.rmtree(folder, ignore_errors=True)
