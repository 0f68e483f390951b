"""How long a training step of the recipe takes on this machine, at its current load.

The cost model (:mod:`autotransfer.advisor.cost`) turns a per-image time into an epoch time. A
forward pass timed while probing, scaled by a fixed backward factor, erred 1.5× long on an idle
machine and more under load, so the chosen backbone's *training step* is timed too, the way the
trainer runs it: the recipe's input size and batch size, the layer groups before its deepest
``trainable_from`` frozen (BatchNorm as the recipe says), and, where the trainer caches the frozen
part's activations (:mod:`autotransfer.train.feature_cache`: some groups frozen, no MixUp/CutMix,
the activations within its memory limit), only the trainable suffix, on activations the prefix
computed.

It is timed as an epoch runs, not as bare steps: ``fit`` over a few batches of the probe's sample
fed through the trainer's input pipeline — on the uncached path every batch of images augmented
by the recipe's transform (:func:`image_transform`: its augmentation and MixUp/CutMix, from
:mod:`autotransfer.data.augment`, the trainer's own code), on the cached path the activations
sliced, shuffled and batched — and a validation pass, after an untimed ``fit`` of
:data:`WARMUP_STEPS` batches that traces both functions and lets the process warm up. A Keras
callback splits the timed ``fit`` into its training batches (per image: the step *and* its
input), the validation pass (per image) and the rest (seconds: the epoch's fixed cost). The
training rate is the **median** of the :data:`TIMED_STEPS` timed batches (:func:`steady_rate`):
the first batches after tracing are not steady (timed batch by batch against the trainer's
epochs in one process, the first timed batch ran 1.1–3.8× the steady ones: oneDNN's primitives,
memory, the pipeline's start), and single batches are slowed by whatever else runs; two timed
batches, summed, sampled that noise and erred 0.86–1.45× both ways by dataset
(docs/benchmarks/cost_model.md). Bare ``train_on_batch`` steps on tensors already in place, as
timed before, left out the input pipeline (augmentation alone took as long as the step at 224 px
on one core) and the fixed cost, and erred both ways by up to 2×. The result is cached with the
probe's features; a record or cached arrays from before (no ``overhead_s``, no
``batch_seconds``) still load.

Tracing is not timed: the trainer traces its functions once per phase, in the phase's first epoch
(``train/executor.py`` seeds epochs without clearing TensorFlow's function caches), and the epoch
estimate is of the steady epochs after it (:mod:`autotransfer.advisor.cost`). A record cached or
saved when the probe also timed a retrace (``trace_s``) still loads; that figure is dropped.

TensorFlow and Keras are imported inside the functions that run models.
"""

from __future__ import annotations

import math
import tempfile
import time
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

#: training batches of the timed fit, whose median is the training rate (:func:`steady_rate`)
TIMED_STEPS = 6
#: batches of the untimed fit before it: it traces the functions and warms the process up
WARMUP_STEPS = 2
#: batches' worth of the probe's images the step is timed on (cycled; the compute does not
#: depend on which images)
SAMPLE_BATCHES = 3
#: the trainer's default limit on cached activations (train/feature_cache.DEFAULT_MAX_BYTES)
CACHE_MAX_BYTES = 2 * 2**30


