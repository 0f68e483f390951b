"""Reading data files: a key given twice is an error naming file, key and lines — never settled
silently by keeping the last value — while YAML merge keys may still override."""

from __future__ import annotations

import pytest
import yaml

from autotransfer.errors import InvalidConfigError
from autotransfer.recipe.io import load_recipe, read_data_file
from tests.security.corpus import tiny_recipe_data


def test_a_key_given_twice_is_refused_naming_it(tmp_path):
    good = yaml.safe_dump(tiny_recipe_data(), sort_keys=False)
    recipe = tmp_path / "twice.yaml"
    recipe.write_text(good.replace("seed: 0", "seed: 0\nseed: 7"), encoding="utf-8")
    with pytest.raises(InvalidConfigError) as caught:
        load_recipe(recipe)
    message = str(caught.value)
    assert "twice.yaml" in message and "'seed' a second time (first on line 2)" in message
    nested = tmp_path / "nested.yaml"
    nested.write_text(good.replace("  epochs: 1\n", "  epochs: 1\n  epochs: 40\n", 1))
    with pytest.raises(InvalidConfigError, match="'epochs' a second time"):
        load_recipe(nested)
    as_json = tmp_path / "twice.json"
    as_json.write_text('{"seed": 0, "backbone": {}, "seed": 7}')
    with pytest.raises(InvalidConfigError, match="twice.json.*'seed' is given twice"):
        read_data_file(as_json)


def test_merge_keys_still_override_and_tags_build_no_object(tmp_path):
    path = tmp_path / "merge.yaml"
    path.write_text("base: &b {x: 1, y: 2}\nphase:\n  <<: *b\n  x: 3\n")
    assert read_data_file(path) == {"base": {"x": 1, "y": 2}, "phase": {"x": 3, "y": 2}}
    path.write_text("name: !!python/object/apply:os.getcwd []\n")
    with pytest.raises(InvalidConfigError, match="python/object/apply"):
        read_data_file(path)


@pytest.mark.timeout(30)  # a pipe was read forever, /dev/zero until memory ran out
def test_a_pipe_device_or_huge_file_is_refused_before_reading(tmp_path):
    import os

    pipe = tmp_path / "recipe.yaml"
    os.mkfifo(pipe)
    with pytest.raises(InvalidConfigError, match="recipe.yaml' is not a regular file"):
        load_recipe(pipe)
    with pytest.raises(InvalidConfigError, match="not a regular file"):
        read_data_file("/dev/zero")
    huge = tmp_path / "huge.yaml"
    with open(huge, "wb") as handle:
        handle.truncate(64 * 2**20)  # sparse: nothing is written
    with pytest.raises(InvalidConfigError, match="huge.yaml' has 67,108,864 bytes"):
        read_data_file(huge)


def test_a_backbone_file_with_a_key_given_twice_is_refused(tmp_path):
    from autotransfer.backbones.custom.settings import read_backbone_file

    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nmodel: a.keras\nname: other\n", encoding="utf-8")
    with pytest.raises(InvalidConfigError, match="mine.yaml.*'name' a second time"):
        read_backbone_file(path)
