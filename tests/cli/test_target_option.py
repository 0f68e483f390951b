"""``--target DIR`` on advise: a bad target folder is a clean error (exit 2) before any probing."""

from __future__ import annotations

import pytest

from autotransfer.cli import EXIT_USER_ERROR, main
from tests.data.builders import make_class_folders, write_image


@pytest.fixture
def dataset(tmp_path):
    return make_class_folders(tmp_path / "source", {"a": 3, "b": 3})


def test_advise_with_an_empty_target_exits_2_naming_the_folder(dataset, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = main(["advise", str(dataset), "--target", str(tmp_path / "empty"), "--out",
                 str(tmp_path / "r.yaml")])
    err = capsys.readouterr().err
    assert code == EXIT_USER_ERROR and "holds no images" in err and str(tmp_path / "empty") in err
    assert "Traceback" not in err and not (tmp_path / "r.yaml").exists()


def test_advise_with_a_mixed_target_or_the_source_itself_exits_2(dataset, tmp_path, capsys):
    mixed = tmp_path / "mixed"
    write_image(mixed / "x.png", seed=99)
    (mixed / "readme.md").write_text("# notes")
    assert main(["advise", str(dataset), "--target", str(mixed)]) == EXIT_USER_ERROR
    assert "'readme.md' (not_an_image" in capsys.readouterr().err
    assert main(["advise", str(dataset), "--target", str(dataset)]) == EXIT_USER_ERROR
    assert "is the source dataset itself" in capsys.readouterr().err


def test_train_and_auto_refuse_a_bad_target_with_exit_2(dataset, tmp_path, capsys):
    from autotransfer.recipe.io import save_recipe
    from tests.train.helpers import tiny_recipe

    (tmp_path / "empty").mkdir()
    recipe = save_recipe(tiny_recipe(), tmp_path / "r.yaml")
    code = main(["train", str(dataset), "--recipe", str(recipe), "--out", str(tmp_path / "run"),
                 "--target", str(tmp_path / "empty")])
    assert code == EXIT_USER_ERROR and "holds no images" in capsys.readouterr().err
    assert not (tmp_path / "run.partial").exists()
    code = main(["auto", str(dataset), "--out", str(tmp_path / "auto"), "--target",
                 str(dataset / "a")])
    assert code == EXIT_USER_ERROR and "lies inside" in capsys.readouterr().err
