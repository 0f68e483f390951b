"""Fixtures shared by the trainer's tests."""

from __future__ import annotations

import pytest

from autotransfer.train.checkpoint import CheckpointPolicy


@pytest.fixture
def every_epoch(monkeypatch):
    """Rule CKPT01 set to write every epoch's checkpoint (for tests of what a checkpoint of a
    given epoch holds, or of resuming from it)."""
    monkeypatch.setattr(CheckpointPolicy, "from_rules",
                        classmethod(lambda cls: cls(0.0, float("inf"))))
