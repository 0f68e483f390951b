"""docs/rules.md's *sets* column says where each rule the advisor does not evaluate applies."""

from __future__ import annotations

from types import SimpleNamespace

from autotransfer.advisor.rules import load_rules
from tests.tools.load import load_tool


def test_a_plan_rules_place_comes_from_its_group_not_its_id():
    tool = load_tool("make_rules_doc")
    rules = {r.id: r for r in load_rules().rules}
    assert tool.place(rules["CKPT01"]).startswith("the trainer")  # a trainer rule (training)
    assert tool.place(rules["PLAN01"]) == "auto's plan"
    assert tool.place(rules["TUNE01"]) == "the search"
    assert tool.place(rules["FINAL01"]) == "auto's final training"
    assert tool.place(rules["SEL02"]) == "the final model"  # kind select
    # the same id under another group is placed by its group
    moved = SimpleNamespace(id="CKPT01", kind="plan", group="search")
    assert tool.place(moved) == "the search"
    assert tool.place(SimpleNamespace(id="X01", kind="plan", group="new")) == \
        tool.PLAN_ELSEWHERE
    assert tool.id_ranges(["PLAN01", "PLAN02", "PLAN03", "SEL02", "ES01", "TUNE01", "TUNE03"]) \
        == "PLAN01–PLAN03, SEL02, ES01, TUNE01, TUNE03"
    text = tool.render()
    row = next(line for line in text.splitlines() if line.startswith("| CKPT01 |"))
    assert "the trainer" in row and "auto's plan" not in row
    assert "the trainer (train, auto's final training): CKPT01;" in " ".join(text.split())
