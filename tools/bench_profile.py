#!/usr/bin/env python3
"""Benchmark the profiler: files per second on the shared datasets, cold and warm page cache.

    python tools/bench_profile.py [--datasets eurosat_rgb_3k flowers5_small] [--repeats 3]

"Cold" evicts every file of the dataset from the OS page cache first (posix_fadvise DONTNEED,
no root needed), so the files are read from disk; "warm" runs right after. Reports the median of
``--repeats`` runs and writes docs/benchmarks/profile.{md,json}.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from autotransfer._io import atomic_write_json, atomic_write_text  # noqa: E402
from autotransfer.data.profile import profile_dataset  # noqa: E402

SHARED = Path(os.environ.get("AUTOTRANSFER_SHARED", REPO.parent / "shared")) / "datasets"


def evict(root: Path) -> None:
    """Drop the dataset's files from the page cache."""
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def run(root: Path, check: str, workers: int, cold: bool) -> tuple[float, int]:
    if cold:
        evict(root)
    started = time.perf_counter()
    profile = profile_dataset(root, check=check, workers=workers, strict=False)
    return time.perf_counter() - started, profile.n_files_seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+",
                        default=["eurosat_rgb_3k", "flowers5_small", "hymenoptera", "chest_xray_224"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", nargs="+", type=int, default=[1, os.cpu_count() or 1])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "profile")
    args = parser.parse_args()

    load_before = os.getloadavg()
    rows = []
    for name in args.datasets:
        root = SHARED / name
        if not root.is_dir():
            sys.exit(f"{root} is missing: the benchmark needs ../shared/datasets.")
        for check in ("decode", "header"):
            for workers in sorted(set(args.workers)):
                for cold in (True, False):
                    times, n = [], 0
                    for _ in range(args.repeats):
                        seconds, n = run(root, check, workers, cold)
                        times.append(seconds)
                    median = statistics.median(times)
                    row = dict(dataset=name, files=n, check=check, workers=workers,
                               cache="cold" if cold else "warm", seconds=round(median, 3),
                               files_per_s=round(n / median, 1))
                    rows.append(row)
                    print(f"{name:16} {check:6} workers={workers} {row['cache']:4} "
                          f"{n:5d} files {median:6.2f}s {n / median:8.0f} files/s", flush=True)

    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    lines = [
        "# Profiler benchmark",
        "",
        f"`python tools/bench_profile.py` on {machine}; median of {args.repeats} runs.",
        "cold = dataset evicted from the page cache before each run; warm = files cached.",
        f"Load average (1, 5, 15 min) at the start {tuple(round(x, 2) for x in load_before)}, "
        f"at the end {tuple(round(x, 2) for x in os.getloadavg())}: with other jobs on the "
        "cores, a second worker has no core to run on.",
        "",
        "| dataset | files | check | workers | cache | seconds | files/s |",
        "|---|---:|---|---:|---|---:|---:|",
    ]
    lines += [
        f"| {r['dataset']} | {r['files']} | {r['check']} | {r['workers']} | {r['cache']} | "
        f"{r['seconds']:.2f} | {r['files_per_s']:.0f} |"
        for r in rows
    ]
    atomic_write_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    atomic_write_json(args.out.with_suffix(".json"), {"machine": machine, "rows": rows})
    print(f"Wrote {args.out.with_suffix('.md')} and .json")


if __name__ == "__main__":
    main()
