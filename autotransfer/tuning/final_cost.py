"""What ``auto``'s final training will cost, from a trial's measured seconds (PLAN01, FINAL02,
FINAL04).

A trial (:mod:`.trials`, in memory) and the final training (the trainer) run the same phases, but
not at the same cost: the final training trains on ``growth`` × the images (train + validation),
computes frozen features for all of them (the store's reuse still decodes and augments every
image), writes checkpoints (after each phase, and within one as rule CKPT01 spaces them; a trial
writes none), and evaluates the validation *and* test images through the whole model.
:class:`MeasuredTrial` splits a trial's wall seconds into those parts — each measured in the
trial, none estimated — and :meth:`MeasuredTrial.final_seconds` puts them together for any number
of epochs per phase. The oracle's reserve, the lengthening of a still-improving phase and the
final guard all use it, so the search never spends the final training's time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotransfer.train.checkpoint import CheckpointPolicy
from autotransfer.train.phases import PhaseRecord


@dataclass(frozen=True)
class MeasuredTrial:
    """One completed trial's measured seconds, split as its final training repeats them.

    ``epoch_s``: per phase, the mean wall seconds of one epoch, measured around each one-epoch
    ``fit`` (its per-fit overheads included); ``features_s``: the frozen features it trained on
    (computed or reused); ``fixed_s``: the rest of its wall seconds, counted once (model build,
    AdaBN, its evaluation), the work it reused from earlier trials included; ``checkpoint_s``: one
    checkpoint of its model as the trainer writes it; ``forward_s``: seconds per image of the
    whole frozen prefix (its slowest feature pass per image), what evaluating an image costs;
    ``policy``: when the trainer writes an epoch's checkpoint (rule CKPT01).
    """

    epochs: tuple[int, ...]
    epoch_s: tuple[float, ...]
    features_s: float
    fixed_s: float
    checkpoint_s: float
    forward_s: float
    policy: CheckpointPolicy = field(default_factory=CheckpointPolicy.from_rules)

    @classmethod
    def from_metrics(cls, metrics: Mapping[str, Any], n_val: int) -> MeasuredTrial | None:
        """From a trial's ``metrics.json`` (``None`` without its phases and wall seconds)."""
        try:
            phases = [PhaseRecord.from_dict(p) for p in metrics["phases"]]
            wall = float(metrics["seconds_total"]) + float(metrics.get("seconds_reused") or 0.0)
            n_train = int(metrics.get("n_train") or 0)
            checkpoint = float(metrics.get("checkpoint_seconds") or 0.0)
        except (KeyError, TypeError, ValueError):
            return None
        if not phases:
            return None
        epochs = tuple(max(0, p.epochs_run) for p in phases)
        epoch_s = tuple(p.seconds_per_epoch for p in phases)
        features = sum(p.features.build_seconds + p.features.reused_seconds for p in phases)
        trained = sum(float(sum(p.epoch_seconds)) for p in phases)
        forward = max((
            (p.features.build_seconds + p.features.reused_seconds)
            / max(1, p.features.views * n_train + n_val)
            for p in phases if p.features.used), default=0.0)
        fixed = max(0.0, wall - trained - features - checkpoint)
        return cls(epochs, epoch_s, features, fixed, checkpoint, forward)

    def final_seconds(self, epochs: Sequence[int] | None = None, *, growth: float = 1.0,
                      eval_images: int = 0, features_kept: bool = True) -> dict[str, float]:
        """Seconds of the final training of ``epochs`` per phase (default: as the trial ran),
        by part, and their ``total``: the fixed work once; the frozen features — none on the
        trial's own images while the store keeps them (``features_kept``), else ``growth`` ×
        the trial's: on train + validation the store reuses the trial's batches but its
        pipeline still decodes and augments every skipped image, and a clothing_small_lite
        final training spent 153 s on features its trial had computed in 81 s; each epoch
        ``growth`` × as long, plus the checkpoints the trainer writes (:meth:`checkpoints`); and
        the evaluation of ``eval_images`` (validation + test) at the end."""
        epochs = self.epochs if epochs is None else tuple(epochs)
        parts = {
            "fixed": self.fixed_s,
            "features": (0.0 if features_kept and growth <= 1.0
                         else self.features_s * max(1.0, growth)),
            "epochs": growth * sum(e * s for e, s in zip(epochs, self.epoch_s, strict=False)),
            "checkpoints": self.checkpoint_s * self.checkpoints(epochs, growth),
            "evaluation": self.forward_s * eval_images,
        }
        return parts | {"total": sum(parts.values())}

    def epoch_seconds(self, phase: int, growth: float = 1.0) -> float:
        """One more epoch of phase ``phase`` in the final training, with its share of the
        checkpoints rule CKPT01 spaces out (a whole one when an epoch outlasts the interval)."""
        epoch = growth * self.epoch_s[phase]
        return epoch + self.checkpoint_s * min(1.0, epoch / self.interval())

    def interval(self) -> float:
        """The trainer's seconds between epoch checkpoints (rule CKPT01)."""
        return max(1e-9, self.policy.interval(self.checkpoint_s))

    def checkpoints(self, epochs: Sequence[int], growth: float = 1.0) -> int:
        """How many checkpoints the trainer writes for ``epochs`` per phase: one at each phase's
        end, and within a phase one each time rule CKPT01's interval has passed (at most one
        per epoch, the phase's last epoch excepted: its phase end is written instead)."""
        count = 0
        for e, s in zip(epochs, self.epoch_s, strict=False):
            count += 1 + min(max(0, e - 1), math.floor(growth * e * s / self.interval()))
        return count


def read_measured(run_dir: Path | None, n_val: int, store: Any = None
                  ) -> tuple[MeasuredTrial | None, bool]:
    """A trial's :class:`MeasuredTrial`, from ``run_dir/metrics.json`` (``None`` without a
    folder or a readable record), and whether ``store`` still keeps all the frozen features it
    took (``metrics.json``'s ``store.keys``): ``True`` without a store, ``False`` when the trial
    recorded none. What the oracle's reserve and ``auto``'s final guard both read."""
    metrics: Any = None
    if run_dir is not None:
        try:
            metrics = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):  # no readable record
            metrics = None
    if not isinstance(metrics, Mapping):
        return None, store is None
    if store is None:
        kept = True
    else:
        record = metrics.get("store")
        keys = record.get("keys") if isinstance(record, Mapping) else None
        kept = isinstance(keys, list) and bool(keys) and bool(store.resident(keys))
    return MeasuredTrial.from_metrics(metrics, n_val), kept
