"""A result folder is never put inside the dataset (or the target folder), and ``auto
--overwrite`` never deletes a folder that holds the dataset: refused before any work, with exit
2, a message naming both, and the data left as it was."""

from __future__ import annotations

import pytest

from autotransfer.cli import EXIT_USER_ERROR, main
from tests.data.builders import make_class_folders
from tests.security.corpus import snapshot


@pytest.fixture
def data(tmp_path):
    return make_class_folders(tmp_path / "photos", {"cat": 2, "dog": 2})


@pytest.mark.parametrize("args, words", [
    (["train", "{data}", "-o", "{data}/run"], "lies inside the dataset folder"),
    (["tune", "{data}", "-o", "{data}", "--trials", "1"], "is the dataset folder"),
    (["auto", "{data}", "-o", "{data}/cat/auto"], "lies inside the dataset folder"),
    (["auto", "{data}", "-o", "{tmp}", "--overwrite"], "holds the dataset"),
    (["evaluate", "{tmp}/no_model", "{data}", "--out", "{data}/eval"], "lies inside"),
    (["train", "{tmp}/other", "--target", "{data}", "-o", "{data}/run"],
     "lies inside the target folder"),
])
def test_an_output_folder_in_or_around_the_data_is_refused_untouched(data, tmp_path, capsys,
                                                                     args, words):
    make_class_folders(tmp_path / "other", {"a": 2, "b": 2}, seed=50)
    before = snapshot(tmp_path)
    argv = [a.format(data=data, tmp=tmp_path) for a in args]
    assert main(argv) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert words in err and "Choose a folder outside" in err and "Traceback" not in err, err
    assert snapshot(tmp_path) == before  # nothing written, nothing deleted
