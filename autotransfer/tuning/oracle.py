"""KerasTuner oracles whose first trial is the recipe itself, with a wall-clock budget.

KerasTuner 1.4's oracles start from random points. Here the first time an oracle would draw
random values it returns the hyperparameters' *defaults* instead (the hook is KerasTuner-private:
:mod:`._keras_tuner_private`) — the
advised recipe's own values (see :mod:`.space`) — so trial 0 is exactly the advised recipe and
every later trial is compared with it. Bayesian optimisation then fits its Gaussian process to
trial 0 and the next few random points; Hyperband puts the advised values in its first bracket
(at that bracket's epoch budget).

Both oracles also

* stop creating trials once ``deadline`` (a ``time.time()`` value, set by the tuner for each
  invocation) has passed, or when the time left is below ``reserve`` seconds (``keep_for_final``,
  computed again as each trial ends, in :meth:`~AdvisedFirstMixin.end_trial`, which on a
  distributed chief is where each worker's trial ends:
  what the final training of the costliest trial would take, the frozen features it reuses from
  the search left out while ``feature_store`` still keeps them) plus the median trial's
  duration, as run or with its frozen prefix recomputed (``cold_seconds``), whichever is costlier
  (a trial that would likely eat into the reserve is not started); trial 0 always runs;
* give every later trial a deadline (:meth:`~AdvisedFirstMixin.trial_deadline`, rule PLAN01):
  past it, the trial could not leave the reserve free, or, should it win, its own final
  training would not fit; the tuner fails it there. The reserve is computed again whenever
  ``feature_store`` has evicted something since (:meth:`~AdvisedFirstMixin.follow_store`): a
  running trial that evicts frozen features a completed trial's final training would reuse
  moves its own deadline earlier by what computing them again takes;
* stop creating trials once ``stop_reason`` is set: with ``stop_when_futile``, when trial 0 ends
  leaving no significant gain possible (rule TUNE02, :func:`~autotransfer.tuning.selection.futile`,
  from the per-image results in its folder under ``trials_dir``) — the oracle decides, so a
  distributed search's chief stops too; it is saved with the oracle, so a resumed search stays
  stopped;
* remember which tuner (``KERASTUNER_TUNER_ID``) ran each trial, so the chief of a distributed
  search can say who ran what.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import keras_tuner
from keras_tuner.engine.trial import TrialStatus

from autotransfer.tuning._keras_tuner_private import FirstValuesHook
from autotransfer.tuning.results import trial_dir
from autotransfer.tuning.selection import futile, val_correct

#: rule of the futility stop (recipes/rules.yaml), and how its stop reason starts
FUTILITY, FUTILE_PREFIX = "TUNE02", "stopped after trial 0: "


class AdvisedFirstMixin(FirstValuesHook):
    """Trial 0 takes the defaults; a deadline; the futility stop; who ran which trial."""

    deadline: float | None = None
    reserve: float = 0.0
    #: the final training's time over a trial's, and its images over the search's
    #: (``keep_for_final``'s ``factor`` and ``growth``)
    final_factor: float = 0.0
    final_growth: float = 1.0
    #: ``feature_store``'s eviction count when the reserve was last computed
    evictions_seen: int = 0
    stop_reason: str = ""
    #: stop after trial 0 when it leaves no significant gain possible (rule TUNE02)
    stop_when_futile: bool = False
    #: the search's folder (``out`` of tune()): trial 0's per-image results are read in it
    tuning_dir: Path | None = None
    #: the :class:`~.activations.ActivationStore` the trials shared and the final training reuses:
    #: a trial's frozen features count as reused only while it still keeps them (``None``: the
    #: trials' records are trusted). On a distributed chief it is the chief's own store, which
    #: holds none of the workers' features: the final training runs in the chief's process
    #: (``auto`` after ``tune``) and computes them again, so the reserve counts them computed
    #: again — what will happen, not a margin (workers' stores die with the workers)
    feature_store: Any = None
    #: the search's :class:`~autotransfer.data.splits.DataSplits` (or a callable returning
    #: them): the final training evaluates their validation and test images, with or without a
    #: shared ``feature_store`` (default: the store's)
    splits: Any = None

    def first_values(self) -> dict[str, Any]:
        """The hyperparameters' defaults: the advised recipe."""
        hps = keras_tuner.HyperParameters()
        for hp in self.hyperparameters.space:  # type: ignore[attr-defined]
            hps.merge([hp])
            if hps.is_active(hp):
                hps.values[hp.name] = hp.default
        return hps.values

    def is_first(self, trial: Any) -> bool:
        """Whether ``trial`` ran the defaults (the advised recipe)."""
        values = trial.hyperparameters.values
        return all(values.get(k) == v for k, v in self.first_values().items())

    @keras_tuner.synchronized
    def end_trial(self, trial: Any) -> None:
        """KerasTuner's end of ``trial``, then the reserve grown by it (:meth:`keep_for_final`,
        rule PLAN01) and the futility stop (TUNE02). Every trial ends here in the oracle's own
        process — a local tuner's and, on a distributed chief, each worker's (KerasTuner's
        ``OracleServicer.EndTrial`` calls it; a worker's ``OracleClient`` has no reserve)."""
        super().end_trial(trial)  # type: ignore[misc]
        if self.final_factor and trial.status == TrialStatus.COMPLETED:
            self.keep_for_final(self.final_factor, self.final_growth)
        if (self.stop_when_futile and self.tuning_dir is not None and not self.stop_reason
                and trial.status == TrialStatus.COMPLETED and self.is_first(trial)):
            verdict = futile(val_correct(trial_dir(self.tuning_dir, trial.trial_id)))
            if verdict is not None:
                self.stop_reason = FUTILE_PREFIX + verdict["why"]
                self.save()  # type: ignore[attr-defined]

    def trial_seconds(self, metric: str = "seconds") -> list[float]:
        """``metric`` of each completed trial: ``seconds`` (as run) or ``cold_seconds`` (as run
        plus the AdaBN and frozen activations it reused from earlier trials; ``seconds`` for a
        trial that did not record it)."""
        seconds = []
        for trial in self.trials.values():  # type: ignore[attr-defined]
            if trial.status != TrialStatus.COMPLETED:
                continue
            for name in (metric, "seconds"):
                if trial.metrics.exists(name):
                    seconds.append(float(trial.metrics.get_last_value(name)))
                    break
        return seconds

    def keep_for_final(self, factor: float, growth: float = 1.0) -> None:
        """Reserve at the end of the budget what the final training of the costliest completed
        trial would take, whichever wins (rule PLAN01): ``factor`` / ``growth`` (the margin,
        PLAN01's ``final_factor``) × that trial's final training as measured in its run
        (:class:`~.final_cost.MeasuredTrial`: its fixed work; each epoch, measured around its
        ``fit``, ``growth`` = (train + validation) / train times as long, plus the checkpoints
        the trainer writes (rule CKPT01); its frozen features, none on the trial's own images while
        ``feature_store`` keeps them, on train + validation pass by pass: every image decoded and
        augmented, the forward pass only on the added ones; and evaluating the
        validation and test images of :attr:`splits` through the model). A trial whose run
        records cannot be read counts as before: ``factor`` × its cold duration less the frozen
        features the final training reuses."""
        self.final_factor, self.final_growth = factor, growth
        self.evictions_seen = getattr(self.feature_store, "evictions", 0)
        costs = []
        for trial in self.trials.values():  # type: ignore[attr-defined]
            if trial.status != TrialStatus.COMPLETED:
                continue
            got = {name: float(trial.metrics.get_last_value(name))
                   for name in ("seconds", "cold_seconds", "feature_seconds")
                   if trial.metrics.exists(name)}
            if "seconds" not in got:
                continue
            measured, kept = self._read(trial.trial_id)
            if measured is not None:
                splits = self._splits()
                images = 0 if splits is None else len(splits.val) + len(splits.test)
                final = measured.final_seconds(growth=growth, eval_images=images,
                                               features_kept=kept)
                costs.append(factor / max(growth, 1e-9) * final["total"])
                continue
            cold = got.get("cold_seconds", got["seconds"])
            features = min(cold, max(0.0, got.get("feature_seconds", 0.0)))
            if features and not kept:
                features = 0.0
            added = max(0.0, growth - 1.0) / max(growth, 1.0)
            costs.append(factor * (cold - features + features * added))
        if factor and costs:
            self.reserve = max(costs)

    def measured(self, trial_id: str) -> Any:
        """Trial ``trial_id``'s :class:`~.final_cost.MeasuredTrial`, from its run's
        ``metrics.json`` (``None`` when it cannot be read)."""
        return self._read(trial_id)[0]

    def _splits(self) -> Any:
        splits = self.splits if self.splits is not None else getattr(self.feature_store,
                                                                      "splits", None)
        return splits() if callable(splits) else splits

    def _read(self, trial_id: str) -> tuple[Any, bool]:
        """:func:`~.final_cost.read_measured` for trial ``trial_id``."""
        from autotransfer.tuning.final_cost import read_measured

        run = None if self.tuning_dir is None else trial_dir(self.tuning_dir, trial_id) / "run"
        splits = self._splits()
        return read_measured(run, 0 if splits is None else len(splits.val), self.feature_store)

    def follow_store(self) -> None:
        """Compute the reserve again (:meth:`keep_for_final`, same factor and growth) when
        ``feature_store`` evicted entries since it was last computed: a completed trial's frozen
        features may be gone, and its final training would compute them again. Evictions happen
        while a trial runs, after its deadline was set: :meth:`trial_deadline` follows them."""
        if getattr(self.feature_store, "evictions", 0) != self.evictions_seen:
            self.keep_for_final(self.final_factor, self.final_growth)

    def features_kept(self, trial_id: str) -> bool:
        """Whether ``feature_store`` still keeps all the frozen features trial ``trial_id`` took
        (the keys its run recorded, ``metrics.json``'s ``store.keys``); ``True`` without a store,
        ``False`` when the trial recorded none."""
        return self._read(trial_id)[1]

    def expected_seconds(self) -> float:
        """What the next trial is judged to take: the median completed trial's cold seconds (as
        run plus what it reused, never less than as run) — the next trial may need its frozen
        prefix recomputed (a deeper fine-tuning, another augmentation), which the trials that
        reused it did not pay."""
        cold = self.trial_seconds("cold_seconds")
        return statistics.median(cold) if cold else 0.0

    def trial_deadline(self, started: float | None = None) -> float | None:
        """When a trial after trial 0, started at ``started`` (now by default), must end (rule
        PLAN01): by then the reserve for the trials already completed is still free, and, should
        the trial win, its own final training (``final_factor`` × its duration at most) still fits
        before ``deadline``. ``None`` without a deadline or a final training to keep room for
        (``tune`` alone: the tuner's looser guard applies). The reserve is the current one: asked
        again while the trial runs, the deadline moves earlier when the trial has evicted a
        completed trial's frozen features from ``feature_store`` (:meth:`follow_store`)."""
        if self.deadline is None or not self.final_factor:
            return None
        self.follow_store()
        start = time.time() if started is None else started
        left = max(0.0, self.deadline - start)
        return start + max(0.0, min(left - self.reserve, left / (1.0 + self.final_factor)))

    def out_of_time(self) -> bool:
        if self.deadline is None or not self.trials:  # type: ignore[attr-defined]
            return False  # trial 0 always runs
        self.follow_store()
        left = self.deadline - time.time()
        # a trial starts only when a typical one (the median) still leaves the reserve free: with
        # half the median, a 15-minute eurosat run started a 225 s trial with 390 s left and a
        # 296 s reserve, and the final training overran the budget by 209 s
        return left <= self.reserve + self.expected_seconds()

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        if self.stop_reason or self.out_of_time():  # running trials finish; no new one starts
            return {"status": TrialStatus.STOPPED, "values": None}
        return super().populate_space(trial_id)  # type: ignore[misc]

    @keras_tuner.synchronized
    def create_trial(self, tuner_id: str) -> Any:
        trial = super().create_trial(tuner_id)  # type: ignore[misc]
        if trial.status == TrialStatus.RUNNING:
            self.tuner_of[trial.trial_id] = tuner_id
            self.save()  # type: ignore[attr-defined]
        return trial

    @property
    def tuner_of(self) -> dict[str, str]:
        if not hasattr(self, "_tuner_of"):
            self._tuner_of: dict[str, str] = {}
        return self._tuner_of

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()  # type: ignore[misc]
        state["tuner_of"] = dict(self.tuner_of)
        state["stop_reason"] = self.stop_reason
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)  # type: ignore[misc]
        self.tuner_of.update(state.get("tuner_of", {}))
        self.stop_reason = state.get("stop_reason", "")


