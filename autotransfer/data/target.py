"""The unlabelled *target* images: where the model will be used (``--target DIR``).

Any layout is read: images directly in the folder, in folders, in nested folders. The folder is
walked with the dataset's own safe walk (:mod:`.walk`: nothing outside it is read, links are
followed once) and every file is checked as the profiler checks it (:func:`.inspect.inspect_file`:
content sniffing, full decode, hashing). The records carry **no label**: class folders, when the
target has them, are kept apart in :attr:`TargetSet.eval_labels`, for measuring accuracy on the
target afterwards, and nothing that adapts or selects reads them.

A target folder that cannot be used is refused with a :class:`TargetFolderError` saying which
path and what to do: missing, unreadable, empty, holding files that are not usable images
(mixed in or corrupt), the source dataset itself (or inside it, or around it), or sharing images
(same bytes) with the source.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from autotransfer.data.images import DEFAULT_MAX_PIXELS
from autotransfer.data.layout import SPLIT_ALIASES, Layout
from autotransfer.data.models import DatasetProfile, FileProblem, ImageRecord, count_codes, problem
from autotransfer.data.splits import DataSplits
from autotransfer.data.walk import FolderWalk, within
from autotransfer.errors import TargetFolderError

#: At most this many offending files are named in an error message (the count says the rest).
_SHOWN = 5


class TargetSet(BaseModel):
    """The usable images of a target folder, unlabelled."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    root: str
    n_images: int
    n_files_seen: int
    records: list[ImageRecord] = Field(
        description="The usable images; label '' (unlabelled) and split None for every one.")
    eval_labels: dict[str, str] = Field(
        default_factory=dict,
        description="Image path -> class folder, when every image lies in a class folder and "
        "there are at least two: for evaluating on the target only; nothing that adapts or "
        "selects reads it.")
    problems: list[FileProblem] = Field(
        default_factory=list, description="Entries skipped on purpose (hidden files, second "
        "links) and warnings about used files.")
    seconds: float = 0.0

    @property
    def labelled(self) -> bool:
        """The target has class folders (usable to evaluate, never to train or select)."""
        return bool(self.eval_labels)

    @property
    def hashes(self) -> list[str]:
        """Content hashes of the images, in record order."""
        return [r.sha for r in self.records]


