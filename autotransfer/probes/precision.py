"""Is bfloat16 worth it on this machine? Time the backbone in both precisions; compare features.

Keras' ``mixed_bfloat16`` policy computes in bfloat16 and keeps variables in float32. Where the
processor has bfloat16 matrix units (AMX on recent Xeons) oneDNN uses them and a forward pass is
several times faster; elsewhere it can be slower (no bfloat16 at all, or AVX512_BF16 alone: the
2-vCPU EPYC of docs/benchmarks/precision.md ran mobilenet_v2 at 0.7× the float32 speed). So the
choice is measured, not assumed: :func:`time_forward` times a few batches of the backbone in float32 and in
mixed_bfloat16, alternately (so that a change of load affects both alike), and
:func:`precision_check` checks that the sample's bfloat16 features are as good as the float32
ones (same linear-probe folds, LogME, cosine similarity). The advisor's rules PREC01/PREC02 decide
from the resulting :class:`PrecisionCheck`.

TensorFlow and Keras are imported inside the functions that run models.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

#: Keras' policy name for each precision a recipe can ask for on a CPU
KERAS_POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}
#: timed batches per precision (after one untimed batch that traces the function)
TIMED_BATCHES = 3


class PrecisionCheck(BaseModel):
    """Forward-pass timing in float32 and mixed_bfloat16, and whether the features agree."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    measured: bool = Field(description="False when bfloat16 was not in question (see reason).")
    reason: str = Field(description="What was measured, or why nothing was.")
    float32_ms: float | None = Field(default=None, description="Milliseconds per image, float32.")
    bfloat16_ms: float | None = Field(default=None,
                                      description="Milliseconds per image, mixed_bfloat16.")
    timed_images: int = Field(default=0, description="Images timed per precision.")
    linear_probe_accuracy: float | None = Field(
        default=None, description="Cross-validated linear probe on the float32 features.")
    bfloat16_linear_probe_accuracy: float | None = Field(
        default=None, description="The same folds on the bfloat16 features; None when bfloat16 "
        "was not faster, so its features were not extracted.")
    logme: float | None = None
    bfloat16_logme: float | None = None
    feature_cosine: float | None = Field(
        default=None, description="Mean cosine similarity of each image's two feature vectors.")
    n_samples: int = 0
    seconds: float = Field(default=0.0, description="Seconds spent measuring (0 when cached).")

    @property
    def speedup(self) -> float | None:
        """float32 time over bfloat16 time: > 1 when bfloat16 is faster."""
        if not self.float32_ms or not self.bfloat16_ms:
            return None
        return self.float32_ms / self.bfloat16_ms

    def describe(self) -> str:
        if not self.measured:
            return self.reason
        text = (f"forward pass {self.float32_ms:.2f} ms/image in float32, {self.bfloat16_ms:.2f} "
                f"in mixed_bfloat16 ({self.speedup:.2f}×)")
        if self.bfloat16_linear_probe_accuracy is not None:
            text += (f"; linear probe {self.linear_probe_accuracy:.1%} vs "
                     f"{self.bfloat16_linear_probe_accuracy:.1%}, LogME {self.logme:.3f} vs "
                     f"{self.bfloat16_logme:.3f}")
        return text


def gpu_present() -> bool:
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


@contextmanager
def policy_scope(policy: str) -> Iterator[None]:
    """Keras' global dtype policy set to ``policy`` inside the block, and restored after it.

    Models built inside keep the policy of their layers; a policy set here never leaks into the
    next model built elsewhere (e.g. by the next run in the same process).
    """
    import keras

    previous = keras.mixed_precision.global_policy().name
    keras.mixed_precision.set_global_policy(policy)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def build_in(policy: str, build: Any) -> Any:
    """``build()`` under the global policy ``policy`` (restored afterwards)."""
    with policy_scope(policy):
        return build()


def time_forward(models: dict[str, Any], images: np.ndarray, batch_size: int = 32,
                 batches: int = TIMED_BATCHES) -> tuple[dict[str, float], int]:
    """Seconds per image of each model's forward pass over the same batches, timed alternately.

    Each model first runs one untimed batch (tracing); then, ``batches`` times, every model runs
    the next batch in turn. Returns ``{name: seconds per image}`` (the median over the batches:
    one batch slowed by another process does not decide) and the images timed per model.
    """
    import tensorflow as tf

    spec = tf.TensorSpec((None, *images.shape[1:]), tf.as_dtype(images.dtype))
    forwards = {name: tf.function(lambda x, m=m: m(x, training=False), input_signature=[spec])
                for name, m in models.items()}
    n = len(images)
    chunks = [images[(i * batch_size) % n:][:batch_size] for i in range(batches + 1)]
    for forward in forwards.values():
        _wait(forward(tf.convert_to_tensor(chunks[0])))
    per_image: dict[str, list[float]] = {name: [] for name in forwards}
    timed = 0
    for chunk in chunks[1:]:
        x = tf.convert_to_tensor(chunk)
        for name, forward in forwards.items():
            t0 = time.perf_counter()
            _wait(forward(x))
            per_image[name].append((time.perf_counter() - t0) / len(chunk))
        timed += len(chunk)
    return {name: float(np.median(t)) for name, t in per_image.items()}, timed


