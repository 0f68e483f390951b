"""The benchmark's statistics: the interval it prints beside each accuracy."""

from __future__ import annotations

import pytest

from tests.tools.load import load_tool


def bench():
    return load_tool("bench_auto")


def test_wilson_interval_matches_the_textbook_values():
    wilson = bench().wilson
    assert wilson(0.5, 100) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    low, high = wilson(150 / 153, 153)
    assert low == pytest.approx(0.9441, abs=1e-3) and high < 1.0
    assert wilson(1.0, 10)[1] == 1.0 and wilson(0.0, 10)[0] == 0.0


def test_the_held_out_layout_copies_the_folders_so_profiling_sees_the_images(tmp_path):
    # links out of the dataset folder are never followed (data/walk.py): the layout copies
    module = bench()
    shared = tmp_path / "shared"
    for split in ("train", "val"):
        (shared / "datasets" / "d" / split / "a").mkdir(parents=True)
        (shared / "datasets" / "d" / split / "a" / "x.png").write_bytes(b"png")
    module.SHARED = shared
    root = module.held_out_layout("d", tmp_path / "work")
    assert not (root / "train").is_symlink() and not (root / "test").is_symlink()
    assert (root / "train" / "a" / "x.png").read_bytes() == b"png"
    assert (root / "test" / "a" / "x.png").is_file()
