"""One forward pass per backbone: pooled features, ImageNet probabilities and BN input statistics.

A multi-output Keras model returns, for each image, the pooled features, the ImageNet class
probabilities (when the backbone's classifier weights are available) and, for every BatchNorm
layer, the per-channel mean and mean square of its input — small vectors, so the activations
themselves are never kept. The BN statistics are measured on ``BN_IMAGES`` of the sample's
images, evenly spread over it (:func:`stats_subset`): a per-channel mean and variance need far
fewer images than the features, and the in-graph reductions cost about 40 % of the forward pass;
the other images go through a model over the same layers without them. Everything a probe needs,
including each BN layer's stored statistics and layer group, goes into one dict of arrays, so a
cached extraction needs no model at all.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from autotransfer.backbones.spec import BackboneSpec
from autotransfer.backbones.weights import WeightStatus, resolve_weights, weight_status
from autotransfer.data.models import ImageRecord
from autotransfer.probes.bn_shift import BNLayerStats

# TensorFlow and Keras are imported inside the functions that run models, so that planning and
# reading cached extractions (a warm probe) never pay for importing them.

#: Sample images on which BatchNorm input statistics are measured (the BN shift here, AdaBN's
#: re-estimation in :mod:`.adabn_check`): evenly spread over the sample, which is sorted by class.
BN_IMAGES = 256


def stats_subset(n: int, limit: int = BN_IMAGES) -> np.ndarray:
    """Indices of at most ``limit`` of ``n`` images, evenly spaced over them (sorted)."""
    if n <= limit:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, limit).round().astype(int))


@dataclass(frozen=True)
class ExtractionPlan:
    """What will be extracted for one backbone, decided before any model is built."""

    spec: BackboneSpec
    input_size: int
    weights: str | None
    with_top: bool
    top_note: str
    weights_file: Path | None


def plan_extraction(spec: BackboneSpec, input_size: int | None = None,
                    weights: str | None = "imagenet") -> ExtractionPlan:
    """Choose the input size and whether the ImageNet classifier can be used (no TensorFlow)."""
    size = input_size or spec.default_input_size
    with_top, note = False, "the backbone is probed without pretrained weights"
    if weights is not None:
        with_top, note = _top_available(spec, size)
    weights_file = resolve_weights(spec, weights, include_top=with_top) if weights else None
    return ExtractionPlan(spec, size, weights, with_top, note, weights_file)


def _top_available(spec: BackboneSpec, size: int) -> tuple[bool, str]:
    if size != spec.default_input_size:
        return False, (f"its ImageNet classifier needs the default input size "
                       f"{spec.default_input_size}; the probe used {size}")
    top, no_top = weight_status(spec, include_top=True), weight_status(spec)
    local = (WeightStatus.CACHED, WeightStatus.OFFLINE_PACKAGE)
    if top in local or (top is WeightStatus.NEEDS_DOWNLOAD and no_top not in local):
        return True, ""
    return False, "its ImageNet classifier's weights are not on this machine"


def decode_sample(records: list[ImageRecord], root: str | os.PathLike[str], size: int,
                  workers: int | None = None,
                  cancel: threading.Event | None = None) -> np.ndarray:
    """Decode ``records`` at ``size`` into one uint8 array N × H × W × 3.

    The training pipeline's reader (:func:`~autotransfer.data.images.load_image`, centre crop),
    so the pixels are the pipeline's, in daemon threads (Pillow releases the GIL while it decodes
    and resizes): no TensorFlow, so decoding can run while TensorFlow loads. Daemon threads, and
    each stops at its next image once ``cancel`` is set (then :class:`DecodeCancelled`): Ctrl-C,
    or the process ending, never waits for the rest of the sample.
    """
    from autotransfer.data.images import load_image

    out = np.empty((len(records), size, size, 3), dtype=np.uint8)
    todo = itertools.count()  # next() is atomic: each index goes to one thread
    failed: list[BaseException] = []
    stop = cancel or threading.Event()

    def work() -> None:
        try:
            while not stop.is_set() and (i := next(todo)) < len(records):
                out[i] = load_image(Path(root, records[i].path), (size, size))
        except BaseException as exc:  # re-raised in the caller's thread
            failed.append(exc)
            stop.set()

    threads = [threading.Thread(target=work, name="autotransfer-decode", daemon=True)
               for _ in range(max(1, min(workers or os.cpu_count() or 1, len(records))))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    except BaseException:  # Ctrl-C while waiting: the threads stop at their next image
        stop.set()
        raise
    if failed:
        raise failed[0]
    if stop.is_set():
        raise DecodeCancelled("decoding the sample was cancelled")
    return out


class DecodeCancelled(Exception):
    """:func:`decode_sample` stopped before the end: its ``cancel`` event was set."""


def import_tensorflow(modules: Sequence[str] = ("tensorflow", "keras")) -> None:
    """Import ``modules`` (TensorFlow and Keras) with Python's cyclic garbage collector paused,
    then, in the console script's process (:data:`autotransfer._process.freeze_after_import`),
    freeze what exists (:func:`gc.freeze`). Importing them makes some 360,000 objects, which
    the collector would otherwise walk again and again: during the import, during every model's
    construction and in each ``clear_session``. Frozen objects are still freed by reference
    counting; only cycles among them are never collected (module-level objects: none to free).
    A library caller's process is not frozen: its own objects would be frozen too."""
    import gc
    import importlib

    from autotransfer import _process

    if all(name in sys.modules for name in modules):
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        for name in modules:
            importlib.import_module(name)
    finally:
        if enabled:
            gc.enable()
    if _process.freeze_after_import:
        gc.freeze()


