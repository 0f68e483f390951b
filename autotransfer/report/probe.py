"""Render a :class:`ProbeReport` as rich tables."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from autotransfer.probes.models import ProbeReport


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def render_probe(report: ProbeReport, console: Console) -> None:
    """Ranked transferability, BN shift by depth, and the ImageNet view of each class."""
    per_class = ", ".join(f"{c} {n}" for c, n in report.sample_per_class.items())
    console.print(f"[bold]Probe[/bold] {report.root}: {report.n_samples} sampled training images "
                  f"(seed {report.seed}; {per_class}) in {report.elapsed_s:.1f}s")

    console.print("[bold]Transferability[/bold] (ranked by LogME; accuracies are cross-validated on the sample)")
    table = Table()
    for col in ("backbone", "LogME", "k-NN", "linear", "separab.", "BN shift", "entropy"):
        table.add_column(col, justify="left" if col == "backbone" else "right", no_wrap=True)
    for p in report.ranked():
        t = p.transferability
        entropy = _num(p.imagenet.normalized_entropy, 2) if p.imagenet else "n/a"
        table.add_row(p.backbone, _num(t.logme), f"{t.knn_accuracy:.1%}",
                      f"{t.linear_probe_accuracy:.1%}", _num(t.separability, 2),
                      _num(p.bn_shift.overall), entropy)
    console.print(table)
    timings = ", ".join(
        f"{p.backbone} {p.input_size}px×{p.feature_dim} "
        + ("cached" if p.cached else f"{p.extract_s:.1f}s") + f" + {p.measure_s:.1f}s"
        for p in report.probes
    )
    console.print(f"[dim]Input × feature size and time (extraction + statistics): {timings}[/dim]")

    applicable = [p for p in report.probes if p.bn_shift.applicable]
    if applicable:
        groups = list(applicable[0].bn_shift.per_group)
        console.print("[bold]BatchNorm-statistics shift by depth[/bold] "
                      "(symmetric KL to ImageNet; higher = less like ImageNet)")
        shift = Table()
        shift.add_column("backbone", no_wrap=True)
        for g in groups:
            shift.add_column(g, justify="right", no_wrap=True)
        shift.add_column("peak", no_wrap=True)
        for p in applicable:
            shift.add_row(p.backbone, *[_num(p.bn_shift.per_group.get(g)) for g in groups],
                          p.bn_shift.peak_group or "")
        console.print(shift)
    for p in report.probes:
        if not p.bn_shift.applicable:
            console.print(f"[dim]BN shift n/a for {p.backbone}: {p.bn_shift.reason}.[/dim]")

    viewer = next((p for p in report.ranked() if p.imagenet), None)
    if viewer is not None and viewer.imagenet is not None:
        console.print(f"[bold]What ImageNet sees[/bold] (top-1 predictions of {viewer.backbone})")
        for cls, concepts in viewer.imagenet.top_concepts.items():
            seen = ", ".join(f"{name.split(',')[0]} {share:.0%}" for name, share in concepts)
            console.print(f"  your '{cls}' look like: {seen}")
    for p in report.probes:
        if p.imagenet is None and p.imagenet_note:
            console.print(f"[dim]No ImageNet view from {p.backbone}: {p.imagenet_note}.[/dim]")
