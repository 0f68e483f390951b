"""Walk class folders without ever leaving the dataset folder.

Real (non-link) files and folders are taken first. Symbolic links are resolved afterwards,
shallowest first (a class folder that is a link before a link inside a class folder): a link
whose target lies outside the dataset folder is named (``escapes_root``) and never followed, nor
is a link that loops or is broken; a link to a folder that contains it is a loop; a link to a
file or folder already taken is named (``duplicate_link``) and counted once, where it was first
found; any other link inside the dataset is followed once. Every real folder is walked at most
once, so the walk is bounded by the dataset folder's own tree.
"""

from __future__ import annotations

import errno
import os
import heapq
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from autotransfer.data.models import problem

if TYPE_CHECKING:
    from autotransfer.data.layout import Layout


def within(path: str, folder: str) -> bool:
    """True when the real path ``path`` is ``folder`` or lies inside it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


@dataclass(frozen=True, order=True)
class _Link:
    depth: int  # folders above it in the dataset: shallower links are resolved first
    path: str  # as found, under the dataset folder
    rel: str
    label: str
    split: str | None
    parent_real: str  # real path of the folder holding the link


@dataclass
class FolderWalk:
    """One walk of a dataset folder's class folders, filling ``layout``."""

    layout: Layout
    root_real: str = ""
    walked: dict[str, str] = field(default_factory=dict)  # real folder -> rel as walked
    taken: dict[str, tuple[str, str]] = field(default_factory=dict)  # real file -> (rel, label)
    links: list[_Link] = field(default_factory=list)  # a heap
    #: (rel, label, split) of every class folder, to name those that hold no file
    class_folders: list[tuple[str, str, str | None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root_real = os.path.realpath(self.layout.root)

    # ------------------------------------------------------------------ entry points
    def split_folder(self, entry: os.DirEntry[str]) -> tuple[str, str] | None:
        """(path, real path) of a split folder to list, or ``None`` when it cannot be used."""
        if not entry.is_symlink():
            real = os.path.join(self.root_real, entry.name)
            self.walked[real] = entry.name
            return entry.path, real
        real = self._resolve(entry.path, entry.name)
        if real is None:
            return None
        if within(self.root_real, real):
            self.layout.problems.append(problem(
                entry.name, "symlink_loop",
                "Folder link loops back to a folder that contains it; not followed."))
            return None
        if real in self.walked:
            self.layout.problems.append(problem(
                entry.name, "duplicate_link",
                f"Link to '{self.walked[real]}', which is already included; not followed again."))
            return None
        self.walked[real] = entry.name
        return entry.path, real

    def class_folder(self, entry: os.DirEntry[str], rel: str, split: str | None,
                     parent_real: str) -> None:
        """Take a class folder (its name is the label); links wait for :meth:`finish`."""
        from autotransfer.data.layout import class_name_problem

        bad = class_name_problem(entry.name)
        if bad:  # named as a whole; its files are not read
            self.layout.problems.append(problem(rel, "bad_class_name", bad))
            return
        self.class_folders.append((rel, entry.name, split))
        if entry.is_symlink():
            self._defer(entry.path, rel, entry.name, split, parent_real)
        else:
            self._walk(entry.path, os.path.join(parent_real, entry.name), rel, entry.name, split)

    def finish(self) -> None:
        """Resolve the links found so far (and those found in folders they lead to)."""
        while self.links:
            self._follow(heapq.heappop(self.links))
        filled = {(c.label, c.split) for c in self.layout.candidates}
        for rel, label, split in self.class_folders:
            if (label, split) not in filled and not any(p.path == rel
                                                        for p in self.layout.problems):
                self.layout.problems.append(problem(
                    rel, "empty_class_folder",
                    f"Class folder with no files: class '{label}' has no images"
                    + (f" in the {split} split" if split else "") + " and is left out."))

    def _defer(self, path: str, rel: str, label: str, split: str | None, parent_real: str) -> None:
        heapq.heappush(self.links, _Link(rel.count("/"), path, rel, label, split, parent_real))

    # ------------------------------------------------------------------ internals
    def _walk(self, path: str, real: str, rel: str, label: str, split: str | None) -> None:
        layout = self.layout
        stack = [(path, real, rel)]
        while stack:
            folder, folder_real, rel_folder = stack.pop()
            if folder_real in self.walked:
                layout.problems.append(problem(
                    rel_folder, "duplicate_link",
                    f"Leads to '{self.walked[folder_real]}', which is already included; "
                    "counted once, there."))
                continue
            self.walked[folder_real] = rel_folder
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError as exc:
                report_os_error(layout, rel_folder, exc)
                continue
            subfolders = []
            real_prefix = folder_real.rstrip(os.sep) + os.sep
            for entry in entries:
                entry_rel = f"{rel_folder}/{entry.name}"
                entry_real = real_prefix + entry.name
                if entry.name.startswith("."):
                    layout.problems.append(
                        problem(entry_rel, "hidden_file", "Hidden entry skipped."))
                elif entry.is_symlink():
                    self._defer(entry.path, entry_rel, label, split, folder_real)
                elif _is_real_dir(entry):
                    subfolders.append((entry.path, entry_real, entry_rel))
                else:
                    layout.n_files_seen += 1
                    self.taken[entry_real] = (entry_rel, label)
                    layout.add(entry.path, entry_rel, label, split)
            stack.extend(reversed(subfolders))

    def _resolve(self, path: str, rel: str) -> str | None:
        """The real target of a link inside the dataset; ``None`` (and a problem) otherwise."""
        try:
            real = os.path.realpath(path, strict=True)
        except OSError as exc:
            report_os_error(self.layout, rel, exc)
            return None
        if not within(real, self.root_real):
            self.layout.problems.append(problem(
                rel, "escapes_root",
                f"Symbolic link to '{real}', outside the dataset folder {self.layout.root}; "
                "not followed."))
            return None
        return real

    def _follow(self, link: _Link) -> None:
        layout = self.layout
        is_dir = os.path.isdir(link.path)
        if not is_dir:
            layout.n_files_seen += 1
        real = self._resolve(link.path, link.rel)
        if real is None:
            return
        if not is_dir:
            if real in self.taken:
                first, label = self.taken[real]
                layout.problems.append(problem(
                    link.rel, "duplicate_link",
                    f"Link to '{first}' (class '{label}'), which is already included; counted "
                    "once, there."))
                return
            self.taken[real] = (link.rel, link.label)
            layout.add(link.path, link.rel, link.label, link.split)
            return
        if within(link.parent_real, real):
            shown = os.path.relpath(real, self.root_real).replace(os.sep, "/")
            where = "the dataset folder" if shown == "." else f"'{shown}'"
            layout.problems.append(problem(
                link.rel, "symlink_loop",
                f"Folder link loops back to {where}, which contains it; not followed."))
            return
        self._walk(link.path, real, link.rel, link.label, link.split)


def _is_real_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except OSError:
        return False


def report_os_error(layout: Layout, rel: str, exc: OSError) -> None:
    """Name the entry ``rel`` that could not be read, with why."""
    if exc.errno == errno.ELOOP:
        layout.problems.append(problem(rel, "symlink_loop", "Symbolic link loop."))
    elif exc.errno == errno.EACCES:
        layout.problems.append(problem(rel, "unreadable", "Permission denied."))
    elif exc.errno == errno.ENOENT:
        layout.problems.append(problem(rel, "broken_symlink", "Link target missing."))
    else:
        layout.problems.append(problem(rel, "unreadable", f"Cannot be read: {exc.strerror}."))
