"""Every file under recipes/ loads through the real loader; rule ids are unique and documented."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from autotransfer.advisor.decisions import DECISIONS
from autotransfer.advisor.facts import FACTS
from autotransfer.advisor.presets import load_preset, preset_names
from autotransfer.advisor.rules import load_rules, recipes_dir
from autotransfer.errors import InvalidConfigError, UnknownNameError

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def test_every_file_under_recipes_loads():
    files = sorted(p for p in RECIPES.rglob("*") if p.is_file())
    assert files, "recipes/ is empty"
    for path in files:
        if path.name == "rules.yaml":
            assert load_rules(path).rules
        elif path.parent.name == "presets":
            assert load_preset(str(path)).decisions
        elif path.name == "forecast.yaml":
            from autotransfer.advisor.forecast import load_forecast

            assert load_forecast(path).fitted_on
        else:
            pytest.fail(f"{path} is neither the rule base nor a preset: add a loader for it")
    assert recipes_dir() == RECIPES
    assert set(preset_names()) == {"quick", "standard", "thorough"}


def test_rule_ids_and_names_are_unique_documented_and_read_known_names():
    rules = load_rules().rules
    ids = [r.id for r in rules]
    names = [r.name for r in rules]
    assert len(set(ids)) == len(ids) and len(set(names)) == len(names)
    for rule in rules:
        assert rule.doc.when.strip() and len(rule.doc.why.split()) >= 8, rule.id
        assert set(rule.reads) <= set(FACTS) | set(DECISIONS)
        assert set(rule.set) <= set(DECISIONS)


def test_rules_cover_the_practices():
    groups = {r.group for r in load_rules().rules}
    assert {"backbone", "freezing", "unfreezing", "learning-rate", "schedule", "augmentation",
            "domain", "imbalance", "resolution", "data-quality"} <= groups


def write(tmp_path, rules):
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "rules": rules}))
    return path


def good_rule(**overrides):
    rule = {"id": "XX01", "name": "a-rule", "group": "freezing",
            "doc": {"when": "Always.", "why": "Because a reason of more than twenty characters."},
            "when": "per_class > limit", "params": {"limit": 3}, "set": {"finetune_from": "3"},
            "text": "A sentence for people."}
    return {**rule, **overrides}


def test_malformed_rules_are_reported_with_file_rule_and_key(tmp_path):
    path = write(tmp_path, [good_rule(), good_rule(id="XX02", name="b-rule", set={"nonsense": "1"})])
    with pytest.raises(InvalidConfigError, match=r"rules.yaml: rule XX02: .*sets unknown decision\(s\) \['nonsense'\]"):
        load_rules(path)
    path = write(tmp_path, [good_rule(when="per_class > undefined_threshold")])
    with pytest.raises(InvalidConfigError, match=r"rule XX01: when: .*unknown name.*undefined_threshold"):
        load_rules(path)
    path = write(tmp_path, [good_rule(extra_key=1)])
    with pytest.raises(InvalidConfigError, match=r"rule XX01: extra_key: unknown key"):
        load_rules(path)
    path = write(tmp_path, [good_rule(), good_rule(name="other")])
    with pytest.raises(InvalidConfigError, match="duplicate rule ids: \\['XX01'\\]"):
        load_rules(path)
    path = write(tmp_path, [good_rule(when="per_class >")])
    with pytest.raises(InvalidConfigError, match="invalid expression"):
        load_rules(path)


def test_presets_must_set_every_decision_with_the_right_type(tmp_path):
    preset = yaml.safe_load((RECIPES / "presets" / "standard.yaml").read_text())
    del preset["decisions"]["patience"]
    preset["decisions"]["hflip"] = "yes"
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(preset))
    with pytest.raises(InvalidConfigError, match="missing decision"):
        load_preset(str(path))
    preset["decisions"]["patience"] = 3
    path.write_text(yaml.safe_dump(preset))
    with pytest.raises(InvalidConfigError, match="hflip must be true or false"):
        load_preset(str(path))


def test_unknown_preset_suggests_names():
    with pytest.raises(UnknownNameError, match="Did you mean 'quick'"):
        load_preset("quik")


def test_docs_rules_md_is_generated_from_the_current_rule_base():
    import subprocess
    import sys

    tool = Path(__file__).resolve().parents[2] / "tools" / "make_rules_doc.py"
    result = subprocess.run([sys.executable, str(tool), "--check"])
    assert result.returncode == 0, "docs/rules.md is stale: run python tools/make_rules_doc.py"
