"""Atomic writes: whole files, the umask respected, clear errors, always-valid UTF-8 JSON."""

from __future__ import annotations

import json
import os
import stat

import pytest

from autotransfer._io import atomic_write_json, atomic_write_text, json_text, unicode_safe
from autotransfer.errors import AutoTransferError, OutputError


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize(("umask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_files_get_the_mode_the_umask_gives(tmp_path, umask, expected):
    old = os.umask(umask)
    try:
        text = atomic_write_text(tmp_path / "labels.txt", "a\nb\n")
        data = atomic_write_json(tmp_path / "sub" / "metrics.json", {"accuracy": 1.0})
        plain = tmp_path / "plain.txt"
        plain.write_text("x")  # what open() gives, for comparison
    finally:
        os.umask(old)
    assert _mode(text) == _mode(data) == _mode(plain) == expected
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_replaced_file_keeps_its_mode(tmp_path):
    target = tmp_path / "report.md"
    target.write_text("old")
    target.chmod(0o640)
    atomic_write_text(target, "new")
    assert target.read_text() == "new" and _mode(target) == 0o640


def test_an_unwritable_place_is_an_output_error_naming_the_file(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError) as caught:
        atomic_write_text(tmp_path / "afile" / "sub" / "x.json", "{}")
    assert isinstance(caught.value, AutoTransferError) and caught.value.exit_code == 2
    message = str(caught.value)
    assert str(tmp_path / "afile" / "sub" / "x.json") in message
    assert "choose another path" in message
    assert (tmp_path / "afile").read_text() == "x"


def test_json_of_a_non_utf8_file_name_is_valid_utf8(tmp_path):
    name = os.fsdecode(b"caf\xe9.png")  # what os.listdir gives for a Latin-1 name on Linux
    assert unicode_safe(name) == "caf\\xe9.png"
    assert unicode_safe("naïve \U0001f600") == "naïve \U0001f600"  # real characters stay
    text = json_text({"path": name, name: [name]})
    assert json.loads(text.encode("utf-8").decode("utf-8")) == {
        "path": "caf\\xe9.png", "caf\\xe9.png": ["caf\\xe9.png"]}
    written = atomic_write_json(tmp_path / "p.json", [{"path": name}])
    assert json.loads(written.read_bytes().decode("utf-8", "strict")) == [{"path": "caf\\xe9.png"}]


@pytest.mark.parametrize("content, why", [
    (b'{"files": [', "not valid JSON: Expecting value at line 1, column 12"),
    (b"\xff\xfe", "it is not UTF-8 text"),
    (b"null", "it holds null, not a JSON object"),
    (b'{"files": {"a": 1}}', "its 'files' is an object, not an array"),
    (b"[" * 100_000 + b"]" * 100_000, "not valid JSON: nested too deeply"),
])
def test_a_damaged_run_file_is_named_with_why_and_what_to_do(tmp_path, content, why):
    from autotransfer._io import read_run_json
    from autotransfer.errors import RunDirectoryError

    path = tmp_path / "run.json"
    path.write_bytes(content)
    with pytest.raises(RunDirectoryError) as caught:
        read_run_json(path, fields={"files": list}, fix="Train again.")
    assert str(caught.value) == f"'{path}' cannot be read ({why}). Train again."
    assert path.read_bytes() == content  # the user's file is left as it was


def test_a_sound_or_missing_run_file_reads(tmp_path):
    from autotransfer._io import read_run_json
    from autotransfer.oneshot.folder import read_json
    from autotransfer.train.run import read_run_info

    assert read_run_json(tmp_path / "run.json") is None and read_run_info(tmp_path) is None
    (tmp_path / "run.json").write_text('{"files": ["model.keras"], "crop": true, "extra": 1}')
    assert read_run_info(tmp_path) == {"files": ["model.keras"], "crop": True, "extra": 1}
    (tmp_path / "metrics.json").write_text('{"class_names": "cat"}')
    with pytest.raises(AutoTransferError, match="--overwrite"):  # auto's folder: start over
        read_json(tmp_path / "metrics.json")


def test_an_output_folder_inside_or_around_the_data_is_refused(tmp_path):
    from autotransfer._io import check_apart

    data = tmp_path / "photos"
    (data / "cat").mkdir(parents=True)
    (data / "labels.csv").write_text("path,label\n")
    (tmp_path / "link_to_photos").symlink_to(data, target_is_directory=True)
    refused = [  # (out, data, replaced) -> the words the message must hold
        (data / "runs" / "r1", data, False, "lies inside the dataset folder"),
        (data, data, False, "is the dataset folder"),
        (tmp_path / "link_to_photos" / "run", data, False, "lies inside"),
        (data, data / "labels.csv", False, "is the dataset folder"),  # a manifest's folder
        (tmp_path, data / "labels.csv", True, "holds the dataset"),
        (tmp_path, data, True, "holds the dataset"),  # --overwrite would delete the data
    ]
    for out, source, replaced, words in refused:
        with pytest.raises(OutputError) as caught:
            check_apart(out, source, option="--out", replaced=replaced)
        message = str(caught.value)
        assert words in message and str(out) in message and "Choose a folder outside" in message
    for out, source, replaced in [(tmp_path / "runs", data, True), (tmp_path, data, False),
                                  (tmp_path / "photos_run", data, True),  # a prefix, not inside
                                  (data / "run", tmp_path / "missing", True),
                                  (data / "runs" / "r1", data / "labels.csv", True)]:  # unlisted
        check_apart(out, source, replaced=replaced)
    assert sorted(p.name for p in data.iterdir()) == ["cat", "labels.csv"]  # nothing made
