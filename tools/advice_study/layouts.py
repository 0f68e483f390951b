"""The capped copies of the shared datasets every part of the study sees."""

from __future__ import annotations

import math
import random
import shutil
from pathlib import Path
from typing import Any

from advice_study import store
from advice_study.store import HELD_OUT_FRACTION


# ----------------------------------------------------------------------------- layouts
def layout(name: str, max_train: int, max_test: int, seed: int = 0) -> Path:
    """``WORK/layouts/<name>-<max_train>-<max_test>/{train,test}/<class>/<file>``: copies of a
    seeded, class-proportional subsample of the dataset's training and held-out images (copies:
    the profiler rightly follows no link out of the dataset folder)."""
    root = store.WORK / "layouts" / f"{name}-{max_train}-{max_test}"
    if (root / ".complete").is_file():
        return root
    source = store.SHARED / "datasets" / name
    held = next((source / n for n in ("test", "val") if (source / n).is_dir()), None)
    rng = random.Random(seed)

    def files(folder: Path) -> dict[str, list[Path]]:
        return {c.name: sorted(p for p in c.iterdir() if p.is_file())
                for c in sorted(folder.iterdir()) if c.is_dir()}

    if held is None:  # no split: hold out a stratified share of every class
        train, test = {}, {}
        for label, members in files(source).items():
            members = list(members)
            rng.shuffle(members)
            k = max(2, round(HELD_OUT_FRACTION * len(members)))
            test[label], train[label] = sorted(members[:k]), sorted(members[k:])
    else:
        train, test = files(source / "train"), files(held)
    for split, by_class, cap in (("train", train, max_train), ("test", test, max_test)):
        total = sum(len(m) for m in by_class.values())
        for label, members in by_class.items():
            keep = members if total <= cap else sorted(
                rng.sample(members, max(2, round(cap * len(members) / total))))
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for f in keep:
                shutil.copy2(f, folder / f.name)  # the profiler follows no link outside
    (root / ".complete").write_text("")
    return root


def counts(name: str) -> dict[str, int]:
    source = store.SHARED / "datasets" / name
    held = next((n for n in ("test", "val") if (source / n).is_dir()), None)
    n = {s: sum(1 for _ in (source / s).rglob("*") if _.is_file())
         for s in ("train", held) if s}
    if not held:
        n = {"all": sum(1 for _ in source.rglob("*") if _.is_file())}
    return n


def input_size(spec: Any, median_side: float) -> int:
    """The quick preset's input size (rule RES02) for images whose median side is given."""
    floor = store.rule_params("RES02")["floor"]
    if median_side >= spec.default_input_size:
        return spec.default_input_size
    want = 2 ** math.ceil(math.log2(2 * median_side))
    return int(min(max(want, max(spec.min_input_size, floor)), spec.default_input_size))
