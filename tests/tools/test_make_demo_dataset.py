"""The demo dataset is real data that installs with scikit-learn, laid out as class folders."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from autotransfer.data.profile import profile_dataset

_SPEC = importlib.util.spec_from_file_location(
    "make_demo_dataset", Path(__file__).resolve().parents[2] / "tools" / "make_demo_dataset.py"
)
make_demo_dataset = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(make_demo_dataset)


def test_demo_dataset_builds_and_profiles_as_ten_grayscale_classes(tmp_path):
    out = make_demo_dataset.build(tmp_path / "digits", size=24, per_class=6)
    profile = profile_dataset(out, workers=1)
    assert profile.classes == [f"digit_{k}" for k in range(10)]
    assert set(profile.class_counts.values()) == {6}
    assert profile.width.min == profile.width.max == 24
    assert profile.grayscale_fraction == 1.0 and not profile.problems
    assert [p.name for p in tmp_path.iterdir()] == ["digits"]  # no staging folder left behind


def test_demo_dataset_rebuild_replaces_the_old_one(tmp_path):
    out = make_demo_dataset.build(tmp_path / "digits", per_class=3)
    (out / "stale.txt").write_text("x")
    make_demo_dataset.build(tmp_path / "digits", per_class=2)
    assert not (out / "stale.txt").exists()
    assert sum(1 for _ in out.rglob("*.png")) == 20
