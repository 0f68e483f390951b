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


def test_a_path_with_a_nul_character_is_a_bad_row_not_a_crash(tmp_path):
    write_image(tmp_path / "1.png")
    (tmp_path / "m.csv").write_text("path,label\n1.png,a\nbad\0name.png,b\n")
    layout = discover(tmp_path / "m.csv")
    (bad,) = layout.problems
    assert (bad.code, bad.path) == ("bad_manifest_row", "m.csv:3") and "NUL" in bad.message
    assert [c.rel for c in layout.candidates] == ["1.png"]


def test_a_line_the_csv_module_cannot_parse_is_named(tmp_path):
    (tmp_path / "m.csv").write_text("path,label\n1.png,a\n\"" + "x" * 200_000 + "\",b\n")
    with pytest.raises(ManifestError, match=r"'.*m\.csv' cannot be read as CSV at line 3: field "
                                            r"larger than field limit.*Correct that line"):
        discover(tmp_path / "m.csv")


def test_unknown_split_value_is_reported(tmp_path):
    write_image(tmp_path / "1.png")
    (tmp_path / "m.csv").write_text("path,label,split\n1.png,a,holdout\n")
    assert ("unknown_split", "1.png") in codes(discover(tmp_path / "m.csv"))


def test_a_non_csv_file_is_refused(tmp_path):
    path = write_image(tmp_path / "x.png")
    with pytest.raises(DatasetError, match="not a CSV manifest"):
        discover(path)


# ---------------------------------------------------------------- links in folder datasets
def rels(layout):
    return sorted(c.rel for c in layout.candidates)


def test_folder_link_out_of_the_root_is_named_and_never_walked(tmp_path):
    root = make_class_folders(tmp_path / "ds", {"a": 2, "b": 2})
    outside = make_class_folders(tmp_path / "elsewhere", {"x": 3})
    os.symlink(outside / "x", root / "a" / "more")
    os.symlink(outside, root / "b" / "up")
    layout = discover(root)
    assert rels(layout) == ["a/img_000.png", "a/img_001.png", "b/img_000.png", "b/img_001.png"]
    found = {p.path: p for p in layout.problems}
    assert found["a/more"].code == "escapes_root" and found["a/more"].severity == "error"
    assert str(outside / "x") in found["a/more"].message
    assert "not followed" in found["a/more"].message
    assert found["b/up"].code == "escapes_root"
    assert layout.n_files_seen == 4


def test_link_to_the_filesystem_root_is_not_followed(tmp_path):
    root = make_class_folders(tmp_path, {"a": 2, "b": 2})
    os.symlink("/", root / "a" / "everything")
    os.symlink("/usr", root / "usr")  # a class folder that is a link out of the root
    layout = discover(root)
    assert ("escapes_root", "a/everything") in codes(layout)
    assert ("escapes_root", "usr") in codes(layout)
    assert len(layout.candidates) == 4 and layout.n_files_seen == 4


def test_links_to_ancestors_loops_and_broken_links_end_the_walk(tmp_path):
    root = make_class_folders(tmp_path / "ds", {"a": 2, "b": 2})
    os.symlink(root, root / "a" / "to_root")  # an ancestor inside the root: a loop
    os.symlink(root / "a", root / "a" / "sub_loop")
    os.symlink(tmp_path, root / "b" / "to_parent")  # an ancestor outside the root
    os.symlink("self.png", root / "b" / "self.png")  # a link to itself
    os.symlink("nowhere.png", root / "b" / "gone.png")
    layout = discover(root)
    found = codes(layout)
    assert ("symlink_loop", "a/to_root") in found
    assert ("symlink_loop", "a/sub_loop") in found
    assert ("escapes_root", "b/to_parent") in found
    assert ("symlink_loop", "b/self.png") in found
    assert ("broken_symlink", "b/gone.png") in found
    assert len(layout.candidates) == 4