def _probe_model(plan: ExtractionPlan) -> tuple[Any, list[Any], dict[str, str]]:
    import_tensorflow()
    import keras

    from autotransfer.backbones.build import build_backbone, layer_group_ranges

    spec = plan.spec
    base = build_backbone(spec, plan.input_size, weights=plan.weights, include_top=plan.with_top)
    if plan.with_top:
        pools = [l for l in base.layers if isinstance(l, keras.layers.GlobalAveragePooling2D)]
        pooled = pools[-1].output  # the last pooling feeds the classifier (earlier ones: SE)
        if len(pooled.shape) == 4:  # keepdims pooling (MobileNetV3)
            pooled = keras.ops.reshape(pooled, (-1, pooled.shape[-1]))
        outputs = [pooled, base.output]
    else:
        outputs = [base.output]
    group_of = {name: g.name for g in layer_group_ranges(base, spec) for name in g.layers}
    bn_layers = [l for l in base.layers if isinstance(l, keras.layers.BatchNormalization)]
    outputs += [layer.input for layer in bn_layers]  # reduced in the forward pass (_run_probe)
    return keras.Model(base.inputs, outputs, name=f"probe_{spec.name}"), bn_layers, group_of


def extract(plan: ExtractionPlan, images: np.ndarray | Callable[[], np.ndarray],
            batch_size: int = 32, bn_images: int = BN_IMAGES) -> dict[str, np.ndarray]:
    """Build the probe model for ``plan`` and run it over ``images`` (uint8 RGB; or a callable
    that returns them, called once the model is built, so that decoding in the background
    overlaps TensorFlow's start and the model's construction).

    Returns ``features`` (N × D), ``probs`` (N × 1000, with a classifier only), and for BN layer
    ``i``: ``bn_mean_i``/``bn_sq_i`` (the data's per-channel mean and mean square, over the
    ``bn_images`` images of :func:`stats_subset`) and ``bn_moving_mean_i``/``bn_moving_var_i``
    (stored), with ``bn_names``, ``bn_groups``, ``bn_eps``, ``bn_images`` (how many images the
    statistics saw) and ``seconds_per_image`` (the steady-state forward pass).
    """
    return extract_with_views(plan, images, None, batch_size, bn_images)[0]


def extract_with_views(plan: ExtractionPlan, images: np.ndarray | Callable[[], np.ndarray],
                       subset: Sequence[int] | None, batch_size: int = 32,
                       bn_images: int = BN_IMAGES, free_memory: bool = True
                       ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray] | None]:
    """:func:`extract`, and with ``subset`` (indices of ``images``) :func:`extract_views`' arrays
    of those images from the same model: one model built and loaded instead of two, and the
    unrotated views' features are the extraction's own (the model's pooled features, as
    :func:`extract_views`' backbone without classifier computes them).

    Keras' session is cleared at the end; with ``free_memory=False`` without its garbage
    collection (a caller extracting several backbones collects once, after the last)."""
    import keras

    model, bn_layers, group_of = _probe_model(plan)
    if callable(images):
        images = images()
    outputs, clock, forward = _run_probe(model, 2 if plan.with_top else 1, images,
                                         stats_subset(len(images), bn_images), batch_size)
    result: dict[str, np.ndarray] = {"features": np.asarray(outputs.pop(0), dtype=np.float32)}
    if "seconds_per_image" in clock:
        result["seconds_per_image"] = np.asarray(clock["seconds_per_image"], dtype=np.float64)
    if plan.with_top:
        result["probs"] = np.asarray(outputs.pop(0), dtype=np.float32)
    result["bn_images"] = np.asarray(len(outputs[0]) if outputs else 0)
    last_group = plan.spec.group_names[-1]
    for i, layer in enumerate(bn_layers):
        result[f"bn_mean_{i}"] = np.asarray(outputs[2 * i], dtype=np.float64).mean(axis=0)
        result[f"bn_sq_{i}"] = np.asarray(outputs[2 * i + 1], dtype=np.float64).mean(axis=0)
        result[f"bn_moving_mean_{i}"] = np.asarray(layer.moving_mean, dtype=np.float64)
        result[f"bn_moving_var_{i}"] = np.asarray(layer.moving_variance, dtype=np.float64)
    result["bn_names"] = np.asarray([l.name for l in bn_layers], dtype=str)
    result["bn_groups"] = np.asarray([group_of.get(l.name, last_group) for l in bn_layers], dtype=str)
    result["bn_eps"] = np.asarray([float(l.epsilon) for l in bn_layers], dtype=np.float64)
    views = None
    if subset is not None:  # the same traced function, without BN statistics (k = 0)
        views = _views_of(forward, images[np.asarray(subset, dtype=int)],
                          result["features"][np.asarray(subset, dtype=int)], batch_size)
    keras.backend.clear_session(free_memory=free_memory)
    return result, views


