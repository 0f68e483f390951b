"""The time budget of auto: its floor (rule BUD03) and where the time went."""

from __future__ import annotations

import pytest

from autotransfer import budget
from autotransfer.advisor.rules import load_rules
from autotransfer.errors import InvalidParameterError, TimeBudgetError
from tests.advisor import synthetic

PARAMS = {"fixed_s": 60, "head_views": 4, "cv_grid": 11, "cv_folds": 5, "cv_s_per_gelem": 13}


def test_bud03_fires_when_even_the_head_does_not_fit():
    rules = load_rules()
    # 1000 images at 224 px, 2 ms each: a forward pass is 2 s, the head alone 60 + 4 × 2 = 68 s
    facts = synthetic.facts(n_train=1000, forward_ms=2.0, probe_size=224)
    decisions = {"input_size": 224, "finetune_from": 5}
    for seconds, fires in ((67.0, True), (69.0, False)):
        _, firings = rules.evaluate({**facts, "budget_s": seconds}, decisions, only={"BUD03"})
        assert bool(firings) is fires
    _, (firing,) = rules.evaluate({**facts, "budget_s": 30.0}, decisions, only={"BUD03"})
    assert firing.kind == "warn" and "even the head alone needs more" in firing.text
    assert firing.evidence["forward_ms"] == 2.0 and firing.evidence["n_train"] == 1000
    # no timing, or no budget: it cannot tell, and stays quiet
    assert not rules.evaluate({**facts, "forward_ms": float("nan"), "budget_s": 1.0}, decisions,
                              only={"BUD03"})[1]
    assert not rules.evaluate(facts, decisions, only={"BUD03"})[1]
    assert budget.rule_params() == PARAMS  # auto's floors read the same parameters


def test_head_seconds_follows_the_rule():
    facts = synthetic.facts(n_train=1000, forward_ms=2.0, probe_size=224)
    assert budget.head_seconds(facts, 224, PARAMS) == pytest.approx(68.0)
    assert budget.head_seconds(facts, 448, PARAMS) == pytest.approx(60 + 4 * 8.0)  # 4× pixels
    assert budget.head_seconds(synthetic.facts(), 224, PARAMS) is None  # not timed


def test_head_seconds_counts_the_cross_validation_of_c():
    from autotransfer.train.linear_head import C_GRID, DEFAULT_FOLDS

    assert (PARAMS["cv_grid"], PARAMS["cv_folds"]) == (len(C_GRID), DEFAULT_FOLDS)
    facts = synthetic.facts(n_train=1000, forward_ms=2.0, probe_size=224)
    n_classes = facts["n_classes"]
    # 11 C × 5 folds on 4/5 of 4 views of 1000 images, plus the kept fit (counted twice)
    work = (11 * 5 * 3200 + 2 * 4000) * 1280 * n_classes / 1e9
    cv = budget.cv_seconds(1000, n_classes, 1280, PARAMS)
    assert cv == pytest.approx(13 * work)
    assert budget.head_seconds(facts, 224, PARAMS, feature_dim=1280) == pytest.approx(68.0 + cv)
    # twice the features or the images: twice the fits' cost
    assert budget.cv_seconds(1000, n_classes, 2560, PARAMS) == pytest.approx(2 * cv)
    assert budget.cv_seconds(2000, n_classes, 1280, PARAMS) == pytest.approx(2 * cv)


def test_floors_say_the_minimum():
    with pytest.raises(TimeBudgetError, match=r"at least --time-budget 1m30s") as caught:
        budget.floor_before_probing(10.0, 3.0, PARAMS, 20.0)  # 3 + 60 + 20 = 83 s → 1m30s
    assert isinstance(caught.value, InvalidParameterError) and caught.value.exit_code == 2
    budget.floor_before_probing(90.0, 3.0, PARAMS, 20.0)  # enough: no error
    facts = synthetic.facts(n_train=1000, forward_ms=2.0)
    with pytest.raises(TimeBudgetError, match=r"took 40s.*about 1m08s.*at least --time-budget "
                                              r"2m10s"):
        budget.floor_after_probing(100.0, 40.0, 68.0, 20.0, facts)  # 128 s → 2m10s
    budget.floor_after_probing(130.0, 40.0, 68.0, 20.0, facts)
    budget.floor_after_probing(1.0, 40.0, None, 20.0, facts)  # not timed: cannot tell
    with pytest.raises(TimeBudgetError, match="at least --time-budget 11m00s"):
        budget.floor_after_probing(60.0, 30.0, 600.0, 20.0, facts)  # 650 s: whole minutes


def test_where_the_time_went():
    used = budget.use(100.0, [("profile", 5.0), ("tune", 70.0), ("final", 40.0)], 115.0)
    assert [r["share"] for r in used["steps"]] == [0.05, 0.7, 0.4]
    assert used["exceeded"] and used["over_seconds"] == 15.0 and used["used_share"] == 1.15
    lines = budget.markdown_table({"total": 100.0, **used})
    assert "| tune | 1m10s | 70% |" in lines and "| **total** | **1m55s** | **115%** |" in lines
    assert lines[-1] == "**The budget of 1m40s was exceeded by 15s.**"
    kept = budget.use(None, [("profile", 5.0)], 5.0)
    assert kept["exceeded"] is False and kept["steps"][0]["share"] is None
    assert budget.markdown_table({"total": None, **kept})[-1] == "No time budget was set."
    assert budget.markdown_table({"total": 100.0}) == []  # an older summary: no table
