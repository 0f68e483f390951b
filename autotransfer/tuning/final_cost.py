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


def saved_share() -> float:
    """PLAN01's ``saved_share``: the share of the reused rows' estimated forward pass counted as
    saved. The estimate (:meth:`FeaturePasses.forward_s`) still holds augmentation where the
    validation pass, slowed by the prefix's tracing, is not the lower figure (hymenoptera: 17.9 ms
    per image estimated, 12.3 derived from the final training's passes); at 1.0 the final
    training's features ran 1.37× the estimate there, at 0.5 none of three datasets ran over it
    (docs/benchmarks/cost_model.md)."""
    from autotransfer.advisor.rules import rule_params

    return float(rule_params("PLAN01")["saved_share"])


@dataclass(frozen=True)
class FeaturePasses:
    """One phase's frozen-feature passes as its trial timed them, each on its own
    (:class:`~autotransfer.train.phases.FeatureUse`'s ``view_seconds`` and ``val_seconds``): a
    pass over the training images per augmented view, one over the validation images."""

    view_s: tuple[float, ...]
    val_s: float
    n_train: int
    n_val: int
    batch_size: int

    @classmethod
    def from_record(cls, record: PhaseRecord, n_train: int, n_val: int) -> FeaturePasses | None:
        """From a phase record (``None`` where its passes were not timed one by one)."""
        use = record.features
        if (not use.used or not use.view_seconds or len(use.view_seconds) != use.views
                or not use.val_seconds > 0 or n_train <= 0 or n_val <= 0):
            return None
        return cls(tuple(use.view_seconds), use.val_seconds, n_train, n_val,
                   max(1, int(record.batch_size or 32)))

    def decode_s(self) -> float:
        """Seconds per image the first view's pass took beyond the later ones' (decoding the
        training images, where the trial decoded them there); 0 with one view."""
        if len(self.view_s) < 2:
            return 0.0
        per_view = [s / self.n_train for s in self.view_s]
        return max(0.0, per_view[0] - min(per_view[1:]))

    def forward_s(self) -> float:
        """Seconds per image of the prefix's forward pass alone, as low as the passes allow
        (counted as saved, it must not be overstated): the validation pass per image (decoding
        on its first pass, no augmentation), or a view's if less, less the decoding the first
        view's pass shows (:meth:`decode_s`); 0 with one view, where decoding and the forward
        pass cannot be told apart."""
        if len(self.view_s) < 2:
            return 0.0
        per_view = min(s / self.n_train for s in self.view_s)
        return max(0.0, min(self.val_s / self.n_val, per_view) - self.decode_s())

    def final_seconds(self, growth: float, kept: bool, first: bool = False) -> float:
        """The final training's seconds for these features on ``growth`` × the training images.

        Kept in the store, on the trial's own images: none. Kept, on train + validation: the
        store reuses the validation features and every whole batch of the trial's views (the
        added images come after the trial's), but each view's pipeline still augments all
        ``growth`` × the images: each view's pass × ``growth``, less PLAN01's :func:`saved_share` of the
        forward pass (:meth:`forward_s`) of the reused rows; plus what the validation pass took beyond its
        forward pass (the prefix's tracing, which the final training does in its first view
        since it reuses the validation features; decoding). In the ``first`` phase with
        features, where the trial's first view shows no decoding (under a tenth of the forward
        pass per image: its images were decoded before, by AdaBN), the final training decodes
        all its images in its first view: that excess is counted per image on all of them. Not kept: every pass again, on all the
        images."""
        if not kept:
            return max(1.0, growth) * sum(self.view_s) + self.val_s
        if growth <= 1.0:
            return 0.0
        rows = (self.n_train // self.batch_size) * self.batch_size
        forward = self.forward_s()
        beyond = max(0.0, self.val_s - self.n_val * forward)
        if first and len(self.view_s) > 1 and self.decode_s() < 0.1 * forward:
            beyond *= growth * self.n_train / self.n_val
        saved = saved_share() * len(self.view_s) * rows * forward
        return max(0.0, growth * sum(self.view_s) - saved) + beyond


@dataclass(frozen=True)
class MeasuredTrial:
    """One completed trial's measured seconds, split as its final training repeats them.

    ``epoch_s``: per phase, the mean wall seconds of one epoch, measured around each one-epoch
    ``fit`` (its per-fit overheads included); ``features_s``: the frozen features it trained on
    (computed or reused); ``fixed_s``: the rest of its wall seconds, counted once (model build,
    AdaBN, its evaluation), the work it reused from earlier trials included; ``checkpoint_s``: one
    checkpoint of its model as the trainer writes it; ``forward_s``: seconds per image of the
    whole frozen prefix (its slowest feature pass per image), what evaluating an image costs;
    ``policy``: when the trainer writes an epoch's checkpoint (rule CKPT01); ``passes``: per
    phase that used frozen features, its passes timed one by one (:class:`FeaturePasses`;
    empty for records that did not time them, or where one phase's were not).
    """

    epochs: tuple[int, ...]
    epoch_s: tuple[float, ...]
    features_s: float
    fixed_s: float
    checkpoint_s: float
    forward_s: float
    policy: CheckpointPolicy = field(default_factory=CheckpointPolicy.from_rules)
    passes: tuple[FeaturePasses, ...] = ()

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
        timed = [FeaturePasses.from_record(p, n_train, n_val) for p in phases if p.features.used]
        passes = tuple(t for t in timed if t is not None) if None not in timed else ()
        return cls(epochs, epoch_s, features, fixed, checkpoint, forward, passes=passes)

    def final_seconds(self, epochs: Sequence[int] | None = None, *, growth: float = 1.0,
                      eval_images: int = 0, features_kept: bool = True) -> dict[str, float]:
        """Seconds of the final training of ``epochs`` per phase (default: as the trial ran),
        by part, and their ``total``: the fixed work once; the frozen features — none on the
        trial's own images while the store keeps them (``features_kept``); on train +
        validation, pass by pass (:meth:`FeaturePasses.final_seconds`: decoding and augmenting
        every image, the forward pass only on the added ones), or, where the trial did not time
        its passes one by one, ``growth`` × the trial's feature seconds (the store's pipeline
        still decodes and augments every skipped image); each epoch ``growth`` × as long, plus
        the checkpoints the trainer writes (:meth:`checkpoints`); and the evaluation of
        ``eval_images`` (validation + test) at the end."""
        epochs = self.epochs if epochs is None else tuple(epochs)
        parts = {
            "fixed": self.fixed_s,
            "features": self.features_seconds(growth, features_kept),
            "epochs": growth * sum(e * s for e, s in zip(epochs, self.epoch_s, strict=False)),
            "checkpoints": self.checkpoint_s * self.checkpoints(epochs, growth),
            "evaluation": self.forward_s * eval_images,
        }
        return parts | {"total": sum(parts.values())}

    def features_seconds(self, growth: float = 1.0, kept: bool = True) -> float:
        """The final training's frozen features (see :meth:`final_seconds`)."""
        if kept and growth <= 1.0:
            return 0.0
        if self.passes:
            return sum(p.final_seconds(growth, kept, first=i == 0)
                       for i, p in enumerate(self.passes))
        return self.features_s * max(1.0, growth)

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
