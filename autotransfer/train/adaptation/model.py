"""The adaptive wrapper: a classifier trained on ``((x_source, x_target), y_source)`` batches.

:class:`AdaptiveModel` shares every layer of the classifier (a full classifier, or the trainable
suffix of a cached-feature phase): its ``train_step`` runs the source and target batches through
the classifier together, takes the source cross-entropy (the compiled loss, with sample weights)
and adds ``weight ×`` the :class:`~.objective.AdaptationObjective` on the penultimate features
and the predictions. Target labels do not exist here: the target batch is images (or cached
features) only. ``call``/``evaluate``/``predict`` are the classifier's, so validation on the
source split works unchanged; what is saved and shipped is the plain classifier (the wrapper and
its domain discriminator are training-time only).
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from keras.src.losses.loss import unscale_loss_for_distribution

from autotransfer.recipe.schema import DomainAdaptation
from autotransfer.train.adaptation.objective import AdaptationObjective

#: the classifier's output layer and (optional) dropout before it (see train/model.py)
OUTPUT_LAYER = "predictions"
DROPOUT_LAYER = "head_dropout"


def _layer_input(model: keras.Model, layer: keras.layers.Layer) -> Any:
    # a layer shared by several functional models (the classifier and a cached-feature phase's
    # suffix, whose input Keras clones) has one node per model: take this model's
    # (Keras keys a functional model's nodes "<id(layer)>_ib-<node index>")
    nodes = getattr(model, "_nodes", None)
    for index, node in enumerate(layer._inbound_nodes):
        if nodes is None or f"{id(layer)}_ib-{index}" in nodes:
            return node.input_tensors[0]
    raise ValueError(f"layer '{layer.name}' is not connected in model '{model.name}'")


def penultimate(model: keras.Model) -> Any:
    """The features the head's output layer reads (before the head's dropout, if any)."""
    names = {layer.name for layer in model.layers}
    name = DROPOUT_LAYER if DROPOUT_LAYER in names else OUTPUT_LAYER
    return _layer_input(model, model.get_layer(name))


def features_and_predictions(classifier: keras.Model) -> keras.Model:
    """A model of ``classifier``'s layers (shared) with two outputs: penultimate features and
    predictions. The features pass an ``Identity`` so that they may be the input itself (a
    head-only suffix without hidden layer)."""
    features = keras.layers.Identity(name="adaptation_features")(penultimate(classifier))
    return keras.Model(classifier.inputs, [features, classifier.outputs[0]],
                       name="features_and_predictions")


class AdaptiveModel(keras.Model):
    """``classifier`` + the adaptation loss of ``config`` (see the module docstring)."""

    def __init__(self, classifier: keras.Model, config: DomainAdaptation, n_classes: int, *,
                 seed: int = 0) -> None:
        super().__init__(name=f"adaptive_{classifier.name}")
        # one functional graph with two outputs, sharing the classifier's layers and weights
        self.pair = features_and_predictions(classifier)
        self.objective = AdaptationObjective(config, int(self.pair.outputs[0].shape[-1]),
                                             n_classes, seed=seed)
        if self.objective.discriminator is not None:
            self.discriminator = self.objective.discriminator
        self.weight = float(config.weight)
        self.adapt_tracker = keras.metrics.Mean(name="adapt_loss")
        self._classifier_name = classifier.name

    def call(self, x: Any, training: bool | None = None) -> Any:
        return self.pair(x, training=training)[1]

    @property
    def metrics(self) -> list[Any]:
        return [*super().metrics, self.adapt_tracker]

    def train_step(self, data: Any) -> dict[str, Any]:
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x_s, x_t = x
        n_s = tf.shape(x_s)[0]
        with tf.GradientTape() as tape:
            f, p = self.pair(tf.concat([x_s, tf.cast(x_t, x_s.dtype)], 0), training=True)
            f_s, f_t, p_s, p_t = f[:n_s], f[n_s:], p[:n_s], p[n_s:]
            # Keras' own loss computation (compiled loss, sample weights, regularisation
            # losses, scaling across replicas) on the source batch
            ce = self._compute_loss(x=x_s, y=y, y_pred=p_s, sample_weight=sample_weight,
                                    training=True)
            adapt = self.objective(f_s, p_s, f_t, p_t, self.optimizer.iterations)
            loss = ce + self.weight * tf.cast(adapt, ce.dtype)
            self._loss_tracker.update_state(unscale_loss_for_distribution(loss),
                                            sample_weight=n_s)
            scaled = self.optimizer.scale_loss(loss)
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        pairs = [(g, v) for g, v in zip(grads, variables, strict=True) if g is not None]
        self.optimizer.apply([g for g, _ in pairs], [v for _, v in pairs])
        self.adapt_tracker.update_state(adapt)
        logs = self.compute_metrics(x_s, y, p_s, sample_weight=sample_weight)
        logs["adapt_loss"] = self.adapt_tracker.result()
        return logs

    def test_step(self, data: Any) -> dict[str, Any]:
        logs = super().test_step(data)  # the classifier on source validation batches
        logs.pop("adapt_loss", None)  # measured in training only
        return logs