def test_links_inside_the_root_are_followed_once(tmp_path):
    root = make_class_folders(tmp_path, {"a": 2, "b": 2})
    write_image(root / ".pool" / "c" / "1.png", seed=40)
    write_image(root / ".pool" / "c" / "2.png", seed=41)
    os.symlink(root / ".pool" / "c", root / "c")  # a class folder kept in a hidden folder
    os.symlink(root / ".pool" / "c", root / "a" / "again")  # the same folder a second time
    os.symlink(root / "b", root / "a" / "b_too")  # another class folder
    os.symlink(root / "b" / "img_000.png", root / "a" / "copy.png")  # a file already counted
    write_image(root / "loose.png", seed=50)
    os.symlink(root / "loose.png", root / "b" / "linked.png")  # a file counted only via the link
    layout = discover(root)
    assert rels(layout) == ["a/img_000.png", "a/img_001.png", "b/img_000.png", "b/img_001.png",
                            "b/linked.png", "c/1.png", "c/2.png"]
    assert {c.rel: c.label for c in layout.candidates}["c/1.png"] == "c"
    found = {p.path: p for p in layout.problems}
    assert found["a/b_too"].code == "duplicate_link" and "'b'" in found["a/b_too"].message
    assert found["a/again"].code == "duplicate_link" and "'c'" in found["a/again"].message
    assert found["a/copy.png"].code == "duplicate_link"
    copy = found["a/copy.png"].message
    assert "b/img_000.png" in copy and "class 'b'" in copy


def test_split_folder_links_stay_inside_the_root(tmp_path):
    root = tmp_path / "ds"
    make_class_folders(root / "train", {"a": 2, "b": 2})
    make_class_folders(tmp_path / "secret_val", {"a": 1, "b": 1})
    os.symlink(tmp_path / "secret_val", root / "val")
    layout = discover(root)
    assert ("escapes_root", "val") in codes(layout)
    assert {c.split for c in layout.candidates} == {"train"}


def test_a_loop_of_links_between_two_folders_terminates(tmp_path):
    root = make_class_folders(tmp_path, {"a": 1, "b": 1})
    os.symlink(root / "b", root / "a" / "to_b")
    os.symlink(root / "a", root / "b" / "to_a")
    layout = discover(root)
    assert rels(layout) == ["a/img_000.png", "b/img_000.png"]
    assert ("duplicate_link", "a/to_b") in codes(layout)
    assert ("duplicate_link", "b/to_a") in codes(layout)


# ---------------------------------------------------------------- manifest conflicts
def test_manifest_giving_a_file_two_labels_is_a_conflict_and_leaves_it_out(tmp_path):
    for i in range(3):
        write_image(tmp_path / f"{i}.png", seed=i)
    (tmp_path / "m.csv").write_text(
        "path,label\n0.png,cat\n1.png,dog\n0.png,dog\n2.png,cat\n./1.png,dog\n")
    layout = discover(tmp_path / "m.csv")
    assert [(c.rel, c.label) for c in layout.candidates] == [("1.png", "dog"), ("2.png", "cat")]
    found = {p.path: p for p in layout.problems}
    conflict = found["0.png"]
    assert conflict.code == "label_conflict" and conflict.severity == "error"
    assert "row 2 says 'cat'" in conflict.message and "row 4 says 'dog'" in conflict.message
    assert "left out" in conflict.message
    repeat = found["1.png"]  # the same label twice is a harmless repeat
    assert repeat.code == "duplicate_manifest_row" and "Row 6 repeats row 3" in repeat.message


def test_manifest_putting_a_file_in_two_splits_is_a_conflict(tmp_path):
    write_image(tmp_path / "0.png")
    write_image(tmp_path / "1.png", seed=1)
    (tmp_path / "m.csv").write_text(
        "path,label,split\n0.png,cat,train\n0.png,cat,val\n1.png,cat,train\n")
    layout = discover(tmp_path / "m.csv")
    assert [c.rel for c in layout.candidates] == ["1.png"]
    (conflict,) = layout.problems
    assert conflict.code == "split_conflict" and "row 3 says 'val'" in conflict.message


def test_a_class_name_with_a_line_break_is_named_and_left_out(tmp_path):
    """labels.txt keeps one class name per line: a class 'ca\\nt' would give a run whose model
    no command could use (it was trained, then refused by predict as 'from another run')."""
    folders = make_class_folders(tmp_path / "folders", {"ca\nt": 2, "dog": 2, "bird": 2})
    layout = discover(folders)
    assert {c.label for c in layout.candidates} == {"dog", "bird"}
    assert [(p.path, p.code) for p in layout.problems] == [("ca\nt", "bad_class_name")]
    manifest = tmp_path / "manifest"
    make_class_folders(manifest, {"a": 3})
    (manifest / "labels.csv").write_text(
        'path,label\na/img_000.png,"x\ny"\na/img_001.png,a\u2028b\na/img_002.png,a\n',
        encoding="utf-8")
    layout = discover(manifest / "labels.csv")
    assert [c.rel for c in layout.candidates] == ["a/img_002.png"]
    assert sorted((p.path, p.code) for p in layout.problems) == [
        ("a/img_000.png", "bad_class_name"), ("a/img_001.png", "bad_class_name")]
