"""Profiling: per-file problems never stop the run, unusable datasets are clear errors."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

import autotransfer
from autotransfer.data import inspect as inspect_module
from autotransfer.data.profile import profile_dataset
from autotransfer.errors import UnusableDatasetError
from tests.conftest import shared_dataset
from tests.data.builders import (
    image_bytes,
    jpeg_with_orientation,
    make_class_folders,
    png_with_size,
    write_image,
)


def problem_codes(profile):
    return {(p.path, p.code) for p in profile.problems}


def snapshot(root):
    """Bytes hash, mode and mtime of every file: proof that profiling changed nothing."""
    state = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                continue
            st = os.stat(path)
            with open(path, "rb") as handle:
                state[path] = (hashlib.sha256(handle.read()).hexdigest(), st.st_mode, st.st_mtime_ns)
    return state


@pytest.fixture
def broken_dataset(tmp_path):
    root = tmp_path / "ds"
    make_class_folders(root, {"cat": 3, "dog": 3})
    (root / "cat" / "zero.jpg").write_bytes(b"")
    good_jpeg = image_bytes("JPEG", 64, seed=50)
    (root / "cat" / "truncated.jpg").write_bytes(good_jpeg[: len(good_jpeg) // 2])
    good_png = image_bytes("PNG", 64, seed=51)
    (root / "dog" / "truncated.png").write_bytes(good_png[: len(good_png) // 2])
    (root / "dog" / "garbage.jpg").write_bytes(b"\xff\xd8\xff" + bytes(range(256)))  # no valid marker
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "dog" / "bomb.png").write_bytes(png_with_size(40_000, 40_000))
    (root / "dog" / "really_png.jpg").write_bytes(image_bytes("PNG", 32, seed=52))
    (root / "cat" / "with space.png").write_bytes(image_bytes("PNG", 32, seed=53))
    (root / "cat" / "rotated.jpg").write_bytes(jpeg_with_orientation(6, 40, 20))
    (root / "cat" / "icon.png").write_bytes(image_bytes("PNG", 4, seed=54))
    os.symlink("self_loop.png", root / "cat" / "self_loop.png")
    os.symlink("nowhere.png", root / "dog" / "dangling.png")
    os.symlink(root / "cat", root / "cat" / "loopdir")
    (root / os.fsdecode(b"cat/caf\xe9.png")).write_bytes(image_bytes("PNG", 32, seed=55))
    return root


def test_every_broken_file_is_reported_and_the_rest_profiled(broken_dataset):
    before = snapshot(broken_dataset)
    profile = profile_dataset(broken_dataset, workers=1)
    found = problem_codes(profile)
    expected = {
        ("cat/zero.jpg", "zero_byte"),
        ("cat/truncated.jpg", "truncated"),
        ("dog/truncated.png", "truncated"),
        ("dog/garbage.jpg", "undecodable"),
        ("dog/notes.txt", "not_an_image"),
        ("dog/bomb.png", "too_large"),
        ("dog/really_png.jpg", "extension_mismatch"),
        ("cat/with space.png", "space_in_name"),
        ("cat/icon.png", "tiny_image"),
        ("cat/self_loop.png", "symlink_loop"),
        ("dog/dangling.png", "broken_symlink"),
        ("cat/loopdir", "symlink_loop"),
        (os.fsdecode(b"cat/caf\xe9.png"), "non_utf8_name"),
    }
    assert expected <= found, expected - found
    usable = {r.path for r in profile.records}
    assert {"dog/really_png.jpg", "cat/with space.png", "cat/rotated.jpg", "cat/icon.png"} <= usable
    assert not usable & {"cat/zero.jpg", "cat/truncated.jpg", "dog/garbage.jpg", "dog/bomb.png"}
    assert profile.n_images == 6 + 5  # 6 generated + mismatch, space, rotated, icon, non-UTF-8
    rotated = next(r for r in profile.records if r.path == "cat/rotated.jpg")
    assert (rotated.width, rotated.height) == (20, 40)  # EXIF orientation applied
    assert snapshot(broken_dataset) == before  # nothing modified, nothing chmod-ed
    json.dumps(profile.to_dict(include_records=True))  # serialisable, even the non-UTF-8 name
    assert all(p.hint for p in profile.problems)


def test_header_check_finds_truncation_by_end_marker_without_decoding(broken_dataset):
    profile = profile_dataset(broken_dataset, check="header", workers=1)
    found = problem_codes(profile)
    assert {("cat/truncated.jpg", "truncated"), ("dog/truncated.png", "truncated")} <= found
    assert profile.grayscale_fraction is None


def test_parallel_and_serial_profiles_agree(broken_dataset):
    make_class_folders(broken_dataset, {"cat": 40, "dog": 40}, seed=100)  # above the pool threshold
    serial = profile_dataset(broken_dataset, workers=1)
    parallel = profile_dataset(broken_dataset, workers=2)
    assert parallel.workers == 2
    strip = lambda p: p.to_dict(include_records=True) | {"elapsed_s": 0, "workers": 0}  # noqa: E731
    assert strip(serial) == strip(parallel)


def test_unreadable_file_is_reported(tmp_path, monkeypatch):
    root = make_class_folders(tmp_path, {"a": 2, "b": 2})
    locked = root / "a" / "img_000.png"
    real_open = open

    def guarded_open(path, *args, **kwargs):
        if os.fspath(path) == os.fspath(locked):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(inspect_module, "open", guarded_open, raising=False)
    profile = profile_dataset(root, workers=1, strict=False)
    assert ("a/img_000.png", "unreadable") in problem_codes(profile)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_permissions_for_real(tmp_path):
    root = make_class_folders(tmp_path, {"a": 3, "b": 3})
    (root / "a" / "img_000.png").chmod(0)
    profile = profile_dataset(root, workers=1)
    assert ("a/img_000.png", "unreadable") in problem_codes(profile)


def test_grayscale_and_alpha_fractions(tmp_path):
    root = make_class_folders(tmp_path, {"a": 2, "b": 2})
    write_image(root / "a" / "gray.png", mode="L", seed=9)
    write_image(root / "b" / "gray_as_rgb.jpg", "JPEG", mode="L", seed=10)
    (root / "b" / "gray_as_rgb.jpg").write_bytes(image_bytes("JPEG", 32, seed=10, mode="L"))
    write_image(root / "b" / "alpha.png", mode="RGBA", seed=11)
    profile = profile_dataset(root, workers=1)
    assert profile.grayscale_fraction == pytest.approx(2 / 7)
    assert profile.alpha_fraction == pytest.approx(1 / 7)
    assert profile.modes["RGB"] == 4 and profile.modes["L"] == 2


def test_counts_imbalance_and_stats(tmp_path):
    make_class_folders(tmp_path / "train", {"a": 6, "b": 2})
    make_class_folders(tmp_path / "val", {"a": 1, "b": 1}, seed=50)
    profile = autotransfer.profile_dataset(tmp_path, workers=1)
    assert [(s.name, s.n_images, s.class_counts) for s in profile.splits] == [
        ("train", 8, {"a": 6, "b": 2}), ("val", 2, {"a": 1, "b": 1})]
    assert profile.imbalance_ratio == pytest.approx(3.0) and profile.imbalance_split == "train"
    assert profile.width.min == profile.width.max == 32
    assert profile.formats == {"PNG": 10}


def test_duplicates_across_splits_and_classes_are_flagged(tmp_path):
    make_class_folders(tmp_path / "train", {"a": 3, "b": 3})
    make_class_folders(tmp_path / "val", {"a": 2, "b": 2}, seed=100)
    same = image_bytes("PNG", 32, seed=999)
    (tmp_path / "train" / "a" / "dup.png").write_bytes(same)
    (tmp_path / "val" / "a" / "dup.png").write_bytes(same)  # leakage
    other = image_bytes("PNG", 32, seed=998)
    (tmp_path / "train" / "a" / "x.png").write_bytes(other)
    (tmp_path / "train" / "b" / "x.png").write_bytes(other)  # label conflict
    profile = profile_dataset(tmp_path, workers=1)
    assert [g.files for g in profile.leakage] == [["train/a/dup.png", "val/a/dup.png"]]
    assert [g.files for g in profile.label_conflicts] == [["train/a/x.png", "train/b/x.png"]]
    assert profile.label_conflicts[0].labels == ["a", "b"]


@pytest.mark.parametrize(
    "classes, message",
    [
        ({"only": 3}, "it has 1 class \\('only'\\); at least 2 are needed"),
        ({"a": 3, "b": 1}, "class 'b' \\(1\\) has fewer than 2 usable training images"),
    ],
)
def test_unusable_datasets_are_clear_errors_that_carry_the_profile(tmp_path, classes, message):
    make_class_folders(tmp_path, classes)
    with pytest.raises(UnusableDatasetError, match=message) as info:
        profile_dataset(tmp_path, workers=1)
    assert info.value.profile is not None


def test_class_made_unusable_by_broken_files_is_an_error(tmp_path):
    make_class_folders(tmp_path, {"a": 3})
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "1.jpg").write_bytes(b"")
    (tmp_path / "b" / "2.jpg").write_bytes(b"junk")
    with pytest.raises(UnusableDatasetError, match="class 'b' \\(0\\) has fewer than 2 usable"):
        profile_dataset(tmp_path, workers=1)


def test_empty_split_is_an_error(tmp_path):
    make_class_folders(tmp_path / "train", {"a": 2, "b": 2})
    (tmp_path / "val" / "a").mkdir(parents=True)
    (tmp_path / "val" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(UnusableDatasetError, match="the val split \\('val'\\) has no usable images"):
        profile_dataset(tmp_path, workers=1)


def test_no_images_at_all_is_an_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "notes.txt").write_text("x")
    with pytest.raises(UnusableDatasetError, match="no usable images were found"):
        profile_dataset(tmp_path, workers=1)


# Real datasets from ../shared (skipped with a reason when absent) -------------------------------


@pytest.mark.shared
def test_hymenoptera_counts_and_odd_files():
    profile = profile_dataset(shared_dataset("hymenoptera"))
    counts = {s.name: s.n_images for s in profile.splits}
    assert counts == {"train": 245, "val": 153}
    assert profile.classes == ["ants", "bees"]
    paths = {r.path: r for r in profile.records}
    gif = [r for p, r in paths.items() if p.endswith("imageNotFound.gif")]
    assert len(gif) == 1 and gif[0].format == "GIF"
    assert any(p.endswith(".jpeg") for p in paths)
    assert not profile.errors


@pytest.mark.shared
def test_chest_xray_reports_imbalance_grayscale_and_the_leaked_pair():
    profile = profile_dataset(shared_dataset("chest_xray_224"))
    assert profile.imbalance_ratio == pytest.approx(2.9, abs=0.1)
    assert profile.imbalance_split == "train"
    assert profile.grayscale_fraction == pytest.approx(1.0)
    assert len(profile.leakage) == 1 and profile.leakage[0].splits == ["test", "train"]


@pytest.mark.shared
def test_flowers_reports_its_cross_class_duplicates():
    profile = profile_dataset(shared_dataset("flowers5_small"), check="header")
    assert profile.n_images == 4317
    assert len(profile.label_conflicts) == 4
    assert all(g.labels == ["rose", "tulip"] for g in profile.label_conflicts)


def test_links_out_of_the_dataset_are_named_and_nothing_outside_is_read(tmp_path):
    """Issue 14: a link to /usr in a class folder made profile count 4,983 foreign images."""
    root = make_class_folders(tmp_path / "ds", {"cat": 3, "dog": 3})
    outside = make_class_folders(tmp_path / "outside", {"more": 5}, seed=20)
    os.symlink(outside / "more", root / "cat" / "extra")
    os.symlink("/", root / "dog" / "root")
    os.symlink(tmp_path, root / "dog" / "parent")
    os.symlink(outside / "more" / "img_000.png", root / "cat" / "one.png")
    before = snapshot(tmp_path)
    profile = profile_dataset(root, workers=1)
    assert profile.n_images == 6 and profile.class_counts == {"cat": 3, "dog": 3}
    assert profile.n_files_seen == 7  # the six images and the file link
    escaped = {p.path for p in profile.errors if p.code == "escapes_root"}
    assert escaped == {"cat/extra", "dog/root", "dog/parent", "cat/one.png"}
    assert all(str(root) in p.message for p in profile.errors)
    assert snapshot(tmp_path) == before


def test_too_large_image_names_autotransfers_limit(tmp_path):
    root = make_class_folders(tmp_path, {"cat": 2, "dog": 2})
    (root / "dog" / "big.png").write_bytes(png_with_size(2_000, 2_000))
    profile = profile_dataset(root, workers=1, max_pixels=1_000_000)
    (big,) = [p for p in profile.problems if p.code == "too_large"]
    assert "limit of 1,000,000 pixels" in big.message and "--max-pixels" in big.message
    again = profile_dataset(root, workers=1, max_pixels=5_000_000, check="header")
    assert "dog/big.png" in {r.path for r in again.records}
