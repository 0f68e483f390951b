"""``autotransfer profile DATASET``: what is in the dataset, and what is wrong with it."""

from __future__ import annotations

from pathlib import Path

import click

from autotransfer.cli._common import (check_writable, echo_json, json_option, stderr_console,
                                      write_json_result)


@click.command("profile")
@click.argument("dataset", type=click.Path(path_type=Path))
@json_option
@click.option(
    "--check",
    type=click.Choice(["decode", "header"]),
    default="decode",
    show_default=True,
    help="'decode' decodes every image (finds corrupt files, measures grayscale); "
    "'header' reads headers and end markers only (faster).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    envvar="AUTOTRANSFER_WORKERS",
    show_envvar=True,
    help="Processes used to read files [default: one per CPU core].",
)
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=100_000_000,
    show_default=True,
    help="Images with more pixels are refused as decompression bombs.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the full profile (with per-image records) to this JSON file.",
)
@click.option("--all-problems", is_flag=True, help="List every problem, not only the first 20.")
def command(
    dataset: Path,
    as_json: bool,
    check: str,
    workers: int | None,
    max_pixels: int,
    out: Path | None,
    all_problems: bool,
) -> None:
    """Profile DATASET: classes, splits, balance, resolution, formats, duplicates, broken files.

    DATASET is a folder of class folders (<class>/<image>), of split folders
    (<split>/<class>/<image>, splits named train, val/valid/validation or test), or a CSV
    manifest with a path and a label column. Files are only read, never changed.
    """
    from autotransfer.data.profile import profile_dataset, unusable_reasons
    from autotransfer.errors import UnusableDatasetError
    from autotransfer.report.profile import render_profile

    if out is not None:
        check_writable(out)
    console = stderr_console()
    with _progress(console, quiet=False) as update:
        profile = profile_dataset(
            dataset, check=check, workers=workers, max_pixels=max_pixels, strict=False,
            progress=update,
        )  # fmt: skip
    if out is not None:
        write_json_result(out, profile.to_dict(include_records=True))
    reasons = unusable_reasons(profile)
    if as_json:
        echo_json({**profile.to_dict(), "usable": not reasons, "unusable_reasons": reasons})
    else:
        from autotransfer.cli._common import stdout_console

        render_profile(profile, stdout_console(), max_problems=None if all_problems else 20)
    if reasons:
        raise UnusableDatasetError(
            f"The dataset at '{profile.root}' cannot be used for training: " + "; ".join(reasons)
            + ". Fix the problems listed above and run 'autotransfer profile' again.",
            profile=profile,
        )


class _progress:
    """A rich progress bar on stderr fed by ``profile_dataset``'s callback."""

    def __init__(self, console, quiet: bool) -> None:  # type: ignore[no-untyped-def]
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        self._bar = Progress(
            "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
            TimeRemainingColumn(), console=console, transient=True, disable=quiet,
        )  # fmt: skip
        self._task = None

    def __enter__(self):  # type: ignore[no-untyped-def]
        self._bar.__enter__()
        self._task = self._bar.add_task("Reading images", total=None)
        return self._update

    def _update(self, done: int, total: int) -> None:
        self._bar.update(self._task, completed=done, total=total)

    def __exit__(self, *exc) -> None:  # type: ignore[no-untyped-def]
        self._bar.__exit__(*exc)
