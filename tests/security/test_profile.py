"""``profile`` on the bad-input corpus: every problem named, the counts right, nothing changed."""

from __future__ import annotations

import json

import pytest

from tests.security.conftest import unnamed
from tests.security.corpus import Corpus

DATASETS = ["mixed", "manifest", "empty", "one_class", "empty_class"]


def _target(corpus: Corpus, name: str):
    ds = corpus.datasets[name]
    return ds.path / "labels.csv" if name == "manifest" else ds.path


@pytest.mark.parametrize("check", ["decode", "header"])
@pytest.mark.parametrize("name", DATASETS)
def test_profile_names_every_problem_file(cli, corpus, name, check):
    ds = corpus.datasets[name]
    result = cli("profile", _target(corpus, name), "--all-problems", "--workers", "1",
                 "--check", check)
    assert result.code == (0 if ds.usable else 2), result.text
    assert not unnamed({**ds.excluded, **ds.flagged}, result.text), result.text


@pytest.mark.parametrize("name", DATASETS)
def test_profile_json_is_valid_and_counts_only_usable_images(cli, corpus, name, tmp_path):
    ds = corpus.datasets[name]
    out = tmp_path / "profile.json"
    result = cli("profile", _target(corpus, name), "--json", "--workers", "1", "--out", out)
    data = json.loads(result.out)  # valid JSON, odd names included
    full = json.loads(out.read_text(encoding="utf-8"))
    assert data["n_images"] == full["n_images"] == ds.n_usable
    assert data["usable"] is (result.code == 0)
    listed = [f"{p['path']}: {p['message']}" for p in data["problems"]]
    listed += [f for group in data["duplicates"] for f in group["files"]]
    assert not unnamed({**ds.excluded, **ds.flagged}, *listed), listed


def test_a_link_out_of_the_root_is_refused_and_named(cli, corpus):
    """A folder link to outside the dataset is not walked: its images are neither counted nor
    listed, and the link itself is an error that says why."""
    result = cli("profile", corpus.datasets["mixed"].path, "--json", "--workers", "1")
    data = json.loads(result.out)
    assert "OUTSIDE_" not in result.text
    link = [p for p in data["problems"] if p["path"] == "cat/link_outside"]
    assert link and link[0]["severity"] == "error", data["problems"]
    assert data["class_counts"] == {"cat": 12, "dog": 12}


def test_one_path_with_two_labels_is_a_label_conflict(cli, corpus):
    result = cli("profile", corpus.datasets["manifest"].path / "labels.csv", "--json",
                 "--workers", "1")
    data = json.loads(result.out)
    about = [p for p in data["problems"] if p["path"] == "images/two_labels.png"]
    assert about, data["problems"]
    assert all(p["severity"] == "error" for p in about), about
    assert any("conflict" in (p["code"] + p["message"]).lower() for p in about), about
    assert any("cat" in p["message"] and "dog" in p["message"] for p in about), about


def test_the_decompression_bomb_message_quotes_the_limit_autotransfer_applies(cli, corpus):
    result = cli("profile", corpus.datasets["mixed"].path, "--all-problems", "--workers", "1",
                 "--max-pixels", "200000000")
    line = next(x for x in result.out.splitlines() if "bomb_20000x20000" in x)
    assert "178956970" not in result.text and "178,956,970" not in result.text  # Pillow's own
    assert "200,000,000" in result.out or "200000000" in result.out, line
    assert "max-pixels" in result.out, line
