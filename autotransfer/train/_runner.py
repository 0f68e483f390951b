"""The machinery behind :func:`autotransfer.train.run.train` (one object per run)."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from autotransfer._io import atomic_write_json, atomic_write_text
from autotransfer._version import __version__
from autotransfer.recipe.schema import Recipe
from autotransfer.train import distribute
from autotransfer.train.checkpoint import CheckpointClock, CheckpointManager, CheckpointPolicy
from autotransfer.train.data import TrainingInputs
from autotransfer.train.executor import CacheSettings, ExecutionHooks, PhaseExecutor
from autotransfer.train.feature_cache import DEFAULT_MAX_BYTES, DEFAULT_VIEWS, FeatureSource
from autotransfer.train.metrics import classification_metrics
from autotransfer.train.model import build_classifier
from autotransfer.train.objective import PhaseObjective
from autotransfer.train.phases import ExecState
from autotransfer.train.precision import keras_policy, run_policy
from autotransfer.train.tensorboard import LOGS, RunLog
from autotransfer.train.splits import load_or_make


class Runner:
    def __init__(self, dataset: Any, recipe: Recipe, out: Path, partial: Path, *, resume: bool,
                 feature_cache: bool, cache_views: int | None, max_cache_bytes: int | None,
                 strategy: Any, callbacks: Sequence[Any], verbose: int, progress: Any,
                 feature_source: FeatureSource | None = None,
                 objective: PhaseObjective | None = None) -> None:
        self.recipe = recipe
        self.out = out
        self.partial = partial
        self.resume = resume
        self.cache = CacheSettings(feature_cache, cache_views or DEFAULT_VIEWS,
                                   max_cache_bytes or DEFAULT_MAX_BYTES)
        self.feature_source = feature_source
        self.objective = objective
        self.callbacks = list(callbacks)
        self.verbose = verbose
        self._progress = progress
        self.ckpt = CheckpointManager(partial / "checkpoints")
        #: when epochs are checkpointed (rule CKPT01) and the seconds spent writing them
        self.ckpt_clock = CheckpointClock(CheckpointPolicy.from_rules())
        self.strategy = strategy if strategy is not None else distribute.select_strategy()
        self.policy = keras_policy(recipe.precision)
        self.splits = load_or_make(dataset, recipe, partial / "splits.json", resume=resume)
        self.inputs = TrainingInputs(self.splits, recipe.backbone.input_size,
                                     crop=recipe.data.crop,
                                     class_weighting=recipe.data.class_weighting,
                                     cache_dir=partial / "cache")
        saved = self.ckpt.latest_state() if resume else None
        self._load(saved or {"batch_size": recipe.data.batch_size, "notes": [],
                             "started": time.time(), "seconds": 0.0})
        self.tb = RunLog(partial / LOGS)  # TensorBoard: Keras' callback, scalars, HParams

    def _load(self, saved: dict[str, Any]) -> None:
        """The executor's state and the run's notes, start and seconds from a checkpoint's."""
        self.state = ExecState.from_dict(saved)
        self.notes: list[str] = list(saved.get("notes") or [])
        self.started = float(saved.get("started") or time.time())
        self.seconds_saved = float(saved.get("seconds") or 0.0)

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint's ``state.json`` holds."""
        return self.state.to_dict() | {"notes": self.notes, "started": self.started,
                                       "seconds": self._elapsed()}

    # ---------------------------------------------------------------- helpers
    def progress(self, text: str) -> None:
        if self._progress is not None:
            self._progress(text)

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.progress(text)

    def _scalar(self, split: str, name: str, value: float, step: int) -> None:
        self.tb.scalar(split, name, value, step)

    def _save(self, name: str, optimizer: Any = None, best: list[np.ndarray] | None = None,
              keep_best: bool = False) -> None:
        self.ckpt_clock.write(lambda: self.ckpt.save(
            name, self.clf.model, self.state_dict(), optimizer=optimizer,
            best_model_weights=best, keep_best=keep_best))

    def _elapsed(self) -> float:
        return self._seconds_before + (time.perf_counter() - self._t0)

    # ---------------------------------------------------------------- main loop
    def run(self) -> dict[str, Any]:
        # the recipe's precision for this run only: the previous policy is restored after it
        with run_policy(self.recipe.precision):
            try:
                return self._run()
            finally:
                self.tb.close()

    def _run(self) -> dict[str, Any]:
        keras.utils.set_random_seed(self.recipe.seed)
        with self.strategy.scope():
            self.clf = build_classifier(self.recipe, self.inputs.n_classes)
        if self.resume and self.ckpt.latest_dir() is not None:
            self.ckpt.restore_model(self.clf.model)
            self.progress(f"Resuming at phase {self.state.phase}, "
                          f"after {self.state.global_epoch} epoch(s)")
        self._t0 = time.perf_counter()
        self._seconds_before = self.seconds_saved
        executor = PhaseExecutor(self.recipe, self.clf, self.inputs, source=self.feature_source,
                                 objective=self.objective, hooks=_TrainerHooks(self),
                                 cache=self.cache, callbacks=[*self.callbacks, self.tb.callback],
                                 verbose=self.verbose, strategy=self.strategy)
        while True:
            try:
                self.state = executor.run(self.state)
                break
            except Exception as exc:
                if not distribute.is_out_of_memory(exc) or self.state.batch_size <= 1:
                    raise
                self._halve_batch()
        return self._final_metrics()

    def _halve_batch(self) -> None:
        new = max(1, self.state.batch_size // 2)
        saved = self.ckpt.latest_state()
        if saved is not None:  # go back to the last complete epoch, with the smaller batch
            notes = self.notes
            self._load(saved)
            self.notes = notes
            self.ckpt.restore_model(self.clf.model)
        self.state = dataclasses.replace(self.state, batch_size=new)
        self.note(f"Out of device memory: batch size halved to {new}; restarting from the last "
                  "complete epoch.")

    # ---------------------------------------------------------------- results
    def _final_metrics(self) -> dict[str, Any]:
        bs = self.state.batch_size
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
            "phases": [p.to_dict() for p in self.state.phases],
            "adabn": None if self.state.adabn is None else self.state.adabn.to_dict(),
            "batch_size": bs,
            "precision": self.policy,
            "device": distribute.describe(self.strategy),
            "notes": self.notes,
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
        self.tb.hparams(self.recipe, {"val_accuracy": metrics["val"]["accuracy"],
                                      "val_loss": metrics["val"]["loss"]}, trial_id=self.out.name)
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



class _TrainerHooks(ExecutionHooks):
    """The trainer's side of the phase loop: progress, TensorBoard scalars, a checkpoint after
    AdaBN and every phase, and after an epoch when rule CKPT01 says one is due; the optimizer
    and best weights restored on resume.

    A phase's best weights from an epoch whose checkpoint was skipped are kept here until the
    next checkpoint of the phase is written (which then holds them); an interrupted run resumes
    from that checkpoint and runs the skipped epochs again, the best among them too."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self._best: list[np.ndarray] | None = None  # the phase's best, not yet in a checkpoint

    def progress(self, text: str) -> None:
        self.runner.progress(text)

    def _scalars(self, logs: dict[str, float], step: int) -> None:
        for key, value in logs.items():
            split = "validation" if key.startswith("val_") else "train"
            self.runner._scalar(split, "epoch_" + key.removeprefix("val_"), value, step)

    def on_adabn(self, state: ExecState) -> None:
        r, a = self.runner, state.adabn
        r.state = state
        assert a is not None and a.before is not None and a.after is not None
        r._scalar("validation", "adabn_accuracy_gain", a.after.accuracy - a.before.accuracy,
                  state.global_epoch)
        r._save(f"phase-{state.phase:02d}-adabn")

    def on_compiled(self, state: ExecState, record: Any, optimizer: Any,
                    steps_per_epoch: int) -> None:
        ckpt = self.runner.ckpt
        self._best = None  # a phase (re)starts from its last checkpoint: nothing pending
        if record.epochs_run > 0 and ckpt.has_optimizer():
            ckpt.restore_optimizer(optimizer)
            optimizer.iterations.assign(record.epochs_run * steps_per_epoch)

    def on_epoch_end(self, state: ExecState, logs: dict[str, float], optimizer: Any,
                     best_weights: list[np.ndarray] | None) -> None:
        r = self.runner
        r.state = state
        # the epoch's scalars: written by Keras' TensorBoard callback (self.tb.callback)
        if best_weights is not None:
            self._best = best_weights
        if state.phases[state.phase].finished or not r.ckpt_clock.due():
            r.ckpt_clock.skip()  # a finished phase is written by on_phase_end, next
            return
        best, self._best = self._best, None
        r._save(f"epoch-{state.global_epoch:04d}", optimizer=optimizer, best=best,
                keep_best=best is None)

    def on_solved(self, state: ExecState, logs: dict[str, float]) -> None:
        self.runner.state = state
        self._scalars(logs, state.global_epoch - 1)  # the callback's step: the epoch's index

    def best_weights(self, index: int) -> list[np.ndarray] | None:
        return self.runner.ckpt.best_weights()

    def on_phase_end(self, state: ExecState) -> None:
        self.runner.state = state
        self._best = None
        self.runner._save(f"phase-{state.phase:02d}-start")
