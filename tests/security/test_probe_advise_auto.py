"""``probe``, ``advise`` and ``auto`` on the bad-input corpus, with the smallest real backbone
(MobiletNet 0.25, whose ImageNet weights are in ../shared/weights): these commands need
pretrained weights, which the ``test_tiny`` backbone has not."""

from __future__ import annotations

import json

import pytest

from tests.security.conftest import output_texts, unnamed

pytest.importorskip("tensorflow")
pytestmark = pytest.mark.shared

BACKBONE = "mobilenet_025"
UNUSABLE = ["empty", "one_class"]


def _target(corpus, name):
    ds = corpus.datasets[name]
    return ds.path / "labels.csv" if name == "manifest" else ds.path


@pytest.mark.parametrize("name", ["mixed", "manifest"])
def test_probe_names_every_file_it_leaves_out(cli, corpus, shared_weights, name):
    ds = corpus.datasets[name]
    result = cli("probe", _target(corpus, name), "-b", BACKBONE, "--image-size", "32",
                 "--sample", "4", "--json")
    assert result.code == 0, result.text
    json.loads(result.out)
    assert not unnamed(ds.excluded, result.text), result.err


@pytest.mark.slow  # probes at 224 px, the AdaBN check and orientation included: ~25 s each
@pytest.mark.parametrize("name", ["mixed", "manifest"])
def test_advise_names_every_file_it_leaves_out(cli, corpus, shared_weights, tmp_path, name):
    ds = corpus.datasets[name]
    out = tmp_path / "recipe.yaml"
    result = cli("advise", _target(corpus, name), "-b", BACKBONE, "--sample", "4", "-o", out)
    assert result.code == 0, result.text
    assert out.is_file()
    assert not unnamed(ds.excluded, result.text), result.text


@pytest.mark.parametrize("command", ["probe", "advise"])
@pytest.mark.parametrize("name", UNUSABLE)
def test_probe_and_advise_refuse_an_unusable_dataset(cli, corpus, shared_weights, tmp_path,
                                                     command, name):
    extra = ["-o", tmp_path / "recipe.yaml"] if command == "advise" else []
    result = cli(command, corpus.datasets[name].path, "-b", BACKBONE, *extra)
    assert result.code == 2, result.text
    assert not (tmp_path / "recipe.yaml").exists()


@pytest.mark.parametrize("command", ["probe", "advise", "auto"])
def test_a_seed_out_of_range_is_a_usage_error(cli, corpus, tmp_path, command):
    result = cli(command, corpus.datasets["mixed"].path, "--seed", "-1", "-b", BACKBONE,
                 "-o" if command != "probe" else "--out", tmp_path / "out.yaml")
    assert result.code == 2 and "seed" in result.err, result.text


@pytest.mark.slow
def test_auto_names_every_file_it_leaves_out(cli, corpus, shared_weights, tmp_path):
    ds = corpus.datasets["mixed"]
    out = tmp_path / "auto"
    result = cli("auto", ds.path, "-b", BACKBONE, "--preset", "quick", "--trials", "1",
                 "--time-budget", "3m", "-o", out)
    assert result.code == 0, result.text
    texts = output_texts(out)
    assert not unnamed(ds.excluded, result.err, *texts), result.err
    assert "OUTSIDE_" not in "\n".join([result.text, *texts])


@pytest.mark.parametrize("name", UNUSABLE)
def test_auto_refuses_an_unusable_dataset(cli, corpus, shared_weights, tmp_path, name):
    result = cli("auto", corpus.datasets[name].path, "-b", BACKBONE, "--time-budget", "3m",
                 "-o", tmp_path / "auto")
    assert result.code == 2, result.text
    assert not (tmp_path / "auto").exists()
