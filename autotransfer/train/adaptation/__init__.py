"""Domain adaptation to unlabelled target images (issue 19), run by the one phase executor.

* :mod:`.alignment` (CORAL, MMD), :mod:`.confusion` (MCC, entropy), :mod:`.adversarial`
  (gradient reversal, domain discriminator, DANN, CDAN): the losses, in Keras 3 ops;
* :mod:`.objective`: the loss a recipe asks for; :mod:`.model`: the adaptive wrapper whose
  ``train_step`` adds it; :mod:`.pairing`: source batches paired with target batches;
* :mod:`.target_images`, :mod:`.adabn_target`: the target images, AdaBN towards them;
* :mod:`.phase_objective`: :func:`objective_for` — what ``train(..., target=)`` passes to the
  executor; :mod:`.selection`: unsupervised validation (SND, DEV, IWV) to choose ``weight``.

Import the submodules (they import TensorFlow); this package itself imports nothing heavy.
"""

from __future__ import annotations

from typing import Any


def objective_for(recipe: Any, target: Any | None) -> Any:
    """See :func:`autotransfer.train.adaptation.phase_objective.objective_for`."""
    from autotransfer.train.adaptation.phase_objective import objective_for as _objective_for

    return _objective_for(recipe, target)
