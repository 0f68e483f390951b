"""Does re-estimating the BatchNorm statistics (AdaBN) help this backbone on this data? Measured.

A large BN-statistics shift says the data is far from ImageNet; it does not say that normalising
with the data's own statistics makes the features *better*. On EuroSAT (64 px satellite tiles)
MobileNetV2's linear probe on the training images falls from 0.91 to 0.85 validation accuracy
after AdaBN. So the probe measures it: the sample's pooled features are extracted again after the
BN statistics are re-estimated on the sample (:func:`autotransfer.backbones.adabn.adapt_batchnorm`,
the trainer's own code), and the cross-validated linear probe of both feature sets (same folds)
is compared. Rules DA01–DA03 read the difference.

The statistics are re-estimated on ``ADAPT_IMAGES`` of the sample's images, evenly spread over
it (the sample is sorted by class, so every class takes part in proportion), and the features of
the whole sample are extracted with them: a population mean and variance per channel need far
fewer images than a linear probe, and this pass was about half of the check's forward passes.
On the four shared datasets checked, the gain of AdaBN has the same sign (DA02/DA03 decide the
same) with 256 or 128 images as with the whole sample (``tools/bench_adabn_subset.py``,
docs/benchmarks/probe_speed.md).
"""

from __future__ import annotations

import numpy as np

from autotransfer.probes.extract import BN_IMAGES, ExtractionPlan, run_model, stats_subset
from autotransfer.probes.models import AdaBNCheck
from autotransfer.probes.transferability import knn_accuracy, linear_probe_accuracy

#: Sample images on which the BN statistics are re-estimated (see the module's docstring): the
#: same subset rule as the probe's BN-shift statistics (:func:`.extract.stats_subset`).
ADAPT_IMAGES = BN_IMAGES
adaptation_subset = stats_subset


def adapted_features(plan: ExtractionPlan, images: np.ndarray, batch_size: int = 32,
                     adapt_images: int = ADAPT_IMAGES) -> np.ndarray:
    """Pooled features of ``images`` (uint8) after AdaBN on ``adapt_images`` of them
    (:func:`adaptation_subset`)."""
    import keras
    import tensorflow as tf

    from autotransfer.backbones.adabn import adapt_batchnorm
    from autotransfer.backbones.build import build_backbone
    from autotransfer.data.pipeline import set_autotune

    model = build_backbone(plan.spec, plan.input_size, weights=plan.weights, include_top=False)
    subset = images[adaptation_subset(len(images), adapt_images)]
    adapt_batchnorm(model, set_autotune(
        tf.data.Dataset.from_tensor_slices(subset).batch(batch_size)))
    (features,) = run_model(model, images, batch_size)
    keras.backend.clear_session(free_memory=True)
    return np.asarray(features, dtype=np.float32)


def compare(adapted: np.ndarray, labels: np.ndarray, *,
            imagenet_linear: float, imagenet_knn: float, seed: int,
            seconds: float, adapt_images: int = ADAPT_IMAGES) -> AdaBNCheck:
    """The linear probe and k-NN with ImageNet's BN statistics (measured on the same folds by the
    probe) against those of the ``adapted`` features (:func:`adapted_features` with the same
    ``adapt_images``)."""
    y = np.unique(np.asarray(labels), return_inverse=True)[1]
    return AdaBNCheck(
        linear_probe_accuracy=imagenet_linear,
        adapted_linear_probe_accuracy=linear_probe_accuracy(adapted, y, seed=seed),
        knn_accuracy=imagenet_knn,
        adapted_knn_accuracy=knn_accuracy(adapted, y, seed=seed),
        n_samples=int(len(y)),
        n_adapted=int(len(adaptation_subset(len(y), adapt_images))),
        seconds=round(seconds, 3),
    )
