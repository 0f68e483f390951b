"""The gap table train's and auto's reports share, and the advisor's gap a recipe carries."""

from __future__ import annotations

import math

from autotransfer.recipe.schema import Reason
from autotransfer.train.adaptation.gap_report import BEFORE, advised_gap, gap_table
from autotransfer.train.report import adaptation_section
from tests.train.helpers import tiny_recipe


def test_the_table_lists_the_known_gaps_in_order_and_says_what_they_mean():
    lines = gap_table([(BEFORE, {"a_distance": 1.5, "class_tv": 0.25}), ("skipped", None),
                       ("after", {"a_distance": None, "class_tv": 0.125})])
    assert lines[2] == f"| {BEFORE} | 1.500 | 0.250 |"
    assert lines[3] == "| after | – | 0.125 |"  # not measurable: a dash, not a number
    assert "skipped" not in "\n".join(lines) and "total variation" in lines[-1]
    assert gap_table([("before", None)]) == []


def _with_reason(**evidence):
    recipe = tiny_recipe()
    reason = Reason(rule="DA06", text="align", evidence=evidence)
    return recipe.model_copy(update={"reasons": {**recipe.reasons,
                                                 "domain_adaptation.method": reason}})


def test_the_advisors_gap_is_read_from_the_evidence_of_the_method_rule():
    gap = advised_gap(_with_reason(gap_a=1.9, class_shift=0.22))
    assert gap is not None
    assert (gap["a_distance"], gap["class_tv"], gap["rule"]) == (1.9, 0.22, "DA06")
    assert advised_gap(_with_reason(gap_a=math.nan, class_shift=0.1))["a_distance"] is None
    assert advised_gap(_with_reason(gap_a=1.0, class_shift=math.nan)) is None
    assert advised_gap(tiny_recipe()) is None  # no target when advised: nothing to show


def test_trains_report_section_shows_the_method_and_both_gaps_only_with_a_target():
    assert adaptation_section({}) == []
    metrics = {"target": {"path": "/t", "n_images": 12, "used": True, "note": ""},
               "domain_adaptation": {"method": "coral", "weight": 0.3,
                                     "phases": [{"phase": 0, "on": "cached features"}],
                                     "adabn_target": None},
               "domain_gap_before": {"a_distance": 1.9, "class_tv": 0.2, "rule": "DA06"},
               "domain_gap": {"a_distance": 0.7, "class_tv": 0.05}}
    text = "\n".join(adaptation_section(metrics))
    assert "Method **coral**, loss weight λ = 0.3 (rule DA06)" in text
    assert "phase(s) 0 (on cached features)" in text
    assert f"| {BEFORE} | 1.900 | 0.200 |" in text and "| after (this model) | 0.700 | 0.050 |" \
        in text
    del metrics["domain_gap"], metrics["domain_gap_before"]  # no validation split: said so
    assert "not measured" in "\n".join(adaptation_section(metrics))
