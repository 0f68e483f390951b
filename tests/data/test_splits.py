"""Training splits: stratified and seeded when there is no validation split, leaks excluded."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from autotransfer.data.profile import profile_dataset
from autotransfer.data.splits import DataSplits, make_splits
from autotransfer.errors import InvalidParameterError, RunDirectoryError
from tests.data.builders import image_bytes, make_class_folders


@pytest.fixture(scope="module")
def unsplit_profile(tmp_path_factory):
    root = make_class_folders(tmp_path_factory.mktemp("ds"), {"a": 30, "b": 10, "c": 20}, size=8)
    return profile_dataset(root, workers=1)


def test_stratified_split_keeps_class_proportions(unsplit_profile):
    splits = make_splits(unsplit_profile, val_fraction=0.2, seed=0)
    assert splits.val_source == "stratified(fraction=0.2, seed=0)"
    assert Counter(r.label for r in splits.val) == {"a": 6, "b": 2, "c": 4}
    assert len(splits.train) == 48
    assert not {r.path for r in splits.train} & {r.path for r in splits.val}


def test_split_is_deterministic_per_seed(unsplit_profile):
    first = make_splits(unsplit_profile, seed=3)
    again = make_splits(unsplit_profile, seed=3)
    other = make_splits(unsplit_profile, seed=4)
    assert [r.path for r in first.val] == [r.path for r in again.val]
    assert [r.path for r in first.val] != [r.path for r in other.val]


def test_class_order_is_stable_and_saved(unsplit_profile, tmp_path):
    splits = make_splits(unsplit_profile)
    assert splits.class_names == ["a", "b", "c"]
    assert splits.label_index(splits.val[0]) == splits.class_names.index(splits.val[0].label)
    path = splits.save(tmp_path / "splits.json")
    assert DataSplits.load(path) == splits


def test_existing_validation_split_is_used_and_leaks_are_left_out_of_training(tmp_path):
    make_class_folders(tmp_path / "train", {"a": 3, "b": 3})
    make_class_folders(tmp_path / "val", {"a": 2, "b": 2}, seed=50)
    same = image_bytes("PNG", 32, seed=999)
    (tmp_path / "train" / "a" / "dup.png").write_bytes(same)
    (tmp_path / "val" / "a" / "dup.png").write_bytes(same)
    splits = make_splits(profile_dataset(tmp_path, workers=1))
    assert splits.val_source == "folder" and len(splits.val) == 5
    assert "train/a/dup.png" not in {r.path for r in splits.train}
    kept = make_splits(profile_dataset(tmp_path, workers=1), exclude_leaks=False)
    assert "train/a/dup.png" in {r.path for r in kept.train}


def test_bad_fraction_is_a_clear_error(unsplit_profile):
    with pytest.raises(InvalidParameterError, match="'val_fraction' parameter must be in \\(0, 1\\). Got 1.5"):
        make_splits(unsplit_profile, val_fraction=1.5)


def test_every_file_left_out_is_named_with_why(tmp_path):
    """Issue 14: train used 35 of 46 files and said nothing of the other 11."""
    make_class_folders(tmp_path / "train", {"a": 4, "b": 4})
    make_class_folders(tmp_path / "val", {"a": 2, "b": 2}, seed=50)
    (tmp_path / "train" / "a" / "empty.png").write_bytes(b"")
    (tmp_path / "train" / "b" / "cut.png").write_bytes(image_bytes("PNG", 64, seed=7)[:200])
    (tmp_path / "train" / "b" / ".DS_Store").write_bytes(b"junk")
    held_out = (tmp_path / "val" / "a" / "img_000.png").read_bytes()
    for name in ("leak1.png", "leak2.png"):
        (tmp_path / "train" / "a" / name).write_bytes(held_out)
    splits = make_splits(profile_dataset(tmp_path, workers=1))
    left = {p.path: p for p in splits.left_out}
    assert left["train/a/empty.png"].code == "zero_byte"
    assert left["train/b/cut.png"].code == "truncated"
    assert left["train/b/.DS_Store"].code == "hidden_file"
    for name in ("leak1.png", "leak2.png"):
        leak = left[f"train/a/{name}"]
        assert leak.code == "duplicate_of_held_out" and "val/a/img_000.png" in leak.message
    assert len(left) == 5 and splits.n_used == 12
    assert splits.left_out_summary() == (
        "Left out 5 of 17 files: 2 duplicate_of_held_out, 1 hidden_file, 1 truncated, 1 zero_byte.")
    assert DataSplits.load(splits.save(tmp_path / "splits.json")) == splits
    kept = make_splits(profile_dataset(tmp_path, workers=1), exclude_leaks=False)
    assert {p.code for p in kept.left_out} == {"zero_byte", "truncated", "hidden_file"}


def test_splits_saved_before_left_out_was_recorded_still_load(unsplit_profile, tmp_path):
    path = make_splits(unsplit_profile).save(tmp_path / "splits.json")
    data = json.loads(path.read_text())
    del data["left_out"]
    path.write_text(json.dumps(data))
    assert DataSplits.load(path).left_out == []


@pytest.mark.parametrize("text, why", [
    ("{\"train\": [", "not valid JSON: Expecting value at line 1, column 12"),
    ("[1, 2]", "it holds an array, not a JSON object"),
    ("{\"root\": \"d\", \"class_names\": [], \"train\": 3, \"val\": [], \"test\": [], "
     "\"val_source\": \"folder\"}", "not a split manifest: train: Input should be a valid list"),
    ("{\"train\": []}", "not a split manifest: root: Field required"),
    ("\udcff", "it is not UTF-8 text")])
def test_a_split_manifest_that_cannot_be_read_is_a_clear_error(tmp_path, text, why):
    """A damaged or edited ``splits.json`` in a run's folder (read when the run resumes) is an
    error naming the file, saying why and what to do, not a traceback."""
    path = tmp_path / "splits.json"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(RunDirectoryError) as error:
        DataSplits.load(path)
    assert str(error.value) == (f"'{path}' cannot be read ({why}). Delete it to have the splits "
                                "made again from the dataset, or write the run to a new folder.")
    path.unlink()
    with pytest.raises(RunDirectoryError, match="splits.json' is missing: the run folder is "
                       "incomplete. Train again"):
        DataSplits.load(path)


def test_a_class_too_small_to_hold_out_names_the_dataset_and_what_to_do(tmp_path):
    root = make_class_folders(tmp_path / "ds", {"a": 6, "b": 1}, size=8)
    from autotransfer.errors import DatasetError

    with pytest.raises(DatasetError, match="class\\(es\\) b have fewer than 2") as error:
        make_splits(profile_dataset(root, workers=1, strict=False))
    assert f"'{root}'" in str(error.value) and "'split' column" in str(error.value)
