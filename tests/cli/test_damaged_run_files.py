"""A damaged, edited or foreign JSON/YAML file in a run folder is a clear exit 2 naming it.

Every command a user can point at such a folder (``predict``, ``evaluate``, ``train --resume``)
and the ONNX export read the run's files through :func:`autotransfer._io.read_run_json` (or the
recipe / split loaders), never with a bare ``json.loads`` that would end in a traceback (exit 70).
"""

from __future__ import annotations

import keras
import pytest

from autotransfer.cli import EXIT_OK, EXIT_USER_ERROR, main
from autotransfer.errors import RunDirectoryError
from autotransfer.train.run import partial_dir
from tests.train.helpers import make_colour_dataset, tiny_recipe

DAMAGED = {
    "truncated": b'{"crop": tr',
    "not UTF-8": b'{"crop": "\xff"}',
    "not an object": b'["crop"]',
    "wrong version": b'{"crop": "yes"}',
}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_colour_dataset(tmp_path_factory.mktemp("damaged") / "ds", {"cat": 3, "dog": 3},
                               size=8)


def _fixed_size_model_folder(folder, run_json: bytes | None):
    """A model folder as older runs (or other tools) leave them: a bare fixed-size classifier,
    whose resize transform only ``run.json`` tells."""
    folder.mkdir()
    inputs = keras.Input((8, 8, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(inputs)
    keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(pooled)).save(
        folder / "model.keras")
    (folder / "labels.txt").write_text("cat\ndog\n")
    if run_json is not None:
        (folder / "run.json").write_bytes(run_json)
    return folder


def _cli(args, capsys):
    code = main([str(a) for a in args])
    return code, capsys.readouterr()


@pytest.mark.parametrize("content", DAMAGED.values(), ids=DAMAGED.keys())
def test_predict_and_evaluate_name_a_damaged_run_json(dataset, tmp_path, capsys, content):
    folder = _fixed_size_model_folder(tmp_path / "old_run", content)
    for args in (["predict", folder, dataset / "cat"], ["evaluate", folder, dataset]):
        code, captured = _cli(args, capsys)
        assert code == EXIT_USER_ERROR, captured.err
        assert str(folder / "run.json") in captured.err and "cannot be read" in captured.err
        assert "copy the run folder again" in captured.err and "Traceback" not in captured.err


def test_a_sound_run_json_of_an_older_model_is_still_used(dataset, tmp_path, capsys):
    folder = _fixed_size_model_folder(tmp_path / "old_run", b'{"crop": false, "files": []}')
    code, captured = _cli(["predict", folder, dataset / "cat", "--json", "-q"], capsys)
    assert code == EXIT_OK, captured.err
    from autotransfer.train.inference import load_run_model

    assert load_run_model(folder).crop is False
    no_info = _fixed_size_model_folder(tmp_path / "no_info", None)  # none: crop, as always
    assert load_run_model(no_info).crop is True


def test_resume_names_a_damaged_recipe(dataset, tmp_path, capsys):
    out = tmp_path / "run"
    partial_dir(out).mkdir()
    (partial_dir(out) / "recipe.yaml").write_text("backbone: [test_tiny\n")
    code, captured = _cli(["train", dataset, "-o", out, "--resume"], capsys)
    assert code == EXIT_USER_ERROR, captured.err
    assert str(partial_dir(out) / "recipe.yaml") in captured.err
    assert f"delete '{partial_dir(out)}'" in captured.err and "--backbone-file" in captured.err
    assert "Traceback" not in captured.err
    assert partial_dir(out).is_dir()  # the user's folder is left as it was


def test_resume_names_a_damaged_split_manifest(dataset, tmp_path, capsys):
    from autotransfer.recipe.io import save_recipe

    out = tmp_path / "run"
    partial_dir(out).mkdir()
    save_recipe(tiny_recipe(), partial_dir(out) / "recipe.yaml")
    (partial_dir(out) / "splits.json").write_text('{"root": ')
    code, captured = _cli(["train", dataset, "-o", out, "--resume"], capsys)
    assert code == EXIT_USER_ERROR, captured.err
    assert str(partial_dir(out) / "splits.json") in captured.err and "Traceback" not in captured.err
    assert (partial_dir(out) / "splits.json").read_text() == '{"root": '


def test_onnx_export_refuses_a_damaged_run_json_before_converting(tmp_path):
    pytest.importorskip("tf2onnx")
    from autotransfer.train.export import ONNX_FILE, add_onnx

    folder = _fixed_size_model_folder(tmp_path / "run", b'{"files": "model.keras"}')
    with pytest.raises(RunDirectoryError, match=r"run\.json' cannot be read \(its 'files' is a "
                                                r"string, not an array\)"):
        add_onnx(folder)
    assert not (folder / ONNX_FILE).exists()


def _recipe_beside(folder, **data):
    import yaml

    recipe = tiny_recipe().to_dict()
    recipe["backbone"]["name"] = "my_net"  # a custom backbone, not registered here
    recipe["data"].update(data)
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))


def test_evaluate_holds_out_as_the_run_did_whatever_its_backbone(dataset, tmp_path, capsys):
    from autotransfer.data.profile import profile_dataset
    from autotransfer.data.splits import make_splits
    from autotransfer.train.inference import evaluate

    folder = _fixed_size_model_folder(tmp_path / "run", None)
    _recipe_beside(folder, val_fraction=0.5)
    code, captured = _cli(["evaluate", folder, dataset, "--json"], capsys)
    assert code == EXIT_OK, captured.err
    expected = make_splits(profile_dataset(dataset), val_fraction=0.5, seed=0,
                           exclude_leaks=False).val
    assert evaluate(folder, dataset).predictions.paths == [r.path for r in expected]

    (folder / "recipe.yaml").write_text("data: {val_fraction: 0.5\n")  # damaged
    code, captured = _cli(["evaluate", folder, dataset], capsys)
    assert code == EXIT_USER_ERROR and str(folder / "recipe.yaml") in captured.err
    assert "copy it again from the run folder" in captured.err
