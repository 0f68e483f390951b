"""Refine a recipe with KerasTuner: a search space centred on the recipe, trial 0 = the recipe.

``tune(dataset, recipe, out)`` searches and writes the refined recipe with its provenance;
:mod:`.space` is the pure part (recipe -> search space, trial values -> recipe). Importing this
package does not import TensorFlow; ``tune`` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from autotransfer._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "tune": "autotransfer.tuning.tuner",
    "TuneResult": "autotransfer.tuning.results",
    "TrialRecord": "autotransfer.tuning.results",
    "search_space": "autotransfer.tuning.space",
    "apply": "autotransfer.tuning.space",
    "SearchSpace": "autotransfer.tuning.space",
    "Dimension": "autotransfer.tuning.space",
    "parse_duration": "autotransfer.durations",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:  # pragma: no cover
    from autotransfer.durations import parse_duration
    from autotransfer.tuning.space import Dimension, SearchSpace, apply, search_space
    from autotransfer.tuning.results import TrialRecord, TuneResult
    from autotransfer.tuning.tuner import tune
