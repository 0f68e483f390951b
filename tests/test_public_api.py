"""The public API: every name in __all__ resolves, and importing it costs no TensorFlow."""

from __future__ import annotations

import subprocess
import sys

import autotransfer


def test_every_exported_name_resolves():
    for name in autotransfer.__all__:
        assert getattr(autotransfer, name) is not None, name


def test_import_is_light():
    code = ("import sys, autotransfer; autotransfer.advise; autotransfer.Recipe; "
            "autotransfer.list_backbones(); sys.exit('tensorflow' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
