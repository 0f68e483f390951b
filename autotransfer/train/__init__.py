"""The recipe executor: train, fine-tune, adapt, evaluate and export.

``train(dataset, recipe, out)`` executes any valid recipe; ``evaluate`` and ``predict`` work on
any run's model. Importing this package does not import TensorFlow; calling these does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from autotransfer._lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "train": "autotransfer.train.run",
    "RunResult": "autotransfer.train.run",
    "evaluate": "autotransfer.train.inference",
    "predict": "autotransfer.train.inference",
    "EvaluationResult": "autotransfer.train.inference",
    "Prediction": "autotransfer.train.inference",
    "load_run_model": "autotransfer.train.inference",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:  # pragma: no cover
    from autotransfer.train.inference import (EvaluationResult, Prediction, evaluate,
                                              load_run_model, predict)
    from autotransfer.train.run import RunResult, train
