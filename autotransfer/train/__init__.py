"""The recipe executor: train, fine-tune, adapt, evaluate and export.

``train(dataset, recipe, out)`` executes any valid recipe; ``evaluate`` and ``predict`` work on
any run's model. Importing this package does not import TensorFlow; calling these does.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

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


class _CallablePackage(types.ModuleType):
    """``autotransfer.train`` is this package and the public function ``autotransfer.train(...)``:
    once the package is imported (``import autotransfer.train.export``), Python makes
    ``autotransfer.train`` name the package, so calling it runs :func:`.run.train`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from autotransfer.train import run

        return run.train(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage


if TYPE_CHECKING:  # pragma: no cover
    from autotransfer.train.inference import (EvaluationResult, Prediction, evaluate,
                                              load_run_model, predict)
    from autotransfer.train.run import RunResult, train
