"""Rule SEL02: the linear probe is kept unless fine-tuning beats it beyond chance."""

from __future__ import annotations

import pytest

from autotransfer.advisor.rules import load_rules
from autotransfer.tuning.baseline import (FINE_TUNED, PROBE, Candidate, balanced_accuracy, compare,
                                          fine_tunes, linear_probe_recipe, markdown, rule_params,
                                          weighted_mcnemar)
from autotransfer.tuning.selection import mcnemar
from tests.train.helpers import tiny_recipe

PARAMS = {"alpha": 0.05, "imbalance_ratio": 1.5, "exact_max": 1_000_000, "resamples": 20_000}


def test_the_rule_and_its_parameters_are_data():
    rule = load_rules().get("SEL02")
    assert rule.kind == "select" and rule.group == "selection"
    params = rule_params()
    assert params["alpha"] == 0.05 and params["imbalance_ratio"] == 1.5


def test_the_advisor_does_not_evaluate_a_selection_rule():
    _, firings = load_rules().evaluate({}, {}, only={"SEL02"})
    assert firings == []


def test_a_tie_keeps_the_cheaper_linear_probe_and_reports_the_time_saved():
    labels = [0] * 20 + [1] * 20
    probe = Candidate(PROBE, [1] * 36 + [0] * 4, seconds=8.0)
    finetuned = Candidate(FINE_TUNED, [1] * 37 + [0] * 3, seconds=190.0)  # one image better
    choice = compare(probe, finetuned, labels, imbalance=1.0, params=PARAMS)
    assert choice.winner == PROBE and choice.probe_kept and choice.metric == "accuracy"
    assert choice.test["p"] > 0.05 and choice.time_saved_s == pytest.approx(182.0)
    assert "a gain within chance: the cheaper linear probe is kept (182 s less" in choice.why
    assert choice.scores[FINE_TUNED]["accuracy"] == pytest.approx(37 / 40)
    text = "\n".join(markdown(choice))
    assert "| linear probe **kept** |" in text and "**SEL02**" in text and "182 s" in text


def test_fine_tuning_that_wins_beyond_chance_is_kept():
    labels = [0] * 20 + [1] * 20
    probe = Candidate(PROBE, [1] * 28 + [0] * 12, seconds=8.0)
    finetuned = Candidate(FINE_TUNED, [1] * 39 + [0] * 1, seconds=190.0)
    choice = compare(probe, finetuned, labels, imbalance=1.0, params=PARAMS)
    assert choice.winner == FINE_TUNED and choice.time_saved_s is None
    assert choice.test["gained"] == 11 and choice.test["lost"] == 0
    assert choice.test["p"] == pytest.approx(0.5 ** 11)
    assert "a gain beyond chance: the fine-tuned model is kept" in choice.why
    assert "| fine-tuned **kept** |" in "\n".join(markdown(choice))


def test_equal_weights_give_the_exact_mcnemar_test():
    base = [1, 0, 1, 0, 0, 1, 0, 1, 0, 0, 1, 1]
    challenger = [1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 1, 0]
    labels = [0, 1, 2] * 4  # four images per class: every weight is the same
    weighted = weighted_mcnemar(base, challenger, labels)
    plain = mcnemar(base, challenger)
    assert weighted["method"] == "exact"
    assert weighted["p"] == pytest.approx(plain["p"])
    assert (weighted["gained"], weighted["lost"]) == (plain["gained"], plain["lost"])


def test_the_weighted_statistic_is_the_difference_in_balanced_accuracy():
    labels = [0] * 12 + [1] * 4
    base = [1] * 12 + [0, 0, 0, 1]
    challenger = [1] * 10 + [0, 0] + [1, 1, 1, 1]
    test = weighted_mcnemar(base, challenger, labels)
    diff = balanced_accuracy(challenger, labels) - balanced_accuracy(base, labels)
    assert test["gain"] == pytest.approx(diff)
    # the sign-flip draws agree with the exact distribution
    drawn = weighted_mcnemar(base, challenger, labels, exact_max=1, resamples=50_000)
    assert drawn["method"].startswith("sign-flip")
    assert drawn["p"] == pytest.approx(test["p"], abs=0.01)


