"""Tuning trials in memory, with the frozen part of the network computed once for all trials.

A trial of the recipe executor (:func:`autotransfer.train.train`) spends most of its time
computing the activations of the frozen layer groups (its feature cache: the pooled features for
the head phase, the output of group ``k - 1`` for a phase that trains from group ``k``), not
training. Trials of one search mostly differ in what trains — learning rates, weight decay,
dropout, label smoothing, epochs — so those activations are the same from trial to trial.

:func:`run_trial` executes a recipe with the trainer's own pieces — :func:`build_classifier`,
:func:`set_trainable` (BN policy), :func:`plan_cache`, the augmented views and seeds of its
feature cache (:func:`epoch_seed`), :func:`make_optimizer` with per-group rates,
:func:`phase_schedule`, its early stopping and best-weight restoring, :func:`adapt_batchnorm`,
the exact head fit of ``head.solver: lbfgs`` (:func:`solve_head_phase`) — and keeps in an :class:`ActivationStore` what does not depend on the trial's training:

* the decoded images (per input size, crop and class weighting);
* the backbone's weights after AdaBN (per backbone, weights, input size, seed);
* the frozen-prefix activations of each phase (per backbone, weights, input size, crop, pooling,
  seed, AdaBN, augmentation, phase index and first trainable group) — shared only when no earlier
  phase trained a group of that prefix, so they are exactly what the trial would compute.

What it leaves out: checkpoints and resume (a trial is short; an interrupted one runs again),
TensorBoard logs, plots, the saved model, the out-of-memory batch halving and distribution
strategies. The final model is always trained by :func:`autotransfer.train.train`.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from autotransfer._io import atomic_write_json
from autotransfer.data.splits import DataSplits
from autotransfer.recipe.io import save_recipe
from autotransfer.recipe.schema import Recipe

#: total size of the activations kept across trials (least recently used entries go first)
DEFAULT_STORE_BYTES = 3 * 2**30


def supported(recipe: Recipe) -> bool:
    """Recipes :func:`run_trial` executes (AdaBN only before the first phase)."""
    da = recipe.domain_adaptation
    return da.method == "none" or da.before_phase == 0


def _key(*parts: Any) -> str:
    return json.dumps(parts, sort_keys=True, default=str)


class ActivationStore:
    """Decoded images, adapted backbone weights and frozen-prefix activations, across trials."""

    def __init__(self, splits: DataSplits | Callable[[], DataSplits],
                 max_bytes: int = DEFAULT_STORE_BYTES) -> None:
        self._splits = splits
        self.max_bytes = max_bytes
        self.inputs: dict[str, Any] = {}
        self.backbones: dict[str, list[np.ndarray]] = {}
        self.activations: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.hits = 0
        self.misses = 0
        #: seconds of AdaBN per backbone key, to charge a trial that reuses the adapted weights
        self.backbone_seconds: dict[str, float] = {}
        #: seconds the current trial saved by reusing stored work (reset by :func:`run_trial`)
        self.reused_seconds = 0.0

    @property
    def splits(self) -> DataSplits:
        return self._splits if isinstance(self._splits, DataSplits) else self._splits()

    def training_inputs(self, recipe: Recipe) -> Any:
        from autotransfer.train.data import TrainingInputs

        key = _key(recipe.backbone.input_size, recipe.data.crop, recipe.data.class_weighting)
        if key not in self.inputs:
            self.inputs[key] = TrainingInputs(self.splits, recipe.backbone.input_size,
                                              crop=recipe.data.crop,
                                              class_weighting=recipe.data.class_weighting)
        return self.inputs[key]

    def bytes(self) -> int:
        return sum(int(sum(v.nbytes for v in e["views"]) + e["val"].nbytes)
                   for e in self.activations.values())

    def evict(self, keep: int = 0) -> None:
        while self.activations and self.bytes() + keep > self.max_bytes:
            self.activations.popitem(last=False)


def _backbone_key(recipe: Recipe) -> str:
    b = recipe.backbone
    return _key(b.name, b.weights, b.input_size, recipe.head.pooling, recipe.seed,
                recipe.domain_adaptation.method, recipe.data.crop, recipe.precision)


def reseed_layers(model: keras.Model, seed: int) -> None:
    """The trainer's per-epoch reseeding of every layer's random state (dropout)."""
    for i, layer in enumerate(model.layers):
        for value in vars(layer).values():
            if isinstance(value, keras.random.SeedGenerator):
                value.state.assign(np.asarray([seed, i], dtype=value.state.dtype))


def _classifier(recipe: Recipe, store: ActivationStore, inputs: Any,
                say: Callable[[str], None]) -> Any:
    from autotransfer.train.adabn import adapt_batchnorm
    from autotransfer.train.model import build_classifier

    keras.utils.set_random_seed(recipe.seed)
    key = _backbone_key(recipe)
    saved = store.backbones.get(key)
    clf = build_classifier(recipe, inputs.n_classes, weights=True if saved is None else False)
    if saved is not None:
        clf.backbone.set_weights(saved)
        store.reused_seconds += store.backbone_seconds.get(key, 0.0)
        return clf
    started = time.perf_counter()
    if recipe.domain_adaptation.method == "adabn":
        say("AdaBN: re-estimating BatchNorm statistics (kept for the next trials)")
        bs = recipe.data.batch_size
        adapt_batchnorm(clf.model, inputs.eval_set("train", bs).map(lambda x, y: x))
    store.backbones[key] = clf.backbone.get_weights()
    store.backbone_seconds[key] = time.perf_counter() - started
    return clf


def _prefix_activations(clf: Any, recipe: Recipe, p: int, plan: Any, inputs: Any,
                        store: ActivationStore, shareable: bool,
                        augmentation: Any = None) -> dict[str, Any]:
    from autotransfer.train.augment import is_identity
    from autotransfer.train.data import epoch_seed

    phase = recipe.phases[p]
    aug = recipe.augmentation if augmentation is None else augmentation
    key = _key(_backbone_key(recipe), aug.model_dump(mode="json"), p, phase.trainable_from)
    entry = store.activations.get(key) if shareable else None
    if entry is not None:
        store.hits += 1
        store.activations.move_to_end(key)
        # what this trial would have spent on the views it reuses (the final training will)
        reused = min(plan.views, len(entry["views"]))
        store.reused_seconds += entry["val_seconds"] + sum(entry["view_seconds"][:reused])
    else:
        store.misses += 1
        started = time.perf_counter()
        prefix = keras.Model(clf.model.input, clf.boundary(phase.trainable_from), name="prefix")
        val = prefix.predict(inputs.eval_set("val", recipe.data.batch_size).map(lambda x, y: x),
                             verbose=0)
        entry = {"prefix": prefix, "views": [], "val": np.asarray(val, np.float32),
                 "view_seconds": [],
                 "val_seconds": time.perf_counter() - started}
        if shareable:
            store.evict(keep=int(entry["val"].nbytes * (plan.views + 2)))
            store.activations[key] = entry
    identity = is_identity(aug)
    while len(entry["views"]) < plan.views:
        started = time.perf_counter()
        view = len(entry["views"])
        prefix = entry.get("prefix") or keras.Model(clf.model.input,
                                                    clf.boundary(phase.trainable_from))
        ds = inputs.train_epoch(aug, recipe.data.batch_size,
                                epoch_seed(recipe.seed, p, 10_000 + view), shuffle=False,
                                augment=not identity, mix=False)
        entry["views"].append(np.asarray(prefix.predict(ds.map(lambda x, y, w: x), verbose=0),
                                         np.float32))  # float32 under mixed_bfloat16 too
        entry["view_seconds"].append(time.perf_counter() - started)
    entry.pop("prefix", None)  # the model belongs to this trial's Keras graph
    return entry


def run_trial(recipe: Recipe, store: ActivationStore, out: Path, *,
              callbacks: Sequence[Any] = (), progress: Callable[[str], None] | None = None,
              ) -> dict[str, Any]:
    """Execute ``recipe`` as the trainer would, sharing frozen activations; the trial's metrics.

    Writes ``out/recipe.yaml`` and ``out/metrics.json`` (no model: the final training saves it).
    The precision policy is the trainer's for ``recipe.precision``
    (:mod:`autotransfer.train.precision`), restored afterwards.
    """
    from autotransfer.train.precision import run_policy

    with run_policy(recipe.precision):
        return _run_trial(recipe, store, out, callbacks=callbacks, progress=progress)


def _run_trial(recipe: Recipe, store: ActivationStore, out: Path, *,
               callbacks: Sequence[Any], progress: Callable[[str], None] | None) -> dict[str, Any]:
    from autotransfer.train.data import epoch_seed
    from autotransfer.train.feature_cache import DEFAULT_MAX_BYTES, DEFAULT_VIEWS, plan_cache
    from autotransfer.train.linear_head import (describe, solve_head_phase,
                                                solver_views_augmentation)
    from autotransfer.train.metrics import classification_metrics
    from autotransfer.train.model import set_trainable, variable_multipliers
    from autotransfer.train.optimizers import make_optimizer
    from autotransfer.train.schedules import phase_schedule

    say = progress or (lambda text: None)
    started = time.perf_counter()
    store.reused_seconds = 0.0
    out.mkdir(parents=True, exist_ok=True)
    save_recipe(recipe, out / "recipe.yaml")
    inputs = store.training_inputs(recipe)
    clf = _classifier(recipe, store, inputs, say)
    bs = recipe.data.batch_size
    es = recipe.early_stopping
    sign = 1.0 if es.monitor == "val_accuracy" else -1.0
    records: list[dict[str, Any]] = []
    global_epoch = 0
    last: tuple[Any, Any] = (clf.model, None)
    for p, phase in enumerate(recipe.phases):
        phase_started = time.perf_counter()
        set_trainable(clf, phase.trainable_from)
        solver = recipe.solves_head(phase)
        aug = solver_views_augmentation(recipe) if solver else recipe.augmentation
        plan = plan_cache(clf, phase.trainable_from, DEFAULT_VIEWS if solver else phase.epochs,
                          aug, inputs.n_train, views=DEFAULT_VIEWS, max_bytes=DEFAULT_MAX_BYTES)
        shareable = all(q.trainable_from >= phase.trainable_from for q in recipe.phases[:p])
        if solver:
            cached = _prefix_activations(clf, recipe, p, plan, inputs, store, shareable, aug)
            rec = {"name": phase.name, "trainable_from": phase.trainable_from,
                   "epochs_planned": phase.epochs, "monitor": es.monitor,
                   "feature_cache": plan.to_dict() | {"shared": shareable}}
            fit = solve_head_phase(clf.model, cached["views"][:plan.views], cached["val"], inputs,
                                   recipe, rec)
            say(f"Phase '{phase.name}': {describe(fit)}; validation accuracy "
                f"{rec['history']['val_accuracy'][-1]:.4f}")
            global_epoch += 1
            rec["seconds"] = time.perf_counter() - phase_started
            records.append(rec)
            last = (keras.Model(clf.boundary(phase.trainable_from), clf.model.output), cached)
            continue
        cached = None
        if plan.used:
            cached = _prefix_activations(clf, recipe, p, plan, inputs, store, shareable)
            model = keras.Model(clf.boundary(phase.trainable_from), clf.model.output,
                                name="trainable_suffix")
            onehot = np.eye(inputs.n_classes, dtype=np.float32)
            val_ds = tf.data.Dataset.from_tensor_slices(
                (cached["val"], onehot[inputs.val_labels])).batch(bs)
        else:
            model = clf.model
            val_ds = inputs.eval_set("val", bs)
        schedule = phase_schedule(phase, inputs.steps_per_epoch(bs))
        optimizer = make_optimizer(phase, schedule,
                                   variable_multipliers(clf, phase.group_lr_multipliers))
        model.compile(optimizer=optimizer, loss=keras.losses.CategoricalCrossentropy(
            label_smoothing=recipe.regularization.label_smoothing), metrics=["accuracy"])
        model.optimizer.build(model.trainable_variables)
        rec: dict[str, Any] = {"name": phase.name, "trainable_from": phase.trainable_from,
                               "epochs_planned": phase.epochs, "epochs_run": 0,
                               "stopped_early": False, "monitor": es.monitor, "best_value": None,
                               "best_epoch": None, "history": {},
                               "feature_cache": plan.to_dict() | {"shared": bool(
                                   cached is not None and shareable)}}
        best_weights, wait = None, 0
        rec["epoch_seconds"] = []
        for e in range(phase.epochs):
            epoch_started = time.perf_counter()
            seed = epoch_seed(recipe.seed, p, e)
            keras.utils.set_random_seed(seed)
            reseed_layers(clf.model, seed)
            if cached is not None:
                view = cached["views"][e % len(cached["views"])]
                ds = tf.data.Dataset.from_tensor_slices(
                    (view, np.eye(inputs.n_classes, dtype=np.float32)[inputs.train_labels],
                     inputs.class_weight[inputs.train_labels]))
                ds = ds.shuffle(max(1, inputs.n_train), seed=seed,
                                reshuffle_each_iteration=False).batch(bs)
            else:
                ds = inputs.train_epoch(recipe.augmentation, bs, seed)
            history = model.fit(ds, validation_data=val_ds, epochs=global_epoch + 1,
                                initial_epoch=global_epoch, verbose=0, callbacks=list(callbacks),
                                shuffle=False).history
            global_epoch += 1
            rec["epoch_seconds"].append(time.perf_counter() - epoch_started)
            logs = {k: float(v[-1]) for k, v in history.items()}
            for k, v in logs.items():
                rec["history"].setdefault(k, []).append(v)
            rec["epochs_run"] = e + 1
            value = logs[es.monitor]
            if rec["best_value"] is None or sign * (value - rec["best_value"]) > 0:
                rec["best_value"], rec["best_epoch"], wait = value, e, 0
                best_weights = clf.model.get_weights()
            else:
                wait += 1
            say(f"Phase '{phase.name}' epoch {e + 1}/{phase.epochs}: " + ", ".join(
                f"{k} {v:.4f}" for k, v in logs.items()))
            if wait >= es.patience and e + 1 < phase.epochs:
                rec["stopped_early"] = True
                break
        if es.restore_best_weights and best_weights is not None:
            clf.model.set_weights(best_weights)
        rec["seconds"] = time.perf_counter() - phase_started
        records.append(rec)
        last = (model, cached)
    model, cached = last
    if cached is not None:
        probs = model.predict(cached["val"], batch_size=bs, verbose=0)
    else:
        probs = clf.model.predict(inputs.eval_set("val", bs).map(lambda x, y: x), verbose=0)
    val = classification_metrics(inputs.val_labels, probs, inputs.class_names)
    metrics = {"kind": "in-memory trial (shared frozen activations)", "val": val,
               "precision": keras.mixed_precision.global_policy().name,
               "phases": records, "n_train": inputs.n_train,
               "store": {"hits": store.hits, "misses": store.misses, "bytes": store.bytes()},
               "seconds_total": time.perf_counter() - started,
               # the decoded images are reused too, but the trainer streams them, so decoding is
               # part of its epochs, not a cost of its own
               "seconds_reused": store.reused_seconds}
    atomic_write_json(out / "metrics.json", metrics)
    return metrics
