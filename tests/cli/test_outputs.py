"""Every command that writes refuses an output it cannot write, at once, with exit 2."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from autotransfer.cli import EXIT_USER_ERROR, main
from tests.data.builders import make_class_folders


@pytest.fixture
def place(tmp_path):
    make_class_folders(tmp_path / "ds", {"a": 2, "b": 2})
    (tmp_path / "afile").write_text("a file where a folder is needed")
    return tmp_path


def _commands(root):
    ds, bad = root / "ds", root / "afile" / "sub"
    image = next((ds / "a").iterdir())
    return {
        "profile": ["profile", ds, "--out", bad / "profile.json"],
        "probe": ["probe", ds, "--out", bad / "probe.json"],
        "advise": ["advise", ds, "-o", bad / "recipe.yaml"],
        "train": ["train", ds, "-r", root / "r.yaml", "-o", bad / "run"],
        "tune": ["tune", ds, "-o", bad / "tuning"],
        "auto": ["auto", ds, "-o", bad / "auto"],
        "predict": ["predict", root / "run", image, "--csv", bad / "p.csv"],
    }


@pytest.mark.parametrize("name", ["profile", "probe", "advise", "train", "tune", "auto", "predict"])
def test_output_under_a_file_is_refused_before_any_work(place, name, capsys):
    args = _commands(place)[name]
    assert main([str(a) for a in args]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "Cannot write" in err and "is a file, not a folder" in err, err
    assert "Internal error" not in err and "Traceback" not in err
    assert sorted(p.name for p in place.iterdir()) == ["afile", "ds"]  # nothing written


def test_output_into_a_missing_folder_creates_it(place, capsys):
    out = place / "new" / "deeper" / "profile.json"
    assert main(["profile", str(place / "ds"), "--out", str(out), "--workers", "1"]) == 0
    assert out.is_file()


@pytest.mark.skipif(sys.platform != "linux", reason="file modes and users as on Linux")
@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_results_respect_the_umask(place, umask):
    out = place / "results" / "profile.json"
    code = (f"import os, sys; os.umask({umask}); from autotransfer.cli import main; "
            f"sys.exit(main(['profile', {str(place / 'ds')!r}, '--out', {str(out)!r}, '--json']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~umask


@pytest.fixture
def shared_place():
    """A folder every user may look into (pytest's own tmp_path is private to its user)."""
    folder = Path(tempfile.mkdtemp(prefix="autotransfer-outputs-"))
    folder.chmod(0o755)
    make_class_folders(folder / "ds", {"a": 2, "b": 2})
    for path in [folder / "ds", *(folder / "ds").rglob("*")]:
        path.chmod(path.stat().st_mode | (0o055 if path.is_dir() else 0o044))
    yield folder
    shutil.rmtree(folder)


@pytest.mark.skipif(sys.platform != "linux", reason="needs Linux users")
@pytest.mark.parametrize("where", ["readonly/p.json", "private/sub/p.json"])
def test_a_folder_without_permission_is_exit_2(shared_place, where):
    """As an unprivileged user (root may write anywhere, so root runs the command as nobody)."""
    (shared_place / "readonly").mkdir(mode=0o555)
    (shared_place / "private").mkdir(mode=0o700)
    prefix: list[str] = []
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv to drop privileges")
        prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    env = {**os.environ, "HOME": str(shared_place),
           "AUTOTRANSFER_CACHE": str(shared_place / "cache")}
    exe = [sys.executable, "-c", "from autotransfer.cli import run; run()"]
    done = subprocess.run([*prefix, *exe, "profile", "ds", "--out", where], capture_output=True,
                          text=True, env=env, cwd=str(shared_place))
    assert done.returncode == EXIT_USER_ERROR, done.stderr
    assert f"Cannot write --out '{where}'" in done.stderr, done.stderr
    assert "Internal error" not in done.stderr and "Traceback" not in done.stderr
    assert list((shared_place / "readonly").iterdir()) == []


@pytest.mark.parametrize("command", ["advise", "tune", "auto"])
def test_an_empty_time_budget_is_a_usage_error(place, command, capsys):
    out = ["-o", str(place / "out" / ("r.yaml" if command == "advise" else "x"))]
    assert main([command, str(place / "ds"), "--time-budget", "", *out]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "is empty" in err and "'none' for no limit" in err


def test_an_environment_error_met_later_is_exit_2_not_a_bug(place, monkeypatch, capsys):
    """A write refused by the system after the early checks (disk full, permissions changed)."""
    import errno

    from autotransfer.data import profile as profile_module

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(place / "x"))

    monkeypatch.setattr(profile_module, "profile_dataset", full)
    assert main(["profile", str(place / "ds")]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert f"Cannot access '{place / 'x'}': No space left on device" in err
    assert "Internal error" not in err
