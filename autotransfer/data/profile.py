"""Profile a dataset: counts, balance, resolution, formats, duplicates and per-file problems."""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
import sys
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from functools import partial
from multiprocessing import get_all_start_methods, get_context

import numpy as np

from autotransfer.data.images import DEFAULT_MAX_PIXELS
from autotransfer.data.inspect import Check, Inspection, inspect_file
from autotransfer.data.layout import Candidate, Layout, discover
from autotransfer.data.models import (
    DatasetProfile,
    DuplicateGroup,
    FileProblem,
    ImageRecord,
    SplitProfile,
    Stats,
)
from autotransfer.errors import UnusableDatasetError

ProgressCallback = Callable[[int, int], None]

#: Below this many files a worker pool costs more than it saves.
_POOL_THRESHOLD = 64


def profile_dataset(
    path: str | os.PathLike[str],
    *,
    check: Check = "decode",
    workers: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    strict: bool = True,
    progress: ProgressCallback | None = None,
) -> DatasetProfile:
    """Profile the dataset at ``path`` (class folders, split folders or a CSV manifest).

    ``check="decode"`` decodes every image (JPEGs at reduced scale) so corrupt and truncated files
    are found and grayscale content measured; ``"header"`` reads headers and end markers only.
    Files are inspected in ``workers`` processes (default: one per core). The user's files are
    only read. With ``strict`` an :class:`UnusableDatasetError` (carrying the profile) is raised
    when the dataset cannot be trained on.
    """
    started = time.perf_counter()
    layout = discover(path)
    n_workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
    inspections = _inspect_all(layout.candidates, check, max_pixels, n_workers, progress)
    profile = _assemble(layout, inspections, check, n_workers, time.perf_counter() - started)
    if strict:
        reasons = unusable_reasons(profile)
        if reasons:
            raise UnusableDatasetError(
                f"The dataset at '{layout.root}' cannot be used for training: "
                + "; ".join(reasons)
                + ". Run 'autotransfer profile' on it to see every file's problem.",
                profile=profile,
            )
    return profile


