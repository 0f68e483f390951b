"""The one phase loop: what ``train()`` and every in-memory tuning trial run.

:class:`PhaseExecutor` executes a recipe's phases on a built classifier, from an
:class:`~autotransfer.train.phases.ExecState` (a fresh one, or a checkpoint's), and returns the
new state with one frozen :class:`~autotransfer.train.phases.PhaseRecord` per phase. For each
phase: AdaBN where the recipe says (before any phase), the groups before ``trainable_from``
frozen (BN policy), the frozen features planned (:func:`.feature_cache.plan_cache`) and obtained
from a :class:`~autotransfer.train.feature_cache.FeatureSource`, then either the exact head solve
(``head.solver: lbfgs``) or epochs: the optimizer with per-group rates compiled into the
objective's model (:mod:`.objective`), every epoch seeded (shuffle, augmentation, dropout) by
:func:`.data.epoch_seed`, early stopping on the validation metric and the best weights restored.

What differs between callers goes through :class:`ExecutionHooks`: the trainer checkpoints,
writes TensorBoard scalars, restores the optimizer and best weights on resume; a trial does none
of that. Out-of-memory halving stays with the trainer (it reruns :meth:`PhaseExecutor.run` from
its last checkpoint with a smaller batch).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from autotransfer.backbones.adabn import adapt_batchnorm
from autotransfer.train.data import TrainingInputs, epoch_seed, finish
from autotransfer.train.feature_cache import (DEFAULT_MAX_BYTES, DEFAULT_VIEWS, CachePlan,
                                              FeatureRequest, FeatureSource, FreshFeatures,
                                              FrozenFeatures, plan_cache)
from autotransfer.train.linear_head import describe, solve_head_phase, solver_views_augmentation
from autotransfer.train.metrics import classification_metrics
from autotransfer.train.model import Classifier, set_trainable, variable_multipliers
from autotransfer.train.objective import PhaseContext, PhaseObjective, Supervised, after_phases
from autotransfer.train.optimizers import make_optimizer
from autotransfer.train.phases import AdaBNRecord, ExecState, FeatureUse, Measure, PhaseRecord
from autotransfer.train.schedules import phase_schedule


def reseed_layers(model: keras.Model, seed: int) -> None:
    """Set the random state of every layer (dropout) from ``seed``.

    A layer's seed generator advances with every call and is not part of the weights, so without
    this a resumed run would draw different dropout masks than the uninterrupted one.
    """
    for i, layer in enumerate(model.layers):
        for value in vars(layer).values():
            if isinstance(value, keras.random.SeedGenerator):
                value.state.assign(np.asarray([seed, i], dtype=value.state.dtype))


def seed_epoch(model: keras.Model, seed: int) -> None:
    """Seed an epoch's host-side randomness and the layers' dropout states from ``seed``.

    Not ``keras.utils.set_random_seed``: its ``tf.random.set_seed`` clears TensorFlow's function
    caches, so every epoch's ``fit`` traced the training and evaluation functions again (15-20 s
    per epoch against 2 s, docs/benchmarks/cost_model.md). Data order and augmentation take
    their seeds explicitly, and the run is seeded once before the model is built.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    reseed_layers(model, seed)


