"""Train / validation / test splits of a profiled dataset, in a stable, recorded form.

Pure Python (scikit-learn for the stratified split): no TensorFlow import.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from autotransfer._io import atomic_write_text, read_run_json
from autotransfer.data.models import (DatasetProfile, FileProblem, ImageRecord, count_codes,
                                      problem)
from autotransfer.errors import DatasetError, InvalidParameterError, RunDirectoryError

#: what to do about a run's split manifest that cannot be read
RELOAD_HINT = ("Delete it to have the splits made again from the dataset, or write the run to "
               "a new folder.")


class DataSplits(BaseModel):
    """Which image goes where, and the class order every model output follows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    root: str
    class_names: list[str] = Field(description="Sorted; index i is the model's output i.")
    train: list[ImageRecord]
    val: list[ImageRecord]
    test: list[ImageRecord]
    val_source: str = Field(description="'folder' or 'stratified(fraction=…, seed=…)'.")
    left_out: list[FileProblem] = Field(
        default_factory=list,
        description="Every file of the dataset that no split uses, with why: unusable and skipped "
        "files (the profile's problems of severity error or info), and training images left out "
        "because their bytes are also in the validation or test split.")

    @property
    def n_used(self) -> int:
        return len(self.train) + len(self.val) + len(self.test)

    def left_out_summary(self) -> str:
        """One line: how many files were left out and why (empty when none were)."""
        if not self.left_out:
            return ""
        total = self.n_used + len(self.left_out)
        return (f"Left out {len(self.left_out)} of {total} files: "
                f"{count_codes(self.left_out)}.")

    def label_index(self, record: ImageRecord) -> int:
        return self.class_names.index(record.label)

    def save(self, path: str | Path) -> Path:
        """Write the split manifest (JSON) atomically."""
        return atomic_write_text(path, self.model_dump_json(indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> DataSplits:
        """The split manifest a run saved (:meth:`save`), read by
        :func:`~autotransfer._io.read_run_json`; one that is missing or cannot be read as such
        (damaged, edited, or from an incompatible version) is a :class:`RunDirectoryError`
        naming it and saying what to do."""
        file = Path(path)
        data = read_run_json(file, fix=RELOAD_HINT)
        if data is None:
            raise RunDirectoryError(f"The split manifest '{file}' is missing: the run folder is "
                                    "incomplete. Train again, or write the run to a new folder.")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"])
            why = f"not a split manifest: {where + ': ' if where else ''}{first['msg']}"[:200]
            raise RunDirectoryError(f"'{file}' cannot be read ({why}). {RELOAD_HINT}") from None


def make_splits(
    profile: DatasetProfile,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    exclude_leaks: bool = True,
) -> DataSplits:
    """Split a profiled dataset for training.

    Existing ``val``/``test`` splits are used as they are. Without a validation split, a stratified
    seeded ``val_fraction`` of the training images becomes one. With ``exclude_leaks``, training
    images whose exact bytes also appear in a validation or test split are left out of training.
    Every file no split uses is named, with why, in ``left_out``.
    """
    if not 0.0 < val_fraction < 1.0:
        raise InvalidParameterError(
            f"The 'val_fraction' parameter must be in (0, 1). Got {val_fraction!r} instead."
        )
    by_split: dict[str | None, list[ImageRecord]] = {}
    for record in profile.records:
        by_split.setdefault(record.split, []).append(record)
    train = by_split.get("train", by_split.get(None, []))
    val = by_split.get("val", [])
    test = by_split.get("test", [])
    source = "folder"
    if not val:
        train, val = _stratified_split(train, val_fraction, seed, profile.root)
        source = f"stratified(fraction={val_fraction}, seed={seed})"
    left_out = [p for p in profile.problems if p.leaves_out]
    if exclude_leaks:
        held_out = {r.sha: r.path for r in [*test, *val]}
        kept = []
        for r in train:
            if r.sha in held_out:
                left_out.append(problem(
                    r.path, "duplicate_of_held_out",
                    f"Same bytes as '{held_out[r.sha]}'; left out of training."))
            else:
                kept.append(r)
        train = kept
    return DataSplits(
        root=profile.root,
        class_names=list(profile.classes),
        train=train,
        val=val,
        test=test,
        val_source=source,
        left_out=left_out,
    )


def _stratified_split(
    records: list[ImageRecord], fraction: float, seed: int, root: str
) -> tuple[list[ImageRecord], list[ImageRecord]]:
    from sklearn.model_selection import train_test_split

    labels = [r.label for r in records]
    counts = {label: labels.count(label) for label in set(labels)}
    if min(counts.values(), default=0) < 2:
        short = ", ".join(sorted(c for c, n in counts.items() if n < 2))
        raise DatasetError(
            f"Cannot hold out a stratified validation split of the dataset at '{root}': "
            f"class(es) {short} have fewer than 2 training images. Add images to them, or "
            "provide a validation split (<split>/<class>/<image> folders with a 'val' split, or "
            "a 'split' column in a CSV manifest)."
        )
    n_val = max(len(counts), round(len(records) * fraction))
    ordered = sorted(records, key=lambda r: r.path)
    train, val = train_test_split(
        ordered, test_size=n_val, random_state=seed, stratify=[r.label for r in ordered]
    )
    return sorted(train, key=lambda r: r.path), sorted(val, key=lambda r: r.path)
