"""The search's shared work: decoded images, AdaBN'd backbones and frozen-prefix activations.

A trial spends most of its time computing the activations of the frozen layer groups, not
training; trials of one search mostly differ in what trains, so those activations repeat. The
:class:`ActivationStore` is a :class:`~autotransfer.train.feature_cache.FeatureSource` that keeps
them (least recently used go first beyond ``max_bytes``), keyed by everything they depend on:

* the prefix's weights (:func:`~autotransfer.train.executor.prefix_state_key`: backbone, weights,
  input size, pooling, crop, precision, seed, AdaBN and on which images) and its boundary;
* for the validation features, which images (their paths and content hashes) and batch size;
* for each augmented view of the training images, the augmentation, seed, phase index, batch size
  and which images in which order.

The target images' frozen features of an adapting search (``target_features``, by prefix and
boundary; see :class:`~autotransfer.tuning.trials.TrialAdaptation`) count in the same budget and
go by the same rule. ``used`` lists the keys of what the current run took or kept, so that
:meth:`ActivationStore.resident` can tell later whether it is all still here (the oracle's reserve
for a final training counts a trial's frozen features only while they are, rule PLAN01).

Only a phase whose prefix no earlier phase trained asks with ``shareable`` set. The final training
of ``auto`` asks the same store (``train(..., feature_source=store)``): on the tuning splits it gets
every view back; on train + validation (whose training images are the tuning training images
followed by the validation images) it reuses the validation features whole and, of each view, the
batches made only of tuning training images (the augmentation of a batch depends on its position
alone), computing the rest: the same numbers as computing all of it.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from autotransfer.data.splits import DataSplits

#: total size of the activations kept across trials (least recently used entries go first)
DEFAULT_STORE_BYTES = 3 * 2**30


def _key(*parts: Any) -> str:
    return json.dumps(parts, sort_keys=True, default=str)


@dataclass
class _Val:
    array: np.ndarray
    seconds: float


@dataclass
class _Views:
    group: str  # prefix, augmentation, seed, phase and batch size
    images: tuple[str, ...]  # per-image keys, in order
    arrays: list[np.ndarray] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


class TargetFeatures(MutableMapping[str, np.ndarray]):
    """The target images' frozen features kept with an :class:`ActivationStore`: a mapping whose
    entries count in the store's ``bytes()`` and are evicted least recently used first; an entry
    larger than the whole budget is not kept."""

    def __init__(self, store: ActivationStore) -> None:
        self._store = store
        self._arrays: OrderedDict[str, np.ndarray] = OrderedDict()

    def __getitem__(self, key: str) -> np.ndarray:
        array = self._arrays[key]
        self._arrays.move_to_end(key)
        self._store.used.append(key)
        return array

    def __setitem__(self, key: str, array: np.ndarray) -> None:
        self._arrays.pop(key, None)
        if array.nbytes > self._store.max_bytes:  # would evict everything and still not fit
            return
        self._store.evict(keep=array.nbytes)
        self._arrays[key] = array
        self._store.used.append(key)

    def __delitem__(self, key: str) -> None:
        del self._arrays[key]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._arrays))

    def __len__(self) -> int:
        return len(self._arrays)

    def __contains__(self, key: object) -> bool:  # a test, not a use: no LRU change
        return key in self._arrays

    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._arrays.values())

    def pop_oldest(self) -> None:
        self._arrays.popitem(last=False)


class ActivationStore:
    """Decoded images, adapted backbone weights and frozen-prefix activations, across runs.

    ``hits``/``misses`` count feature requests that reused something / nothing;
    ``extractions`` counts the prefix passes computed (one per view or validation set, partial
    ones included); ``evictions`` the entries dropped to stay within ``max_bytes`` (the oracle's
    reserve follows it, rule PLAN01); ``reused_seconds`` is what the current run saved (reset
    per trial).
    """

    def __init__(self, splits: DataSplits | Callable[[], DataSplits],
                 max_bytes: int = DEFAULT_STORE_BYTES) -> None:
        self._splits = splits
        self.max_bytes = max_bytes
        self.inputs: dict[str, Any] = {}
        self.backbones: dict[str, list[np.ndarray]] = {}
        #: seconds of AdaBN per backbone key, to charge a trial that reuses the adapted weights
        self.backbone_seconds: dict[str, float] = {}
        self.adabn_records: dict[str, Any] = {}
        self._vals: OrderedDict[str, _Val] = OrderedDict()
        self._views: OrderedDict[str, _Views] = OrderedDict()
        #: keys of the entries the current run took or kept (reset with ``reused_seconds``)
        self.used: list[str] = []
        #: the target images' frozen features (:class:`TargetFeatures`), in the same budget
        self.target_features = TargetFeatures(self)
        self.hits = 0
        self.misses = 0
        self.extractions = 0
        self.evictions = 0
        self.reused_seconds = 0.0

    @property
    def splits(self) -> DataSplits:
        return self._splits if isinstance(self._splits, DataSplits) else self._splits()

    def training_inputs(self, recipe: Any) -> Any:
        from autotransfer.train.data import TrainingInputs

        key = _key(recipe.backbone.input_size, recipe.data.crop, recipe.data.class_weighting)
        if key not in self.inputs:
            self.inputs[key] = TrainingInputs(self.splits, recipe.backbone.input_size,
                                              crop=recipe.data.crop,
                                              class_weighting=recipe.data.class_weighting)
        return self.inputs[key]

    # ---------------------------------------------------------------- memory
    def bytes(self) -> int:
        return (sum(v.array.nbytes for v in self._vals.values())
                + sum(a.nbytes for v in self._views.values() for a in v.arrays)
                + self.target_features.nbytes())

    def evict(self, keep: int = 0) -> None:
        """Drop entries until ``keep`` more bytes fit: the least recently used augmented views
        first, then target features, then validation features."""
        target = self.target_features
        while (self._vals or self._views or len(target)) and self.bytes() + keep > self.max_bytes:
            if self._views:
                self._views.popitem(last=False)
            elif len(target):
                target.pop_oldest()
            else:
                self._vals.popitem(last=False)
            self.evictions += 1

    def resident(self, keys: Iterable[str]) -> bool:
        """Whether every entry under ``keys`` (a run's ``used``) is still kept."""
        return all(k in self._vals or k in self._views or k in self.target_features
                   for k in keys)

    # ---------------------------------------------------------------- AdaBN'd backbones
    def adapted_backbone(self, key: str) -> tuple[list[np.ndarray], Any] | None:
        """The backbone weights after AdaBN under ``key`` (see
        :func:`~autotransfer.train.executor.adabn_key`) and their record, if kept."""
        if key not in self.backbones:
            return None
        self.reused_seconds += self.backbone_seconds.get(key, 0.0)
        return self.backbones[key], self.adabn_records[key]

    def keep_adapted(self, key: str, weights: list[np.ndarray], record: Any,
                     seconds: float) -> None:
        self.backbones[key] = weights
        self.adabn_records[key] = record
        self.backbone_seconds[key] = seconds

    # ---------------------------------------------------------------- the feature source
    def frozen_features(self, request: Any) -> Any:
        from autotransfer.train.executor import images_key
        from autotransfer.train.feature_cache import (FrozenFeatures, compute_features,
                                                      predict_features)
        from autotransfer.tuning.hypermodel import Deadline

        # a trial past its deadline stops during these passes, not at the next fit's start
        deadlines = [c for c in request.callbacks if isinstance(c, Deadline)]
        if not request.shareable:
            self.misses += 1
            self.extractions += request.views + 1
            return compute_features(request, deadlines)
        started = time.perf_counter()
        splits = request.inputs.splits
        base = _key(request.state_key, request.trainable_from, request.batch_size)
        prefix = None

        def run(ds: Any) -> np.ndarray:
            nonlocal prefix
            prefix = prefix if prefix is not None else request.prefix()
            self.extractions += 1
            return predict_features(prefix, ds, request.verbose, deadlines)

        reused = 0.0
        hit = False
        val_key = _key(base, images_key(splits.val))
        val = self._vals.get(val_key)
        self.used.append(val_key)
        if val is None:
            t = time.perf_counter()
            array = run(request.val_data())
            val = _Val(array, time.perf_counter() - t)
            self.evict(keep=array.nbytes * (request.views + 2))
            self._vals[val_key] = val
        else:
            self._vals.move_to_end(val_key)
            reused += val.seconds
            hit = True
        images = tuple(f"{r.path}\0{r.sha}" for r in splits.train)
        aug = request.augmentation.model_dump(mode="json")
        group = _key(base, aug, request.seed, request.phase)
        own_key = _key(group, images_key(splits.train))
        self.used.append(own_key)
        entry, earlier = self._views.get(own_key), None
        if entry is not None:
            self._views.move_to_end(own_key)
            kept = min(len(entry.arrays), request.views)
            reused += sum(entry.seconds[:kept])
            hit = hit or kept > 0
        else:
            earlier = self._earlier(group, images)
            entry = _Views(group, images)
            self._views[own_key] = entry
        bs = request.batch_size
        for v in range(len(entry.arrays), request.views):
            t = time.perf_counter()
            if earlier is not None and v < len(earlier.arrays):
                # the batches made only of the earlier images are the same: keep them, compute
                # the rest (the pipeline still draws the skipped batches' augmentation)
                rows = (len(earlier.images) // bs) * bs
                tail = run(request.view_data(v).skip(rows // bs))
                entry.arrays.append(np.concatenate([earlier.arrays[v][:rows], tail]))
                reused += earlier.seconds[v] * rows / max(1, len(earlier.images))
                hit = True
            else:
                entry.arrays.append(run(request.view_data(v)))
            entry.seconds.append(time.perf_counter() - t)
        self.evict()
        self.hits += int(hit)
        self.misses += int(not hit)
        self.reused_seconds += reused
        return FrozenFeatures(entry.arrays[:request.views], val.array, request.inputs,
                              build_seconds=time.perf_counter() - started, shared=hit,
                              reused_seconds=reused, view_seconds=entry.seconds[:request.views],
                              val_seconds=val.seconds)

    def _earlier(self, group: str, images: tuple[str, ...]) -> _Views | None:
        """The longest stored views of the same prefix and seeds whose images begin
        ``images`` (the tuning training images, when ``images`` adds the validation ones)."""
        found = [e for e in self._views.values()
                 if e.group == group and e.arrays and len(e.images) < len(images)
                 and images[:len(e.images)] == e.images]
        return max(found, key=lambda e: len(e.images), default=None)
