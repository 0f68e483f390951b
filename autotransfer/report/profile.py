"""Render a :class:`DatasetProfile` as rich tables."""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from rich.table import Table

from autotransfer.data.models import DatasetProfile, Stats
from autotransfer.report.text import shown

_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "dim"}


def _fmt_stats(stats: Stats | None, unit: str = "", digits: int = 0) -> list[str]:
    if stats is None:
        return ["-"] * 4
    f = f"{{:,.{digits}f}}{unit}"
    return [f.format(stats.min), f.format(stats.median), f.format(stats.mean), f.format(stats.max)]


def render_profile(profile: DatasetProfile, console: Console, max_problems: int | None = 20) -> None:
    """Print the profile: summary, counts, image statistics, duplicates and problems."""
    manifest = f" (manifest {shown(profile.manifest)})" if profile.manifest else ""
    where = shown(profile.root) + manifest
    console.print(f"[bold]Dataset[/bold] {where}")
    console.print(
        f"{profile.layout.replace('_', ' ')} · {len(profile.classes)} classes · "
        f"{profile.n_images:,} usable images of {profile.n_files_seen:,} files · "
        f"checked by {profile.check} in {profile.elapsed_s:.2f}s with {profile.workers} worker(s)"
    )

    console.print("[bold]Images per class")
    counts = Table()
    counts.add_column("class")
    for split in profile.splits:
        counts.add_column(split.name, justify="right")
    for cls in profile.classes:
        counts.add_row(shown(cls), *[str(s.class_counts.get(cls, 0)) for s in profile.splits])
    counts.add_row("[bold]total", *[f"[bold]{s.n_images}" for s in profile.splits])
    console.print(counts)
    style = "bold red" if profile.imbalance_ratio >= 3 else ("yellow" if profile.imbalance_ratio >= 1.5 else "green")
    console.print(
        f"Imbalance (largest / smallest class, {profile.imbalance_split} split): "
        f"[{style}]{profile.imbalance_ratio:.2f}[/]"
    )

    console.print("[bold]Image sizes")
    sizes = Table()
    for col in ("", "min", "median", "mean", "max"):
        sizes.add_column(col, justify="right" if col else "left")
    sizes.add_row("width (px)", *_fmt_stats(profile.width))
    sizes.add_row("height (px)", *_fmt_stats(profile.height))
    sizes.add_row("aspect (w/h)", *_fmt_stats(profile.aspect, digits=2))
    sizes.add_row("file size (KB)", *_fmt_stats(
        profile.file_size and Stats(**{k: v / 1024 for k, v in profile.file_size.model_dump().items()}),
        digits=1,
    ))  # fmt: skip
    console.print(sizes)
    fmt = ", ".join(f"{k} {v}" for k, v in profile.formats.items()) or "-"
    modes = ", ".join(f"{k} {v}" for k, v in profile.modes.items()) or "-"
    gray = "not measured (header check)" if profile.grayscale_fraction is None else f"{profile.grayscale_fraction:.1%}"
    console.print(f"Formats: {fmt} · colour modes: {modes}")
    console.print(
        f"Grayscale content: {gray} · with alpha: {profile.alpha_fraction:.1%} · "
        f"animated: {profile.animated_fraction:.1%}"
    )

    _render_duplicates(profile, console)
    _render_problems(profile, console, max_problems)


def _render_duplicates(profile: DatasetProfile, console: Console) -> None:
    if not profile.duplicates:
        console.print("Exact duplicates: [green]none[/]")
        return
    leaks, conflicts = profile.leakage, profile.label_conflicts
    console.print(
        f"Exact duplicates: {len(profile.duplicates)} group(s) · "
        f"[{'bold red' if leaks else 'green'}]{len(leaks)} across splits (leakage)[/] · "
        f"[{'bold red' if conflicts else 'green'}]{len(conflicts)} across classes (label conflicts)[/]"
    )
    table = Table(show_header=True)
    table.add_column("kind")
    table.add_column("files")
    for group in profile.duplicates[:10]:
        kind = "label conflict" if group.cross_class else ("leakage" if group.cross_split else "same class")
        table.add_row(kind, "\n".join(shown(f) for f in group.files))
    console.print(table)
    if len(profile.duplicates) > 10:
        console.print(f"… and {len(profile.duplicates) - 10} more group(s) (use --json).")


def _render_problems(profile: DatasetProfile, console: Console, limit: int | None) -> None:
    if not profile.problems:
        console.print("Problems: [green]none[/]")
        return
    by_code = Counter((p.severity, p.code) for p in profile.problems)
    summary = " · ".join(
        f"[{_SEVERITY_STYLE[sev]}]{code} {n}[/]" for (sev, code), n in sorted(by_code.items())
    )
    console.print(f"Problems: {summary}")
    table = Table(show_header=True)
    for col in ("severity", "code", "file", "what", "what to do"):
        table.add_column(col, overflow="fold")
    listed = profile.problems if limit is None else profile.problems[:limit]
    for p in listed:
        table.add_row(f"[{_SEVERITY_STYLE[p.severity]}]{p.severity}", p.code, shown(p.path),
                      shown(p.message), shown(p.hint))
    console.print(table)
    if len(listed) < len(profile.problems):
        console.print(f"… {len(profile.problems) - len(listed)} more "
                      "(use --all-problems or --json).")
