"""Reading the unlabelled target folder: any layout, labels kept apart, clear errors."""

from __future__ import annotations

import os
import shutil

import pytest

from autotransfer.data.profile import profile_dataset
from autotransfer.data.target import read_target
from autotransfer.errors import AutoTransferError, DatasetError, TargetFolderError
from tests.data.builders import make_class_folders, write_image

as_root = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture
def source(tmp_path):
    return profile_dataset(make_class_folders(tmp_path / "source", {"a": 4, "b": 4}),
                           workers=1)


def test_flat_and_nested_layouts_are_read_and_every_record_is_unlabelled(tmp_path, source):
    root = tmp_path / "target"
    write_image(root / "loose.png", seed=100)
    write_image(root / "day" / "cam1" / "x.png", seed=101)
    write_image(root / "night" / "y.jpg", fmt="JPEG", seed=102)
    (root / ".DS_Store").write_bytes(b"\0\0")  # hidden: skipped, named
    target = read_target(root, source, workers=1)
    assert target.n_images == 3 and target.n_files_seen == 3
    assert [r.path for r in target.records] == ["day/cam1/x.png", "loose.png", "night/y.jpg"]
    assert {r.label for r in target.records} == {""} and {r.split for r in target.records} == {None}
    assert not target.labelled  # an image outside any folder: no class folders to evaluate with
    assert [p.code for p in target.problems] == ["hidden_file"]


def test_class_folders_are_kept_apart_for_evaluation_only(tmp_path, source):
    root = make_class_folders(tmp_path / "target", {"a": 2, "b": 3}, seed=50)
    target = read_target(root, source, workers=1)
    assert target.labelled
    assert target.eval_labels == {"a/img_000.png": "a", "a/img_001.png": "a",
                                  "b/img_000.png": "b", "b/img_001.png": "b",
                                  "b/img_002.png": "b"}
    assert {r.label for r in target.records} == {""}
    split = make_class_folders(tmp_path / "split" / "test", {"a": 1, "b": 1}, seed=60)
    assert set(read_target(split.parent, source, workers=1).eval_labels.values()) == {"a", "b"}


def test_missing_empty_and_file_targets_are_clear_errors(tmp_path, source):
    with pytest.raises(TargetFolderError, match="does not exist"):
        read_target(tmp_path / "nowhere", source)
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / ".hidden").write_text("x")
    with pytest.raises(TargetFolderError, match=r"holds no images \(0 files seen\)"):
        read_target(tmp_path / "empty", source)
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(TargetFolderError, match="is not a folder"):
        read_target(tmp_path / "file.png", source)
    error = TargetFolderError("x")
    assert isinstance(error, AutoTransferError) and isinstance(error, DatasetError)
    assert error.exit_code == 2


def test_non_image_and_corrupt_files_mixed_in_are_named(tmp_path, source):
    root = make_class_folders(tmp_path / "target", {"a": 2}, seed=50)
    (root / "notes.txt").write_text("not an image")
    (root / "a" / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 20)
    (root / "a" / "empty.png").write_bytes(b"")
    with pytest.raises(TargetFolderError) as caught:
        read_target(root, source, workers=1)
    text = str(caught.value)
    assert str(root) in text and "3 file(s) that are not usable images" in text
    for name in ("notes.txt", "a/cut.jpg", "a/empty.png"):
        assert f"'{name}'" in text
    assert "move the other files out" in text


@pytest.mark.skipif(as_root, reason="root reads every file whatever its permissions")
def test_unreadable_folder_and_file_are_clear_errors(tmp_path, source):
    root = make_class_folders(tmp_path / "target", {"a": 2}, seed=50)
    os.chmod(root, 0)
    try:
        with pytest.raises(TargetFolderError, match="cannot be listed.*chmod"):
            read_target(root, source)
    finally:
        os.chmod(root, 0o755)
    os.chmod(root / "a" / "img_000.png", 0)
    try:
        with pytest.raises(TargetFolderError, match=r"'a/img_000.png' \(unreadable"):
            read_target(root, source, workers=1)
    finally:
        os.chmod(root / "a" / "img_000.png", 0o644)


def test_the_source_itself_a_folder_inside_it_or_around_it_is_refused(tmp_path, source):
    with pytest.raises(TargetFolderError, match="is the source dataset itself"):
        read_target(source.root, source)
    with pytest.raises(TargetFolderError, match="overlap.*lies inside"):
        read_target(os.path.join(source.root, "a"), source)
    with pytest.raises(TargetFolderError, match="overlap.*lies inside"):
        read_target(tmp_path, source)


def test_images_shared_with_the_source_are_refused_by_content(tmp_path, source):
    root = make_class_folders(tmp_path / "target", {"x": 3}, seed=50)
    shutil.copy(os.path.join(source.root, "b", "img_001.png"), root / "x" / "renamed.png")
    with pytest.raises(TargetFolderError,
                       match=r"1 of the 4 images .* 'x/renamed.png' = source 'b/img_001.png'"):
        read_target(root, source, workers=1)
    assert read_target(root, workers=1).n_images == 4  # without a source: nothing to compare


def test_links_leaving_the_target_are_refused(tmp_path, source):
    root = make_class_folders(tmp_path / "target", {"a": 2}, seed=50)
    outside = write_image(tmp_path / "elsewhere" / "z.png", seed=70)
    os.symlink(outside, root / "link.png")
    with pytest.raises(TargetFolderError, match="'link.png' \\(escapes_root"):
        read_target(root, source, workers=1)


def test_a_folder_that_cannot_be_listed_is_a_clear_error_whoever_runs(tmp_path, source,
                                                                      monkeypatch):
    root = make_class_folders(tmp_path / "target", {"a": 2}, seed=50)
    real_scandir = os.scandir

    def refusing(path="."):
        if os.fspath(path) == os.fspath(root):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", refusing)
    with pytest.raises(TargetFolderError, match=r"cannot be listed \(Permission denied\)"):
        read_target(root, source)


def test_splits_are_a_source_too(tmp_path, source):
    from autotransfer.data.splits import make_splits

    splits = make_splits(source, val_fraction=0.25, seed=0)
    root = make_class_folders(tmp_path / "target", {"x": 2}, seed=50)
    assert read_target(root, splits, workers=1).n_images == 2
    shutil.copy(os.path.join(source.root, "a", "img_000.png"), root / "x" / "copy.png")
    with pytest.raises(TargetFolderError, match="'x/copy.png' = source 'a/img_000.png'"):
        read_target(root, splits, workers=1)
    with pytest.raises(TargetFolderError, match="is the source dataset itself"):
        read_target(splits.root, splits)


def test_resolve_target_reads_a_path_and_passes_a_set_through(tmp_path, source):
    from autotransfer.data.target import resolve_target

    root = make_class_folders(tmp_path / "target", {"x": 2}, seed=50)
    assert resolve_target(None, source) is None
    read = resolve_target(root, source)
    assert read.n_images == 2 and resolve_target(read, source) is read
    with pytest.raises(TargetFolderError, match="is the source dataset itself"):
        resolve_target(source.root, source)
