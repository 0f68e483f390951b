"""Typed, serialisable results of the dataset layer."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

Severity = Literal["error", "warning", "info"]

#: Every per-file problem code, its severity and what the user should do about it. Severity
#: ``error``: the file is not used (unusable); ``info``: the entry is skipped on purpose (not an
#: image, hidden, a second link to a file already included); ``warning``: the file is used.
PROBLEM_CODES: dict[str, tuple[Severity, str]] = {
    "zero_byte": ("error", "The file is empty: re-copy it from its source or delete it."),
    "truncated": ("error", "The file ends early (interrupted copy or download): re-copy it."),
    "undecodable": ("error", "The image data is corrupt: re-export the image or delete it."),
    "unsupported_format": (
        "error",
        "Convert it to PNG or JPEG (supported: JPEG, PNG, GIF, BMP, WebP, TIFF).",
    ),
    "too_large": (
        "error",
        "Its pixel count exceeds the decompression-bomb guard: downscale it, or, if you trust the "
        "file, raise the limit (autotransfer profile --max-pixels N; max_pixels= in Python).",
    ),
    "symlink_loop": ("error", "The symbolic link points to itself in a loop: fix or remove it."),
    "broken_symlink": ("error", "The symbolic link's target does not exist: fix or remove it."),
    "unreadable": ("error", "Permission denied: make the file readable (chmod a+r)."),
    "missing_file": ("error", "The manifest names a file that does not exist: fix the path."),
    "escapes_root": (
        "error",
        "The manifest path or symbolic link leads outside the dataset folder, and nothing outside "
        "it is read: move or copy the file (or folder) into the dataset folder.",
    ),
    "label_conflict": (
        "error",
        "The manifest gives this file more than one label: keep one row per file, with the right "
        "label. The file is left out until then.",
    ),
    "split_conflict": (
        "error",
        "The manifest puts this file in more than one split (evaluation would see training data): "
        "keep one row per file. The file is left out until then.",
    ),
    "bad_manifest_row": ("error", "Fill in both the path and the label of this manifest row."),
    "bad_class_name": (
        "error",
        "Rename the class (its folder, or its label in the manifest) without line breaks: a run "
        "keeps one class name per line of labels.txt. Its images are left out until then.",
    ),
    "unknown_split": (
        "error",
        "Use a split name such as train, val/valid/validation or test in the manifest.",
    ),
    "extension_mismatch": (
        "warning",
        "The extension does not match the content; it is read by content. Rename it to be safe.",
    ),
    "missing_end_marker": (
        "warning",
        "The file decodes but lacks its end marker (possibly truncated): check it by eye.",
    ),
    "empty_class_folder": (
        "info",
        "Put the class's images in this folder, or delete the folder if the class is not wanted.",
    ),
    "tiny_image": ("warning", "Very small image: check that it is not a thumbnail or icon."),
    "non_utf8_name": ("warning", "The name is not valid UTF-8: rename it (other tools will fail)."),
    "space_in_name": ("warning", "The name contains whitespace: rename it for portable scripts."),
    "duplicate_manifest_row": ("warning", "The manifest lists this file more than once."),
    "hidden_file": ("info", "Hidden files and folders are skipped."),
    "duplicate_link": (
        "info",
        "A link to a file or folder already in the dataset is counted once, where it was first "
        "found: copy the file instead if it should count twice (or under another class).",
    ),
    "duplicate_of_held_out": (
        "info",
        "Its exact bytes are also in the validation or test split, so it is left out of training "
        "to keep the evaluation honest (data.exclude_leaks): delete one of the copies.",
    ),
    "not_an_image": ("info", "Not an image (by content and name): skipped."),
    "outside_class_folder": (
        "info",
        "Files directly in the dataset or split folder belong to no class: move them into one.",
    ),
}


def printable(text: str) -> str:
    """A JSON-safe form of a file name that may hold undecodable bytes (shown as \\xNN)."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileProblem(_Model):
    """One problem with one file; ``severity == "error"`` means the file is not used."""

    path: str
    code: str
    severity: Severity
    message: str
    hint: str

    @property
    def leaves_out(self) -> bool:
        """True when the file (or entry) is not used: severity error or info."""
        return self.severity != "warning"

    @field_serializer("path", "message")
    def _path(self, value: str) -> str:  # messages quote file names too
        return printable(value)