def test_imbalanced_data_is_judged_by_balanced_accuracy():
    # 30 majority, 6 minority images. The probe finds the minority class; the fine-tuned model
    # predicts the majority for everything: higher accuracy, much lower balanced accuracy
    labels = [0] * 30 + [1] * 6
    probe = Candidate(PROBE, [1] * 24 + [0] * 6 + [1] * 6, seconds=5.0)  # acc 0.833, bal 0.9
    finetuned = Candidate(FINE_TUNED, [1] * 30 + [0] * 6, seconds=100.0)  # acc 0.833, bal 0.5
    choice = compare(probe, finetuned, labels, imbalance=2.0, params=PARAMS)
    assert choice.metric == "balanced accuracy" and choice.winner == PROBE
    assert choice.scores[PROBE]["balanced_accuracy"] == pytest.approx(0.9)
    assert choice.scores[FINE_TUNED]["balanced_accuracy"] == pytest.approx(0.5)
    assert "imbalanced (2.00:1 ≥ 1.5)" in choice.why
    assert "no gain: the cheaper linear probe is kept" in choice.why
    assert "balanced accuracy" in choice.test["test"]
    # more correct images overall, all from the majority class: not a balanced-accuracy gain
    finetuned = Candidate(FINE_TUNED, [1] * 30 + [1, 1, 0, 0, 0, 0], seconds=100.0)
    probe = Candidate(PROBE, [1] * 22 + [0] * 8 + [1, 1, 1, 0, 0, 0], seconds=5.0)
    plain = compare(probe, finetuned, labels, imbalance=1.0, params=PARAMS)
    weighted = compare(probe, finetuned, labels, imbalance=2.0, params=PARAMS)
    assert plain.winner == FINE_TUNED  # 8 images gained, none lost: p = 0.0039
    assert weighted.winner == PROBE and weighted.test["p"] > 0.05


def test_a_balanced_gain_on_imbalanced_data_wins():
    labels = [0] * 30 + [1] * 10
    probe = Candidate(PROBE, [1] * 30 + [0] * 10)
    finetuned = Candidate(FINE_TUNED, [1] * 30 + [1] * 9 + [0])
    choice = compare(probe, finetuned, labels, imbalance=3.0, params=PARAMS)
    assert choice.winner == FINE_TUNED and choice.test["p"] == pytest.approx(0.5 ** 9)
    assert choice.time_saved_s is None  # no seconds given


def test_the_linear_probe_recipe_freezes_the_backbone_and_fits_the_head_exactly():
    recipe = tiny_recipe()
    assert fine_tunes(recipe)
    probe = linear_probe_recipe(recipe)
    assert not fine_tunes(probe) and len(probe.phases) == 1
    assert probe.head.solver == "lbfgs" and probe.head.lbfgs_c is None
    assert probe.backbone == recipe.backbone and probe.seed == recipe.seed
    assert probe.data == recipe.data and probe.precision == recipe.precision
    assert probe.reasons["head.solver"].rule == "SEL02"
    assert linear_probe_recipe(probe).phases == probe.phases  # idempotent on its phases


def test_many_classes_with_coprime_counts_are_tested_by_sign_flips():
    # the classes' validation counts have a huge least common multiple: float weights then
    counts = [97, 89, 83, 79, 73, 71, 67, 61, 59, 53, 47, 43, 41, 37, 31, 29, 23, 19, 17, 13]
    labels = [c for c, n in enumerate(counts) for _ in range(n)]
    base = [1] * len(labels)
    challenger = [1] * len(labels)
    start = 0
    for n in counts:  # the challenger loses one and gains none in every class
        base[start], challenger[start] = 1, 0
        start += n
    test = weighted_mcnemar(base, challenger, labels, exact_max=1, resamples=5_000)
    assert test["method"].startswith("sign-flip") and test["p"] == pytest.approx(1.0)
    assert test["gain"] < 0


def test_the_linear_probe_of_an_adapting_recipe_does_not_adapt_to_the_target():
    for method in ("coral", "cdan", "adabn_target"):
        recipe = tiny_recipe(domain_adaptation={"method": method})
        assert linear_probe_recipe(recipe).domain_adaptation.method == "none"
    kept = linear_probe_recipe(
        tiny_recipe(domain_adaptation={"method": "adabn", "before_phase": 1})).domain_adaptation
    assert (kept.method, kept.before_phase) == ("adabn", 0)
