"""choose_weight's λ grid and criterion come from rule DA09's params (recipes/rules.yaml)."""

from __future__ import annotations


def test_weight_grid_and_criterion_are_rule_da09s(tmp_path, monkeypatch):
    from autotransfer.advisor.rules import recipes_dir
    from autotransfer.train.adaptation.choose_weight import rule_criterion, rule_weights
    from autotransfer.train.adaptation.selection import CRITERIA

    assert rule_weights() == (0.1, 0.3, 1.0)
    assert rule_criterion() == "dev" and rule_criterion() in CRITERIA
    # another rule base: the grid and criterion follow it
    text = (recipes_dir() / "rules.yaml").read_text()
    edited = text.replace('params: {criterion: dev, weights: "0.1,0.3,1"}',
                          'params: {criterion: iwv, weights: "0.5,2"}')
    assert edited != text
    folder = tmp_path / "recipes"
    folder.mkdir()
    for entry in recipes_dir().iterdir():
        if entry.is_file() and entry.name != "rules.yaml":
            (folder / entry.name).write_bytes(entry.read_bytes())
    (folder / "rules.yaml").write_text(edited)
    monkeypatch.setenv("AUTOTRANSFER_RECIPES", str(folder))
    assert rule_weights() == (0.5, 2.0)
    assert rule_criterion() == "iwv"



def test_exact_head_for_a_recipe_that_trains_the_backbone_is_a_clear_error(tmp_path):
    import pytest

    from autotransfer.errors import InvalidParameterError
    from autotransfer.train.adaptation.choose_weight import choose_weight
    from tests.train.helpers import tiny_recipe

    recipe = tiny_recipe(domain_adaptation={"method": "coral", "weight": 1.0},
                         phases=[{"name": "all", "epochs": 1, "trainable_from": 0,
                                  "learning_rate": 0.01}])
    with pytest.raises(InvalidParameterError, match=r"exact_head=True.*linear head alone"):
        choose_weight(tmp_path / "data", recipe, tmp_path / "target", tmp_path / "out",
                      exact_head=True)
    assert not (tmp_path / "out").exists()