def _run_probe(model: Any, n_heads: int, images: np.ndarray, stats_on: np.ndarray,
               batch_size: int
               ) -> tuple[list[np.ndarray], dict[str, float], Callable[[np.ndarray], np.ndarray]]:
    """The probe ``model``'s first ``n_heads`` outputs for every image (in their order), then each
    BN input's per-image channel mean and mean square for ``images[stats_on]`` only.

    The subset goes first and each batch reduces only its first ``k`` images' BN inputs (``k`` a
    tensor: one ``tf.function``, traced once), so the other images cost the plain forward pass.
    ``seconds_per_image``: the steady-state time of batches without BN statistics (after the
    first, tracing batch); where every batch is in the subset, one more batch run without them.
    Also returned: a function from a batch of images (uint8) to their pooled features, the same
    traced function without BN statistics (no second trace for the orientation views).
    """
    import tensorflow as tf

    order = np.concatenate([stats_on, np.setdiff1d(np.arange(len(images)), stats_on)]).astype(int)
    spec = tf.TensorSpec((None, *images.shape[1:]), tf.as_dtype(images.dtype))

    def forward_fn(x: Any, k: Any) -> list[Any]:
        out = model(x, training=False)
        out = list(out) if isinstance(out, list | tuple) else [out]
        stats = []
        for act in out[n_heads:]:
            act = tf.cast(act[:k], tf.float32)
            axes = list(range(1, len(act.shape) - 1))
            stats += ([tf.reduce_mean(act, axis=axes), tf.reduce_mean(tf.square(act), axis=axes)]
                      if axes else [act, tf.square(act)])
        return out[:n_heads] + stats

    forward = tf.function(forward_fn, input_signature=[spec, tf.TensorSpec((), tf.int32)])
    batches: list[list[np.ndarray]] = []
    timed: dict[bool, list[float]] = {True: [0.0, 0], False: [0.0, 0]}  # plain?: [s, images]

    def run(start: int) -> tuple[list[np.ndarray], float, int]:
        batch = tf.convert_to_tensor(images[order[start:start + batch_size]])
        k = min(max(len(stats_on) - start, 0), int(batch.shape[0]))
        t0 = time.perf_counter()
        out = [o.numpy() for o in forward(batch, tf.constant(k, tf.int32))]
        return out, time.perf_counter() - t0, k

    for start in range(0, len(images), batch_size):
        out, seconds, k = run(start)
        batches.append(out)
        if start:  # the first batch traces the function
            timed[k == 0][0] += seconds
            timed[k == 0][1] += len(out[0])
    clock: dict[str, float] = {}
    steady = timed[True]
    if not steady[1] and len(images):  # no plain batch timed (all in the subset, or one batch):
        batch = tf.convert_to_tensor(images[order[:batch_size]])  # time one without statistics
        t0 = time.perf_counter()
        [o.numpy() for o in forward(batch, tf.constant(0, tf.int32))]
        steady = [time.perf_counter() - t0, int(batch.shape[0])]
    if steady[1]:
        clock["seconds_per_image"] = steady[0] / steady[1]
    merged = [np.concatenate([b[i] for b in batches], axis=0) for i in range(len(batches[0]))]
    for i in range(n_heads):
        whole = np.empty_like(merged[i])
        whole[order] = merged[i]
        merged[i] = whole

    def pooled(batch: np.ndarray) -> np.ndarray:
        return forward(tf.convert_to_tensor(batch), tf.constant(0, tf.int32))[0].numpy()

    return merged, clock, pooled


