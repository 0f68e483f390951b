"""``advise`` prints the decisions in force; overridden or unused values are folded into a note."""

from __future__ import annotations

from rich.console import Console

from autotransfer.advisor.advise import decide
from autotransfer.report.advice import decisions_in_force, render_advice, unused_decisions
from tests.advisor import synthetic as s


def _advice(time_budget: float | None):
    probe = s.probe("mobilenet_025", 0.5).model_copy(update={"forward_ms": 2.0})
    return decide(s.profile({"a": 10, "b": 10}), s.report(probe), time_budget=time_budget)


def _rendered(advice) -> str:
    console = Console(record=True, width=400)
    render_advice(advice, console, show_probes=False)
    return console.export_text()


def test_a_head_only_exact_recipe_prints_only_what_is_in_force():
    advice = _advice(30.0)  # BUD02: no fine-tuning epoch fits; HEAD01: the head is fit exactly
    recipe = advice.recipe
    assert len(recipe.phases) == 1 and recipe.head.solver == "lbfgs"
    rows, folded = decisions_in_force(advice)
    kept = {k for _, settings in rows for k in settings}
    assert {"finetune_from", "head_solver", "batch_size"} <= kept
    assert not kept & {"finetune_epochs", "dropout", "label_smoothing", "head_lr", "head_epochs"}
    why = {(f.rule, f.decision): f.why for f in folded}
    assert why[("FZ01", "finetune_from")] == "overridden by BUD02"
    assert why[("BUD01", "finetune_epochs")].startswith("not used: only the head trains")
    assert "L-BFGS" in why[("REG01", "dropout")]

    text = _rendered(advice)
    table, note = text.split("Not in force", 1)
    assert "dropout = " not in table and "finetune_epochs = " not in table
    assert "· dropout" not in table and "· label smoothing" not in table  # nor in the settings
    assert "FZ01 finetune_from = 4" in note and "Overridden by BUD02" in note
    assert "REG01 dropout = 0.3" in note and "BUD01 finetune_epochs = 1" in note
    assert "the head fit exactly (L-BFGS)" in table and "epochs at most" not in table
    assert "BUD03" in table  # the warning: the budget is below the cheapest training


def test_a_fine_tuning_recipe_folds_nothing_it_uses():
    advice = _advice(None)
    assert len(advice.recipe.phases) == 2 and unused_decisions(advice.recipe) == {}
    rows, folded = decisions_in_force(advice)
    assert folded == []
    text = _rendered(advice)
    assert "Not in force" not in text
    assert "dropout = 0.3" in text and "finetune_epochs = 12" in text and "epochs at most" in text
