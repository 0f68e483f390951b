"""``autotransfer probe DATASET``: how well each pretrained backbone fits the data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from autotransfer.cli._common import backbone_file_option
from autotransfer.cli._common import (check_writable, echo_json, json_option, stderr_console,
                                      stdout_console, write_json_result)


#: files named on stderr before a pointer to ``profile --all-problems``
LEFT_OUT_SHOWN = 20


def echo_left_out(profile: Any) -> None:
    """Name on stderr the files of ``profile`` that nothing measures, each with why."""
    from autotransfer.data.models import count_codes, printable

    left = [p for p in profile.problems if p.severity != "warning"]
    if not left:
        return
    lines = [f"Left out {len(left)} file(s) of the dataset: {count_codes(left)}."]
    lines += [f"  {printable(p.path)}: {p.code}: {p.message}" for p in left[:LEFT_OUT_SHOWN]]
    if len(left) > LEFT_OUT_SHOWN:
        lines.append(f"  … and {len(left) - LEFT_OUT_SHOWN} more: 'autotransfer profile "
                     f"{profile.root} --all-problems' lists every one, with what to do.")
    click.echo("\n".join(lines), err=True)


@click.command("probe")
@click.argument("dataset", type=click.Path(path_type=Path))
@click.option("--backbones", "-b", default=None, metavar="NAMES",
              help="Comma-separated backbone names [default: those with weights on this machine].")
@click.option("--sample", "per_class", type=click.IntRange(min=2), default=64, show_default=True,
              help="At most this many training images per class.")
@click.option("--max-total", type=click.IntRange(min=4), default=1000, show_default=True,
              help="At most this many images in all.")
@click.option("--image-size", type=click.IntRange(min=16), default=None,
              help="Input size of every backbone [default: each backbone's own].")
@click.option("--seed", type=click.IntRange(0, 2**31 - 1), default=0, show_default=True, help="Seed of the sample.")
@click.option("--no-cache", is_flag=True, help="Do not read or write the feature cache "
              "($AUTOTRANSFER_CACHE, default ~/.cache/autotransfer).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the report to this JSON file.")
@json_option
@backbone_file_option
def command(dataset: Path, backbones: str | None, per_class: int, max_total: int,
            image_size: int | None, seed: int, no_cache: bool, out: Path | None,
            as_json: bool) -> None:
    """Measure how close DATASET is to ImageNet for each candidate backbone.

    On a stratified, seeded sample of the training images: BatchNorm-statistics shift by layer
    group, ImageNet prediction entropy and the concepts ImageNet sees in each class, LogME,
    cross-validated k-NN and linear-probe accuracy, and class separability. Features are cached,
    so a second run on the same data is near-instant.
    """
    from autotransfer.data.profile import profile_dataset
    from autotransfer.probes.probe import probe_dataset

    if out is not None:
        check_writable(out)
    names = [b.strip() for b in backbones.split(",") if b.strip()] if backbones else None
    console = stderr_console()
    with console.status("Profiling the dataset"):
        profile = profile_dataset(dataset)
    echo_left_out(profile)
    with console.status("Probing") as status:
        def progress(backbone: str, what: str) -> None:
            status.update(f"{backbone + ': ' if backbone else ''}{what}")

        report = probe_dataset(profile, names, per_class=per_class, total=max_total, seed=seed,
                               input_size=image_size, cache=not no_cache, progress=progress)
    if out is not None:
        write_json_result(out, report.model_dump(mode="json"))
    if as_json:
        echo_json(report.model_dump(mode="json"))
    else:
        from autotransfer.report.probe import render_probe

        render_probe(report, stdout_console())
