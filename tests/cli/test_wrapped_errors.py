"""An image that breaks after it was profiled (changed, or cut short on a network disk) fails
inside TensorFlow's input pipeline, which wraps the reader's ImageDecodeError in its own error:
the CLI still says which file and what to do, with exit 2 — not 'a bug in autotransfer' (70)."""

from __future__ import annotations

import pytest

from autotransfer.cli import EXIT_USER_ERROR, _user_error_inside, main
from autotransfer.data.models import ImageRecord
from tests.data.builders import write_image

tf = pytest.importorskip("tensorflow")


def _pipeline_error(tmp_path) -> Exception:
    from autotransfer.data.pipeline import make_dataset

    good = write_image(tmp_path / "a" / "good.png")
    broken = tmp_path / "a" / "broken.png"
    broken.write_bytes(good.read_bytes()[:60])  # profiled whole, then cut short
    records = [ImageRecord(path=f"a/{p.name}", label="a", split=None, format="PNG", width=32,
                           height=32, mode="RGB", frames=1, file_size=1, sha=p.name,
                           grayscale=False, has_alpha=False) for p in (good, broken)]
    with pytest.raises(tf.errors.OpError) as caught:
        list(make_dataset(records, tmp_path, ["a"], 16, batch_size=2, cache=False))
    return caught.value


def test_the_reader_error_is_found_inside_tensorflows(tmp_path, monkeypatch, capsys):
    error = _pipeline_error(tmp_path)
    message = _user_error_inside(error)
    assert message is not None and message.startswith(str(tmp_path / "a" / "broken.png"))
    assert "autotransfer profile" in message and "Traceback" not in message
    assert _user_error_inside(RuntimeError(f"ImageDecodeError: {message}")) is None  # TF's only

    from autotransfer.data import profile as profile_module

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(profile_module, "profile_dataset", fail)
    assert main(["profile", str(tmp_path)]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert f"Error: {message}" in err and "Internal error" not in err
