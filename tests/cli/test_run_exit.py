"""The console script's exit: everything written, then no last walk over TensorFlow's objects."""

from __future__ import annotations

import gc

import pytest

import autotransfer.cli as cli


def test_the_console_script_freezes_the_heap_before_exiting_with_mains_code(monkeypatch):
    order = []
    monkeypatch.setattr(cli, "main", lambda: order.append("main") or 3)
    monkeypatch.setattr(gc, "freeze", lambda: order.append("freeze"))
    with pytest.raises(SystemExit) as exited:
        cli.run()
    assert exited.value.code == 3 and order == ["main", "freeze"]


def test_the_console_script_asks_for_the_heap_frozen_after_tensorflows_import(monkeypatch):
    from autotransfer import _process

    monkeypatch.setattr(_process, "freeze_after_import", False)
    seen = []
    monkeypatch.setattr(cli, "main", lambda: seen.append(_process.freeze_after_import) or 0)
    monkeypatch.setattr(gc, "freeze", lambda: None)
    with pytest.raises(SystemExit):
        cli.run()
    assert seen == [True]
