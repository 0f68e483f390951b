"""The KerasTuner tuner of a search: each trial's recipe trained by the hypermodel.

A :class:`RecipeTuner` is a ``BaseTuner`` (no Keras model here): it builds the trial's recipe,
runs it (:class:`~.hypermodel.RecipeHyperModel`), records a failed trial and goes on, and turns a
failure of the advised recipe itself into :class:`FatalTrial` (every trial would fail the same
way). The chief of a distributed search serves its oracle behind the token check.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras_tuner
from keras_tuner.engine.base_tuner import BaseTuner

from autotransfer.errors import AutoTransferError, DistributedTuningError
from autotransfer.recipe.io import save_recipe
from autotransfer.tuning import distributed
from autotransfer.tuning.hypermodel import Deadline, TrialFailed, release_memory, trial_failure
from autotransfer.tuning.oracle import FUTILE_PREFIX
from autotransfer.tuning.space import fmt

Progress = Callable[[str], None]


class FatalTrial(keras_tuner.errors.FatalError):
    """The advised recipe itself cannot be trained: every trial would fail the same way."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


#: why a trial stopped at the oracle's deadline for it (rule PLAN01), not the budget's end
PAST_OWN_DEADLINE = ("ran past its own deadline (rule PLAN01): should it win, its final training "
                     "would no longer fit in the time budget")


class OwnDeadline(Deadline):
    """A later trial's deadline: the oracle's for it (``trial_deadline`` of its start, rule
    PLAN01) while earlier than ``hard`` (the budget's guard), asked again at every check — the
    trial may evict frozen features a completed trial's final training would reuse, which
    grows the oracle's reserve and so moves the deadline earlier."""

    def __init__(self, oracle: Any, started: float, hard: float) -> None:
        super().__init__(hard)
        self.oracle, self.started = oracle, started
        self.hard, self.budget_reason = hard, self.reason
        self.follow()

    def follow(self) -> None:
        """``deadline`` and ``reason`` as the oracle now sets them."""
        ends = self.oracle.trial_deadline(self.started)
        own = ends is not None and ends < self.hard
        self.deadline = ends if own else self.hard
        self.reason = PAST_OWN_DEADLINE if own else self.budget_reason

    def check(self) -> None:
        self.follow()
        super().check()


class RecipeTuner(BaseTuner):
    """Runs each trial's recipe with the trainer (a BaseTuner: no Keras model here)."""

    fatal = FatalTrial

    def __init__(self, *args: Any, hard_deadline: float | None = None,
                 progress: Progress | None = None,
                 trial_logs: Path | None = None, **kwargs: Any) -> None:
        self.hard_deadline = hard_deadline
        self.trial_logs = trial_logs
        self.progress = progress
        self.ran: list[str] = []
        self._said_stop = False
        super().__init__(*args, **kwargs)
        distributed.authenticate_worker(self)

    def _say(self, text: str) -> None:
        if self.progress is not None:
            self.progress(text)

    def search(self, *args: Any, **kwargs: Any) -> None:
        """KerasTuner's search; the chief serves its oracle behind the token check."""
        if distributed.role() == "chief":
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
                f"{k}={fmt(v)}" for k, v in changed.items())))
        callbacks = []
        if self.hard_deadline is not None and not first:  # and the oracle's (rule PLAN01)
            callbacks.append(OwnDeadline(self.oracle, time.time(), self.hard_deadline)
                             if hasattr(self.oracle, "trial_deadline")  # not a worker's client
                             else Deadline(self.hard_deadline))
        try:
            return self.hypermodel.fit(hp, recipe, trial_dir=trial_dir, callbacks=callbacks)
        except TrialFailed:
            raise
        except AutoTransferError as exc:
            if first:
                raise FatalTrial(exc) from exc
            raise TrialFailed(f"{type(exc).__name__}: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - a failed trial is recorded and skipped
            raise trial_failure(exc) from exc
        finally:
            release_memory()

    def on_trial_end(self, trial: Any) -> None:
        self.ran.append(trial.trial_id)
        super().on_trial_end(trial)  # the oracle ends the trial; it may stop the search (TUNE02)
        oracle = self.oracle
        self._log_hparams(trial)  # the oracle's end_trial grew the reserve (rule PLAN01)
        self._say(f"Trial {trial.trial_id} {str(getattr(trial, 'status', '')).lower()}")
        reason = getattr(oracle, "stop_reason", "")
        if reason.startswith(FUTILE_PREFIX) and not self._said_stop:
            self._said_stop = True
            self._say(f"No further trials: {reason[len(FUTILE_PREFIX):]}")

    def _log_hparams(self, trial: Any) -> None:
        """The ended trial's HParams session in ``trial_logs``, now rather than when the search
        ends (a dashboard open during the search shows it). Not on a worker: its oracle is the
        chief's, which writes the sessions of the trials it did not run when the search ends."""
        if self.trial_logs is None or distributed.role() == "worker":
            return
        ended = self.oracle.trials.get(trial.trial_id)
        if ended is None or str(ended.status) in ("RUNNING", "IDLE"):  # sent for a retry
            return
        from autotransfer.train.tensorboard import write_trial
        from autotransfer.tuning.space import apply
        from autotransfer.tuning.table import trial_record

        model = self.hypermodel
        record = trial_record(ended, model.space, objective=self.oracle.objective.name)
        write_trial(self.trial_logs, record, lambda t: apply(model.recipe, t.values, model.space))

    def save_model(self, trial_id: Any, model: Any, step: int = 0) -> None:
        """Nothing to do: trials run with the trainer save their model in their run folder,
        in-memory trials keep none (the final training saves the model)."""

    def load_model(self, trial: Any) -> Any:
        """The model of a trial run with ``shared_cache=False``."""
        from autotransfer.train.export import load_model

        return load_model(Path(self.get_trial_dir(trial.trial_id)) / "run" / "model.keras")
