"""TensorFlow's C++ log lines stay off the terminal unless asked for (--verbose, env)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.data.builders import make_class_folders

#: a C++ log line of TensorFlow/absl ("I0000 00:00:17.. 123 port.cc:153] oneDNN custom ...")
#: or absl's "before InitializeLog" warning
TF_LOG = re.compile(r"^[IWEF]\d{4} [\d:.]+\s+\d+ [\w./-]+:\d+\]|absl::InitializeLog|oneDNN|cuInit",
                    re.MULTILINE)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "AUTOTRANSFER_DEBUG", "AUTOTRANSFER_VERBOSE")}
    return env | extra


@pytest.fixture(scope="module")
def unreadable_model(tmp_path_factory) -> tuple[Path, Path]:
    """A model.keras that is not a model (predict imports TensorFlow to read it, then exit 2)."""
    pytest.importorskip("tensorflow")
    root = tmp_path_factory.mktemp("quiet")
    make_class_folders(root / "images", {"a": 1}, size=16)
    model = root / "run" / "model.keras"
    model.parent.mkdir()
    model.write_bytes(b"not a zip archive")
    (root / "run" / "labels.txt").write_text("a\nb\n")
    return model, next((root / "images" / "a").iterdir())


def _predict(model: Path, image: Path, *args: str) -> list[str]:
    code = ("import sys; from autotransfer.cli import run; "
            "sys.argv = ['autotransfer', *sys.argv[1:]]; run()")
    return [sys.executable, "-c", code, *args, str(model), str(image)]


def _together(*commands: tuple[list[str], dict[str, str]]) -> list[subprocess.CompletedProcess]:
    """Run the ``(command, env)`` pairs at the same time (each imports TensorFlow, seconds of
    one core: on two cores the pair takes the time of one) and wait for every one."""
    started = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True) for command, env in commands]
    done = []
    try:
        for process in started:
            out, err = process.communicate(timeout=600)
            done.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    finally:
        for process in started:
            if process.poll() is None:
                process.kill()
                process.wait()
    return done


def test_tensorflow_log_lines_are_hidden_by_default_and_shown_with_verbose(unreadable_model):
    model, image = unreadable_model
    quiet, loud = _together((_predict(model, image, "predict"), _env()),
                            (_predict(model, image, "--verbose", "predict"), _env()))
    assert quiet.returncode == 2, quiet.stderr
    assert "Error:" in quiet.stderr and "model.keras" in quiet.stderr  # our message still shows
    assert not TF_LOG.search(quiet.stderr), quiet.stderr

    assert loud.returncode == 2 and "Error:" in loud.stderr
    assert re.search(r"oneDNN|cuInit|absl::InitializeLog", loud.stderr), loud.stderr
    assert TF_LOG.search(loud.stderr)


def test_the_environment_or_a_command_s_own_flag_brings_them_back(unreadable_model):
    model, image = unreadable_model
    by_env, by_flag = _together((_predict(model, image, "predict"), _env(AUTOTRANSFER_VERBOSE="1")),
                                (_predict(model, image, "predict", "--verbose"), _env()))
    assert by_env.returncode == 2 and TF_LOG.search(by_env.stderr), by_env.stderr
    assert by_flag.returncode == 2 and TF_LOG.search(by_flag.stderr), by_flag.stderr


def test_log_lines_after_the_import_are_hidden_too():
    # cuInit (a CUDA build without a driver) and device notices come when TensorFlow first
    # looks for devices, after the import: TF_CPP_MIN_LOG_LEVEL covers those
    pytest.importorskip("tensorflow")
    code = ("import sys; from autotransfer._quiet import quiet_tensorflow\n"
            "if sys.argv[1] == 'quiet': quiet_tensorflow()\n"
            "import tensorflow as tf; tf.config.list_physical_devices()\n"
            "print(float(tf.reduce_sum(tf.ones(3))))")
    quiet, loud = _together(([sys.executable, "-c", code, "quiet"], _env()),
                            ([sys.executable, "-c", code, "loud"], _env()))
    assert quiet.returncode == 0 and quiet.stdout.strip() == "3.0", quiet.stderr
    assert not TF_LOG.search(quiet.stderr), quiet.stderr
    assert loud.returncode == 0 and TF_LOG.search(loud.stderr), loud.stderr


def test_held_back_stderr_hides_native_writes_and_replays_them_on_failure():
    code = r"""
import os, sys
from autotransfer._quiet import held_back_stderr
with held_back_stderr():
    os.write(2, b"native noise\n")
    print("python message", file=sys.stderr)
try:
    with held_back_stderr():
        os.write(2, b"native error detail\n")
        raise RuntimeError("import failed")
except RuntimeError:
    pass
os.write(2, b"after\n")
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_env())
    assert done.returncode == 0, done.stderr
    assert "native noise" not in done.stderr
    assert "python message" in done.stderr  # Python's own stderr is not held back
    assert "native error detail" in done.stderr  # a failure shows what was held back
    assert done.stderr.rstrip().endswith("after")


def test_help_and_the_quiet_hook_do_not_import_tensorflow():
    code = ("import sys; from autotransfer.cli import main; main(['--help']); "
            "main(['profile', '--help']); from autotransfer._quiet import quiet_tensorflow; "
            "quiet_tensorflow(); "
            "sys.exit(1 if 'tensorflow' in sys.modules or 'keras' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True,
                          env=_env()).returncode == 0


def test_a_level_the_user_chose_is_kept():
    code = ("import os; from autotransfer._quiet import quiet_tensorflow; "
            "assert quiet_tensorflow() is False; assert os.environ['TF_CPP_MIN_LOG_LEVEL'] == '1'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=_env(TF_CPP_MIN_LOG_LEVEL="1"))
    assert done.returncode == 0, done.stderr
