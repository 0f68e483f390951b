"""Import a script of ``tools/`` as a module, as when it runs (its sibling helper modules import)."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType

from tests.conftest import REPO_ROOT


def load_tool(name: str) -> ModuleType:
    """``tools/<name>.py`` executed afresh as the module ``name``."""
    path = REPO_ROOT / "tools" / f"{name}.py"
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))  # as when run as a script: its helper modules
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
