"""Helpers shared by the command modules: consoles, JSON output, writing results."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print machine-readable JSON on stdout instead of tables."
)

precision_option = click.option(
    "--precision", type=click.Choice(["auto", "float32", "bfloat16"]), default="auto",
    show_default=True, help="Compute precision. auto: the advisor times float32 and bfloat16 on "
    "this machine and uses bfloat16 only where it is faster with agreeing features (rule "
    "PREC01); a given recipe keeps its own. bfloat16: Keras' mixed_bfloat16 on a CPU (a GPU "
    "uses mixed_float16); float32: full precision.")

target_option = click.option(
    "--target", type=click.Path(path_type=Path), default=None, metavar="DIR",
    help="Unlabelled images from where the model will be used (any layout; class folders in it "
    "are used only to evaluate). advise/auto: the gap to them is measured and rules DA04-DA08 "
    "decide whether and how to adapt; train: the recipe's domain_adaptation.method adapts to "
    "them; tune: an adapting recipe's trials train with them, ranked without their labels.")


def backbone_file_option(command: Any) -> Any:
    """``--backbone-file YAML`` (repeatable): register the user's own backbones for this command
    only (:func:`autotransfer.backbones.custom.backbone_files`), so that they are probed, advised,
    trained and tuned like catalog entries. A recipe naming one needs the same option later."""
    import functools

    @functools.wraps(command)
    def run(*args: Any, backbone_files: tuple[Path, ...] = (), **kwargs: Any) -> Any:
        if not backbone_files:
            return command(*args, **kwargs)
        from autotransfer.backbones.custom import backbone_files as registered

        with registered(backbone_files):
            return command(*args, **kwargs)

    return click.option(
        "--backbone-file", "backbone_files", multiple=True, metavar="YAML",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Your own Keras backbone: a YAML file with name, model (.keras), preprocessing, "
        "groups and input_size (README: 'Bring your own backbone'). Repeat for several. A recipe "
        "that names it needs the same option for train and tune.")(run)


def stdout_console() -> Any:
    from rich.console import Console

    return Console()


def stderr_console() -> Any:
    """Console for progress and notes, so that stdout stays clean for ``--json``."""
    from rich.console import Console

    return Console(stderr=True)


def echo_json(obj: Any) -> None:
    """Print ``obj`` as JSON on stdout: always valid, whatever the file names and the terminal.

    Undecodable bytes of file names are escaped (:func:`autotransfer._io.unicode_safe`); where
    stdout cannot encode all of Unicode, non-ASCII characters are written as ``\\uNNNN``.
    """
    from autotransfer._io import json_text

    encoding = (getattr(sys.stdout, "encoding", None) or "ascii").lower().replace("-", "")
    sys.stdout.write(json_text(obj, ensure_ascii=encoding not in ("utf8", "utf16", "utf32")))


@contextlib.contextmanager
def warnings_as_notes(console: Any) -> Iterator[None]:
    """Show the warnings autotransfer issues for the user (a damaged checkpoint skipped, …) as
    plain notes on ``console`` while the block runs, every time; other warnings as usual."""
    from autotransfer.train.checkpoint import CheckpointWarning

    with warnings.catch_warnings():
        previous = warnings.showwarning

        def show(message: Any, category: type[Warning], *args: Any, **kwargs: Any) -> None:
            if issubclass(category, CheckpointWarning):
                console.print(f"Note: {message}", markup=False, highlight=False)
            else:
                previous(message, category, *args, **kwargs)

        warnings.showwarning = show
        warnings.simplefilter("always", CheckpointWarning)
        yield


def write_json_result(path: Path, obj: Any) -> None:
    """Write ``obj`` to ``path`` atomically and say where on stderr."""
    from autotransfer._io import atomic_write_json

    atomic_write_json(path, obj)
    click.echo(f"Wrote {path}", err=True)


def _nearest_existing(path: Path) -> Path:
    current = path
    while not os.path.lexists(current) and current != current.parent:
        current = current.parent
    return current


def check_writable(path: str | os.PathLike[str], *, option: str = "--out",
                   folder: bool = False, apart_from: dict[str, Path | None] | None = None,
                   replaced: bool = True) -> Path:
    """Refuse at once (before any work) an output path that cannot be written.

    ``path`` is a file to write (``folder=False``) or a folder to create or fill (``folder=True``,
    assembled next to it, so its parent must be writable too). Missing parent folders are fine:
    they are created when the result is written. A folder is also refused where it lies inside
    one of ``apart_from`` (what -> path: the dataset, the target folder) or, ``replaced``, holds
    it (:func:`autotransfer._io.check_apart`). Raises
    :class:`~autotransfer.errors.OutputError` naming the path, why and what to do.
    """
    from autotransfer._io import check_apart
    from autotransfer.errors import OutputError

    target = Path(path)
    for kind, data in (apart_from or {}).items():
        check_apart(target, data, option=option, what=kind, replaced=replaced)
    what = f"{option} '{target}'"
    try:
        if target.exists() and folder != target.is_dir():
            kind = "a folder" if target.is_dir() else "a file"
            raise OutputError(f"Cannot write {what}: it is {kind}. Choose another path.")
        places = [target.parent]
        if folder and target.is_dir():
            places.append(target)
        for place in places:
            existing = _nearest_existing(place)
            if not existing.is_dir():
                raise OutputError(f"Cannot write {what}: '{existing}' is a file, not a folder. "
                                  "Choose another path.")
            if not os.access(existing, os.W_OK | os.X_OK):
                raise OutputError(f"Cannot write {what}: the folder '{existing}' is not writable "
                                  "(no permission, or a read-only file system). Choose a folder "
                                  "you may write to.")
    except PermissionError as exc:  # a folder on the way cannot even be looked into
        raise OutputError(f"Cannot write {what}: a folder on the way to it cannot be opened "
                          "(permission denied). Choose a folder you may write to.") from exc
    return target
