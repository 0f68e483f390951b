"""``autotransfer backbones``: the backbone catalog and what is usable on this machine."""

from __future__ import annotations

from typing import Any

import click

from autotransfer.cli._common import backbone_file_option, echo_json, json_option, stdout_console

_STATUS_TEXT = {
    "cached": "[green]cached[/]",
    "offline_package": "[green]offline package[/]",
    "needs_download": "[yellow]needs download[/]",
    "unavailable": "[red]unavailable[/]",
}


def _rows(pattern: str | None, available: bool) -> list[dict[str, Any]]:
    from autotransfer.backbones.catalog import list_backbones
    from autotransfer.backbones.weights import WeightStatus, weight_status

    rows = []
    for spec in list_backbones(pattern):
        status = weight_status(spec)
        if available and status not in (WeightStatus.CACHED, WeightStatus.OFFLINE_PACKAGE):
            continue
        rows.append({**spec.to_dict(), "weights_status": status.value})
    return rows


@click.command(name="backbones")
@click.argument("pattern", required=False)
@click.option("--available", is_flag=True,
              help="Only backbones whose ImageNet weights are on this machine (cached in "
                   "$KERAS_HOME/models or installed as an offline package).")
@json_option
@backbone_file_option
def command(pattern: str | None, available: bool, as_json: bool) -> None:
    """List the pretrained backbones, with their weights' availability on this machine.

    PATTERN filters names shell-style, e.g. 'efficientnet*'. Weights status: cached (in Keras'
    cache, $KERAS_HOME/models), needs download (Keras fetches it on first use), offline package
    (installed with pip), unavailable.
    """
    rows = _rows(pattern, available)
    if as_json:
        echo_json(rows)
        return
    from rich.table import Table

    table = Table(title="Backbones: parameters without the classifier, ImageNet top-1, weights here")
    table.add_column("name", no_wrap=True)
    for header in ("params", "top-1", "input"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("BN", no_wrap=True)
    table.add_column("weights", no_wrap=True)
    for row in rows:
        top1 = f"{row['imagenet_top1']:.1f}%" if row["imagenet_top1"] is not None else "-"
        table.add_row(row["name"], f"{row['params'] / 1e6:.1f}M", top1,
                      str(row["default_input_size"]), row["bn_statistics"],
                      _STATUS_TEXT[row["weights_status"]])
    console = stdout_console()
    console.print(table)
    if not rows:
        console.print("No backbone matches." + (" Drop --available to see all." if available
                                                else ""))