def read_target(path: str | os.PathLike[str], source: DatasetProfile | DataSplits | None = None,
                *, workers: int | None = None,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> TargetSet:
    """Read and check the target folder ``path``; with ``source`` (the training data's profile
    or splits), also refuse the source folder itself and images the source holds too."""
    from autotransfer.data.profile import _inspect_all

    started = time.perf_counter()
    root = Path(path)
    entries = _list_root(root)
    if source is not None:
        _check_apart(root, Path(source.root))
    layout = _walk(root, entries)
    n_workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
    inspections = _inspect_all(layout.candidates, "decode", max_pixels, n_workers, None)
    problems = list(layout.problems)
    for inspection in inspections:
        problems.extend(inspection.problems)
    _refuse_unusable(root, problems)
    records = [i.record.model_copy(update={"label": "", "split": None})
               for i in inspections if i.record is not None]
    if not records:
        raise TargetFolderError(
            f"The target folder '{root}' holds no images ({layout.n_files_seen} files seen). Put "
            "unlabelled images from where the model will be used in it (any layout; JPEG, PNG, "
            "GIF, BMP, WebP or TIFF).")
    if source is not None:
        _refuse_overlap(root, records, source)
    return TargetSet(root=str(root), n_images=len(records), n_files_seen=layout.n_files_seen,
                     records=sorted(records, key=lambda r: r.path),
                     eval_labels=_eval_labels([r.path for r in records]),
                     problems=sorted(problems, key=lambda p: (p.path, p.code)),
                     seconds=round(time.perf_counter() - started, 3))


def _list_root(root: Path) -> list[os.DirEntry[str]]:
    if not os.path.lexists(root):
        raise TargetFolderError(
            f"The target folder '{root}' does not exist. Pass a folder of unlabelled images from "
            "where the model will be used (any layout).")
    if not root.is_dir():
        raise TargetFolderError(
            f"The target '{root}' is not a folder. Pass a folder of unlabelled images (any "
            "layout; a CSV manifest is not read for the target).")
    try:
        return sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        raise TargetFolderError(
            f"The target folder '{root}' cannot be listed ({exc.strerror}). Make it readable "
            f"(e.g. chmod -R a+rX '{root}').") from exc


def _check_apart(root: Path, source_root: Path) -> None:
    target_real, source_real = os.path.realpath(root), os.path.realpath(source_root)
    if target_real == source_real:
        raise TargetFolderError(
            f"The target folder '{root}' is the source dataset itself. The target holds other, "
            "unlabelled images: those from where the model will be used.")
    if within(target_real, source_real) or within(source_real, target_real):
        inner, outer = (root, source_root) if within(target_real, source_real) else (
            source_root, root)
        raise TargetFolderError(
            f"The target folder '{root}' and the source dataset '{source_root}' overlap: "
            f"'{inner}' lies inside '{outer}'. Keep the unlabelled target images in a folder of "
            "their own, outside the source dataset.")


def _walk(root: Path, entries: list[os.DirEntry[str]]) -> Layout:
    """Every file under ``root``, whatever the layout, through the dataset's safe walk."""
    layout = Layout(root=root, kind="target")
    walk = FolderWalk(layout)
    walk.walked[walk.root_real] = "."
    for entry in entries:
        if entry.name.startswith("."):
            layout.problems.append(problem(entry.name, "hidden_file", "Hidden entry skipped."))
        elif not entry.is_symlink() and not _is_dir(entry):
            layout.n_files_seen += 1
            real = os.path.join(walk.root_real, entry.name)
            walk.taken[real] = (entry.name, "")
            layout.add(entry.path, entry.name, "", None)
        else:  # a folder, or a link (followed once, inside the folder only)
            walk.class_folder(entry, entry.name, None, walk.root_real)
    walk.finish()
    return layout


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


#: Entries of a target folder that are fine to skip: hidden files, a second link to an image
#: already read, a folder with nothing in it.
_SKIPPABLE = {"hidden_file", "duplicate_link", "empty_class_folder"}


def _refuse_unusable(root: Path, problems: list[FileProblem]) -> None:
    bad = [p for p in problems if p.leaves_out and p.code not in _SKIPPABLE]
    if not bad:
        return
    shown = "; ".join(f"'{p.path}' ({p.code}: {p.message.rstrip('.')})" for p in bad[:_SHOWN])
    more = f" and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
    raise TargetFolderError(
        f"The target folder '{root}' holds {len(bad)} file(s) that are not usable images "
        f"({count_codes(bad)}): {shown}{more}. The target must hold only images: move the other "
        "files out of it, and re-copy or delete the broken ones.")


def _refuse_overlap(root: Path, records: list[ImageRecord],
                    source: DatasetProfile | DataSplits) -> None:
    mine = (source.records if isinstance(source, DatasetProfile)
            else [*source.train, *source.val, *source.test])
    in_source: dict[str, str] = {}
    for record in mine:
        in_source.setdefault(record.sha, record.path)
    shared = [(r.path, in_source[r.sha]) for r in records if r.sha in in_source]
    if not shared:
        return
    shown = "; ".join(f"'{t}' = source '{s}'" for t, s in shared[:_SHOWN])
    more = f" and {len(shared) - _SHOWN} more" if len(shared) > _SHOWN else ""
    raise TargetFolderError(
        f"{len(shared)} of the {len(records)} images in the target folder '{root}' are also in "
        f"the source dataset '{source.root}' (same bytes): {shown}{more}. The target holds "
        "unlabelled images from where the model will be used, not training images: remove these "
        "copies from the target folder.")


def _eval_labels(paths: list[str]) -> dict[str, str]:
    """Class folder of each image (``<class>/…`` or ``<split>/<class>/…``), when every image has
    one and there are at least two; otherwise none."""
    labels: dict[str, str] = {}
    for rel in paths:
        parts = rel.split("/")
        if len(parts) >= 3 and parts[0].lower() in SPLIT_ALIASES:
            labels[rel] = parts[1]
        elif len(parts) >= 2:
            labels[rel] = parts[0]
        else:
            return {}
    return labels if len(set(labels.values())) >= 2 else {}


def resolve_target(target: str | os.PathLike[str] | TargetSet | None,
                   source: DatasetProfile | DataSplits | None = None) -> TargetSet | None:
    """``target`` as a :class:`TargetSet`: read (and checked against ``source``) when it is a
    path, as given when it is one already, ``None`` when there is none."""
    if target is None or isinstance(target, TargetSet):
        return target
    return read_target(target, source)


def check_apart_from(target: TargetSet, source: DatasetProfile | DataSplits) -> None:
    """Refuse ``target`` if it is (in or around) ``source``'s folder or shares images with it
    (for a target read before the source was profiled)."""
    _check_apart(Path(target.root), Path(source.root))
    _refuse_overlap(Path(target.root), target.records, source)


def fingerprint(target: TargetSet) -> str:
    """SHA-256 of the target's sorted content hashes: which images, whatever their names."""
    import hashlib

    return hashlib.sha256("\n".join(sorted(target.hashes)).encode()).hexdigest()
