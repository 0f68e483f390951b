"""TensorBoard logs of a run and of a search, with each recipe's values on the HParams dashboard.

``tensorboard --logdir RUN/logs`` (or ``--logdir`` an ``auto`` folder, for the search and the
final model together) shows:

* Scalars: per epoch, Keras' own :class:`keras.callbacks.TensorBoard` (``train/`` and
  ``validation/``: ``epoch_loss``, ``epoch_accuracy``, ``epoch_learning_rate``); a phase solved
  exactly (L-BFGS head) and AdaBN's gain have no ``fit``, so :class:`RunLog` writes theirs with
  ``tf.summary.scalar`` under the same names, at the run's epoch count;
* HParams: one session per run (``RunLog.hparams``: the recipe's values, the final validation
  accuracy and loss as ``val_accuracy`` / ``val_loss``) and one per tuning trial, written as the
  trial ends (:func:`write_trial`: the trial's recipe values, its validation accuracy and loss,
  seconds, and an adapting search's score), with ``tensorboard.plugins.hparams.api``.

The ``tensorboard`` package is a dependency (TensorFlow 2.21 no longer installs it).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

#: the folder of a run's (or a search's) logs
LOGS = "logs"
#: the HParams metrics every session records (the tuner's objective first)
METRICS = ("val_accuracy", "val_loss")
#: recipe keys that say nothing about how the model was trained
_SKIP = ("version", "name", "reasons")

HParamValue = bool | int | float | str


def recipe_hparams(recipe: Any) -> dict[str, HParamValue]:
    """The recipe's values as flat ``section.key`` hyper-parameters (phases by name:
    ``phases.head.learning_rate``); lists become text, unset values and the settings of a domain
    adaptation that is off are left out."""
    data = recipe.to_dict() if hasattr(recipe, "to_dict") else dict(recipe)
    flat: dict[str, HParamValue] = {}

    def add(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, inner in value.items():
                add(f"{prefix}.{key}" if prefix else str(key), inner)
        elif value is None:
            return
        elif isinstance(value, (bool, int, float, str)):
            flat[prefix] = value
        else:
            flat[prefix] = (", ".join(str(v) for v in value) if isinstance(value, list)
                            else str(value))

    for key, value in data.items():
        if key in _SKIP:
            continue
        if key == "phases":
            for phase in value:
                add(f"phases.{phase['name']}", {k: v for k, v in phase.items() if k != "name"})
        elif key == "domain_adaptation" and value.get("method", "none") == "none":
            flat["domain_adaptation.method"] = "none"
        else:
            add(key, value)
    return flat


def _summary() -> Any:
    import tensorflow as tf

    return tf.summary


def _write_session(folder: Path, values: Mapping[str, HParamValue], trial_id: str,
                   metrics: Mapping[str, float | None], step: int = 0) -> None:
    """One HParams session in ``folder``: the values, then the metrics as scalars at ``step``."""
    from tensorboard.plugins.hparams import api as hp

    summary = _summary()
    writer = summary.create_file_writer(str(folder))
    try:
        with writer.as_default():
            hp.hparams(dict(values), trial_id=trial_id)
            for name, value in metrics.items():
                if value is not None:
                    summary.scalar(name, float(value), step=step)
        writer.flush()
    finally:
        writer.close()


class RunLog:
    """The TensorBoard logs of one training run, in ``folder`` (``RUN/logs``)."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self._writers: dict[str, Any] = {}
        self._callback: Any = None

    @property
    def callback(self) -> Any:
        """Keras' TensorBoard callback for every ``fit`` of the run (epoch scalars, learning
        rate; no graph, no profiling). One instance: each ``fit`` re-attaches it."""
        if self._callback is None:
            import keras

            self._callback = keras.callbacks.TensorBoard(
                log_dir=str(self.folder), write_graph=False, profile_batch=0, update_freq="epoch")
        return self._callback

    def scalar(self, split: str, name: str, value: float, step: int) -> None:
        """``name`` in ``train/`` or ``validation/`` (the callback's folders) at ``step``."""
        summary = _summary()
        writer = self._writers.get(split)
        if writer is None:
            writer = summary.create_file_writer(str(self.folder / split))
            self._writers[split] = writer
        with writer.as_default():
            summary.scalar(name, float(value), step=step)
        writer.flush()

    def epoch(self, logs: Mapping[str, float], step: int) -> None:
        """An epoch's ``logs`` as the callback writes them (``val_`` in ``validation/``, as
        ``epoch_<name>``): for the steps that do not run ``fit``."""
        for key, value in logs.items():
            split = "validation" if key.startswith("val_") else "train"
            self.scalar(split, "epoch_" + key.removeprefix("val_"), value, step)

    def hparams(self, recipe: Any, metrics: Mapping[str, float | None], *,
                trial_id: str = "run", step: int = 0) -> None:
        """The run's HParams session: the recipe's values and its final ``val_accuracy`` /
        ``val_loss`` (written once, at the end: a resumed run does not record two sessions)."""
        _write_session(self.folder, recipe_hparams(recipe), trial_id,
                       {k: metrics.get(k) for k in METRICS}, step=step)

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


