"""``autotransfer predict MODEL IMAGES...``: the most likely classes of images.

MODEL is what ``train`` or ``auto`` printed (the run folder) or a ``model.keras``. IMAGES are
files, folders (searched recursively, without following links to folders) and quoted globs
(``'photos/**/*.jpg'``). Every image that can be read is predicted; every one that cannot is named
with why, on stderr and in each output, and the command then exits 2 (0 when all were predicted).
"""

from __future__ import annotations

import csv
import glob
import io
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from autotransfer.cli._common import check_writable, echo_json, stderr_console, stdout_console

_GLOB_CHARS = frozenset("*?[")


@dataclass
class Inputs:
    """What IMAGES expands to: files to predict, in order, and what was passed over."""

    files: list[str] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)  # (argument, why)
    not_images: dict[str, int] = field(default_factory=dict)  # folder/glob -> non-image files
    empty: list[str] = field(default_factory=list)  # folders and globs that gave no image


def _is_image(path: str) -> bool:
    from autotransfer.data.formats import SNIFF_BYTES, looks_like_image_name, sniff_format

    if looks_like_image_name(os.path.basename(path)):
        return True
    try:
        if not os.path.isfile(path):  # a pipe would block the read below forever
            return not os.path.exists(path)  # a broken link: predicted, so that it is named
        with open(path, "rb") as handle:
            return sniff_format(handle.read(SNIFF_BYTES)) is not None
    except OSError:
        return True  # unreadable: predicted, so that the failure is named


def _walk(folder: str) -> Iterator[str]:
    """Files under ``folder``, sorted, never following a link to a folder (no loops, no escape)."""
    for root, dirs, files in os.walk(folder, followlinks=False):
        dirs.sort()
        for name in sorted(files):
            yield os.path.join(root, name)


def expand_images(arguments: Sequence[str]) -> Inputs:
    """Files, folders (recursively: the files that are images) and globs -> image files."""
    found = Inputs()
    seen: set[str] = set()

    def add(path: str) -> None:
        key = os.path.normpath(path)
        if key not in seen:
            seen.add(key)
            found.files.append(path)

    seen_images = [0]  # images met for the current argument, duplicates included

    def add_found(path: str, argument: str) -> None:
        if _is_image(path):
            seen_images[0] += 1
            add(path)
        else:
            found.not_images[argument] = found.not_images.get(argument, 0) + 1

    for argument in arguments:
        seen_images[0] = 0
        if os.path.isdir(argument):
            for path in _walk(argument):
                add_found(path, argument)
        elif os.path.lexists(argument):
            add(argument)  # a file given by name is always tried, and any failure named
            continue
        elif _GLOB_CHARS & set(argument):
            matches = sorted(glob.glob(argument, recursive=True))
            if not matches:
                found.missing.append((argument, "no file matches this pattern"))
                continue
            for match in matches:
                for path in _walk(match) if os.path.isdir(match) else [match]:
                    add_found(path, argument)
        else:
            found.missing.append((argument, "no such file or folder"))
            continue
        if seen_images[0] == 0 and argument not in found.not_images:
            found.empty.append(argument)
    return found


def _output_option(name: str, suffix: str, optional: bool) -> Any:
    what = "JSON" if suffix == ".json" else "CSV"
    extra = {"is_flag": False, "flag_value": "-"} if optional else {}
    return click.option(
        f"--{name}", f"{name}_out", default=None, metavar="FILE" if not optional else "[FILE]",
        type=click.Path(dir_okay=False, allow_dash=True, path_type=str), **extra,
        help=f"Write the predictions as {what} to FILE ('-': stdout"
        + (", as does --json alone; write --json=FILE when it comes before the images" if optional
           else "") + f"): path, top-k labels and probabilities, error. An existing FILE is only "
        f"replaced when it is a {suffix} file.")


def _check_output(path: str | None, option: str, suffix: str, inputs: set[str]) -> None:
    if path is None or path == "-":
        return
    from autotransfer.errors import OutputError

    hint = ("--json takes an optional FILE: put it after the images, or write --json=FILE"
            if option == "--json" else f"give {option} a new {suffix} file")
    if os.path.normpath(path) in inputs or (os.path.isfile(path)
                                           and not path.lower().endswith(suffix)):
        raise OutputError(f"{option} '{path}' would replace a file that is not a {suffix} file "
                          f"(or is one of the images); nothing was written ({hint}).")
    check_writable(path, option=option)


def _csv_text(predictions: list[Any], k: int) -> str:
    from autotransfer._io import spreadsheet_safe

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["path"]
    for i in range(1, k + 1):
        header += [f"label_{i}", f"probability_{i}"]
    writer.writerow([*header, "error"])
    for p in predictions:
        cells = [spreadsheet_safe(p.path, path=True)]
        for i in range(k):
            if i < len(p.top):
                cells += [spreadsheet_safe(p.top[i][0]), f"{p.top[i][1]:.6f}"]
            else:
                cells += ["", ""]
        writer.writerow([*cells, spreadsheet_safe(p.error or "")])
    return buffer.getvalue()


