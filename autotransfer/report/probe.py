"""Render a :class:`ProbeReport` as rich tables."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from autotransfer.probes.domain_gap import DomainGap
from autotransfer.probes.models import ProbeReport
from autotransfer.report.text import shown


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def render_probe(report: ProbeReport, console: Console) -> None:
    """Ranked transferability, BN shift by depth, and the ImageNet view of each class."""
    per_class = ", ".join(f"{shown(c)} {n}" for c, n in report.sample_per_class.items())
    console.print(f"[bold]Probe[/bold] {shown(report.root)}: {report.n_samples} sampled "
                  "training images "
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
            console.print(f"[dim]BN shift n/a for {p.backbone}: {shown(p.bn_shift.reason)}.[/dim]")

    viewer = next((p for p in report.ranked() if p.imagenet), None)
    if viewer is not None and viewer.imagenet is not None:
        console.print(f"[bold]What ImageNet sees[/bold] (top-1 predictions of {viewer.backbone})")
        for cls, concepts in viewer.imagenet.top_concepts.items():
            seen = ", ".join(f"{name.split(',')[0]} {share:.0%}" for name, share in concepts)
            console.print(f"  your '{shown(cls)}' look like: {shown(seen)}")
    for p in report.probes:
        if p.imagenet is None and p.imagenet_note:
            console.print(f"[dim]No ImageNet view from {p.backbone}: "
                          f"{shown(p.imagenet_note)}.[/dim]")
    if report.domain_gap is not None:
        render_gap(report.domain_gap, console)


def render_gap(gap: DomainGap, console: Console) -> None:
    """Source against the unlabelled target images (``--target``)."""
    console.print(f"[bold]Gap to the target[/bold] {shown(gap.target_root)} ({gap.n_target_images} "
                  f"images; {gap.n_source} source and {gap.n_target} target images measured with "
                  f"{gap.backbone}" + (", cached" if gap.cached else "") + ")")
    table = Table()
    for col in ("measure", "source", "target", "gap"):
        table.add_column(col, justify="left" if col == "measure" else "right", no_wrap=True)
    table.add_row("domain classifier error (chance 0.5)", "", "", _num(gap.domain_error, 3))
    table.add_row("proxy A-distance 2(1-2ε), 0..2", "", "", _num(gap.a_distance, 2))
    table.add_row("BN shift from ImageNet / between", _num(gap.source_bn_shift, 2),
                  _num(gap.target_bn_shift, 2), _num(gap.bn_overall, 2))
    table.add_row("ImageNet entropy (normalised)", _num(gap.source_entropy, 2),
                  _num(gap.target_entropy, 2), "")
    table.add_row("linear probe prediction entropy", _num(gap.source_pred_entropy, 2),
                  _num(gap.target_pred_entropy, 2), "")
    table.add_row("predicted classes (total variation)", "", "", _num(gap.class_tv, 2))
    console.print(table)
    if gap.bn_applicable and gap.bn_peak_group:
        by_group = ", ".join(f"{g} {_num(v, 2)}" for g, v in gap.bn_per_group.items())
        console.print(f"[dim]BN shift between source and target by depth: {by_group} (peak "
                      f"{gap.bn_peak_group})[/dim]")
    if gap.evaluation is not None:
        e = gap.evaluation
        after = ("" if e.adabn_linear_accuracy is None else
                 f"; {e.adabn_linear_accuracy:.1%} with AdaBN on each domain (half of them)")
        console.print(f"[dim]Target class folders (evaluation only, no decision reads them): the "
                      f"source linear probe gets {e.source_only_linear_accuracy:.1%} of "
                      f"{e.n_images} target images right{after}.[/dim]")
