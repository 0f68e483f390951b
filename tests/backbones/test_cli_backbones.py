"""``autotransfer backbones``: table, JSON, filters, and no TensorFlow import."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from autotransfer.cli import main


def _json(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict]:
    assert main(["backbones", "--json", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_json_lists_the_catalog_with_weight_status(capsys: pytest.CaptureFixture[str]) -> None:
    rows = _json(capsys)
    by_name = {row["name"]: row for row in rows}
    assert "test_tiny" not in by_name and "mobilenet_v2" in by_name
    row = by_name["mobilenet_v3_small"]
    assert row["bn_statistics"] == "folded" and row["imagenet_top1"] == 68.1
    assert [g["name"] for g in row["layer_groups"]][0] == "stem"
    assert {r["weights_status"] for r in rows} <= {"cached", "needs_download", "offline_package",
                                                   "unavailable"}


def test_available_shows_only_local_weights(capsys: pytest.CaptureFixture[str],
                                            shared_weights: Path) -> None:
    rows = _json(capsys, "--available", "mobilenet*")
    assert {r["name"] for r in rows} == {"mobilenet_v2", "mobilenet_025", "mobilenet_v3_small"}
    assert {r["weights_status"] for r in rows} == {"cached"}


def test_table_output(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "150")
    assert main(["backbones", "efficientnet_lite*"]) == 0
    out = capsys.readouterr().out
    assert "efficientnet_lite0" in out and "75.1%" in out and "resnet50" not in out


def test_command_does_not_import_tensorflow() -> None:
    code = ("import sys\nfrom autotransfer.cli import main\nmain(['backbones', '--json'])\n"
            "sys.stderr.write(str('tensorflow' in sys.modules or 'keras' in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stderr.strip().endswith("False")
