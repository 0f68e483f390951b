"""Finding a dataset's files: class folders, split folders, CSV manifests, and what goes wrong."""

from __future__ import annotations

import os

import pytest

from autotransfer.data.layout import discover
from autotransfer.errors import DatasetError, DatasetNotFoundError, ManifestError
from tests.data.builders import make_class_folders, write_image


def codes(layout):
    return sorted((p.code, p.path) for p in layout.problems)


def test_class_folders(tmp_path):
    make_class_folders(tmp_path, {"cat": 2, "dog": 3})
    layout = discover(tmp_path)
    assert layout.kind == "class_folders"
    assert sorted((c.label, c.split) for c in layout.candidates) == [("cat", None)] * 2 + [("dog", None)] * 3


def test_split_folders_are_case_insensitive_and_canonicalised(tmp_path):
    make_class_folders(tmp_path / "Train", {"a": 2, "b": 2})
    make_class_folders(tmp_path / "VALID", {"a": 1, "b": 1})
    make_class_folders(tmp_path / "testing", {"a": 1, "b": 1})
    layout = discover(tmp_path)
    assert layout.kind == "split_folders"
    assert layout.split_folders == {"train": "Train", "val": "VALID", "test": "testing"}
    assert {c.split for c in layout.candidates} == {"train", "val", "test"}


def test_nested_folders_inside_a_class_belong_to_it(tmp_path):
    write_image(tmp_path / "a" / "sub" / "deep" / "x.png")
    write_image(tmp_path / "b" / "y.png")
    assert sorted((c.rel, c.label) for c in discover(tmp_path).candidates) == [
        ("a/sub/deep/x.png", "a"), ("b/y.png", "b")]


def test_split_and_class_folders_mixed_is_an_error(tmp_path):
    make_class_folders(tmp_path / "train", {"a": 2})
    make_class_folders(tmp_path, {"b": 2})
    with pytest.raises(DatasetError, match="mixes split folders .*train.* with other folders .*b"):
        discover(tmp_path)


def test_two_folders_for_one_split_is_an_error(tmp_path):
    make_class_folders(tmp_path / "val", {"a": 1})
    make_class_folders(tmp_path / "validation", {"a": 1})
    with pytest.raises(DatasetError, match="two folders for the val split"):
        discover(tmp_path)


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="nowhere.*does not exist"):
        discover(tmp_path / "nowhere")


def test_hidden_non_image_and_loose_files_are_reported_not_read(tmp_path):
    make_class_folders(tmp_path, {"a": 1, "b": 1})
    (tmp_path / "a" / ".DS_Store").write_bytes(b"junk")
    (tmp_path / ".cache").mkdir()
    (tmp_path / "README.txt").write_text("hello")
    write_image(tmp_path / "stray.png")
    layout = discover(tmp_path)
    found = codes(layout)
    assert ("hidden_file", "a/.DS_Store") in found
    assert ("hidden_file", ".cache") in found
    assert ("not_an_image", "README.txt") in found
    assert ("outside_class_folder", "stray.png") in found
    assert all(".DS_Store" not in c.rel for c in layout.candidates)


def test_symlinked_folder_loop_is_reported_once_and_terminates(tmp_path):
    make_class_folders(tmp_path, {"a": 1, "b": 1})
    os.symlink(tmp_path / "a", tmp_path / "a" / "loop")
    layout = discover(tmp_path)
    assert ("symlink_loop", "a/loop") in codes(layout)
    assert len(layout.candidates) == 2


def test_manifest_with_splits_and_relative_paths(tmp_path):
    write_image(tmp_path / "imgs" / "1.png", seed=1)
    write_image(tmp_path / "imgs" / "2.png", seed=2)
    write_image(tmp_path / "imgs" / "3.png", seed=3)
    (tmp_path / "labels.csv").write_text(
        "Filename,Class,Split\nimgs/1.png,cat,train\nimgs/2.png,dog,Train\nimgs/3.png,dog,valid\n"
    )
    layout = discover(tmp_path)  # the only CSV in a folder without subfolders … has subfolders
    assert layout.kind == "class_folders"  # … so folders win; pass the CSV to use it
    layout = discover(tmp_path / "labels.csv")
    assert layout.kind == "csv_manifest" and layout.manifest == "labels.csv"
    assert sorted((c.rel, c.label, c.split) for c in layout.candidates) == [
        ("imgs/1.png", "cat", "train"), ("imgs/2.png", "dog", "train"), ("imgs/3.png", "dog", "val")]


def test_folder_with_only_a_manifest_uses_it(tmp_path):
    write_image(tmp_path / "1.png", seed=1)
    write_image(tmp_path / "2.png", seed=2)
    (tmp_path / "data.csv").write_text("path;label\n1.png;a\n2.png;b\n")  # ';' is sniffed
    layout = discover(tmp_path)
    assert layout.kind == "csv_manifest"
    assert [(c.rel, c.label) for c in layout.candidates] == [("1.png", "a"), ("2.png", "b")]


def test_manifest_paths_escaping_the_root_missing_files_and_bad_rows_are_reported(tmp_path):
    root = tmp_path / "ds"
    write_image(root / "ok.png")
    write_image(tmp_path / "outside.png")
    (root / "m.csv").write_text(
        "path,label\nok.png,a\n../outside.png,a\n/etc/passwd,b\nmissing.png,b\n,b\nok.png,a\n"
    )
    layout = discover(root / "m.csv")
    found = codes(layout)
    assert ("escapes_root", "../outside.png") in found
    assert ("escapes_root", "/etc/passwd") in found
    assert ("missing_file", "missing.png") in found
    assert ("bad_manifest_row", "m.csv:6") in found
    assert ("duplicate_manifest_row", "ok.png") in found
    assert [c.rel for c in layout.candidates] == ["ok.png"]


def test_manifest_symlink_escaping_root_is_rejected(tmp_path):
    root = tmp_path / "ds"
    root.mkdir()
    write_image(tmp_path / "secret.png")
    os.symlink(tmp_path / "secret.png", root / "link.png")
    (root / "m.csv").write_text("path,label\nlink.png,a\n")
    assert ("escapes_root", "link.png") in codes(discover(root / "m.csv"))


def test_manifest_without_label_column_names_what_it_found(tmp_path):
    (tmp_path / "m.csv").write_text("file,whatever\n1.png,x\n")
    with pytest.raises(ManifestError, match=r"lacks a label column.*\['file', 'whatever'\]"):
        discover(tmp_path / "m.csv")


def test_manifest_that_is_not_utf8_is_a_clear_error(tmp_path):
    (tmp_path / "m.csv").write_bytes("path,label\nä.png,x\n".encode("latin-1"))
    with pytest.raises(ManifestError, match="not UTF-8"):
        discover(tmp_path / "m.csv")


def test_unknown_split_value_is_reported(tmp_path):
    write_image(tmp_path / "1.png")
    (tmp_path / "m.csv").write_text("path,label,split\n1.png,a,holdout\n")
    assert ("unknown_split", "1.png") in codes(discover(tmp_path / "m.csv"))


def test_a_non_csv_file_is_refused(tmp_path):
    path = write_image(tmp_path / "x.png")
    with pytest.raises(DatasetError, match="not a CSV manifest"):
        discover(path)
