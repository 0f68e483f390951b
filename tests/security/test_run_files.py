"""A run folder's own files cannot send autotransfer elsewhere: a checkpoint manifest naming
``../../secret`` or ``/dev/zero`` (reading which never ends), or holding an entry of the wrong
shape, marks the checkpoint damaged — it is skipped and named — and nothing outside is read."""

from __future__ import annotations

import json

import pytest

from autotransfer._io import file_sha256
from autotransfer.train.checkpoint import MANIFEST, STATE, CheckpointManager


@pytest.mark.timeout(30)
@pytest.mark.parametrize("entry", ["../../secret.txt", "/dev/zero", "sub/state.json", "..", 5,
                                   "shape"])
def test_a_hostile_checkpoint_manifest_is_damage_not_a_path(tmp_path, entry):
    secret = tmp_path / "secret.txt"
    secret.write_text("outside the run")
    folder = tmp_path / "run" / "checkpoints" / "epoch-0001"
    folder.mkdir(parents=True)
    (folder / STATE).write_text('{"global_epoch": 1}')
    files = {STATE: {"size": (folder / STATE).stat().st_size,
                     "sha256": file_sha256(folder / STATE)}}
    if entry == 5:
        files[STATE] = 5  # not a {size, sha256} record
    elif entry == "shape":
        files = [STATE]  # not a mapping at all
    else:
        files[entry] = {"size": 0 if entry == "/dev/zero" else secret.stat().st_size,
                        "sha256": file_sha256(secret)}
    (folder / MANIFEST).write_text(json.dumps({"seq": 0, "files": files}))
    why = CheckpointManager(folder.parent).damage(folder)
    assert why is not None and MANIFEST in why, why


def _rewritten(source, target, config: bytes):
    import zipfile

    with zipfile.ZipFile(source) as z:
        members = {n: z.read(n) for n in z.namelist()}
    with zipfile.ZipFile(target, "w") as z:
        for name, data in {**members, "config.json": config}.items():
            z.writestr(name, data)
    return target


def test_a_model_file_naming_foreign_classes_or_nested_too_deep_is_refused(tmp_path):
    """A ``.keras`` file whose config names a class of another module (``os.system``) or
    nests beyond the JSON reader's depth is a :class:`ModelFileError` (it was exit 70)."""
    keras = pytest.importorskip("keras")
    from autotransfer.errors import ModelFileError
    from autotransfer.train.inference import _load_keras

    inputs = keras.Input((4,))
    source = tmp_path / "model.keras"
    keras.Model(inputs, keras.layers.Dense(2)(inputs)).save(source)
    config = json.loads(_zip_member(source, "config.json"))
    dense = config["config"]["layers"][1]
    dense.update({"module": "os", "class_name": "system", "registered_name": None})
    foreign = _rewritten(source, tmp_path / "foreign.keras", json.dumps(config).encode())
    with pytest.raises(ModelFileError, match="neither Keras' nor autotransfer's"):
        _load_keras(foreign)
    deep = b'{"a": ' * 5000 + b"1" + b"}" * 5000
    nested = _rewritten(source, tmp_path / "nested.keras", deep)
    with pytest.raises(ModelFileError, match="nested.keras' cannot be loaded .*recursion"):
        _load_keras(nested)


def _zip_member(path, name: str) -> bytes:
    import zipfile

    with zipfile.ZipFile(path) as z:
        return z.read(name)


@pytest.mark.parametrize("path", ["../../secret.png", "/etc/passwd", "a/../../b.png", ""])
def test_a_split_manifest_naming_a_file_outside_the_dataset_is_refused(tmp_path, path):
    """A resumed run reads its splits.json: a record path out of the dataset (``..``, absolute)
    is a RunDirectoryError naming the file, never a path the reader follows."""
    from autotransfer.data.profile import profile_dataset
    from autotransfer.data.splits import DataSplits, make_splits
    from autotransfer.errors import RunDirectoryError
    from tests.data.builders import make_class_folders

    data = make_class_folders(tmp_path / "data", {"a": 3, "b": 3})
    splits = make_splits(profile_dataset(data, workers=1), val_fraction=0.34, seed=0)
    saved = tmp_path / "run" / "splits.json"
    saved.parent.mkdir()
    splits.save(saved)
    assert DataSplits.load(saved).train == splits.train  # sound: read back as it was
    manifest = json.loads(saved.read_text(encoding="utf-8"))
    manifest["train"][0]["path"] = path
    saved.write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(RunDirectoryError, match="splits.json.*not a path inside the dataset"):
        DataSplits.load(saved)
