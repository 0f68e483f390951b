"""How long a training step of the recipe takes on this machine, at its current load.

The cost model (:mod:`autotransfer.advisor.cost`) turns a per-image time into an epoch time. A
forward pass timed while probing, scaled by a fixed backward factor, erred 1.5× long on an idle
machine and more under load, so the chosen backbone's *training step* is timed too, the way the
trainer runs it: the recipe's input size and batch size, the layer groups before its deepest
``trainable_from`` frozen (BatchNorm as the recipe says), and, where the trainer caches the frozen
part's activations (:mod:`autotransfer.train.feature_cache`: some groups frozen, no MixUp/CutMix,
the activations within its memory limit), only the trainable suffix, on activations the prefix
computed. A few steps are timed after one untimed step (tracing); the median per image decides, so
one step slowed by another process does not. The evaluation step (forward and loss, as the
validation pass runs it) is timed alike. The result is cached with the probe's features.

Tracing is not timed: the trainer traces its functions once per phase, in the phase's first epoch
(``train/executor.py`` seeds epochs without clearing TensorFlow's function caches), and the epoch
estimate is of the steady epochs after it (:mod:`autotransfer.advisor.cost`). A record cached or
saved when the probe also timed a retrace (``trace_s``) still loads; that figure is dropped.

TensorFlow and Keras are imported inside the functions that run models.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

#: timed training steps (after one untimed step that traces the function)
TIMED_STEPS = 2
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
    seconds: float = Field(default=0.0, description="Seconds spent measuring (0 when cached).")

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
        return (f"training step {self.step_ms:.2f} ms/image, evaluation {self.eval_ms:.2f} "
                f"ms/image ({what}, from group {self.trainable_from}, {self.input_size} px, "
                f"batches of {self.batch_size}, {self.precision})")


def uses_cache(trainable_from: int, mixes: bool, boundary_bytes: float, n_train: int,
               max_bytes: int = CACHE_MAX_BYTES) -> bool:
    """Whether the trainer trains this depth on cached activations (as ``plan_cache`` decides:
    some groups frozen, no image mixing, one view of the training set within ``max_bytes``)."""
    return 0 < trainable_from and not mixes and n_train * boundary_bytes <= max_bytes


def time_training_step(spec: Any, images: np.ndarray, n_classes: int, trainable_from: int, *,
                       batch_size: int, bn_frozen: bool, mixes: bool, n_train: int,
                       steps: int = TIMED_STEPS) -> dict[str, np.ndarray]:
    """Time ``steps`` training steps and evaluation steps of ``spec`` (random weights: the
    compute does not depend on them) on batches of ``images``, trained from group
    ``trainable_from``; see the module's docstring. Returns ``step_seconds_per_image``,
    ``eval_seconds_per_image``, ``cached`` and ``timed_images`` (arrays, for the feature
    cache).
    """
    import keras
    import tensorflow as tf

    from autotransfer.backbones.build import build_backbone, group_boundaries, layer_group_ranges

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
                    loss=keras.losses.CategoricalCrossentropy())
    n = len(inputs)
    labels = keras.utils.to_categorical(np.arange(n) % n_classes, n_classes)
    chunks = [np.arange(i * batch_size, (i + 1) * batch_size) % n for i in range(steps + 1)]
    step_s: list[float] = []
    eval_s: list[float] = []
    for i, idx in enumerate(chunks):
        x, y = tf.convert_to_tensor(inputs[idx]), tf.convert_to_tensor(labels[idx])
        t0 = time.perf_counter()
        trained.train_on_batch(x, y)
        t1 = time.perf_counter()
        trained.test_on_batch(x, y)
        t2 = time.perf_counter()
        if i:  # the first step traces both functions
            step_s.append((t1 - t0) / len(idx))
            eval_s.append((t2 - t1) / len(idx))
    keras.backend.clear_session(free_memory=True)
    return {"step_seconds_per_image": np.asarray(np.median(step_s), dtype=np.float64),
            "eval_seconds_per_image": np.asarray(np.median(eval_s), dtype=np.float64),
            "cached": np.asarray(cached), "timed_images": np.asarray(steps * batch_size)}


def step_timing(arrays: dict[str, np.ndarray], *, trainable_from: int, input_size: int,
                batch_size: int, precision: str, seconds: float) -> StepTiming:
    """The typed record of :func:`time_training_step`'s arrays."""
    return StepTiming(trainable_from=trainable_from, input_size=input_size,
                      batch_size=batch_size, precision=precision,
                      cached=bool(arrays["cached"]),
                      step_ms=round(1000 * float(arrays["step_seconds_per_image"]), 4),
                      eval_ms=round(1000 * float(arrays["eval_seconds_per_image"]), 4),
                      timed_images=int(arrays["timed_images"]),
                      seconds=round(seconds, 3))
