"""How long a training epoch will take, from what was timed while probing.

Two measurements feed the estimate:

* the **training step** of the recipe (:mod:`autotransfer.probes.step_time`), timed as the
  trainer runs it — its input size, batch size and deepest trainable group, only the trainable
  suffix where the trainer trains on cached activations — on this machine at its load of the
  moment. It is timed as an epoch runs it: ``fit`` over a few batches fed by the trainer's input
  pipeline (augmenting each batch of images on the uncached path — on one core as long as the
  step itself at 224 px — or slicing, shuffling and batching the cached activations), with a
  validation pass, and split into the training batches (per image, the input included: the
  median of six timed batches, after two untimed ones, since the first batches after tracing
  are not steady), the validation pass (per image) and the rest of ``fit`` (the epoch's fixed
  cost, seconds). An epoch is then ``n_fit`` training batches' worth and ``n_eval`` evaluation
  steps per image (scaled by the number of pixels where the input size differs), plus that fixed
  cost (:data:`EPOCH_OVERHEAD_S` for a step timed before it was measured;
  :func:`step_epoch_seconds`).
  Each rate is measured on the machine that will train, while advising; nothing is fitted to the
  shared datasets (docs/benchmarks/cost_model.md). That is a steady epoch: the trainer
  traces its training and evaluation functions once per phase, in the phase's first epoch, which
  the estimate leaves out as :func:`measured_epoch` leaves it out of the measured epochs (until
  the trainer stopped reseeding TensorFlow before every epoch, every epoch traced them again,
  15-20 s an epoch under load; docs/benchmarks/cost_model.md);
* the **forward pass** of every backbone (the probe's timing). Without a timed step, an epoch is
  one forward pass through the frozen groups and a forward and a backward pass (about twice a
  forward) through the trainable ones, counting layer groups as equal shares of the compute
  (:func:`epoch_seconds`); this erred 1.5× long on an idle machine (activations cached at the
  freeze boundary make real epochs cheaper) and more under load.

Where the step was timed at another depth than the one asked for, the forward-pass model is
*calibrated* by the ratio of the two estimates at the depth that was timed
(:func:`epoch_estimate`): the machine's speed and load, measured once, carry over to every depth.
:func:`compare` sets an estimate against the epochs a run measured (``metrics.json``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

N_GROUPS = 5
#: the recipe's reason that carries rule COST01's estimate and its evidence into every run
ESTIMATE_KEY = "estimate.epoch_seconds"
#: backward pass / forward pass, for the layers that train
BACKWARD_FACTOR = 2.0
#: seconds an epoch costs beyond its steps (fit's set-up, callbacks, the logs), where the
#: probe's timing did not measure it (records from before it did)
EPOCH_OVERHEAD_S = 1.0
#: the share of the training images held out for validation when the dataset has no split for it
#: (the recipe's default ``data.val_fraction``)
VAL_FRACTION = 0.2


def forward_seconds(n_images: float, forward_ms: float, input_size: float,
                    probe_size: float) -> float:
    """Seconds of one forward pass over ``n_images`` at ``input_size``."""
    if not forward_ms > 0 or not probe_size > 0:
        return math.nan
    return n_images * forward_ms / 1000.0 * (input_size / probe_size) ** 2


def epoch_seconds(n_train: float, forward_ms: float, input_size: float, probe_size: float,
                  finetune_from: float) -> float:
    """Seconds of one epoch with the groups from ``finetune_from`` on training, from the
    forward pass alone (the uncalibrated model)."""
    trainable = max(0.0, min(1.0, (N_GROUPS - finetune_from) / N_GROUPS))
    return (forward_seconds(n_train, forward_ms, input_size, probe_size)
            * (1.0 + BACKWARD_FACTOR * trainable))


def fit_and_eval(n_train: float, n_val: float) -> tuple[float, float]:
    """Images one epoch trains on and evaluates: the train and validation splits, or, without a
    validation split (``n_val`` 0), the training images less :data:`VAL_FRACTION` of them."""
    if n_val > 0:
        return float(n_train), float(n_val)
    held = round(VAL_FRACTION * n_train)
    return float(n_train - held), float(held)


def step_epoch_seconds(n_fit: float, n_eval: float, step_ms: float, eval_ms: float,
                       step_size: float, input_size: float,
                       overhead_s: float = math.nan) -> float:
    """Seconds of one steady epoch from the timed training step: per training image a training
    step (timed with the input pipeline that feeds it), per validation image an evaluation
    step, scaled from ``step_size`` to ``input_size`` pixels, and the epoch's fixed cost
    ``overhead_s`` as timed with them (:data:`EPOCH_OVERHEAD_S` where it was not: NaN, older
    records); NaN when the step was not timed."""
    if not step_ms > 0 or not step_size > 0:
        return math.nan
    eval_ms = eval_ms if eval_ms > 0 else 0.0
    overhead_s = overhead_s if overhead_s >= 0 else EPOCH_OVERHEAD_S
    scale = (input_size / step_size) ** 2
    return (n_fit * step_ms + n_eval * eval_ms) / 1000.0 * scale + overhead_s


def epoch_estimate(n_train: float, n_val: float, forward_ms: float, input_size: float,
                   probe_size: float, finetune_from: float, step_ms: float, step_eval_ms: float,
                   step_from: float, step_size: float, step_overhead_s: float = math.nan) -> float:
    """The estimated seconds of one fine-tuning epoch from ``finetune_from`` (NaN: nothing
    timed).

    The timed step at that depth decides; timed at another depth, the forward-pass model is
    scaled by how far it was off at the timed depth (calibrated); not timed at all, the
    forward-pass model stands alone.
    """
    n_fit, n_eval = fit_and_eval(n_train, n_val)
    return split_estimate(n_fit, n_eval, forward_ms, input_size, probe_size, finetune_from,
                          step_ms, step_eval_ms, step_from, step_size, step_overhead_s)


def split_estimate(n_fit: float, n_eval: float, forward_ms: float, input_size: float,
                   probe_size: float, finetune_from: float, step_ms: float, step_eval_ms: float,
                   step_from: float, step_size: float, step_overhead_s: float = math.nan) -> float:
    """:func:`epoch_estimate` for ``n_fit`` training and ``n_eval`` validation images."""
    measured = step_epoch_seconds(n_fit, n_eval, step_ms, step_eval_ms, step_size, input_size,
                                  step_overhead_s)
    if measured != measured:  # not timed
        return epoch_seconds(n_fit + n_eval, forward_ms, input_size, probe_size, finetune_from)
    if step_from == finetune_from:
        return measured
    modelled = epoch_seconds(n_fit + n_eval, forward_ms, input_size, probe_size, step_from)
    if not modelled > 0:
        return math.nan
    return (epoch_seconds(n_fit + n_eval, forward_ms, input_size, probe_size, finetune_from)
            * measured / modelled)


def measured_epoch(phases: Sequence[Mapping[str, Any]]) -> tuple[float, int] | None:
    """``(seconds, trainable_from)`` of the steady-state epoch of the deepest gradient-trained
    fine-tuning phase of a run's ``metrics["phases"]``: the median of its epochs after the first
    (which traces the functions), or its only epoch; None when nothing was fine-tuned."""
    tuned = [p for p in phases if p.get("trainable_from", N_GROUPS) < N_GROUPS
             and p.get("epoch_seconds")]
    if not tuned:
        return None
    deepest = min(tuned, key=lambda p: p["trainable_from"])
    seconds = list(deepest["epoch_seconds"])
    return float(statistics.median(seconds[1:] or seconds)), int(deepest["trainable_from"])


def compare(evidence: Mapping[str, Any] | None, phases: Sequence[Mapping[str, Any]],
            n_train: int, n_val: int, input_size: int | None = None) -> dict[str, Any] | None:
    """The epoch estimate the recipe carries (the evidence of its ``estimate.epoch_seconds``
    reason, rule COST01) recomputed for the images this run really trained and validated on (and
    its ``input_size``, where the recipe was changed after advising), against the epochs it
    measured: ``{"estimate_s", "measured_s", "ratio", "trainable_from",
    "source"}``; None without an estimate or a fine-tuned epoch."""
    got = measured_epoch(phases)
    if not evidence or got is None:
        return None
    e = {k: _num(evidence.get(k)) for k in ("forward_ms", "input_size", "probe_size",
                                             "step_ms", "step_eval_ms", "step_from", "step_size",
                                             "step_overhead_s")}
    measured, depth = got
    if input_size is not None:
        e["input_size"] = float(input_size)
    estimate = split_estimate(n_train, n_val, e["forward_ms"], e["input_size"], e["probe_size"],
                              depth, e["step_ms"], e["step_eval_ms"], e["step_from"],
                              e["step_size"], e["step_overhead_s"])
    if not estimate > 0:
        return None
    source = ("training step" if e["step_ms"] > 0 and e["step_from"] == depth else
              "forward pass calibrated by the training step" if e["step_ms"] > 0 else
              "forward pass")
    return {"estimate_s": round(estimate, 2), "measured_s": round(measured, 2),
            "ratio": round(measured / estimate, 3), "trainable_from": depth,
            "n_fit": n_train, "n_eval": n_val, "source": source}


def calibration(pairs: Sequence[tuple[float, float]]) -> float:
    """The factor that best maps estimates onto measured epochs, from ``(estimate, measured)``
    pairs: the median ratio measured / estimate (robust to one epoch slowed by another process);
    1.0 without usable pairs."""
    ratios = [m / e for e, m in pairs if e > 0 and m > 0]
    return float(statistics.median(ratios)) if ratios else 1.0


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def run_epoch_time(recipe: Any, metrics: Mapping[str, Any]) -> dict[str, Any] | None:
    """:func:`compare` for a finished run: the estimate ``recipe`` carries against the epochs in
    its ``metrics`` (``metrics.json``'s ``epoch_time``); None when either is missing."""
    reason = recipe.reasons.get(ESTIMATE_KEY)
    return compare(None if reason is None else reason.evidence, metrics.get("phases") or [],
                   int(metrics.get("n_train") or 0), int(metrics.get("n_val") or 0),
                   recipe.backbone.input_size)