def _trial_session(trial: Any, recipe_of: Callable[[Any], Any] | None
                   ) -> tuple[dict[str, HParamValue], dict[str, float | None]]:
    """A trial's HParams values (its recipe's and the searched ones) and metrics."""
    values: dict[str, HParamValue] = {"trial": str(trial.trial_id), "status": str(trial.status)}
    try:
        recipe = None if recipe_of is None else recipe_of(trial)
    except (ValueError, KeyError, TypeError):  # values the recipe no longer takes
        recipe = None
    if recipe is not None:
        values.update(recipe_hparams(recipe))
    for name, value in (trial.values or {}).items():
        if value is not None:
            values[f"search.{name}"] = (value if isinstance(value, (bool, int, float, str))
                                        else str(value))
    metrics = {"val_accuracy": trial.val_accuracy, "val_loss": trial.val_loss,
               "seconds": getattr(trial, "seconds", None),
               "score": getattr(trial, "score", None)}  # an adapting search's objective (DA11)
    return values, metrics


def write_trial(folder: str | os.PathLike[str], trial: Any,
                recipe_of: Callable[[Any], Any] | None = None) -> Path:
    """One tuning trial's HParams session in ``folder/<trial_id>`` (replacing an earlier one of
    the same trial). The tuner writes it as the trial ends, so a dashboard open during a long
    search shows every trial done so far; written in place, as TensorBoard reads logs that grow
    (a staging folder beside it would show up as a run of its own). ``trial``, ``recipe_of``: as
    :func:`write_trials`."""
    target = Path(folder) / str(trial.trial_id)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    values, metrics = _trial_session(trial, recipe_of)
    _write_session(target, values, str(trial.trial_id), metrics)
    return target


def write_trials(folder: str | os.PathLike[str], trials: Iterable[Any],
                 recipe_of: Callable[[Any], Any] | None = None) -> Path:
    """The search's HParams sessions, one per trial in ``folder/<trial_id>``, when it ends: a
    trial whose session was written as it ended (:func:`write_trial`) keeps it, any other
    (a distributed search's, whose chief runs none) is written now, and a folder that is no
    trial of ``trials`` (an earlier search's) is removed.

    ``trials``: records with ``trial_id``, ``status``, ``values`` (the search's values),
    ``val_accuracy``, ``val_loss`` and ``seconds``
    (:class:`~autotransfer.tuning.results.TrialRecord`);
    ``recipe_of(trial)``: the trial's recipe, whose values (:func:`recipe_hparams`) come with the
    searched ones (``search.<name>``); a trial whose recipe cannot be rebuilt has those only.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ids = set()
    for trial in trials:
        ids.add(str(trial.trial_id))
        if not any((folder / str(trial.trial_id)).glob("*tfevents*")):
            write_trial(folder, trial, recipe_of)
    for stale in folder.iterdir():
        if stale.name in ids:
            continue
        if stale.is_dir():
            shutil.rmtree(stale)
        else:
            stale.unlink()
    return folder
