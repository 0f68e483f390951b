"""The probe sample: stratified, capped, seeded, from the training split only."""

from __future__ import annotations

from collections import Counter

import numpy as np

import pytest

from autotransfer.data.profile import profile_dataset
from autotransfer.errors import InvalidParameterError
from autotransfer.probes.sample import sample_records
from tests.data.builders import make_class_folders


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    make_class_folders(root / "train", {"a": 30, "b": 5, "c": 12}, size=8)
    make_class_folders(root / "val", {"a": 3, "b": 3, "c": 3}, size=8, seed=500)
    return profile_dataset(root, workers=1)


def test_caps_per_class_and_total_and_uses_only_training_images(profile):
    sample = sample_records(profile, per_class=10, total=1000)
    assert Counter(r.label for r in sample) == {"a": 10, "b": 5, "c": 10}
    assert {r.split for r in sample} == {"train"}
    small = sample_records(profile, per_class=64, total=12)
    assert Counter(r.label for r in small) == {"a": 4, "b": 4, "c": 4}


def test_seeded_and_independent_of_listing_order(profile):
    first = [r.path for r in sample_records(profile, per_class=10, seed=1)]
    again = [r.path for r in sample_records(profile.model_copy(
        update={"records": list(reversed(profile.records))}), per_class=10, seed=1)]
    other = [r.path for r in sample_records(profile, per_class=10, seed=2)]
    assert first == again and first != other


def test_too_small_a_sample_is_refused(profile):
    with pytest.raises(InvalidParameterError, match="at least 2 images per class"):
        sample_records(profile, per_class=1)


def test_sample_images_are_decoded_once_and_kept_for_the_same_files(profile):
    from autotransfer.data.images import load_image
    from autotransfer.probes.sample import forget_sample_images, sample_images

    records = sample_records(profile, per_class=4, total=100)
    decoded = sample_images(records, profile.root)
    decoded.start(16)
    images = decoded.at(16)
    assert images.shape == (len(records), 16, 16, 3) and images.dtype == np.uint8
    assert not images.flags.writeable and decoded.decode_s > 0
    np.testing.assert_array_equal(images[5], load_image(f"{profile.root}/{records[5].path}", 16))
    assert sample_images(list(records), profile.root) is decoded  # same files: kept
    assert np.shares_memory(decoded.at(16, 3), images)  # a prefix of what is decoded: not decoded again
    assert decoded.at(8, 3).shape == (3, 8, 8, 3)  # another size: only those three
    assert 8 not in decoded._futures
    assert sample_images(records[1:], profile.root) is not decoded  # other files: a new sample
    forget_sample_images()
    assert sample_images(records[1:], profile.root) is not sample_images(records, profile.root)


def test_ctrl_c_while_decoding_the_sample_ends_the_process_at_once(tmp_path):
    """The decode runs in daemon threads: Ctrl-C (SIGINT) while a probe waits for the sample
    ends the process without decoding the rest (it waited for the whole decode)."""
    import subprocess
    import sys
    import time

    script = tmp_path / "interrupted.py"
    script.write_text(
        "import os, signal, threading, time\n"
        # Python's own Ctrl-C handler, whatever disposition the test process passed on
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from types import SimpleNamespace\n"
        "import numpy as np\n"
        "import autotransfer.data.images as images\n"
        "def slow(path, size):\n"
        "    time.sleep(0.1)\n"
        "    return np.zeros((*size, 3), np.uint8)\n"
        "images.load_image = slow  # 400 images x 0.1 s: 20 s on 2 threads\n"
        "from autotransfer.probes.sample import SampleImages\n"
        "records = [SimpleNamespace(path=f'{i}.png', sha=str(i)) for i in range(400)]\n"
        "decoded = SampleImages(records, '.')\n"
        "decoded.start(8)\n"
        "threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()\n"
        "try:\n"
        "    decoded.at(8)\n"
        "except KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n")
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip() == "interrupted", done.stderr
    assert time.perf_counter() - started < 8  # the rest of the decode (about 20 s) not waited for


def test_a_cancelled_decode_stops_at_the_next_image(monkeypatch):
    import threading
    import time
    from types import SimpleNamespace

    import autotransfer.data.images as images
    from autotransfer.probes.extract import DecodeCancelled
    from autotransfer.probes.sample import SampleImages

    calls = []

    def slow(path, size):
        calls.append(path)
        time.sleep(0.02)
        return np.zeros((*size, 3), np.uint8)

    monkeypatch.setattr(images, "load_image", slow)
    decoded = SampleImages([SimpleNamespace(path=f"{i}.png", sha=str(i)) for i in range(500)], ".")
    decoded.start(4)
    time.sleep(0.1)
    decoded.cancel()
    time.sleep(0.1)
    stopped = len(calls)
    time.sleep(0.2)
    assert 0 < stopped == len(calls) < 500
    assert not any(t.name == "autotransfer-decode" and not t.daemon for t in threading.enumerate())
    with pytest.raises(DecodeCancelled):
        decoded.at(4)


def test_decodes_run_one_at_a_time_first_asked_first_done(monkeypatch):
    """The first backbone's input size is decoded first, without a second size competing."""
    from types import SimpleNamespace

    import autotransfer.data.images as images
    from autotransfer.probes.sample import SampleImages

    sizes = []

    def recording(path, size):
        sizes.append(size[0])
        return np.zeros((*size, 3), np.uint8)

    monkeypatch.setattr(images, "load_image", recording)
    decoded = SampleImages([SimpleNamespace(path=f"{i}.png", sha=str(i)) for i in range(40)], ".")
    decoded.start(4)
    decoded.start(8)
    assert decoded.at(8).shape == (40, 8, 8, 3) and decoded.ready(4)
    assert sizes == [4] * 40 + [8] * 40
