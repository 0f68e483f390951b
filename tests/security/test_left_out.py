"""``probe`` and ``advise`` name the files they leave out (the list is capped, with a pointer)."""

from __future__ import annotations

from autotransfer.cli.probe import LEFT_OUT_SHOWN, echo_left_out
from autotransfer.data.profile import profile_dataset
from tests.security.corpus import _good


def test_every_file_left_out_is_named_up_to_the_cap_then_counted(tmp_path, capsys):
    _good(tmp_path / "cat", 0, 3)
    _good(tmp_path / "dog", 1, 3)
    n = LEFT_OUT_SHOWN + 5
    for i in range(n):
        (tmp_path / "dog" / f"empty_{i:02d}.png").write_bytes(b"")
    (tmp_path / "cat" / ".hidden.png").write_bytes(b"x")
    (tmp_path / "cat" / "odd name.png").write_bytes((tmp_path / "cat" / "good_00.png").read_bytes())
    profile = profile_dataset(tmp_path, workers=1)
    echo_left_out(profile)
    err = capsys.readouterr().err
    assert f"Left out {n + 1} file(s) of the dataset: {n} zero_byte, 1 hidden_file." in err
    assert "dog/empty_00.png: zero_byte: The file is empty" in err
    assert "odd name" not in err  # a warning: the file is used
    assert err.count(": zero_byte: ") == LEFT_OUT_SHOWN  # errors first, then skipped files
    assert f"… and {n + 1 - LEFT_OUT_SHOWN} more" in err and "--all-problems" in err


def test_nothing_is_said_when_nothing_is_left_out(tmp_path, capsys):
    _good(tmp_path / "cat", 0, 2)
    _good(tmp_path / "dog", 1, 2)
    echo_left_out(profile_dataset(tmp_path, workers=1))
    assert capsys.readouterr().err == ""
