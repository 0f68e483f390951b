"""autotransfer: automatic, explainable transfer learning on folders of labelled images.

The public API is listed in ``__all__``. Names are imported lazily so that ``import autotransfer``
(and the CLI's ``--help``) never pays for TensorFlow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from autotransfer._lazy import lazy_exports
from autotransfer._version import __version__

#: public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "profile_dataset": "autotransfer.data.profile",
    "DatasetProfile": "autotransfer.data.models",
    "FileProblem": "autotransfer.data.models",
    "probe_dataset": "autotransfer.probes.probe",
    "ProbeReport": "autotransfer.probes.models",
    "advise": "autotransfer.advisor.advise",
    "decide": "autotransfer.advisor.advise",
    "Advisor": "autotransfer.advisor.advise",
    "Advice": "autotransfer.advisor.advise",
    "Recipe": "autotransfer.recipe.schema",
    "load_recipe": "autotransfer.recipe.io",
    "save_recipe": "autotransfer.recipe.io",
    "get_backbone": "autotransfer.backbones.catalog",
    "list_backbones": "autotransfer.backbones.catalog",
    "build_backbone": "autotransfer.backbones.build",
    "register_backbone": "autotransfer.backbones.custom",
    "unregister_backbone": "autotransfer.backbones.custom",
    "custom_backbone": "autotransfer.backbones.custom",
    "load_backbone_file": "autotransfer.backbones.custom",
    "train": "autotransfer.train.run",
    "RunResult": "autotransfer.train.run",
    "evaluate": "autotransfer.train.inference",
    "predict": "autotransfer.train.inference",
    "tune": "autotransfer.tuning.tuner",
    "TuneResult": "autotransfer.tuning.tuner",
    "auto": "autotransfer.oneshot",
    "AutoResult": "autotransfer.oneshot",
    "AutoTransferError": "autotransfer.errors",
    "DatasetError": "autotransfer.errors",
    "UnusableDatasetError": "autotransfer.errors",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, ("__version__",))


if TYPE_CHECKING:  # pragma: no cover
    from autotransfer.advisor.advise import Advice, Advisor, advise, decide
    from autotransfer.backbones.build import build_backbone
    from autotransfer.backbones.catalog import get_backbone, list_backbones
    from autotransfer.backbones.custom import (custom_backbone, load_backbone_file,
                                               register_backbone, unregister_backbone)
    from autotransfer.data.models import DatasetProfile, FileProblem
    from autotransfer.probes.models import ProbeReport
    from autotransfer.probes.probe import probe_dataset
    from autotransfer.recipe.io import load_recipe, save_recipe
    from autotransfer.recipe.schema import Recipe
    from autotransfer.data.profile import profile_dataset
    from autotransfer.errors import AutoTransferError, DatasetError, UnusableDatasetError
    from autotransfer.oneshot import AutoResult, auto
    from autotransfer.train.inference import evaluate, predict
    from autotransfer.train.run import RunResult, train
    from autotransfer.tuning.tuner import TuneResult, tune