def _inspect_all(
    candidates: list[Candidate],
    check: Check,
    max_pixels: int,
    workers: int,
    progress: ProgressCallback | None,
) -> list[Inspection]:
    task = partial(inspect_file, check=check, max_pixels=max_pixels)
    total = len(candidates)
    results: list[Inspection] = []
    if workers == 1 or total < _POOL_THRESHOLD:
        iterator: Iterable[Inspection] = map(task, candidates)
        pool = None
    else:
        pool = _make_pool(workers)
        chunk = max(1, min(64, total // (workers * 8)))
        iterator = pool.map(task, candidates, chunksize=chunk)
    try:
        for done, inspection in enumerate(iterator, start=1):
            results.append(inspection)
            if progress is not None:
                progress(done, total)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return results


def _make_pool(workers: int) -> Executor:
    """Forked processes where forking is safe (fast, and the caller's script is not re-run, as
    'spawn' would); threads once TensorFlow's thread pools exist in this process (Pillow and
    hashlib release the GIL while they work, so threads still use several cores)."""
    if "fork" in get_all_start_methods() and "tensorflow" not in sys.modules:
        return ProcessPoolExecutor(max_workers=workers, mp_context=get_context("fork"))
    return ThreadPoolExecutor(max_workers=workers)


def _stats(values: list[float]) -> Stats | None:
    if not values:
        return None
    arr = np.asarray(values, dtype=np.float64)
    p05, median, p95 = np.percentile(arr, [5, 50, 95])
    return Stats(
        min=float(arr.min()), p05=float(p05), median=float(median), mean=float(arr.mean()),
        p95=float(p95), max=float(arr.max()),
    )  # fmt: skip


def _assemble(
    layout: Layout, inspections: list[Inspection], check: Check, workers: int, elapsed: float
) -> DatasetProfile:
    records: list[ImageRecord] = [i.record for i in inspections if i.record is not None]
    problems: list[FileProblem] = list(layout.problems)
    for inspection in inspections:
        problems.extend(inspection.problems)
    problems.sort(key=lambda p: ({"error": 0, "warning": 1, "info": 2}[p.severity], p.path, p.code))

    classes = sorted({c.label for c in layout.candidates})
    split_order = [s for s in ("train", "val", "test") if s in layout.split_folders]
    if not split_order and layout.kind == "csv_manifest" and layout.split_folders:
        split_order = sorted(layout.split_folders)
    splits = []
    for name in split_order or [None]:
        in_split = [r for r in records if r.split == name]
        counts = Counter(r.label for r in in_split)
        splits.append(
            SplitProfile(
                name=name or "all",
                folder=layout.split_folders.get(name) if name else None,
                n_images=len(in_split),
                class_counts={c: counts.get(c, 0) for c in classes},
            )
        )
    overall = Counter(r.label for r in records)
    reference = next((s for s in splits if s.name == "train"), splits[0])
    present = [n for n in reference.class_counts.values() if n > 0]
    imbalance = (max(present) / min(present)) if present else 0.0

    n = len(records)
    decoded = [r for r in records if r.grayscale is not None]
    return DatasetProfile(
        root=str(layout.root),
        layout=layout.kind,  # type: ignore[arg-type]
        manifest=layout.manifest,
        classes=classes,
        splits=splits,
        n_images=n,
        n_files_seen=layout.n_files_seen,
        class_counts={c: overall.get(c, 0) for c in classes},
        imbalance_ratio=round(imbalance, 4),
        imbalance_split=reference.name,
        width=_stats([r.width for r in records]),
        height=_stats([r.height for r in records]),
        aspect=_stats([r.width / r.height for r in records]),
        file_size=_stats([r.file_size for r in records]),
        formats=dict(Counter(r.format for r in records).most_common()),
        modes=dict(Counter(r.mode for r in records).most_common()),
        grayscale_fraction=(sum(bool(r.grayscale) for r in decoded) / len(decoded))
        if decoded
        else None,
        alpha_fraction=(sum(r.has_alpha for r in records) / n) if n else 0.0,
        animated_fraction=(sum(r.frames > 1 for r in records) / n) if n else 0.0,
        duplicates=_duplicates(records),
        problems=problems,
        records=records,
        check=check,
        workers=workers,
        elapsed_s=round(elapsed, 3),
    )


def _duplicates(records: list[ImageRecord]) -> list[DuplicateGroup]:
    by_hash: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in records:
        by_hash[record.sha].append(record)
    groups = []
    for sha, members in by_hash.items():
        if len(members) < 2:
            continue
        labels = sorted({m.label for m in members})
        splits = sorted({m.split for m in members}, key=lambda s: s or "")
        groups.append(
            DuplicateGroup(
                sha=sha,
                files=[m.path for m in members],
                labels=labels,
                splits=splits,
                cross_split=len(splits) > 1,
                cross_class=len(labels) > 1,
            )
        )
    groups.sort(key=lambda g: (not g.cross_class, not g.cross_split, g.files[0]))
    return groups


def unusable_reasons(profile: DatasetProfile) -> list[str]:
    """Why a profiled dataset cannot be trained on (empty when it can)."""
    reasons = []
    if profile.n_images == 0:
        seen = profile.n_files_seen
        return [f"no usable images were found ({seen} files seen, {len(profile.errors)} broken)"]
    if len(profile.classes) < 2:
        names = ", ".join(f"'{c}'" for c in profile.classes) or "none"
        reasons.append(f"it has {len(profile.classes)} class ({names}); at least 2 are needed: "
                       "put each class's images in a folder of its own, named after the class")
    for split in profile.splits:
        if split.n_images == 0:
            reasons.append(f"the {split.name} split ('{split.folder}') has no usable images")
    train = next((s for s in profile.splits if s.name in ("train", "all")), None)
    if train is not None and train.n_images:
        short = {c: n for c, n in train.class_counts.items() if n < 2}
        if short:
            listing = ", ".join(f"'{c}' ({n})" for c, n in sorted(short.items()))
            reasons.append(
                f"class{'es' if len(short) > 1 else ''} {listing} "
                f"{'have' if len(short) > 1 else 'has'} fewer than 2 usable training images "
                "(one to train on and one to validate with, at least): add images to "
                f"{'them' if len(short) > 1 else 'it'}, or move "
                f"{'their folders' if len(short) > 1 else 'its folder'} out of the dataset"
            )
    return reasons
