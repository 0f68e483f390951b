"""The command line: help everywhere, fast start-up, clean errors and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import click
import pytest

from autotransfer.cli import COMMANDS, EXIT_INTERNAL_ERROR, EXIT_USER_ERROR, cli, main
from tests.data.builders import make_class_folders


def all_commands():
    ctx = click.Context(cli)
    return {name: cli.get_command(ctx, name) for name in cli.list_commands(ctx)}


def test_every_command_has_help_text_and_every_option_is_documented():
    commands = all_commands()
    assert set(commands) == set(COMMANDS)
    for name, command in commands.items():
        assert command is not None, name
        assert command.help and len(command.help.strip()) > 20, name
        for param in command.params:
            if isinstance(param, click.Option):
                assert param.help, f"{name} {param.opts} has no help"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_of_each_command_exits_zero(name, capsys):
    assert main([name, "--help"]) == 0
    assert "Usage: autotransfer " + name in capsys.readouterr().out


def test_help_does_not_import_tensorflow():
    code = (
        "import sys; from autotransfer.cli import main; main(['--help']); "
        f"[main([c, '--help']) for c in {sorted(COMMANDS)!r}]; "
        "sys.exit(1 if 'tensorflow' in sys.modules or 'keras' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_profile_json_output(tmp_path, capsys):
    make_class_folders(tmp_path, {"a": 2, "b": 3})
    assert main(["profile", str(tmp_path), "--json", "--workers", "1"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["usable"] is True and data["class_counts"] == {"a": 2, "b": 3}
    assert "records" not in data


def test_profile_table_output_and_out_file(tmp_path, capsys):
    make_class_folders(tmp_path / "ds", {"a": 2, "b": 3})
    out = tmp_path / "results" / "profile.json"
    assert main(["profile", str(tmp_path / "ds"), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "Images per class" in captured.out and f"Wrote {out}" in captured.err
    assert len(json.loads(out.read_text())["records"]) == 5
    assert [p.name for p in out.parent.iterdir()] == ["profile.json"]  # no temporary left over


def test_unusable_dataset_exits_2_with_the_reason_and_still_shows_the_profile(tmp_path, capsys):
    make_class_folders(tmp_path, {"only": 3})
    assert main(["profile", str(tmp_path)]) == EXIT_USER_ERROR
    captured = capsys.readouterr()
    assert "Images per class" in captured.out
    assert "cannot be used for training" in captured.err and "at least 2 are needed" in captured.err
    assert "Traceback" not in captured.err


def test_missing_dataset_exits_2_without_traceback(tmp_path, capsys):
    assert main(["profile", str(tmp_path / "nope")]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "does not exist" in err and "Traceback" not in err


def test_usage_error_exits_2(capsys):
    assert main(["profile"]) == EXIT_USER_ERROR
    assert "Missing argument 'DATASET'" in capsys.readouterr().err


def test_internal_failure_exits_70_with_a_bug_report_hint(tmp_path, monkeypatch, capsys):
    from autotransfer.data import profile as profile_module

    def explode(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(profile_module, "profile_dataset", explode)
    assert main(["profile", str(tmp_path)]) == EXIT_INTERNAL_ERROR
    err = capsys.readouterr().err
    assert "Internal error: RuntimeError: boom" in err and "AUTOTRANSFER_DEBUG=1" in err


def test_console_script_runs(tmp_path):
    make_class_folders(tmp_path, {"a": 2, "b": 2})
    exe = [sys.executable, "-c", "from autotransfer.cli import run; run()"]
    ok = subprocess.run([*exe, "profile", str(tmp_path), "--json"], capture_output=True, text=True)
    assert ok.returncode == 0 and json.loads(ok.stdout)["n_images"] == 4
    bad = subprocess.run([*exe, "profile", str(tmp_path / "x")], capture_output=True, text=True)
    assert bad.returncode == 2 and "does not exist" in bad.stderr
