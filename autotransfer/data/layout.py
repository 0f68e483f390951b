"""Find a dataset's files and their labels: class folders, split folders or a CSV manifest.

Discovery never opens images; it returns candidate files with their class and split, plus the
problems found on the way (hidden files, loops, paths escaping the root, label conflicts …).
Nothing outside the dataset folder is read: see :mod:`.walk` for how links are treated.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotransfer.data.formats import looks_like_image_name
from autotransfer.data.models import FileProblem, problem
from autotransfer.data.walk import FolderWalk
from autotransfer.errors import DatasetError, DatasetNotFoundError, ManifestError

#: Folder or manifest names of splits (case-insensitive) -> canonical split name.
SPLIT_ALIASES: dict[str, str] = {
    "train": "train", "training": "train", "trn": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val",
    "test": "test", "testing": "test", "tst": "test",
}  # fmt: skip

PATH_COLUMNS = ("path", "filepath", "file_path", "file", "filename", "file_name", "image",
                "image_path", "img", "img_path")  # fmt: skip
LABEL_COLUMNS = ("label", "class", "class_name", "category", "target", "y")
SPLIT_COLUMNS = ("split", "subset", "set", "fold", "partition")


def class_name_problem(label: str) -> str | None:
    """Why ``label`` cannot name a class (it holds a line break: ``labels.txt`` keeps one class
    name per line, so the run's model could never be used), or ``None``."""
    if len(f"x{label}x".splitlines()) == 1:
        return None
    return (f"The class name {label!r} holds a line break, so no labels.txt can hold it; its "
            "images are left out.")


@dataclass(frozen=True)
class Candidate:
    """A file that should be an image of class ``label`` in split ``split``."""

    path: str  # absolute
    rel: str  # relative to the dataset root, '/'-separated
    label: str
    split: str | None


@dataclass
class Layout:
    """What discovery found."""

    root: Path
    kind: str  # class_folders | split_folders | csv_manifest
    candidates: list[Candidate] = field(default_factory=list)
    problems: list[FileProblem] = field(default_factory=list)
    split_folders: dict[str, str] = field(default_factory=dict)  # canonical -> as found
    manifest: str | None = None
    n_files_seen: int = 0

    def add(self, path: str, rel: str, label: str, split: str | None) -> None:
        """Add a candidate file."""
        self.candidates.append(Candidate(path, rel, label, split))


def discover(path: str | os.PathLike[str]) -> Layout:
    """Find the candidate image files of the dataset at ``path`` (a folder or a CSV manifest)."""
    given = Path(path)
    if not os.path.lexists(given):
        raise DatasetNotFoundError(
            f"Dataset path '{given}' does not exist. Pass a folder of class folders "
            "(<class>/<image>), of split folders (<split>/<class>/<image>) or a CSV manifest."
        )
    if given.is_file():
        if given.suffix.lower() != ".csv":
            raise DatasetError(
                f"'{given}' is a file but not a CSV manifest. Pass the dataset folder, or a .csv "
                "with a path column and a label column."
            )
        return _from_manifest(given)
    if not given.is_dir():
        raise DatasetNotFoundError(f"Dataset path '{given}' is neither a folder nor a CSV file. "
                                   "Pass a folder of class folders or a CSV manifest.")
    try:
        entries = sorted(os.scandir(given), key=lambda e: e.name)
    except PermissionError as exc:
        raise DatasetNotFoundError(
            f"Dataset folder '{given}' cannot be listed (permission denied). Make it readable."
        ) from exc
    subdirs = [e for e in entries if not e.name.startswith(".") and _is_dir(e)]
    manifests = [e for e in entries if e.name.lower().endswith(".csv") and e.is_file()]
    if not subdirs and len(manifests) == 1:
        return _from_manifest(Path(manifests[0].path))
    if not subdirs and len(manifests) > 1:
        names = ", ".join(m.name for m in manifests)
        raise DatasetError(
            f"'{given}' holds no class folders but several CSV files ({names}). "
            f"Pass the manifest to use, e.g. 'autotransfer profile {given / manifests[0].name}'."
        )
    return _from_folders(given, entries, subdirs)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _from_folders(root: Path, entries: list[os.DirEntry[str]], subdirs: list) -> Layout:
    split_dirs = [d for d in subdirs if d.name.lower() in SPLIT_ALIASES]
    layout = Layout(root=root, kind="class_folders")
    if split_dirs and len(split_dirs) != len(subdirs):
        others = ", ".join(d.name for d in subdirs if d not in split_dirs)
        splits = ", ".join(d.name for d in split_dirs)
        raise DatasetError(
            f"'{root}' mixes split folders ({splits}) with other folders ({others}). Use either "
            "<class>/<image> or <split>/<class>/<image>, with splits named train, val or test."
        )
    walk = FolderWalk(layout)
    if split_dirs:
        layout.kind = "split_folders"
        seen: dict[str, str] = {}
        for d in split_dirs:
            canonical = SPLIT_ALIASES[d.name.lower()]
            if canonical in seen:
                raise DatasetError(
                    f"'{root}' has two folders for the {canonical} split: '{seen[canonical]}' and "
                    f"'{d.name}'. Merge them or rename one."
                )
            seen[canonical] = d.name
        layout.split_folders = seen
        for d in sorted(split_dirs, key=lambda e: (e.is_symlink(), e.name)):  # links last
            found = walk.split_folder(d)
            if found is None:
                continue
            folder, real = found
            try:
                split_entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError as exc:
                raise DatasetError(
                    f"Split folder '{d.path}' cannot be listed: {exc.strerror}. Make it readable."
                ) from exc
            _report_loose_files(layout, Path(folder), d.name + "/", split_entries)
            for class_dir in split_entries:
                if not class_dir.name.startswith(".") and _is_dir(class_dir):
                    walk.class_folder(class_dir, f"{d.name}/{class_dir.name}",
                                      SPLIT_ALIASES[d.name.lower()], real)
    else:
        _report_loose_files(layout, root, "", entries)
        for class_dir in subdirs:
            walk.class_folder(class_dir, class_dir.name, None, walk.root_real)
    walk.finish()
    return layout


def _report_loose_files(
    layout: Layout, folder: Path, rel_prefix: str, entries: list | None = None
) -> None:
    """Files directly in the root or a split folder belong to no class: report them."""
    if entries is None:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    for entry in entries:
        rel = rel_prefix + entry.name
        if entry.name.startswith("."):
            layout.problems.append(problem(rel, "hidden_file", "Hidden entry skipped."))
        elif not _is_dir(entry):
            layout.n_files_seen += 1
            if entry.name.lower().endswith(".csv") and not rel_prefix:
                layout.problems.append(
                    problem(rel, "not_an_image", "CSV file ignored: class folders define labels.")
                )
            elif looks_like_image_name(entry.name):
                layout.problems.append(
                    problem(rel, "outside_class_folder", "Image outside any class folder skipped.")
                )
            else:
                layout.problems.append(problem(rel, "not_an_image", "Not in a class folder."))


@dataclass(frozen=True)
class _Row:
    line: int
    full: str
    label: str
    split: str | None


def _manifest_conflict(layout: Layout, manifest: str, rel: str, rows: list[_Row]) -> bool:
    """Name a file the manifest gives several labels (or splits) as a conflict; it is left out."""
    for what, values in (("label", [r.label for r in rows]), ("split", [r.split for r in rows])):
        if len(set(values)) > 1:
            listing = ", ".join(f"row {r.line} says '{v}'"
                                for r, v in zip(rows, values, strict=True))
            layout.problems.append(problem(
                rel, f"{what}_conflict",
                f"{manifest} gives this file {len(set(values))} different {what}s ({listing}); "
                "left out."))
            return True
    return False


def _pick_column(header: list[str], names: tuple[str, ...]) -> str | None:
    lowered = {h.strip().lower(): h for h in header}
    return next((lowered[n] for n in names if n in lowered), None)


def _csv_rows(reader: csv.DictReader, csv_path: Path) -> Iterator[dict[str, Any]]:
    """The rows of ``reader``; a line the csv module cannot parse is a :class:`ManifestError`."""
    try:
        yield from reader
    except csv.Error as exc:
        raise ManifestError(
            f"Manifest '{csv_path}' cannot be read as CSV at line {reader.line_num + 1}: {exc}. "
            "Correct that line (a field over 128 KiB, or a quote left open) and run the "
            "command again.") from None


def _from_manifest(csv_path: Path) -> Layout:
    root = csv_path.parent
    layout = Layout(root=root, kind="csv_manifest", manifest=csv_path.name)
    try:
        text = csv_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ManifestError(
            f"Manifest '{csv_path}' is not UTF-8 text ({exc.reason} at byte {exc.start}). "
            "Save it as UTF-8."
        ) from exc
    except OSError as exc:
        raise ManifestError(f"Manifest '{csv_path}' cannot be read: {exc.strerror}. Check the "
                            "path and make the file readable.") from exc
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    # a file-like reader, not text.splitlines(): that split quoted fields holding a line break,
    # and rows at U+2028 or U+0085, silently changing labels
    reader = csv.DictReader(io.StringIO(text, newline=""), dialect=dialect)
    header = reader.fieldnames or []
    path_col = _pick_column(header, PATH_COLUMNS)
    label_col = _pick_column(header, LABEL_COLUMNS)
    split_col = _pick_column(header, SPLIT_COLUMNS)
    if path_col is None or label_col is None:
        missing = " and ".join(
            what for what, col in (("a path column", path_col), ("a label column", label_col))
            if col is None
        )
        raise ManifestError(
            f"Manifest '{csv_path}' lacks {missing}. Its header is {header}. Name the columns "
            f"e.g. 'path' (or {', '.join(PATH_COLUMNS[1:5])}) and 'label' (or "
            f"{', '.join(LABEL_COLUMNS[1:4])}); an optional 'split' column gives train/val/test."
        )
    root_real = os.path.realpath(root)
    rows: dict[str, list[_Row]] = {}  # rel -> every row naming it, in order
    for line_no, row in enumerate(_csv_rows(reader, csv_path), start=2):
        raw_path = (row.get(path_col) or "").strip()
        label = (row.get(label_col) or "").strip()
        where = f"{csv_path.name}:{line_no}"
        if not raw_path or not label:
            layout.problems.append(problem(
                raw_path or where, "bad_manifest_row",
                f"Row {line_no} of {csv_path.name} lacks a path or label."))
            continue
        bad_label = class_name_problem(label)
        if bad_label:
            layout.problems.append(problem(raw_path, "bad_class_name",
                                           f"Row {line_no} of {csv_path.name}: {bad_label}"))
            continue
        if "\0" in raw_path:
            layout.problems.append(problem(
                where, "bad_manifest_row",
                f"Row {line_no} of {csv_path.name}: its path holds a NUL character, which no "
                "file name can; correct the path."))
            continue
        split = None
        if split_col is not None:
            split_value = (row.get(split_col) or "").strip()
            split = SPLIT_ALIASES.get(split_value.lower())
            if split is None:
                layout.problems.append(problem(raw_path, "unknown_split",
                                               f"Row {line_no}: unknown split '{split_value}'."))
                continue
            layout.split_folders.setdefault(split, split_value)
        layout.n_files_seen += 1
        full = os.path.normpath(os.path.join(root, raw_path))
        real = os.path.realpath(full)
        if os.path.isabs(raw_path) or os.path.commonpath([root_real, real]) != root_real:
            layout.problems.append(problem(raw_path, "escapes_root",
                                           f"Row {line_no}: path leads outside {root}."))
            continue
        rel = Path(os.path.relpath(full, root)).as_posix()
        rows.setdefault(rel, []).append(_Row(line_no, full, label, split))
    for rel, named in rows.items():
        first = named[0]
        if _manifest_conflict(layout, csv_path.name, rel, named):
            continue
        for again in named[1:]:
            layout.problems.append(problem(
                rel, "duplicate_manifest_row",
                f"Row {again.line} repeats row {first.line} (same label and split); ignored."))
        if not os.path.lexists(first.full):
            layout.problems.append(problem(rel, "missing_file", f"Row {first.line}: no such file."))
            continue
        layout.candidates.append(Candidate(first.full, rel, first.label, first.split))
    if split_col is not None and layout.split_folders:
        layout.kind = "csv_manifest"
    return layout
