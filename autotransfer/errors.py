"""The one error hierarchy of autotransfer.

Every error a user can cause derives from :class:`AutoTransferError`; each subclass also inherits
the matching built-in kind so callers can catch either. Messages say what was received, why it
fails and how to fix it. The CLI turns these into a clean message and exit code 2; anything else
is an internal failure (exit code 70).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class AutoTransferError(Exception):
    """Base class of every error autotransfer raises on purpose."""

    #: Exit code the CLI uses for this error (2: the user's input needs fixing).
    exit_code: int = 2


class DatasetError(AutoTransferError, ValueError):
    """The dataset cannot be used as given (layout, labels, manifest, splits)."""


class DatasetNotFoundError(DatasetError, FileNotFoundError):
    """The dataset path does not exist or is not readable."""


class TargetFolderError(DatasetError):
    """The folder of unlabelled target images (``--target DIR``) cannot be used: missing,
    unreadable, empty, holding files that are not usable images, or overlapping the source."""


class ManifestError(DatasetError):
    """A CSV manifest is malformed (missing columns, bad rows)."""


class UnusableDatasetError(DatasetError):
    """The dataset was read, but cannot be trained on (too few classes or images).

    ``profile`` holds the profile that was computed, so callers can still show the per-file
    problems that led here.
    """

    def __init__(self, message: str, profile: object | None = None) -> None:
        super().__init__(message)
        self.profile = profile


class ImageDecodeError(AutoTransferError, OSError):
    """One image file cannot be decoded (corrupt, truncated, unsupported or too large)."""


class UnknownNameError(AutoTransferError, KeyError):
    """A name (backbone, preset, rule …) is not known; the message suggests close matches."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class WeightsUnavailableError(AutoTransferError, FileNotFoundError):
    """Pretrained weights cannot be found locally nor downloaded."""


class WeightsFileError(WeightsUnavailableError):
    """A weights file exists but cannot be used: malformed, unsafe, or not the recorded file
    (its SHA-256 differs from the catalog's)."""


class InvalidConfigError(AutoTransferError, ValueError):
    """A data file (recipe, rule base, preset) fails validation."""


class InvalidParameterError(AutoTransferError, ValueError):
    """An argument of a public function or command has a value that cannot work."""


class TimeBudgetError(InvalidParameterError):
    """A time budget shorter than the steps that every run needs (rule BUD03); the message says
    the minimum."""


class RunDirectoryError(AutoTransferError, FileExistsError):
    """A training run's output folder cannot be used (exists, or holds no run to resume)."""


class TuningError(AutoTransferError, RuntimeError):
    """A hyperparameter search produced no usable result (no trial completed)."""


class OutputError(AutoTransferError, OSError):
    """A result cannot be written where asked (no such folder, no permission, disk full …)."""


class ModelFileError(AutoTransferError, ValueError):
    """A saved model (or a run's checkpoint) cannot be loaded: damaged, or unsafe to load."""


class DistributedTuningError(AutoTransferError, RuntimeError):
    """A distributed search's settings (``KERASTUNER_*``, ``AUTOTRANSFER_TUNER_TOKEN``) are
    malformed or unsafe, the chief cannot listen, or the chief refused a worker's token."""


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Return ``" Did you mean 'a' or 'b'?"`` for close matches of ``name``, or ``""``."""
    options = list(choices)
    lowered = {c.lower(): c for c in options}
    matches = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)
    prefix = [c for c in options if c.lower().startswith(name.lower()) and c.lower() not in matches]
    found = [lowered[m] for m in matches] + prefix
    found = list(dict.fromkeys(found))[:n]
    if not found:
        return ""
    quoted = [f"'{f}'" for f in found]
    text = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
    return f" Did you mean {text}?"


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> UnknownNameError:
    """Build the standard "unknown name" error with suggestions and the list of valid names."""
    options = sorted(choices)
    listing = ", ".join(options) if len(options) <= 30 else ", ".join(options[:30]) + ", …"
    return UnknownNameError(
        f"Unknown {kind} '{name}'.{did_you_mean(name, options)} Known {kind}s: {listing}."
    )