class StepTiming(BaseModel):
    """One training step of the recipe, timed on the probe's sample."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trainable_from: int = Field(description="The deepest phase's first trainable layer group.")
    input_size: int = Field(description="Input side in pixels the step was timed at.")
    batch_size: int
    precision: str = Field(default="float32", description="'float32' or 'bfloat16' "
                           "(Keras' mixed_bfloat16), as the recipe trains.")
    cached: bool = Field(description="True: the trainable suffix was timed on the frozen "
                         "prefix's activations (the trainer's cached path); False: the whole "
                         "model.")
    step_ms: float = Field(description="Milliseconds per image of one training step "
                           "(forward, backward, update) of what trains.")
    eval_ms: float = Field(description="Milliseconds per image of the evaluation step "
                           "(forward and loss) of what trains: the validation pass.")
    timed_images: int = Field(description="Images timed per kind of step.")
    batch_ms: tuple[float, ...] = Field(default=(), description="Milliseconds of each timed "
                                        "training batch, in order (step_ms is their median per "
                                        "image); empty in a record from before they were kept.")
    overhead_s: float | None = Field(default=None, description="Seconds of the timed fit "
                                     "beyond its training batches and validation pass (set-up, "
                                     "callbacks): an epoch's fixed cost on this machine. None: "
                                     "a record from before it was timed.")
    fit_timed: bool = Field(default=False, description="True: timed inside fit, the training "
                            "batches fed by the trainer's input pipeline (augmentation or "
                            "cached activations), as an epoch runs; False: an older record "
                            "of bare train_on_batch steps.")
    seconds: float = Field(default=0.0, description="Seconds spent measuring (0 when cached).")
    setting: str = Field(default="", description="Everything the timing depends on (depth, "
                         "batch, BN policy, mixing, training-set size, precision, augmentation, "
                         "input size), as in its cache key: a report's timing is reused only "
                         "for the same setting; '' in a record from before it was kept.")

    @model_validator(mode="before")
    @classmethod
    def _drop_retrace(cls, data: Any) -> Any:
        """Records written while the probe also timed a retrace (``trace_s``) still load."""
        if isinstance(data, dict) and "trace_s" in data:
            data = {k: v for k, v in data.items() if k != "trace_s"}
        return data

    def describe(self) -> str:
        what = ("the trainable groups on cached activations" if self.cached
                else "the whole model")
        feeding = ((" fed by the cached activations" if self.cached
                    else " fed by the augmented images") if self.fit_timed else "")
        overhead = "" if self.overhead_s is None else f", {self.overhead_s:.2f} s per epoch besides"
        return (f"training step {self.step_ms:.2f} ms/image{feeding}, evaluation "
                f"{self.eval_ms:.2f} ms/image{overhead} ({what}, from group "
                f"{self.trainable_from}, {self.input_size} px, batches of {self.batch_size}, "
                f"{self.precision})")


def uses_cache(trainable_from: int, mixes: bool, boundary_bytes: float, n_train: int,
               max_bytes: int = CACHE_MAX_BYTES) -> bool:
    """Whether the trainer trains this depth on cached activations (as ``plan_cache`` decides:
    some groups frozen, no image mixing, one view of the training set within ``max_bytes``)."""
    return 0 < trainable_from and not mixes and n_train * boundary_bytes <= max_bytes


def time_training_step(spec: Any, images: np.ndarray, n_classes: int, trainable_from: int, *,
                       batch_size: int, bn_frozen: bool, mixes: bool, n_train: int,
                       augmentation: Any = None,
                       steps: int = TIMED_STEPS) -> dict[str, np.ndarray]:
    """Time one short epoch of ``spec`` (random weights: the compute does not depend on them)
    trained from group ``trainable_from`` as the trainer runs one: ``fit`` over ``steps``
    batches of ``images`` fed through the trainer's input pipeline (the image transform of
    ``augmentation``, a recipe's ``Augmentation``, on the uncached path; the cached activations
    sliced, shuffled and batched on the cached one) and a validation pass of one batch, after an
    untimed ``fit`` of :data:`WARMUP_STEPS` batches that traces the functions; see the module's
    docstring. Returns ``step_seconds_per_image`` (the median training batch, input pipeline
    included, :func:`steady_rate`), ``batch_seconds`` (every timed batch),
    ``eval_seconds_per_image``, ``overhead_seconds`` (the rest of ``fit``), ``cached`` and
    ``timed_images`` (arrays, for the feature cache).
    """
    import keras
    import tensorflow as tf

    from autotransfer.backbones.build import build_backbone, group_boundaries, layer_group_ranges
    from autotransfer.data.pipeline import set_autotune

    images = np.asarray(images, dtype=np.float32)
    size = int(images.shape[1])
    base = build_backbone(spec, size, weights=None, pooling="avg")
    out = keras.layers.Dense(n_classes, activation="softmax", dtype="float32",
                             name="predictions")(base.output)
    model = keras.Model(base.input, out)
    for index, group in enumerate(layer_group_ranges(base, spec)):
        for name in group.layers:
            layer = model.get_layer(name)
            is_bn = isinstance(layer, keras.layers.BatchNormalization)
            layer.trainable = index >= trainable_from and not (is_bn and bn_frozen)
    trained, inputs = model, images
    cached = False
    if 0 < trainable_from < len(spec.layer_groups):
        stop = group_boundaries(base, spec)[trainable_from - 1]
        boundary = base.operations[stop - 1].output
        per_image = 4 * math.prod(int(d) for d in boundary.shape[1:])
        if uses_cache(trainable_from, mixes, per_image, n_train):
            prefix = keras.Model(model.input, boundary)
            inputs = prefix.predict(images, batch_size=batch_size, verbose=0)
            trained, cached = keras.Model(boundary, model.output), True
    trained.compile(optimizer=keras.optimizers.AdamW(1e-4),
                    loss=keras.losses.CategoricalCrossentropy(), metrics=["accuracy"])
    transform = None if cached else image_transform(augmentation)
    n = len(inputs)
    labels = np.eye(n_classes, dtype=np.float32)[np.arange(n) % n_classes]

    # one epoch as the trainer's: train/data.py (images), train/feature_cache.py (cached)
    idx = np.arange(steps * batch_size) % n
    epoch = tf.data.Dataset.from_tensor_slices((inputs[idx], labels[idx],
                                                np.ones(len(idx), np.float32)))
    epoch = epoch.shuffle(len(idx), seed=0, reshuffle_each_iteration=False).batch(batch_size)
    if transform is not None:
        epoch = epoch.map(transform)  # traced once, here, for both fits
    # without tf.data's autotuning thread, as the trainer's pipelines (train/data.py finish)
    epoch = set_autotune(epoch).prefetch(tf.data.AUTOTUNE)
    val = set_autotune(tf.data.Dataset.from_tensor_slices((inputs[:batch_size],
                                                           labels[:batch_size])).batch(batch_size))
    with tempfile.TemporaryDirectory(prefix="autotransfer-step-") as logs:
        # as the trainer's (train/tensorboard.py), which closes, and so flushes, its event
        # files at the end of every epoch's fit
        board = keras.callbacks.TensorBoard(log_dir=logs, write_graph=False, profile_batch=0,
                                            update_freq="epoch")
        # untimed: traces the training and evaluation functions, and warms up
        trained.fit(epoch.take(WARMUP_STEPS), validation_data=val, epochs=1, verbose=0,
                    shuffle=False, callbacks=[board])
        spy = _FitSpy()
        started = time.perf_counter()
        trained.fit(epoch, validation_data=val, epochs=1, verbose=0, shuffle=False,
                    callbacks=[spy, board])
        wall = time.perf_counter() - started
    keras.backend.clear_session(free_memory=True)
    batches = np.asarray(spy.times, dtype=np.float64)
    return {"step_seconds_per_image": np.asarray(steady_rate(batches, batch_size)),
            "eval_seconds_per_image": np.asarray(spy.val / min(batch_size, n)),
            "overhead_seconds": np.asarray(max(0.0, wall - batches.sum() - spy.val)),
            "batch_seconds": batches,
            "cached": np.asarray(cached), "timed_images": np.asarray(steps * batch_size)}


def steady_rate(batch_seconds: Any, batch_size: int) -> float:
    """Seconds per image of a steady training batch: the median of the timed batches' seconds
    over the batch size (robust to a slow first batch after tracing and to a batch slowed by
    another process; docs/benchmarks/cost_model.md)."""
    seconds = np.asarray(batch_seconds, dtype=np.float64)
    if seconds.size == 0 or batch_size < 1:
        raise ValueError("steady_rate needs at least one timed batch and a batch size")
    return float(np.median(seconds)) / batch_size


class _FitSpy:
    """Seconds of each of a ``fit``'s training batches and of its validation pass (a Keras
    callback, built on first use so that this module imports without Keras)."""

    def __new__(cls) -> Any:
        import keras

        class Spy(keras.callbacks.Callback):
            val = 0.0

            def __init__(self) -> None:
                super().__init__()
                self.times: list[float] = []  # seconds of every training batch

            def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
                self._t = time.perf_counter()

            def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
                self.times.append(time.perf_counter() - self._t)

            def on_test_begin(self, logs: Any = None) -> None:
                self._v = time.perf_counter()

            def on_test_end(self, logs: Any = None) -> None:
                self.val += time.perf_counter() - self._v

        return Spy()


def image_transform(augmentation: Any, seed: int = 0) -> Any:
    """The trainer's per-batch transform of ``(images, one-hot, weights)``: ``augmentation``'s
    layers, then MixUp/CutMix (:mod:`autotransfer.data.augment`); None when it changes
    nothing (or ``augmentation`` is None)."""
    from autotransfer.data.augment import compose, is_identity, make_augmenter, make_mixer

    if augmentation is None:
        return None
    augmenter = None if is_identity(augmentation) else make_augmenter(augmentation, seed)
    mixer = make_mixer(augmentation, seed)
    return None if augmenter is None and mixer is None else compose(augmenter, mixer)


def step_timing(arrays: dict[str, np.ndarray], *, trainable_from: int, input_size: int,
                batch_size: int, precision: str, seconds: float,
                setting: str = "") -> StepTiming:
    """The typed record of :func:`time_training_step`'s arrays (``setting``: what the timing
    depends on, see :attr:`StepTiming.setting`)."""
    return StepTiming(trainable_from=trainable_from, input_size=input_size, setting=setting,
                      batch_size=batch_size, precision=precision,
                      cached=bool(arrays["cached"]),
                      step_ms=round(1000 * float(arrays["step_seconds_per_image"]), 4),
                      eval_ms=round(1000 * float(arrays["eval_seconds_per_image"]), 4),
                      timed_images=int(arrays["timed_images"]),
                      batch_ms=tuple(round(1000 * float(x), 2)
                                     for x in np.ravel(arrays.get("batch_seconds", ()))),
                      overhead_s=(round(float(arrays["overhead_seconds"]), 3)
                                  if "overhead_seconds" in arrays else None),
                      fit_timed="overhead_seconds" in arrays,
                      seconds=round(seconds, 3))
