"""GPU readiness: strategy, precision and batch size, decided from the devices present.

* more than one GPU: ``tf.distribute.MirroredStrategy`` over all of them (the batch size is the
  global batch, split across replicas);
* one GPU or none: the default strategy (a single device). Tests pass a
  ``OneDeviceStrategy("/cpu:0")`` to run the same code through ``strategy.scope()`` and
  distributed datasets on a CPU;
* ``mixed_float16`` only when a GPU is present (the output layer stays float32); float32 on CPU;
* a ``ResourceExhaustedError`` (out of device memory) halves the batch size and restarts from the
  last checkpoint, down to 1 (:func:`is_out_of_memory`).
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf


def gpu_count() -> int:
    return len(tf.config.list_physical_devices("GPU"))


def select_strategy(n_gpus: int | None = None) -> tf.distribute.Strategy:
    """``MirroredStrategy`` with more than one GPU, else the default strategy."""
    n = gpu_count() if n_gpus is None else n_gpus
    if n > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def precision_policy(n_gpus: int | None = None) -> str:
    """``"mixed_float16"`` when a GPU is present, else ``"float32"``."""
    n = gpu_count() if n_gpus is None else n_gpus
    return "mixed_float16" if n > 0 else "float32"


def is_out_of_memory(exc: BaseException) -> bool:
    """True for device out-of-memory errors (TensorFlow's ResourceExhaustedError)."""
    if isinstance(exc, tf.errors.ResourceExhaustedError):
        return True
    text = str(exc)
    return "ResourceExhaustedError" in text or "OOM when allocating" in text


def describe(strategy: Any) -> dict[str, Any]:
    return {"strategy": type(strategy).__name__,
            "replicas": int(getattr(strategy, "num_replicas_in_sync", 1)),
            "gpus": gpu_count()}