def _write(path: str, text: str) -> None:
    if path == "-":
        sys.stdout.write(text)
        return
    from autotransfer._io import atomic_write_text

    atomic_write_text(path, text)
    click.echo(f"Wrote {path}", err=True)


@click.command("predict")
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--top-k", "-k", type=click.IntRange(min=1), default=3, show_default=True,
              help="How many classes to give per image.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Images per forward pass.")
@_output_option("csv", ".csv", optional=False)
@_output_option("json", ".json", optional=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no table: only the "
              "--csv/--json outputs and the errors.")
def command(model: Path, images: tuple[str, ...], top_k: int, batch_size: int,
            csv_out: str | None, json_out: str | None, quiet: bool) -> None:
    """Predict the classes of IMAGES with MODEL.

    MODEL is the run folder that 'train' or 'auto' printed, or a model.keras file. IMAGES are
    image files, folders (searched recursively) and quoted globs such as 'photos/**/*.jpg'.
    Images are predicted in batches, with a progress bar on a terminal. A table goes to stdout
    unless --csv - or --json sends the data there. An image that cannot be read is named with
    why, on stderr and in every output, the others are still predicted, and the exit code is 2.
    """
    from autotransfer.errors import ImageDecodeError, InvalidParameterError

    if csv_out is not None and csv_out == json_out:
        raise click.UsageError("--csv and --json name the same place: give each its own.")
    inputs = expand_images(images)
    given = {os.path.normpath(p) for p in inputs.files}
    _check_output(csv_out, "--csv", ".csv", given)
    _check_output(json_out, "--json", ".json", given)
    if not inputs.files:
        why = "; ".join(f"'{a}': {reason}" for a, reason in inputs.missing)
        raise InvalidParameterError(f"No image to predict ({why or 'the folders hold no image'}). "
                                    "Pass image files, folders of images or quoted globs.")
    from autotransfer._io import unicode_safe
    from autotransfer.train.inference import Prediction, load_run_model

    err = stderr_console()
    for where, count in inputs.not_images.items():
        err.print(f"Passed over {count} file(s) of '{unicode_safe(where)}' that are not images.",
                  markup=False, highlight=False)
    for where in inputs.empty:
        err.print(f"'{unicode_safe(where)}' holds no image.", markup=False, highlight=False)
    loaded = load_run_model(model)
    k = min(top_k, len(loaded.class_names))
    predictions = [Prediction(a, [], f"{unicode_safe(a)}: {why}") for a, why in inputs.missing]
    predictions += _predict(loaded, inputs.files, top_k, batch_size,
                            show=not quiet and err.is_terminal, console=err)
    if csv_out is not None:
        _write(csv_out, _csv_text(predictions, k))
    if json_out is not None:
        if json_out == "-":
            echo_json([p.to_dict() for p in predictions])
        else:
            from autotransfer._io import atomic_write_json

            atomic_write_json(json_out, [p.to_dict() for p in predictions])
            click.echo(f"Wrote {json_out}", err=True)
    if not quiet and "-" not in (csv_out, json_out):
        _table(predictions, k)
    failed = [p for p in predictions if not p.ok]
    if failed:
        lines = "\n".join(f"  {unicode_safe(p.error or '')}" for p in failed)
        raise ImageDecodeError(f"{len(failed)} of {len(predictions)} image(s) could not be "
                               f"predicted (the others were):\n{lines}")


def _predict(loaded: Any, files: list[str], top_k: int, batch_size: int, *, show: bool,
             console: Any) -> list[Any]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from autotransfer.train.inference import predict

    with Progress("Predicting", BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=console, transient=True, disable=not show) as bar:
        task = bar.add_task("predict", total=len(files))
        return predict(loaded, files, top_k=top_k, batch_size=batch_size,
                       progress=lambda done, total: bar.update(task, completed=done))


def _table(predictions: list[Any], k: int) -> None:
    from rich.table import Table
    from rich.text import Text

    from autotransfer._io import unicode_safe

    table = Table()
    table.add_column("image")
    for i in range(k):
        table.add_column(f"#{i + 1}")
    for p in predictions:
        if p.ok:
            cells = [Text(f"{label} {prob:.3f}") for label, prob in p.top]
            table.add_row(Text(unicode_safe(p.path)), *cells, *[""] * (k - len(cells)))
        else:
            table.add_row(Text(unicode_safe(p.path)), Text("cannot be read", style="red"),
                          *[""] * (k - 1))
    stdout_console().print(table)
