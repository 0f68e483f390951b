"""How long a training epoch will take, from the forward pass measured while probing.

The probes time the steady-state forward pass of every backbone on the sample (milliseconds per
image at the probe's input size, on this machine). A training epoch over ``n_train`` images at
``input_size`` costs about one forward pass through the frozen layers and a forward plus a
backward pass (about twice a forward) through the trainable ones; compute scales with the number
of pixels. Layer groups are counted as equal shares of the compute, which holds within a factor
of about 1.5 for the catalog's backbones. The estimate errs long (activations cached at the
freeze boundary make real epochs cheaper), so a schedule sized with it fits its budget.
"""

from __future__ import annotations

import math

N_GROUPS = 5
#: backward pass / forward pass, for the layers that train
BACKWARD_FACTOR = 2.0


def forward_seconds(n_images: float, forward_ms: float, input_size: float,
                    probe_size: float) -> float:
    """Seconds of one forward pass over ``n_images`` at ``input_size``."""
    if not forward_ms > 0 or not probe_size > 0:
        return math.nan
    return n_images * forward_ms / 1000.0 * (input_size / probe_size) ** 2


def epoch_seconds(n_train: float, forward_ms: float, input_size: float, probe_size: float,
                  finetune_from: float) -> float:
    """Estimated seconds of one epoch with the groups from ``finetune_from`` on training."""
    trainable = max(0.0, min(1.0, (N_GROUPS - finetune_from) / N_GROUPS))
    return (forward_seconds(n_train, forward_ms, input_size, probe_size)
            * (1.0 + BACKWARD_FACTOR * trainable))