class AdvisedBayesianOracle(AdvisedFirstMixin, keras_tuner.oracles.BayesianOptimizationOracle):
    """Bayesian optimisation (Gaussian process, KerasTuner's) starting from the advised recipe."""


class AdvisedHyperbandOracle(AdvisedFirstMixin, keras_tuner.oracles.HyperbandOracle):
    """Hyperband (KerasTuner's) whose first bracket starts with the advised values."""


class AdvisedRandomOracle(AdvisedFirstMixin, keras_tuner.oracles.RandomSearchOracle):
    """Random search around the advised recipe, the advised recipe first."""


ALGORITHMS = {"bayesian": AdvisedBayesianOracle, "hyperband": AdvisedHyperbandOracle,
              "random": AdvisedRandomOracle}


def make_oracle(algorithm: str, *, max_trials: int, seed: int, epochs: int,
                n_dimensions: int, objective_name: str = "val_accuracy") -> Any:
    """The oracle of ``algorithm`` ('bayesian', 'hyperband', 'random'), maximising
    ``objective_name`` (validation accuracy; an adapting search's target score, rule DA11)."""
    objective = keras_tuner.Objective(objective_name, direction="max")
    common = dict(objective=objective, seed=seed + 1, max_consecutive_failed_trials=3,
                  max_retries_per_trial=0)
    if algorithm == "bayesian":
        # a few random points after trial 0, then the Gaussian process (KerasTuner's default of
        # 3 × dimensions would spend a small budget on random search alone)
        initial = max(2, min(n_dimensions, max_trials // 3))
        return AdvisedBayesianOracle(max_trials=max_trials, num_initial_points=initial, **common)
    if algorithm == "hyperband":
        oracle = AdvisedHyperbandOracle(max_epochs=max(2, epochs), factor=3, **common)
        oracle.max_trials = max_trials  # Hyperband sizes its brackets; this caps the trials
        return oracle
    return AdvisedRandomOracle(max_trials=max_trials, **common)
