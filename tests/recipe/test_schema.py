"""The recipe schema: round trips through YAML and JSON, rejects unknown keys with their path."""

from __future__ import annotations

import pytest

from autotransfer.errors import InvalidConfigError
from autotransfer.recipe.io import load_recipe, save_recipe
from autotransfer.recipe.schema import BackboneChoice, Phase, Reason, Recipe


def recipe() -> Recipe:
    return Recipe(
        backbone=BackboneChoice(name="mobilenet_v2", input_size=224),
        phases=[
            Phase(name="head", epochs=3, trainable_from=5, learning_rate=1e-3),
            Phase(name="finetune", epochs=5, trainable_from=3, learning_rate=1e-4,
                  warmup_epochs=1, group_lr_multipliers=[0, 0, 0, 0.3, 1.0]),
        ],
        reasons={"phases.1.trainable_from": Reason(rule="FZ01", text="why", evidence={"n": 3})},
    )


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip(tmp_path, suffix):
    path = save_recipe(recipe(), tmp_path / f"r{suffix}")
    assert load_recipe(path) == recipe()
    assert recipe().total_epochs == 8


def test_unknown_and_invalid_keys_are_named_with_their_path_and_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "backbone: {name: mobilenet_v2, input_size: 8}\n"
        "phases:\n  - {name: head, epochs: 2, trainable_from: 7, learning_rate: 0.001, lr: 1}\n"
    )
    with pytest.raises(InvalidConfigError) as info:
        load_recipe(path)
    text = str(info.value)
    assert f"{path}: backbone.input_size: Input should be greater than or equal to 16 (got 8)" in text
    assert f"{path}: phases.0.trainable_from: Input should be less than or equal to 5 (got 7)" in text
    assert f"{path}: phases.0.lr: unknown key" in text


def test_cross_field_rules():
    with pytest.raises(ValueError, match="warmup_epochs .* must be below epochs"):
        Phase(name="p", epochs=2, trainable_from=0, learning_rate=1e-3, warmup_epochs=2)
    with pytest.raises(ValueError, match="needs 5 non-negative multipliers"):
        Phase(name="p", epochs=2, trainable_from=0, learning_rate=1e-3, group_lr_multipliers=[1.0])


def test_syntax_errors_and_missing_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("phases: [unclosed\n")
    with pytest.raises(InvalidConfigError, match="bad.yaml' is not valid YAML"):
        load_recipe(bad)
    with pytest.raises(InvalidConfigError, match="missing.yaml' does not exist"):
        load_recipe(tmp_path / "missing.yaml")
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(InvalidConfigError, match="expected a mapping"):
        load_recipe(listing)
    deep = tmp_path / "deep.json"  # nested past Python's recursion limit: named, not a crash
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InvalidConfigError, match="deep.json' is not valid JSON"):
        load_recipe(deep)


@pytest.mark.parametrize(("line", "where", "kind"), [
    ("epochs: true", "phases.0.epochs", "whole number"),
    ("learning_rate: false", "phases.0.learning_rate", "number"),
    ("group_lr_multipliers: [1, 1, 1, 1, true]", "phases.0.group_lr_multipliers", "number"),
])
def test_booleans_are_refused_in_number_fields(tmp_path, line, where, kind):
    """Pydantic reads ``true`` as 1: ``epochs: true`` would quietly train one epoch."""
    fields = {"name": "head", "epochs": 2, "trainable_from": 5, "learning_rate": 0.001}
    key = line.split(":")[0]
    body = ", ".join(f"{k}: {v}" for k, v in fields.items() if k != key)
    path = tmp_path / "bool.yaml"
    path.write_text(f"backbone: {{name: mobilenet_v2, input_size: 96}}\n"
                    f"phases:\n  - {{{body}, {line}}}\n")
    with pytest.raises(InvalidConfigError) as info:
        load_recipe(path)
    text = str(info.value)
    assert f"{path}: {where}: expects a {kind}, not true/false" in text
    assert f"write the {kind} itself" in text


def test_number_fields_refuse_booleans_in_every_section():
    base = recipe().model_dump()
    for section, key in (("data", "batch_size"), ("head", "lbfgs_c"), ("head", "dropout"),
                         ("domain_adaptation", "weight"), ("augmentation", "zoom")):
        data = {**base, section: {**base[section], key: True}}
        with pytest.raises(ValueError, match=f"{key}\n.*expects a (whole )?number"):
            Recipe.model_validate(data)
    assert Recipe.model_validate({**base, "data": {**base["data"], "crop": False}})  # a bool field
    assert Recipe.model_validate({**base, "seed": 3}).seed == 3
