"""The machinery behind :func:`autotransfer.train.run.train` (one object per run)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from autotransfer import __version__
from autotransfer._io import atomic_write_json, atomic_write_text
from autotransfer.data.splits import DataSplits, make_splits
from autotransfer.recipe.schema import Recipe
from autotransfer.train import distribute
from autotransfer.train.adabn import adapt_batchnorm
from autotransfer.train.checkpoint import CheckpointManager
from autotransfer.train.data import TrainingInputs, epoch_seed
from autotransfer.train.feature_cache import (DEFAULT_MAX_BYTES, DEFAULT_VIEWS, FeatureCache,
                                              plan_cache)
from autotransfer.train.linear_head import describe, solve_head_phase, solver_views_augmentation
from autotransfer.train.metrics import classification_metrics
from autotransfer.train.model import (build_classifier, set_trainable, variable_multipliers)
from autotransfer.train.optimizers import make_optimizer
from autotransfer.train.precision import keras_policy, run_policy
from autotransfer.train.schedules import phase_schedule


def _scalar_metadata() -> Any:
    from tensorflow.core.framework import summary_pb2

    return summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"))


_SCALAR_METADATA = _scalar_metadata()


def _splits(dataset: Any, recipe: Recipe, partial: Path, resume: bool) -> DataSplits:
    path = partial / "splits.json"
    if resume and path.is_file():
        return DataSplits.load(path)
    if isinstance(dataset, DataSplits):
        splits = dataset
    else:
        from autotransfer.data.profile import profile_dataset

        splits = make_splits(profile_dataset(dataset), val_fraction=recipe.data.val_fraction,
                             seed=recipe.seed, exclude_leaks=recipe.data.exclude_leaks)
    splits.save(path)
    return splits


def reseed_layers(model: keras.Model, seed: int) -> None:
    """Set the random state of every layer (dropout) from ``seed``.

    A layer's seed generator advances with every call and is not part of the weights, so without
    this a resumed run would draw different dropout masks than the uninterrupted one.
    """
    for i, layer in enumerate(model.layers):
        for value in vars(layer).values():
            if isinstance(value, keras.random.SeedGenerator):
                value.state.assign(np.asarray([seed, i], dtype=value.state.dtype))


def _new_phase_record(recipe: Recipe, index: int) -> dict[str, Any]:
    phase = recipe.phases[index]
    return {"name": phase.name, "trainable_from": phase.trainable_from,
            "epochs_planned": phase.epochs, "epochs_run": 0, "stopped_early": False,
            "monitor": recipe.early_stopping.monitor, "best_value": None, "best_epoch": None,
            "wait": 0, "seconds": 0.0, "epoch_seconds": [], "seconds_per_epoch": 0.0,
            "history": {}, "feature_cache": {}, "trainable_params": {}, "batch_size": None}


class Runner:
    def __init__(self, dataset: Any, recipe: Recipe, out: Path, partial: Path, *, resume: bool,
                 feature_cache: bool, cache_views: int | None, max_cache_bytes: int | None,
                 strategy: Any, callbacks: Sequence[Any], verbose: int, progress: Any) -> None:
        self.recipe = recipe
        self.out = out
        self.partial = partial
        self.resume = resume
        self.use_cache = feature_cache
        self.cache_views = cache_views or DEFAULT_VIEWS
        self.max_cache_bytes = max_cache_bytes or DEFAULT_MAX_BYTES
        self.callbacks = list(callbacks)
        self.verbose = verbose
        self._progress = progress
        self.ckpt = CheckpointManager(partial / "checkpoints")
        self.strategy = strategy if strategy is not None else distribute.select_strategy()
        self.policy = keras_policy(recipe.precision)
        self.splits = _splits(dataset, recipe, partial, resume)
        self.inputs = TrainingInputs(self.splits, recipe.backbone.input_size,
                                     crop=recipe.data.crop,
                                     class_weighting=recipe.data.class_weighting,
                                     cache_dir=partial / "cache")
        saved = self.ckpt.latest_state() if resume else None
        self.state: dict[str, Any] = saved or {
            "phase": 0, "global_epoch": 0, "batch_size": recipe.data.batch_size,
            "phases": [], "adabn": None, "notes": [], "started": time.time(), "seconds": 0.0}
        self._writers: dict[str, Any] = {}

    # ---------------------------------------------------------------- helpers
    def progress(self, text: str) -> None:
        if self._progress is not None:
            self._progress(text)

    def note(self, text: str) -> None:
        self.state["notes"].append(text)
        self.progress(text)

    def _scalar(self, split: str, name: str, value: float, step: int) -> None:
        writer = self._writers.get(split)
        if writer is None:
            writer = tf.summary.create_file_writer(str(self.partial / "logs" / split))
            self._writers[split] = writer
        with writer.as_default():
            # tf.summary.scalar needs the tensorboard package; this writes the same event record
            tf.summary.write(name, tf.constant(value, tf.float32), step=step,
                             metadata=_SCALAR_METADATA)
        writer.flush()

    def _val_metrics(self, batch_size: int) -> dict[str, float]:
        probs = self.clf.model.predict(self.inputs.eval_set("val", batch_size).map(lambda x, y: x),
                                       verbose=0)
        m = classification_metrics(self.inputs.val_labels, probs, self.inputs.class_names)
        return {"accuracy": m["accuracy"], "loss": m["loss"]}

    def _save(self, name: str, optimizer: Any = None, best: list[np.ndarray] | None = None,
              keep_best: bool = False) -> None:
        self.state["seconds"] = self._elapsed()
        self.ckpt.save(name, self.clf.model, self.state, optimizer=optimizer,
                       best_model_weights=best, keep_best=keep_best)

    def _elapsed(self) -> float:
        return self._seconds_before + (time.perf_counter() - self._t0)

    # ---------------------------------------------------------------- main loop
    def run(self) -> dict[str, Any]:
        # the recipe's precision for this run only: the previous policy is restored after it
        with run_policy(self.recipe.precision):
            try:
                return self._run()
            finally:
                for writer in self._writers.values():
                    writer.close()

    def _run(self) -> dict[str, Any]:
        keras.utils.set_random_seed(self.recipe.seed)
        with self.strategy.scope():
            self.clf = build_classifier(self.recipe, self.inputs.n_classes)
        if self.resume and self.ckpt.latest_dir() is not None:
            self.ckpt.restore_model(self.clf.model)
            self.progress(f"Resuming at phase {self.state['phase']}, "
                          f"after {self.state['global_epoch']} epoch(s)")
        self._t0 = time.perf_counter()
        self._seconds_before = float(self.state.get("seconds", 0.0))
        while True:
            try:
                while self.state["phase"] < len(self.recipe.phases):
                    self._run_phase(self.state["phase"])
                break
            except Exception as exc:
                if not distribute.is_out_of_memory(exc) or self.state["batch_size"] <= 1:
                    raise
                self._halve_batch()
        return self._final_metrics()

    def _halve_batch(self) -> None:
        new = max(1, self.state["batch_size"] // 2)
        saved = self.ckpt.latest_state()
        if saved is not None:  # go back to the last complete epoch, with the smaller batch
            self.state = saved
            self.ckpt.restore_model(self.clf.model)
        self.state["batch_size"] = new
        self.note(f"Out of device memory: batch size halved to {new}; restarting from the last "
                  "complete epoch.")

    def _run_phase(self, p: int) -> None:
        recipe, state = self.recipe, self.state
        phase = recipe.phases[p]
        if len(state["phases"]) <= p:
            state["phases"].append(_new_phase_record(recipe, p))
        rec = state["phases"][p]
        bs = int(state["batch_size"])
        da = recipe.domain_adaptation
        if da.method == "adabn" and da.before_phase == p and state["adabn"] is None:
            self._adabn(p, bs)

        rec["trainable_params"] = set_trainable(self.clf, phase.trainable_from)
        if recipe.solves_head(phase):
            self._solve_phase(p, rec, bs)
            return
        plan = plan_cache(self.clf, phase.trainable_from, phase.epochs, recipe.augmentation,
                          self.inputs.n_train, enabled=self.use_cache, views=self.cache_views,
                          max_bytes=self.max_cache_bytes)
        cache = None
        if plan.used and not rec["stopped_early"] and rec["epochs_run"] < phase.epochs:
            self.progress(f"Phase '{phase.name}': caching the frozen part ({plan.reason})")
            with self.strategy.scope():
                cache = FeatureCache(self.clf, phase.trainable_from, plan, self.inputs,
                                     recipe.augmentation, seed=recipe.seed, phase=p,
                                     batch_size=bs, verbose=self.verbose)
            rec["feature_cache"] = plan.to_dict() | {"build_seconds": cache.build_seconds}
        else:
            rec["feature_cache"] = plan.to_dict() | {"build_seconds": 0.0}
        train_model = cache.suffix if cache is not None else self.clf.model
        val_ds = cache.val_set(bs) if cache is not None else self.inputs.eval_set("val", bs)
        steps = self.inputs.steps_per_epoch(bs)
        schedule = phase_schedule(phase, steps)
        with self.strategy.scope():
            optimizer = make_optimizer(
                phase, schedule, variable_multipliers(self.clf, phase.group_lr_multipliers))
            train_model.compile(
                optimizer=optimizer,
                loss=keras.losses.CategoricalCrossentropy(
                    label_smoothing=recipe.regularization.label_smoothing),
                metrics=["accuracy"])
            train_model.optimizer.build(train_model.trainable_variables)
        if rec["epochs_run"] > 0 and self.ckpt.has_optimizer():
            self.ckpt.restore_optimizer(train_model.optimizer)
            train_model.optimizer.iterations.assign(rec["epochs_run"] * steps)
        rec["batch_size"] = bs

        es = recipe.early_stopping
        sign = 1.0 if es.monitor == "val_accuracy" else -1.0
        e = rec["epochs_run"]
        while e < phase.epochs and not rec["stopped_early"]:
            seed = epoch_seed(recipe.seed, p, e)
            keras.utils.set_random_seed(seed)
            reseed_layers(self.clf.model, seed)
            ds = (cache.train_epoch(e, bs, seed) if cache is not None
                  else self.inputs.train_epoch(recipe.augmentation, bs, seed))
            g = state["global_epoch"]
            started = time.perf_counter()
            history = train_model.fit(ds, validation_data=val_ds, epochs=g + 1, initial_epoch=g,
                                      verbose=self.verbose, callbacks=self.callbacks,
                                      shuffle=False)
            seconds = time.perf_counter() - started
            logs = {k: float(v[-1]) for k, v in history.history.items()}
            iterations = int(train_model.optimizer.iterations.numpy())
            logs["lr"] = float(keras.ops.convert_to_numpy(schedule(max(0, iterations - 1))))
            for key, value in logs.items():
                rec["history"].setdefault(key, []).append(value)
                split = "validation" if key.startswith("val_") else "train"
                self._scalar(split, "epoch_" + key.removeprefix("val_"), value, g + 1)
            rec["epochs_run"] = e + 1
            rec["epoch_seconds"].append(seconds)
            rec["seconds"] = float(sum(rec["epoch_seconds"]))
            rec["seconds_per_epoch"] = rec["seconds"] / len(rec["epoch_seconds"])
            state["global_epoch"] = g + 1
            value = logs.get(es.monitor)
            if value is None:  # the schema only allows metrics that fit() logs
                raise RuntimeError(f"early_stopping.monitor '{es.monitor}' not in {list(logs)}")
            improved = rec["best_value"] is None or sign * (value - rec["best_value"]) > 0
            if improved:
                rec["best_value"], rec["best_epoch"], rec["wait"] = value, e, 0
            else:
                rec["wait"] += 1
            if rec["wait"] >= es.patience and e + 1 < phase.epochs:
                rec["stopped_early"] = True
                self.progress(f"Phase '{phase.name}': early stop after epoch {e + 1} "
                              f"(best {es.monitor} {rec['best_value']:.4f} at epoch "
                              f"{rec['best_epoch'] + 1})")
            self._save(f"epoch-{g + 1:04d}", optimizer=train_model.optimizer,
                       best=self.clf.model.get_weights() if improved else None,
                       keep_best=not improved)
            self.progress(f"Phase '{phase.name}' epoch {e + 1}/{phase.epochs}: " + ", ".join(
                f"{k} {v:.4f}" for k, v in logs.items() if k != "lr"))
            e += 1
        if es.restore_best_weights:
            best = self.ckpt.best_weights()
            if best is not None:
                self.clf.model.set_weights(best)
        state["phase"] = p + 1
        self._save(f"phase-{p + 1:02d}-start")

    def _solve_phase(self, p: int, rec: dict[str, Any], bs: int) -> None:
        """A head-only phase with ``head.solver: lbfgs``: the head fitted exactly, on the pooled
        features of ``cache_views`` augmented views (always computed: the solver needs them)."""
        recipe, phase = self.recipe, self.recipe.phases[p]
        if rec["epochs_run"] == 0:
            aug = solver_views_augmentation(recipe)
            plan = plan_cache(self.clf, phase.trainable_from, self.cache_views, aug,
                              self.inputs.n_train, views=self.cache_views,
                              max_bytes=self.max_cache_bytes)
            self.progress(f"Phase '{phase.name}': computing the frozen features ({plan.reason})")
            with self.strategy.scope():
                cache = FeatureCache(self.clf, phase.trainable_from, plan, self.inputs, aug,
                                     seed=recipe.seed, phase=p, batch_size=bs,
                                     verbose=self.verbose)
            rec["feature_cache"] = plan.to_dict() | {"build_seconds": cache.build_seconds}
            rec["batch_size"] = bs
            fit = solve_head_phase(self.clf.model, cache.views, cache.val, self.inputs, recipe,
                                   rec)
            for key, values in rec["history"].items():
                split = "validation" if key.startswith("val_") else "train"
                self._scalar(split, "epoch_" + key.removeprefix("val_"), values[-1],
                             self.state["global_epoch"] + 1)
            self.state["global_epoch"] += 1
            self.progress(f"Phase '{phase.name}': {describe(fit)}; validation accuracy "
                          f"{rec['history']['val_accuracy'][-1]:.4f}")
        self.state["phase"] = p + 1
        self._save(f"phase-{p + 1:02d}-start")

    def _adabn(self, p: int, bs: int) -> None:
        self.progress(f"AdaBN: re-estimating BatchNorm statistics before phase {p}")
        before = self._val_metrics(bs)
        images = self.inputs.eval_set("train", bs).map(lambda x, y: x)
        result = adapt_batchnorm(self.clf.model, images)
        after = self._val_metrics(bs)
        self.state["adabn"] = {"before_phase": p, **result.to_dict(), "before": before,
                               "after": after}
        self._scalar("validation", "adabn_accuracy_gain", after["accuracy"] - before["accuracy"],
                     self.state["global_epoch"])
        self._save(f"phase-{p:02d}-adabn")

    # ---------------------------------------------------------------- results
    def _final_metrics(self) -> dict[str, Any]:
        bs = int(self.state["batch_size"])
        model = self.clf.model
        val_probs = model.predict(self.inputs.eval_set("val", bs).map(lambda x, y: x), verbose=0)
        val = classification_metrics(self.inputs.val_labels, val_probs, self.inputs.class_names)
        self.probabilities = {"val": np.asarray(val_probs)}  # for predictions.csv (finish)
        test = None
        if self.splits.test:
            probs = model.predict(self.inputs.eval_set("test", bs).map(lambda x, y: x), verbose=0)
            test = classification_metrics(self.inputs.test_labels, probs, self.inputs.class_names)
            self.probabilities["test"] = np.asarray(probs)
        recipe = self.recipe
        return {
            "autotransfer_version": __version__,
            "recipe": recipe.name,
            "backbone": recipe.backbone.name,
            "input_size": recipe.backbone.input_size,
            "class_names": self.inputs.class_names,
            "n_train": self.inputs.n_train,
            "n_val": len(self.splits.val),
            "n_test": len(self.splits.test),
            "val": val,
            "test": test,
            "phases": self.state["phases"],
            "adabn": self.state["adabn"],
            "batch_size": self.state["batch_size"],
            "precision": self.policy,
            "device": distribute.describe(self.strategy),
            "notes": self.state["notes"],
            "seconds_total": self._elapsed(),
        }

    def _error_analysis(self, metrics: dict[str, Any], shipped: Any) -> list[str]:
        """``predictions.csv`` (val and test), the gallery of the most confident mistakes and
        their Grad-CAM heat maps (on the full model, also when the head trained on cached
        features); the record goes into ``metrics["error_analysis"]``."""
        from autotransfer.train.analysis import SplitPredictions, analyse_errors
        from autotransfer.train.inference import LoadedModel

        self.progress("Analysing the mistakes (predictions.csv, gallery, Grad-CAM)")
        names = self.inputs.class_names
        loaded = LoadedModel(shipped, names, self.recipe.backbone.input_size,
                             self.recipe.data.crop, self.partial)
        records = {"val": self.splits.val, "test": self.splits.test}
        predictions = [SplitPredictions(split, self.splits.root, [r.path for r in records[split]],
                                        np.asarray(self.inputs.labels(split)), probs, names)
                       for split, probs in self.probabilities.items()]
        # the gallery shows the held-out test split when there is one (never trained on, nor
        # chosen on; auto's final model trains on the validation images), else validation
        gallery = "test" if "test" in self.probabilities else "val"
        result = analyse_errors(self.partial, loaded, predictions,
                                metrics[gallery]["confusion_matrix"], gallery_split=gallery)
        metrics["error_analysis"] = result.to_dict()
        return result.files

    def _plots(self, metrics: dict[str, Any]) -> list[str]:
        """Learning curves where a phase trained by epochs, the regularisation path where a head
        was solved with cross-validated ``C``, and the confusion matrix; returns the files."""
        from autotransfer.train import plots, report

        folder, files = self.partial, []
        if plots.has_epoch_curves(metrics["phases"]):
            report.plot_learning_curves(metrics["phases"], folder / "learning_curves.png")
            files.append("learning_curves.png")
        if plots.plot_regularization_path(metrics["phases"], folder / "regularization_path.png"):
            files.append("regularization_path.png")
        plots.plot_confusion_matrix(metrics["val"]["confusion_matrix"], self.inputs.class_names,
                                    folder / "confusion_matrix.png",
                                    title="validation split")
        return files + ["confusion_matrix.png"]

    def finish(self, metrics: dict[str, Any], *, export_savedmodel: bool,
               export_tflite: bool) -> dict[str, Any]:
        """Write every output into the partial folder; returns the content of ``run.json``."""
        from autotransfer.train import export, report

        folder = self.partial
        model = self.clf.model
        self.progress("Writing the model, metrics, plots and report")
        shipped = export.serving_model(model, crop=self.recipe.data.crop)  # resizes itself
        export.save_keras(shipped, folder / "model.keras")
        atomic_write_text(folder / "labels.txt", "\n".join(self.inputs.class_names) + "\n")
        analysis_files = self._error_analysis(metrics, shipped)  # before metrics.json: it keeps it
        atomic_write_json(folder / "metrics.json", metrics)
        files = ["model.keras", "labels.txt", "recipe.yaml", "splits.json", "metrics.json",
                 *analysis_files, *self._plots(metrics), "report.md", "logs"]
        atomic_write_text(folder / "report.md", report.markdown_report(metrics))
        if export_savedmodel:
            self.progress("Exporting a SavedModel")
            export.export_savedmodel(shipped, folder / "savedmodel",
                                    class_names=self.inputs.class_names)
            files.append("savedmodel")
        if export_tflite:
            self.progress("Converting to TFLite")
            export.export_tflite(shipped, folder / "model.tflite")
            files.append("model.tflite")
        return {"complete": True, "autotransfer_version": __version__, "recipe": self.recipe.name,
                "class_names": self.inputs.class_names,
                "input_size": self.recipe.backbone.input_size, "crop": self.recipe.data.crop,
                "val_accuracy": metrics["val"]["accuracy"],
                "test_accuracy": None if not metrics["test"] else metrics["test"]["accuracy"],
                "files": files, "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "pid": os.getpid()}