def problem(path: str, code: str, message: str) -> FileProblem:
    """Build a :class:`FileProblem` with the severity and hint its code declares."""
    severity, hint = PROBLEM_CODES[code]
    return FileProblem(path=path, code=code, severity=severity, message=message, hint=hint)


def count_codes(problems: list[FileProblem]) -> str:
    """``"3 truncated, 1 zero_byte"``: how many problems of each code, most frequent first."""
    counts: dict[str, int] = {}
    for p in problems:
        counts[p.code] = counts.get(p.code, 0) + 1
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{n} {code}" for code, n in ordered)


class ImageRecord(_Model):
    """A usable image: where it is, its label and what its header and pixels said."""

    path: str = Field(description="Path relative to the dataset root, '/'-separated.")
    label: str
    split: str | None = Field(description="train, val or test; None when the dataset has none.")
    format: str
    width: int = Field(description="Width after EXIF orientation.")
    height: int
    mode: str = Field(description="Pillow mode of the file (before conversion to RGB).")
    frames: int = 1
    file_size: int
    sha: str = Field(description="BLAKE2b-128 of the file's bytes.")
    grayscale: bool | None = Field(description="All channels equal; None when not decoded.")
    has_alpha: bool

    @field_validator("path")
    @classmethod
    def _inside_the_root(cls, value: str) -> str:
        """A record names a file inside its dataset: never an absolute path or one through
        '..' (a split manifest read back, e.g. on --resume, cannot send the reader elsewhere)."""
        if not value or value.startswith("/") or "\0" in value or ".." in value.split("/"):
            raise ValueError(f"'{value}' is not a path inside the dataset folder")
        return value

    @field_serializer("path", "label")
    def _text(self, value: str) -> str:
        return printable(value)


class Stats(_Model):
    """Summary statistics of one numeric attribute."""

    min: float
    p05: float
    median: float
    mean: float
    p95: float
    max: float


class SplitProfile(_Model):
    """Image counts of one split."""

    name: str
    folder: str | None = Field(description="The folder (or manifest value) the split came from.")
    n_images: int
    class_counts: dict[str, int]


class DuplicateGroup(_Model):
    """Files with identical bytes."""

    sha: str
    files: list[str]
    labels: list[str]
    splits: list[str | None]
    cross_split: bool = Field(description="Spans splits: evaluation leaks training data.")
    cross_class: bool = Field(description="Spans classes: the same image has two labels.")

    @field_serializer("files")
    def _files(self, value: list[str]) -> list[str]:
        return [printable(v) for v in value]


class DatasetProfile(_Model):
    """Everything the profiler learned about a dataset."""

    root: str
    layout: Literal["class_folders", "split_folders", "csv_manifest"]
    manifest: str | None = None
    classes: list[str]
    splits: list[SplitProfile]
    n_images: int = Field(description="Usable images.")
    n_files_seen: int
    class_counts: dict[str, int]
    imbalance_ratio: float = Field(description="Largest over smallest class count in the split.")
    imbalance_split: str | None
    width: Stats | None
    height: Stats | None
    aspect: Stats | None = Field(description="Width over height.")
    file_size: Stats | None
    formats: dict[str, int]
    modes: dict[str, int]
    grayscale_fraction: float | None
    alpha_fraction: float
    animated_fraction: float
    duplicates: list[DuplicateGroup]
    problems: list[FileProblem]
    records: list[ImageRecord]
    check: Literal["decode", "header"]
    workers: int
    elapsed_s: float

    @property
    def errors(self) -> list[FileProblem]:
        """Problems that made a file unusable."""
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[FileProblem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def split_names(self) -> list[str]:
        return [s.name for s in self.splits]

    @property
    def leakage(self) -> list[DuplicateGroup]:
        """Duplicate groups that span splits."""
        return [d for d in self.duplicates if d.cross_split]

    @property
    def label_conflicts(self) -> list[DuplicateGroup]:
        """Duplicate groups that span classes."""
        return [d for d in self.duplicates if d.cross_class]

    def to_dict(self, *, include_records: bool = False) -> dict:
        """A JSON-ready dict; per-image records only when asked (they can be long)."""
        return self.model_dump(mode="json", exclude=None if include_records else {"records"})
