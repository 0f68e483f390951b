"""The stratified, seeded sample of training images that the probes measure."""

from __future__ import annotations

import queue
import random
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

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


class SampleImages:
    """The sample's images, decoded once per input size in a background thread.

    :meth:`start` begins decoding at once (no TensorFlow: :func:`.extract.decode_sample`), so it
    overlaps TensorFlow's start and the model's construction; :meth:`at` waits for the result.
    The last sample decoded is kept for the later measurements of the same process (AdaBN,
    precision, step timing: :func:`sample_images`) until :func:`forget_sample_images`.
    """

    def __init__(self, records: list[ImageRecord], root: str) -> None:
        self.records = list(records)
        self.root = root
        self.identity = (root, tuple((r.path, r.sha) for r in self.records))
        self.decode_s = 0.0  # seconds spent decoding (in the background thread)
        self._futures: dict[int, Future[np.ndarray]] = {}
        self._lock = threading.Lock()
        self._cancel = threading.Event()

    def start(self, size: int) -> None:
        """Begin decoding at ``size`` (once), in a daemon thread: the process never waits for it
        at exit (Ctrl-C during a probe is prompt), and :meth:`cancel` stops it."""
        with self._lock:
            if size not in self._futures:
                future: Future[np.ndarray] = Future()
                future.set_running_or_notify_cancel()
                self._futures[size] = future
                _in_background(lambda: self._decode(size, future))

    def cancel(self) -> None:
        """Stop decoding, each thread at its next image; what is not decoded is dropped and
        nothing more is decoded (:meth:`at` then raises :class:`.extract.DecodeCancelled`)."""
        self._cancel.set()
        with self._lock:
            self._futures = {s: f for s, f in self._futures.items() if f.done()
                             and f.exception() is None}

    def ready(self, size: int) -> bool:
        """Whether the images at ``size`` are decoded (:meth:`at` returns at once)."""
        future = self._futures.get(size)
        return future is not None and future.done()

    def at(self, size: int, n: int | None = None) -> np.ndarray:
        """The first ``n`` (all) images at ``size``, read-only; only those are decoded when the
        whole sample is not decoded or decoding at that size."""
        if n is not None and n < len(self.records) and size not in self._futures:
            from autotransfer.probes.extract import decode_sample

            return decode_sample(self.records[:n], self.root, size)
        self.start(size)
        return self._futures[size].result()[:n]

    def _decode(self, size: int, future: Future[np.ndarray]) -> None:
        from autotransfer.probes.extract import decode_sample

        t0 = time.perf_counter()
        try:
            images = decode_sample(self.records, self.root, size, cancel=self._cancel)
        except BaseException as exc:  # the caller of at() gets it
            future.set_exception(exc)
            return
        images.flags.writeable = False
        self.decode_s += time.perf_counter() - t0
        future.set_result(images)


_queue: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
_worker: threading.Thread | None = None


def _in_background(task: Callable[[], None]) -> None:
    """Run ``task`` in the one background daemon thread, after those queued before it (one
    decode at a time, first asked first done, as the probe needs them)."""
    global _worker
    _queue.put(task)
    with _worker_lock:
        if _worker is None or not _worker.is_alive():
            _worker = threading.Thread(target=_work, daemon=True, name="autotransfer-decode")
            _worker.start()


def _work() -> None:
    while True:
        _queue.get()()


_worker_lock = threading.Lock()
_last: SampleImages | None = None


def sample_images(records: list[ImageRecord], root: str) -> SampleImages:
    """The decoded images of ``records`` under ``root``: the last ones kept when they are the
    same files (same paths and contents), else a new :class:`SampleImages` (then kept)."""
    global _last
    fresh = SampleImages(records, root)
    if _last is None or _last.identity != fresh.identity:
        _last = fresh
    return _last


def forget_sample_images() -> None:
    """Release the kept decoded images, stopping a decode still running (the advisor calls it
    when it has measured)."""
    global _last
    if _last is not None:
        _last.cancel()
    _last = None
