"""The adaptation loss a recipe's ``domain_adaptation`` asks for, as one callable.

``AdaptationObjective(config, feature_dim, n_classes)(f_s, p_s, f_t, p_t, step)`` returns the
unweighted adaptation loss of one step (features ``f`` and probabilities ``p`` of the source and
target batch); :class:`~autotransfer.train.adaptation.model.AdaptiveModel` adds
``config.weight`` times it to the source cross-entropy. DANN and CDAN own a domain
discriminator (trainable weights of the wrapper, never of the shipped classifier).
"""

from __future__ import annotations

from typing import Any

from autotransfer.recipe.schema import LOSS_METHODS, DomainAdaptation
from autotransfer.train.adaptation.adversarial import grl_coefficient, make_discriminator
from autotransfer.train.adaptation.alignment import coral_loss, mmd_loss
from autotransfer.train.adaptation.confusion import entropy_loss, mcc_loss


class AdaptationObjective:
    """The adaptation loss of one of :data:`~autotransfer.recipe.schema.LOSS_METHODS`."""

    def __init__(self, config: DomainAdaptation, feature_dim: int, n_classes: int, *,
                 seed: int = 0) -> None:
        if config.method not in LOSS_METHODS:
            raise ValueError(f"method '{config.method}' adds no loss (loss methods: "
                             f"{', '.join(LOSS_METHODS)})")
        self.config = config
        self.method = config.method
        self.discriminator = None
        if self.method in ("dann", "cdan"):
            self.discriminator = make_discriminator(
                config.discriminator_units, feature_dim,
                n_classes if self.method == "cdan" else None, seed=seed)

    @property
    def trainable_variables(self) -> list[Any]:
        return [] if self.discriminator is None else list(self.discriminator.trainable_variables)

    def __call__(self, f_s: Any, p_s: Any, f_t: Any, p_t: Any, step: Any = 0,
                 training: bool = True) -> Any:
        c = self.config
        if self.method == "coral":
            return coral_loss(f_s, f_t)
        if self.method == "mmd":
            return mmd_loss(f_s, f_t)
        if self.method == "mcc":
            return mcc_loss(p_t, c.mcc_temperature)
        if self.method == "entropy":
            return entropy_loss(p_t)
        assert self.discriminator is not None
        coefficient = grl_coefficient(step, c.ramp_steps)
        if self.method == "dann":
            return self.discriminator.dann_loss(f_s, f_t, coefficient, training=training)
        return self.discriminator.cdan_loss(f_s, p_s, f_t, p_t, coefficient,
                                            entropy_conditioning=c.cdan_entropy,
                                            training=training)
