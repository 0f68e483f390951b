"""The benchmark's statistics: the interval it prints beside each accuracy."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.conftest import REPO_ROOT


def bench():
    path = REPO_ROOT / "tools" / "bench_auto.py"
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))  # as when run as a script: its helper module
    spec = importlib.util.spec_from_file_location("bench_auto", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_auto"] = module
    spec.loader.exec_module(module)
    return module


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