def _wait(out: Any) -> None:
    for o in out if isinstance(out, list | tuple) else [out]:
        o.numpy()


def _feature_model(plan: Any) -> Any:
    """The probe's feature model of ``plan`` (pooled features, as :func:`.extract.extract`
    returns them), built under the current global policy."""
    import keras

    from autotransfer.backbones.build import build_backbone

    base = build_backbone(plan.spec, plan.input_size, weights=plan.weights,
                          include_top=plan.with_top)
    if not plan.with_top:
        return base
    pools = [l for l in base.layers if isinstance(l, keras.layers.GlobalAveragePooling2D)]
    pooled = pools[-1].output  # the last pooling feeds the classifier (earlier ones: SE)
    if len(pooled.shape) == 4:  # keepdims pooling (MobileNetV3)
        pooled = keras.ops.reshape(pooled, (-1, pooled.shape[-1]))
    return keras.Model(base.inputs, pooled)


def extract_timed(plan: Any, images: np.ndarray, batch_size: int = 32,
                  batches: int = TIMED_BATCHES,
                  sample: Callable[[], np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Time ``plan``'s feature model in float32 and mixed_bfloat16 on a few batches of
    ``images``; where bfloat16 is faster, extract its features of every image of ``sample()``
    too (default: ``images``; the timing needs only ``(batches + 1) * batch_size`` of them).

    Returns ``float32_seconds_per_image``, ``bfloat16_seconds_per_image``, ``timed_images`` and,
    where bfloat16 was faster, ``bfloat16_features`` (N × D, float32). Where it is slower its
    features are not extracted: that pass would cost more than the probe's own, for nothing.
    """
    import keras

    from autotransfer.probes.extract import run_model

    models = {name: build_in(policy, lambda: _feature_model(plan))
              for name, policy in KERAS_POLICIES.items()}
    # the same weights (random ones too): variables are float32 under both policies
    models["bfloat16"].set_weights(models["float32"].get_weights())
    per_image, timed = time_forward(models, images, batch_size, batches)
    arrays = {f"{name}_seconds_per_image": np.asarray(s, dtype=np.float64)
              for name, s in per_image.items()}
    arrays["timed_images"] = np.asarray(timed)
    if per_image["bfloat16"] < per_image["float32"]:
        (features,) = run_model(models["bfloat16"], sample() if sample else images, batch_size)
        arrays["bfloat16_features"] = np.asarray(features, dtype=np.float32)
    keras.backend.clear_session(free_memory=True)
    return arrays


def precision_check(arrays: dict[str, np.ndarray], float32_linear: float, float32_logme: float,
                    labels: np.ndarray, *, seed: int, seconds: float,
                    float32_features: np.ndarray | None = None) -> PrecisionCheck:
    """The check from :func:`extract_timed`'s arrays and the probe's own float32 figures (the
    linear probe of :func:`~.transferability.measure_transferability`: same folds)."""
    from autotransfer.probes.logme import logme
    from autotransfer.probes.transferability import linear_probe_accuracy

    f32_ms = 1000 * float(arrays["float32_seconds_per_image"])
    bf16_ms = 1000 * float(arrays["bfloat16_seconds_per_image"])
    figures: dict[str, Any] = {}
    bf16 = arrays.get("bfloat16_features")
    if bf16 is not None:
        y = np.unique(np.asarray(labels), return_inverse=True)[1]
        figures = {"bfloat16_linear_probe_accuracy": linear_probe_accuracy(bf16, y, seed=seed),
                   "bfloat16_logme": logme(bf16, y).score}
        if float32_features is not None and len(float32_features) == len(bf16):
            a = np.asarray(float32_features, dtype=np.float32)
            norms = np.linalg.norm(a, axis=1) * np.linalg.norm(bf16, axis=1)
            figures["feature_cosine"] = float(np.mean(np.sum(a * bf16, axis=1)
                                                      / np.maximum(norms, 1e-12)))
    reason = ("timed in both precisions; bfloat16's features compared with float32's on the "
              "whole sample" if bf16 is not None else
              "timed in both precisions; bfloat16 was not faster, so its features were not "
              "extracted")
    return PrecisionCheck(measured=True, reason=reason, float32_ms=round(f32_ms, 4),
                          bfloat16_ms=round(bf16_ms, 4), timed_images=int(arrays["timed_images"]),
                          linear_probe_accuracy=float32_linear, logme=float32_logme,
                          n_samples=int(len(labels)), seconds=round(seconds, 3), **figures)
