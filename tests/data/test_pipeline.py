"""The tf.data pipeline decodes like the profiler, keeps the class order, shuffles by seed."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from autotransfer.data.profile import profile_dataset
from autotransfer.data.splits import make_splits
from tests.data.builders import jpeg_with_orientation, make_class_folders

tf = pytest.importorskip("tensorflow")

from autotransfer.data.pipeline import make_dataset, make_pipelines  # noqa: E402


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    make_class_folders(root, {"a": 12, "b": 8}, size=16)
    Image.new("RGB", (20, 10), (0, 0, 255)).convert("CMYK").save(root / "b" / "cmyk.jpg")
    (root / "a" / "rotated.jpg").write_bytes(jpeg_with_orientation(6, 40, 20))
    return make_splits(profile_dataset(root, workers=1), val_fraction=0.25, seed=0)


def test_batches_have_the_requested_shape_and_labels_follow_class_order(splits):
    pipes = make_pipelines(splits, 24, batch_size=4)
    images, labels = next(iter(pipes.train))
    assert images.shape == (4, 24, 24, 3) and images.dtype == tf.uint8
    assert pipes.class_names == ["a", "b"] and pipes.test is None
    all_labels = np.concatenate([y.numpy() for _, y in pipes.val])
    expected = [splits.class_names.index(r.label) for r in splits.val]
    assert all_labels.tolist() == expected  # validation keeps the split's order


def test_pipeline_pixels_equal_the_reader(splits):
    from autotransfer.data.images import load_image

    ds = make_dataset(splits.train, splits.root, splits.class_names, 16, batch_size=64)
    images, _ = next(iter(ds))
    for i, record in enumerate(splits.train):
        expected = load_image(f"{splits.root}/{record.path}", 16)
        np.testing.assert_array_equal(images[i].numpy(), expected)


def test_shuffle_is_seeded_and_changes_each_epoch(splits):
    def order(ds):
        return np.concatenate([y.numpy() for _, y in ds]).tolist()

    def images(ds):
        return np.concatenate([x.numpy().reshape(len(x), -1)[:, :8] for x, _ in ds])

    a = make_dataset(splits.train, splits.root, splits.class_names, 8, shuffle=True, seed=1)
    b = make_dataset(splits.train, splits.root, splits.class_names, 8, shuffle=True, seed=1)
    np.testing.assert_array_equal(images(a), images(b))
    first, second = images(a), images(a)  # two epochs of the same dataset
    assert not np.array_equal(first, second)
    assert sorted(order(a)) == sorted(r_label for r_label in order(b))
