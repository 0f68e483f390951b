"""Hostile and absurd recipes and weights: refused with exit 2, naming the file, running nothing.

A recipe is parsed by a YAML loader that cannot build Python objects, and validated so that no
absurd value (negative epochs, NaN rates, a 10⁹-pixel input) reaches the trainer. A weights file
is read by a parser that cannot import anything: a payload in any record of a legacy PyTorch
checkpoint is refused (the payload would create ``corpus.marker``; every command checks it does
not exist).
"""

from __future__ import annotations

import pytest
import yaml

from tests.security.corpus import BAD_RECIPES, PTH_RECORDS, tiny_recipe_data

pytest.importorskip("tensorflow")


@pytest.mark.parametrize("name", sorted(BAD_RECIPES))
def test_train_refuses_a_bad_recipe_naming_file_and_key(cli, corpus, tmp_path, name):
    file_name, word = BAD_RECIPES[name]
    out = tmp_path / "run"
    result = cli("train", corpus.datasets["mixed"].path, "-r", corpus.recipes / file_name,
                 "-o", out)
    assert result.code == 2, result.text
    assert file_name in result.err and word in result.err, result.err
    assert not out.exists()


@pytest.mark.parametrize("name", ["python_tag", "nan_rate", "huge_size", "huge_seed"])
def test_tune_refuses_a_bad_recipe(cli, corpus, tmp_path, name):
    file_name, word = BAD_RECIPES[name]
    result = cli("tune", corpus.datasets["mixed"].path, "-r", corpus.recipes / file_name,
                 "-o", tmp_path / "tuning", "--trials", "1", "--backbones", "none")
    assert result.code == 2, result.text
    assert file_name in result.err and word in result.err, result.err
    assert not (corpus.recipes / file_name.replace(".", ".tuned.", 1)).exists()


def _weights_recipe(tmp_path, weights, backbone: str = "efficientnet_lite0"):
    recipe = tmp_path / "weights.yaml"
    data = tiny_recipe_data(backbone={"name": backbone, "input_size": 32, "weights": str(weights)})
    recipe.write_text(yaml.safe_dump(data), encoding="utf-8")
    return recipe


WEIGHTS = [f"payload_in_{r}.pth" for r in PTH_RECORDS] + ["garbage.pth", "truncated.pth"]


@pytest.mark.parametrize("file_name", WEIGHTS)
def test_train_refuses_crafted_weights_without_running_them(cli, corpus, tmp_path, file_name):
    weights = corpus.weights / file_name
    out = tmp_path / "run"
    result = cli("train", corpus.datasets["mixed"].path, "-r", _weights_recipe(tmp_path, weights),
                 "-o", out)
    assert result.code == 2, result.text
    assert file_name in result.err, result.err
    assert not out.exists()


def test_tune_refuses_crafted_weights_without_running_them(cli, corpus, tmp_path):
    weights = corpus.weights / "payload_in_sys_info.pth"
    result = cli("tune", corpus.datasets["mixed"].path, "-r", _weights_recipe(tmp_path, weights),
                 "-o", tmp_path / "tuning", "--trials", "1", "--backbones", "none")
    assert result.code == 2, result.text
    assert weights.name in result.text, result.text


def test_a_weights_file_for_a_backbone_without_pretrained_weights_is_a_user_error(
        cli, corpus, tmp_path):
    weights = corpus.weights / "garbage.pth"
    result = cli("train", corpus.datasets["mixed"].path, "-r",
                 _weights_recipe(tmp_path, weights, backbone="test_tiny"), "-o", tmp_path / "run")
    assert result.code == 2, result.text
    assert "test_tiny" in result.err and "weights" in result.err, result.err
