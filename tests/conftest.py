"""Shared fixtures: seeding, a Keras cache pointing at ../shared/weights, shared datasets."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("AUTOTRANSFER_SHARED", REPO_ROOT.parent / "shared"))
SHARED_DATASETS = SHARED / "datasets"
SHARED_WEIGHTS = SHARED / "weights"

# Keras reads KERAS_HOME when it is first imported, so the cache folder is prepared before any
# test imports it: a temporary folder whose models/ links to ../shared/weights/*. Users keep
# Keras' normal download into ~/.keras; this only pre-fills the cache.
_KERAS_HOME = Path(tempfile.mkdtemp(prefix="autotransfer-keras-home-"))
(_KERAS_HOME / "models").mkdir()
if SHARED_WEIGHTS.is_dir():
    for _file in SHARED_WEIGHTS.iterdir():
        if _file.is_file():
            (_KERAS_HOME / "models" / _file.name).symlink_to(_file.resolve())
os.environ["KERAS_HOME"] = str(_KERAS_HOME)
# Probe features are cached in a folder of this session: never in the user's cache, and every
# run measures what a first run measures (a stale entry from an older version cannot hide a bug).
os.environ["AUTOTRANSFER_CACHE"] = tempfile.mkdtemp(prefix="autotransfer-feature-cache-")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


@pytest.fixture(autouse=True)
def _seed_everything() -> None:
    random.seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def keras_home() -> Path:
    """The ``KERAS_HOME`` folder of this test session (its ``models/`` links to shared weights)."""
    return _KERAS_HOME


@pytest.fixture(scope="session")
def shared_weights() -> Path:
    """``../shared/weights``; skips the test when it is absent."""
    if not SHARED_WEIGHTS.is_dir():
        pytest.skip(f"needs ImageNet weights in {SHARED_WEIGHTS} (absent in a fresh clone)")
    return SHARED_WEIGHTS


@pytest.fixture(scope="session")
def real_feature_cache(tmp_path_factory):
    """One probe feature cache for the tests that probe ../shared's datasets with real weights:
    a sample two tests probe alike is extracted once in the session (the figures still come from
    this session's code, so each test still fails for what it guards)."""
    from autotransfer.probes.cache import FeatureCache

    return FeatureCache(tmp_path_factory.mktemp("real-features"))


@pytest.fixture(scope="session")
def tiny_auto_run(tmp_path_factory):
    """One tiny ``auto`` run that searches (test_tiny, 24 colour images and a test split of 12,
    2 trials), and the progress lines it said: tests/test_auto.py and tests/report/test_html.py
    read it, none changes it."""
    import autotransfer
    from tests.train.helpers import make_colour_dataset

    root = tmp_path_factory.mktemp("auto")
    dataset = root / "colours"
    counts = {"red": 8, "green": 8, "blue": 8}
    make_colour_dataset(dataset, counts, split="train")
    make_colour_dataset(dataset, {k: 4 for k in counts}, split="test", seed=1)
    said: list[str] = []
    # full_search: 6 validation images cannot show a significant gain, so auto would stop after
    # trial 0 (tests/test_auto.py tests that); this run exercises the search
    result = autotransfer.auto(dataset, root / "runs" / "colours", time_budget="10m", trials=2,
                               preset="quick", backbones=["test_tiny"], weights=None,
                               full_search=True, progress=said.append)
    return result, said


@pytest.fixture(scope="session")
def tiny_target_auto_run(tmp_path_factory):
    """One tiny ``auto(target=...)`` run with room for a search (no budget, 2 trials): 24 colour
    images (red, green) and, as unlabelled target images in one folder, 20 washed-out and noisier
    copies of the colours (DA06). tests/test_auto_target.py and tests/oneshot/test_adapt.py read
    it, none changes it (tests/oneshot/test_adapt.py's other runs use a labelled target)."""
    from PIL import Image

    import autotransfer
    from tests.train.helpers import make_colour_dataset

    root = tmp_path_factory.mktemp("auto_target")
    source = make_colour_dataset(root / "src", {"r": 12, "g": 12})
    target = root / "tgt"
    target.mkdir()
    rng = np.random.default_rng(1)
    for i in range(20):  # the same colours, washed out and noisier: a shifted domain
        colour = np.array([(220, 40, 40), (40, 200, 60)][i % 2])
        pixels = colour * 0.5 + 100 + rng.normal(0, 60, (32, 32, 3))
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(target / f"{i}.png")
    return autotransfer.auto(source, root / "out", time_budget=None, trials=2,
                             backbones=["test_tiny"], weights=None, precision="float32",
                             target=target, verbose=0)


def shared_dataset(name: str) -> Path:
    """Path of a dataset under ``../shared/datasets``; skips the test when it is absent."""
    path = SHARED_DATASETS / name
    if not path.is_dir():
        pytest.skip(f"needs the shared dataset {path} (absent in a fresh clone)")
    return path
