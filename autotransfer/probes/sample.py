"""The stratified, seeded sample of training images that the probes measure."""

from __future__ import annotations

import random
from collections import defaultdict

from autotransfer.data.models import DatasetProfile, ImageRecord
from autotransfer.errors import InvalidParameterError

DEFAULT_PER_CLASS = 64
DEFAULT_TOTAL = 1000


def sample_records(
    profile: DatasetProfile,
    *,
    per_class: int = DEFAULT_PER_CLASS,
    total: int = DEFAULT_TOTAL,
    seed: int = 0,
) -> list[ImageRecord]:
    """At most ``per_class`` images of each class and ``total`` in all, from the training split.

    Classes get equal shares (a class with fewer images gives its unused share to nobody, so
    the sample stays balanced); within a class the choice is random with ``seed`` but independent
    of the order files were listed in. The result is sorted by class, then path.
    """
    if per_class < 2 or total < 4:
        raise InvalidParameterError(
            f"The sample must allow at least 2 images per class and 4 in all. Got per_class="
            f"{per_class} and total={total} instead."
        )
    split = "train" if any(r.split == "train" for r in profile.records) else None
    by_class: dict[str, list[ImageRecord]] = defaultdict(list)
    for record in profile.records:
        if record.split == split:
            by_class[record.label].append(record)
    share = max(2, min(per_class, total // max(1, len(by_class))))
    rng = random.Random(seed)
    chosen: list[ImageRecord] = []
    for label in sorted(by_class):
        members = sorted(by_class[label], key=lambda r: r.path)
        picked = members if len(members) <= share else rng.sample(members, share)
        chosen.extend(sorted(picked, key=lambda r: r.path))
    return chosen