def _views_of(pooled: Callable[[np.ndarray], np.ndarray], images: np.ndarray,
              unrotated: np.ndarray | None, batch_size: int) -> dict[str, np.ndarray]:
    """:func:`extract_views`' arrays, each batch's pooled features from ``pooled`` (a function
    of a uint8 batch); the unrotated view's features are ``unrotated`` when given."""
    from autotransfer.probes.orientation import views

    stacked, view, source = views(images)
    todo = view != 0 if unrotated is not None else np.ones(len(view), dtype=bool)
    rest = stacked[todo]
    computed = np.concatenate([pooled(rest[i:i + batch_size])
                               for i in range(0, len(rest), batch_size)], axis=0)
    features = np.empty((len(view), computed.shape[1]), dtype=np.float32)
    features[todo] = computed
    if unrotated is not None:
        features[~todo] = unrotated
    return {"features": features, "view": view, "source": source}


def extract_views(plan: ExtractionPlan, images: np.ndarray | Callable[[], np.ndarray],
                  batch_size: int = 32) -> dict[str, np.ndarray]:
    """Pooled features of the rotated and mirrored views of ``images`` (or of what a callable
    returns once the model is built; see :func:`extract`) (see
    :mod:`autotransfer.probes.orientation`), with each view's index and source image."""
    import_tensorflow()
    import keras

    from autotransfer.backbones.build import build_backbone

    import tensorflow as tf

    model = build_backbone(plan.spec, plan.input_size, weights=plan.weights, include_top=False)
    images = images() if callable(images) else images
    spec = tf.TensorSpec((None, *images.shape[1:]), tf.as_dtype(images.dtype))
    forward = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    arrays = _views_of(lambda batch: forward(tf.convert_to_tensor(batch)).numpy(),
                       images, None, batch_size)
    keras.backend.clear_session(free_memory=True)
    return arrays


def run_model(model: Any, images: np.ndarray, batch_size: int = 32,
              clock: dict[str, float] | None = None) -> list[np.ndarray]:
    """Inference over ``images`` in batches; one output array per model output.

    One ``tf.function`` traced once for any batch size: about twice as fast on a CPU as
    ``model.predict``, which re-traces on every call and adds per-batch overhead. ``clock``, when
    given, receives ``seconds_per_image``: the steady-state time (after the first, tracing batch;
    with a single batch, that batch run again).
    """
    import tensorflow as tf

    spec = tf.TensorSpec((None, *images.shape[1:]), tf.as_dtype(images.dtype))
    forward = tf.function(lambda x: model(x, training=False), input_signature=[spec])
    from autotransfer.data.pipeline import set_autotune

    ds = set_autotune(tf.data.Dataset.from_tensor_slices(images).batch(batch_size))
    ds = ds.prefetch(tf.data.AUTOTUNE)  # without the autotuning thread: the loop's end waited

    def outputs_of(batch: Any) -> list[np.ndarray]:  # .numpy() waits for the result
        out = forward(batch)
        return [o.numpy() for o in out] if isinstance(out, list | tuple) else [out.numpy()]

    batches: list[list[np.ndarray]] = []
    steady_images, steady_s = 0, 0.0
    for batch in ds:
        t0 = time.perf_counter()
        batches.append(outputs_of(batch))
        if len(batches) > 1:  # the first batch traces the function
            steady_s += time.perf_counter() - t0
            steady_images += int(batch.shape[0])
    if clock is not None and not steady_images and len(images):  # one batch: time it again
        t0 = time.perf_counter()
        outputs_of(tf.convert_to_tensor(images[:batch_size]))
        steady_s, steady_images = time.perf_counter() - t0, len(images[:batch_size])
    if clock is not None and steady_images:
        clock["seconds_per_image"] = steady_s / steady_images
    return [np.concatenate([b[i] for b in batches], axis=0) for i in range(len(batches[0]))]


def bn_layer_stats(arrays: dict[str, np.ndarray]) -> list[BNLayerStats]:
    """The BN layers' stored and measured statistics, from :func:`extract`'s arrays."""
    stats = []
    for i, (name, group) in enumerate(zip(arrays["bn_names"], arrays["bn_groups"], strict=True)):
        mean = arrays[f"bn_mean_{i}"]
        var = np.maximum(arrays[f"bn_sq_{i}"] - mean**2, 0.0)
        stats.append(BNLayerStats(str(name), str(group), arrays[f"bn_moving_mean_{i}"],
                                  arrays[f"bn_moving_var_{i}"], mean, var, float(arrays["bn_eps"][i])))
    return stats
