"""``autotransfer predict MODEL IMAGES...``: the most likely classes of image files."""

from __future__ import annotations

from pathlib import Path

import click

from autotransfer.cli._common import echo_json, json_option, stdout_console


@click.command("predict")
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--top-k", "-k", type=click.IntRange(min=1), default=3, show_default=True,
              help="How many classes to show per image.")
@json_option
def command(model: Path, images: tuple[Path, ...], top_k: int, as_json: bool) -> None:
    """Predict the class of each of IMAGES with MODEL (a run folder or its model.keras)."""
    from autotransfer.errors import InvalidParameterError
    from autotransfer.train.inference import predict

    missing = [str(p) for p in images if not p.is_file()]
    if missing:
        raise InvalidParameterError(f"Image file(s) not found: {', '.join(missing)}.")
    predictions = predict(model, list(images), top_k=top_k)
    if as_json:
        echo_json([p.to_dict() for p in predictions])
        return
    from rich.table import Table

    table = Table()
    table.add_column("image")
    for i in range(top_k):
        table.add_column(f"#{i + 1}")
    for p in predictions:
        cells = [f"{label} {prob:.3f}" for label, prob in p.top]
        table.add_row(p.path, *cells, *[""] * (top_k - len(cells)))
    stdout_console().print(table)