def images_key(records: Sequence[Any]) -> str:
    """A digest of which images, in which order (path and content hash of each)."""
    h = hashlib.sha256()
    for r in records:
        # file names that are not UTF-8 reach Python as surrogate escapes: hash their bytes
        h.update(f"{r.path}\0{r.sha}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()[:24]


def prefix_shareable(recipe: Any, index: int) -> bool:
    """Whether phase ``index``'s frozen prefix still has the weights it started with (no earlier
    phase trained any of its groups), so that its features can come from another run."""
    start = recipe.phases[index].trainable_from
    return all(q.trainable_from >= start for q in recipe.phases[:index])


def prefix_state_key(recipe: Any, inputs: TrainingInputs, adabn: AdaBNRecord | None,
                     batch_size: int) -> str:
    """What an untrained prefix's weights depend on: backbone, weights, input size, pooling,
    crop, precision, seed, and AdaBN (then also which training images and batch size)."""
    b = recipe.backbone
    adapted = None if adabn is None else images_key(inputs.splits.train)
    return json.dumps([b.name, b.weights, b.input_size, recipe.head.pooling, recipe.data.crop,
                       keras.mixed_precision.global_policy().name, recipe.seed, adapted,
                       batch_size], default=str)


def adabn_key(recipe: Any, inputs: TrainingInputs, batch_size: int) -> str:
    """What the pretrained backbone's weights after AdaBN depend on: the prefix key's parts and
    which training images, in batches of which size."""
    b = recipe.backbone
    return json.dumps([b.name, b.weights, b.input_size, recipe.head.pooling, recipe.data.crop,
                       keras.mixed_precision.global_policy().name, recipe.seed,
                       images_key(inputs.splits.train), batch_size, "adabn"], default=str)


@dataclass(frozen=True)
class CacheSettings:
    """Feature caching of epoch-trained phases (the exact head always computes its views)."""

    enabled: bool = True
    views: int = DEFAULT_VIEWS
    max_bytes: int = DEFAULT_MAX_BYTES


class ExecutionHooks:
    """What the executor tells its caller; every method does nothing here (a tuning trial)."""

    def progress(self, text: str) -> None:
        """A short description of the step that starts or ended."""

    def on_adabn(self, state: ExecState) -> None:
        """AdaBN ran (``state.adabn``) before phase ``state.phase``."""

    def on_compiled(self, state: ExecState, record: PhaseRecord, optimizer: Any,
                    steps_per_epoch: int) -> None:
        """The phase's optimizer is built; ``record.epochs_run > 0`` when the phase resumes."""

    def on_epoch_end(self, state: ExecState, logs: dict[str, float], optimizer: Any,
                     best_weights: list[np.ndarray] | None) -> None:
        """One epoch of phase ``state.phase`` ran (its record is ``state.phases[state.phase]``);
        ``best_weights`` are the model's weights when this epoch was the best so far."""

    def on_solved(self, state: ExecState, logs: dict[str, float]) -> None:
        """The exact head of phase ``state.phase`` was fitted (``logs`` as one epoch's)."""

    def best_weights(self, index: int) -> list[np.ndarray] | None:
        """The phase's best weights when this process did not see its best epoch (resume)."""
        return None

    def on_phase_end(self, state: ExecState) -> None:
        """A phase finished; ``state.phase`` is the next one."""


class PhaseExecutor:
    """Runs ``recipe``'s phases on ``clf`` (see the module's docstring)."""

    def __init__(self, recipe: Any, clf: Classifier, inputs: TrainingInputs, *,
                 source: FeatureSource | None = None, objective: PhaseObjective | None = None,
                 hooks: ExecutionHooks | None = None, cache: CacheSettings = CacheSettings(),
                 callbacks: Sequence[Any] = (), verbose: int = 0, strategy: Any = None,
                 measure_adabn: bool = True) -> None:
        self.recipe = recipe
        self.clf = clf
        self.inputs = inputs
        self.source: FeatureSource = source if source is not None else FreshFeatures()
        self.objective: PhaseObjective = objective if objective is not None else Supervised()
        self.hooks = hooks if hooks is not None else ExecutionHooks()
        self.cache = cache
        self.callbacks = list(callbacks)
        self.verbose = verbose
        self.strategy = strategy if strategy is not None else tf.distribute.get_strategy()
        self.measure_adabn = measure_adabn
        #: the frozen features of the last phase run (``None``: it trained on images)
        self.last_features: FrozenFeatures | None = None

    # ---------------------------------------------------------------- phases
    def run(self, state: ExecState) -> ExecState:
        """Every phase from ``state.phase`` on; the final state."""
        ran = state.phase < len(self.recipe.phases)
        while state.phase < len(self.recipe.phases):
            state = self.run_phase(state)
        if ran:
            after_phases(self.objective, self.clf, self.inputs)
        return state

    def run_phase(self, state: ExecState) -> ExecState:
        recipe, p = self.recipe, state.phase
        phase = recipe.phases[p]
        da = recipe.domain_adaptation
        # AdaBN proper (Li et al. 2016) trains with the source's statistics: 'adabn_target' then
        # swaps in the target's after the last phase (train/adaptation/phase_objective.py)
        adapts = da.method in ("adabn", "adabn_target")
        if adapts and da.before_phase == p and state.adabn is None:
            state = self._adabn(state)
        record = state.phases[p] if p < len(state.phases) else PhaseRecord(
            name=phase.name, trainable_from=phase.trainable_from, epochs_planned=phase.epochs,
            monitor=recipe.early_stopping.monitor)
        record = dataclasses.replace(record, trainable_params=set_trainable(
            self.clf, phase.trainable_from))
        state = state.with_record(p, record)
        if recipe.solves_head(phase):
            state = self._solve(state, record)
        else:
            state = self._epochs(state, record)
        state = dataclasses.replace(state, phase=p + 1)
        self.hooks.on_phase_end(state)
        return state

    def _request(self, state: ExecState, views: int, augmentation: Any) -> FeatureRequest:
        p = state.phase
        adabn = state.adabn if state.adabn is not None and state.adabn.before_phase <= p else None
        return FeatureRequest(
            self.clf, self.recipe.phases[p].trainable_from, views, self.inputs, augmentation,
            self.recipe.seed, p, state.batch_size,
            state_key=prefix_state_key(self.recipe, self.inputs, adabn, state.batch_size),
            shareable=prefix_shareable(self.recipe, p), verbose=self.verbose,
            callbacks=tuple(self.callbacks))

    def _features(self, state: ExecState, plan: CachePlan,
                  augmentation: Any) -> tuple[FrozenFeatures, FeatureUse]:
        with self.strategy.scope():
            features = self.source.frozen_features(self._request(state, plan.views, augmentation))
        use = FeatureUse(**plan.to_dict(), build_seconds=features.build_seconds,
                         shared=features.shared, reused_seconds=features.reused_seconds,
                         view_seconds=features.view_seconds, val_seconds=features.val_seconds)
        return features, use

    def _solve(self, state: ExecState, record: PhaseRecord) -> ExecState:
        """A head-only phase with ``head.solver: lbfgs``: the head fitted exactly, on the pooled
        features of ``cache.views`` augmented views (always computed: the solver needs them)."""
        if record.epochs_run > 0:
            return state
        phase, n = self.recipe.phases[state.phase], self.cache.views
        aug = solver_views_augmentation(self.recipe)
        plan = plan_cache(self.clf, phase.trainable_from, n, aug, self.inputs.n_train, views=n,
                          max_bytes=self.cache.max_bytes)
        self.hooks.progress(f"Phase '{phase.name}': computing the frozen features ({plan.reason})")
        features, use = self._features(state, plan, aug)
        fit, logs = solve_head_phase(self.clf.model, features.views[:plan.views], features.val,
                                     self.inputs, self.recipe)
        record = dataclasses.replace(record, features=use, batch_size=state.batch_size).solved(
            fit.record(), logs)
        state = dataclasses.replace(state.with_record(state.phase, record),
                                    global_epoch=state.global_epoch + 1)
        self.last_features = features
        self.hooks.on_solved(state, logs)
        self.hooks.progress(f"Phase '{phase.name}': {describe(fit)}; validation accuracy "
                            f"{logs['val_accuracy']:.4f}")
        return state

    def _epochs(self, state: ExecState, record: PhaseRecord) -> ExecState:
        recipe, p, bs = self.recipe, state.phase, state.batch_size
        phase, es = recipe.phases[p], recipe.early_stopping
        enabled = self.cache.enabled and self.objective.uses_frozen_features(recipe, p)
        plan = plan_cache(self.clf, phase.trainable_from, phase.epochs, recipe.augmentation,
                          self.inputs.n_train, enabled=enabled, views=self.cache.views,
                          max_bytes=self.cache.max_bytes)
        features = None
        if plan.used and not record.finished:
            self.hooks.progress(f"Phase '{phase.name}': caching the frozen part ({plan.reason})")
            features, use = self._features(state, plan, recipe.augmentation)
        else:
            use = FeatureUse(**plan.to_dict())
        record = dataclasses.replace(record, features=use, batch_size=bs)
        state = state.with_record(p, record)
        self.last_features = features
        training = self.objective.training(
            PhaseContext(recipe, p, self.clf, self.inputs, features, bs))
        steps = self.inputs.steps_per_epoch(bs)
        schedule = phase_schedule(phase, steps)
        model = training.model
        with self.strategy.scope():
            optimizer = make_optimizer(
                phase, schedule, variable_multipliers(self.clf, phase.group_lr_multipliers))
            model.compile(optimizer=optimizer, loss=keras.losses.CategoricalCrossentropy(
                label_smoothing=recipe.regularization.label_smoothing), metrics=["accuracy"])
            model.optimizer.build(model.trainable_variables)
        self.hooks.on_compiled(state, record, model.optimizer, steps)
        best: list[np.ndarray] | None = None
        # without tf.data's autotuning thread, whatever the objective built: each fit's
        # iterators are destroyed as it returns, which waited for that thread (train/data.py;
        # the inputs' autotune_thread, on only in tools/bench_fit_tail.py, read every epoch)
        val_data = finish(training.val_data, autotune_thread=self.inputs.autotune_thread)
        while not record.finished:
            e = record.epochs_run
            seed = epoch_seed(recipe.seed, p, e)
            seed_epoch(self.clf.model, seed)
            ds = finish(training.epoch_data(e, seed),
                        autotune_thread=self.inputs.autotune_thread)
            g = state.global_epoch
            started = time.perf_counter()
            history = model.fit(ds, validation_data=val_data, epochs=g + 1,
                                initial_epoch=g, verbose=self.verbose,
                                callbacks=self.callbacks, shuffle=False)
            seconds = time.perf_counter() - started
            logs = {k: float(v[-1]) for k, v in history.history.items()}
            iterations = int(model.optimizer.iterations.numpy())
            logs["lr"] = float(keras.ops.convert_to_numpy(schedule(max(0, iterations - 1))))
            record, improved = record.after_epoch(logs, seconds, patience=es.patience)
            if improved:
                best = self.clf.model.get_weights()
            state = dataclasses.replace(state.with_record(p, record), global_epoch=g + 1)
            if record.stopped_early:
                self.hooks.progress(
                    f"Phase '{phase.name}': early stop after epoch {e + 1} (best {es.monitor} "
                    f"{record.best_value:.4f} at epoch {(record.best_epoch or 0) + 1})")
            self.hooks.on_epoch_end(state, logs, model.optimizer, best if improved else None)
            self.hooks.progress(f"Phase '{phase.name}' epoch {e + 1}/{phase.epochs}: " + ", ".join(
                f"{k} {v:.4f}" for k, v in logs.items() if k != "lr"))
        if es.restore_best_weights:
            best = best if best is not None else self.hooks.best_weights(p)
            if best is not None:
                self.clf.model.set_weights(best)
        return state

    # ---------------------------------------------------------------- AdaBN and evaluation
    def _adabn(self, state: ExecState) -> ExecState:
        """AdaBN before phase ``state.phase``; the adapted backbone comes from the feature source
        when it has it (``adapted_backbone(key)``, optional) and the backbone is still the
        pretrained one, and is offered to it afterwards (``keep_adapted``, optional)."""
        p, bs = state.phase, state.batch_size
        before = self.val_measure(bs) if self.measure_adabn else None
        groups = len(self.clf.groups)
        untouched = all(q.trainable_from >= groups for q in self.recipe.phases[:p])
        key = adabn_key(self.recipe, self.inputs, bs) if untouched else None
        lookup = getattr(self.source, "adapted_backbone", None)
        saved = lookup(key) if key is not None and lookup is not None else None
        if saved is not None:
            self.hooks.progress(f"AdaBN before phase {p}: the BatchNorm statistics an earlier "
                                "run re-estimated on the same images")
            weights, done = saved
            self.clf.backbone.set_weights(weights)
            record = dataclasses.replace(done, before_phase=p, shared=True)
        else:
            self.hooks.progress(f"AdaBN: re-estimating BatchNorm statistics before phase {p}")
            started = time.perf_counter()
            result = adapt_batchnorm(self.clf.model,
                                     self.inputs.eval_set("train", bs).map(lambda x, y: x))
            record = AdaBNRecord(p, result.n_layers, result.n_images, result.mean_abs_shift)
            keep = getattr(self.source, "keep_adapted", None)
            if key is not None and keep is not None:
                keep(key, self.clf.backbone.get_weights(), record, time.perf_counter() - started)
        after = self.val_measure(bs) if self.measure_adabn else None
        state = dataclasses.replace(state, adabn=dataclasses.replace(record, before=before,
                                                                     after=after))
        self.hooks.on_adabn(state)
        return state

    def val_probabilities(self, batch_size: int) -> np.ndarray:
        """The classifier's validation probabilities (from the last phase's frozen features
        when it had them: the same numbers as from the images, without the frozen part)."""
        features, p = self.last_features, len(self.recipe.phases) - 1
        if features is None:
            return self.image_probabilities("val", batch_size)
        suffix = keras.Model(self.clf.boundary(self.recipe.phases[p].trainable_from),
                             self.clf.model.output)
        return np.asarray(suffix.predict(features.val, batch_size=batch_size, verbose=0))

    def image_probabilities(self, split: str, batch_size: int) -> np.ndarray:
        return np.asarray(self.clf.model.predict(
            self.inputs.eval_set(split, batch_size).map(lambda x, y: x), verbose=0))

    def val_measure(self, batch_size: int) -> Measure:
        m = classification_metrics(self.inputs.val_labels,
                                   self.image_probabilities("val", batch_size),
                                   self.inputs.class_names)
        return Measure(m["accuracy"], m["loss"])
