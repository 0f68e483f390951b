"""The search space is data keyed by rule (TUNE03–TUNE10 in recipes/rules.yaml): the same space as
the if-ladder it replaced, for the same recipe.

``data/space_before.json`` was written by the code before the ranges moved into the rule base
(commit e5e81f3): recipes advised for near and far data, 6 to 3000 images per class, every preset,
small and large images, each with the runner-up backbones, none, or given ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from autotransfer.recipe.schema import Recipe
from autotransfer.tuning.space import search_space

CASES = json.loads((Path(__file__).parent / "data" / "space_before.json").read_text())


@pytest.mark.parametrize("case", CASES, ids=[f"{c['name']}{c['kwargs']}" for c in CASES])
def test_the_same_space_as_before_for_the_same_recipe(case):
    recipe = Recipe.model_validate(case["recipe"])
    space = search_space(recipe, **case["kwargs"]).to_dict()
    expected = case["space"]
    assert space["notes"] == expected["notes"]
    assert len(space["dimensions"]) == len(expected["dimensions"])
    for got, want in zip(space["dimensions"], expected["dimensions"], strict=True):
        assert {k: got[k] for k in want} == want  # new keys (the range's rule) may be added
