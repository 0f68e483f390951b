"""Keep TensorFlow's C++ log lines (oneDNN notices, ``cuInit``, absl's "before InitializeLog"
warning, CPU-feature notes) off the terminal, unless the user asks for them.

TensorFlow 2.21 writes most of these while ``import tensorflow`` runs, through absl's C++ logging
*before* ``absl::InitializeLog()``, which ``TF_CPP_MIN_LOG_LEVEL`` does not filter. So
:func:`quiet_tensorflow` (a) sets ``TF_CPP_MIN_LOG_LEVEL`` for what TensorFlow logs later, and
(b) installs an import hook that runs the first ``import tensorflow`` with file descriptor 2
pointed at a temporary file: nothing that TensorFlow's libraries write there during the import
reaches the terminal; Python's own ``sys.stderr`` (progress displays, messages) keeps writing to
the terminal meanwhile. When the import fails, what was held back is written out, so that no
error is lost. It must run before TensorFlow is imported (the CLI does it first thing); it costs
nothing until then (``autotransfer --help`` imports no TensorFlow).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import io
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType
from typing import Any

#: environment variables that bring the log lines back (any value but "" or "0")
VERBOSE_ENV = ("AUTOTRANSFER_VERBOSE", "AUTOTRANSFER_DEBUG")
#: TensorFlow's C++ log threshold when quiet: 3 = fatal only (cuInit failures log as errors)
QUIET_LEVEL = "3"
_quieted = False  # whether quiet_tensorflow changed anything (loud_tensorflow undoes only that)


def verbose_requested() -> bool:
    """Whether the environment asks for TensorFlow's log lines (``AUTOTRANSFER_VERBOSE`` or
    ``AUTOTRANSFER_DEBUG`` set to anything but ``""``/``"0"``)."""
    return any(os.environ.get(name, "") not in ("", "0") for name in VERBOSE_ENV)


def quiet_tensorflow() -> bool:
    """Silence TensorFlow's C++ logging for this process; ``False`` when it is too late (already
    imported) or the user chose a level of their own (``TF_CPP_MIN_LOG_LEVEL`` set)."""
    if "tensorflow" in sys.modules:
        return False
    if "TF_CPP_MIN_LOG_LEVEL" in os.environ:
        return False  # the user's own choice wins
    global _quieted
    _quieted = True
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = QUIET_LEVEL
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    if not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())
    return True


def loud_tensorflow() -> None:
    """Undo :func:`quiet_tensorflow` (a command's own ``--verbose``), if TensorFlow is not
    imported yet."""
    global _quieted
    if "tensorflow" in sys.modules or not _quieted:
        return
    _quieted = False
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _QuietFinder)]
    os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
    logging.getLogger("tensorflow").setLevel(logging.NOTSET)


@contextmanager
def held_back_stderr() -> Iterator[None]:
    """Point file descriptor 2 at a temporary file for the duration; Python's ``sys.stderr``
    keeps reaching the terminal. On an exception, what was held back is written to stderr."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no file descriptor 2: nothing to hold back
        yield
        return
    python_stderr = sys.stderr
    swapped = _writes_to_fd2(python_stderr)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        if swapped:  # Python-level writes (rich progress, messages) go on to the terminal
            sys.stderr = io.TextIOWrapper(os.fdopen(saved, "wb", closefd=False),
                                          encoding=python_stderr.encoding,
                                          errors=python_stderr.errors, line_buffering=True)
        failed = True
        try:
            yield
            failed = False
        finally:
            if swapped:
                sys.stderr.flush()
                sys.stderr = python_stderr
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                held.seek(0)
                text = held.read().decode("utf-8", "replace")
                if text:
                    python_stderr.write(text)
                    python_stderr.flush()


def _writes_to_fd2(stream: Any) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False  # captured (pytest, a notebook): leave it alone


class _QuietLoader(importlib.abc.Loader):
    """Runs the wrapped loader's ``exec_module`` with stderr held back, then quiets absl."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        with held_back_stderr():
            self.loader.exec_module(module)
        try:  # TensorFlow's Python warnings go through absl's Python logging
            from absl import logging as absl_logging

            absl_logging.set_verbosity(absl_logging.ERROR)
        except ImportError:  # pragma: no cover - absl comes with TensorFlow
            pass

    def __getattr__(self, name: str) -> Any:  # resource readers and the like
        return getattr(self.loader, name)


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` with the other finders and wraps its loader in :class:`_QuietLoader`."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "tensorflow":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _QuietLoader(spec.loader)
                return spec
        return None
