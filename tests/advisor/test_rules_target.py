"""Rules DA04-DA08: whether and how to adapt to unlabelled target images, from the measured gap."""

from __future__ import annotations

import pytest

from autotransfer.advisor.advise import decide
from autotransfer.advisor.facts import target_facts
from autotransfer.advisor.presets import load_preset
from autotransfer.advisor.rules import load_rules
from autotransfer.probes.domain_gap import DomainGap, TargetEvaluation
from tests.advisor.synthetic import NAN, facts, probe, profile, report

RULES = load_rules()
TARGET_RULES = ("DA04", "DA05", "DA06", "DA07", "DA08")


def gap_facts(a: float, early: float, deep: float, tv: float, **more):
    """The gap's facts with a BN shift of ``early`` in the first groups and ``deep`` in the last."""
    return dict(target_known=True, n_target=300, gap_a=a, gap_bn_known=True,
                gap_bn=(early + deep) / 2, gap_bn_early=early, gap_bn_deep=deep, class_shift=tv,
                pred_entropy_rise=0.05, target_entropy_rise=0.02, **more)


def choose(**fact_overrides):
    start = {**load_preset("standard").decisions, "backbone": "x", "input_size": 224,
             "da_method": "none", "head_solver": "lbfgs"}
    final, firings = RULES.evaluate(facts(**fact_overrides), start, only=set(TARGET_RULES))
    return final, [f.rule for f in firings]


def test_without_a_target_no_target_rule_fires():
    final, fired = choose()
    assert fired == [] and final["da_method"] == "none"


@pytest.mark.parametrize("a, tv, method, rule", [
    (0.05, 0.02, "none", "DA04"), (0.29, 0.09, "none", "DA04"),
    (0.3, 0.02, "coral", "DA06"),  # the threshold itself is not negligible
    (0.1, 0.1, "coral", "DA06"),  # the classes move: not negligible
])
def test_no_adaptation_exactly_when_the_gap_is_negligible(a, tv, method, rule):
    final, fired = choose(**gap_facts(a, 0.1, 0.4, tv))  # a shift of content, not low-level
    assert fired == [rule] and final["da_method"] == method


@pytest.mark.parametrize("early, deep, folded, method", [
    (0.8, 0.2, False, "adabn_target"), (0.4, 0.4, False, "adabn_target"),
    (0.2, 0.8, False, "coral"),  # the shift grows with depth: content, not low-level
    (0.04, 0.02, False, "coral"),  # mean 0.03 < min_bn: too small a shift to be the gap
    # Office-Caltech's dslr -> amazon: early > deep but a shift of 0.24 < min_bn, where AdaBN
    # on the target lost 14 points (docs/benchmarks/adapt.md)
    (0.37, 0.11, False, "coral"),
    (0.8, 0.2, True, "coral"),  # folded BN: nothing to re-estimate
    (NAN, NAN, False, "coral")])  # no BN shift measured
def test_adabn_on_the_target_when_the_shift_is_low_level(early, deep, folded, method):
    facts = gap_facts(1.0, early, deep, 0.05)
    if early != early:
        facts.update(gap_bn_known=False)
    final, fired = choose(**facts, bn_folded=folded)
    assert final["da_method"] == method and len(fired) == 1
    if method == "adabn_target":
        assert final["head_solver"] == "lbfgs"  # no loss added: the exact head stays


@pytest.mark.parametrize("a, tv, n_train, linear, method, rule", [
    (0.8, 0.05, 2000, 0.9, "coral", "DA06"),
    # the classes move: not MCC (it presumes the source's class balance), CORAL, whose λ DA09
    # may set to 0 (Office-Caltech's dslr -> amazon, TV 0.22: MCC 76.7 %, CORAL 85.9 %)
    (0.8, 0.25, 2000, 0.9, "coral", "DA07"),
    (1.8, 0.05, 2000, 0.9, "cdan", "DA08"),
    (1.8, 0.05, 2000, 0.5, "dann", "DA08"),  # unreliable source predictions: unconditional
    (1.8, 0.05, 499, 0.9, "coral", "DA06"),  # too few source images for a discriminator
    (1.8, 0.3, 2000, 0.9, "coral", "DA07"),  # nor a discriminator conditioned on them
    (1.95, 0.22, 157, 1.0, "coral", "DA07"),
])
def test_the_method_follows_the_gap_and_the_data_size(a, tv, n_train, linear, method, rule):
    final, fired = choose(**gap_facts(a, 0.1, 0.5, tv), n_train=n_train, linear_acc=linear)
    assert fired == [rule] and final["da_method"] == method
    assert final["head_solver"] == "gradient"  # a loss is added to gradient training


def _gap(a: float, early: float, tv: float, evaluation: TargetEvaluation | None = None):
    """A measured gap whose BN shift is ``early`` in the first two groups and 0.4 in the rest."""
    groups = dict(zip(("stem", "stage_s4", "stage_s8", "stage_s16", "stage_s32"),
                      (early, early, 0.4, 0.4, 0.4), strict=True))
    return DomainGap(
        backbone="mobilenet_v2", input_size=224, target_root="/t", n_source=100, n_target=100,
        n_target_images=300, bn_applicable=True, bn_per_group=groups,
        bn_overall=sum(groups.values()) / 5, bn_peak_group="stem", source_bn_shift=0.1,
        target_bn_shift=0.4, domain_error=0.5 - a / 4, a_distance=a, source_entropy=0.3,
        target_entropy=0.4, class_tv=tv, class_kl=0.01, source_pred_entropy=0.2,
        target_pred_entropy=0.3, source_histogram={"a": 0.5, "b": 0.5},
        target_histogram={"a": 0.5, "b": 0.5}, evaluation=evaluation)


def test_decide_records_the_choice_in_the_recipe_with_its_rule_and_evidence():
    data = profile({"a": 400, "b": 400})
    probes = report(probe("mobilenet_v2", 0.5, linear=0.95)).model_copy(
        update={"domain_gap": _gap(1.0, 0.1, 0.05)})
    advice = decide(data, probes)
    da = advice.recipe.domain_adaptation
    assert da.method == "coral" and advice.recipe.head.solver == "gradient"
    reason = advice.recipe.reasons["domain_adaptation.method"]
    assert reason.rule == "DA06" and reason.evidence["gap_a"] == 1.0
    assert advice.facts["target_known"] and advice.facts["n_target"] == 300


def test_a_negligible_gap_leaves_the_recipe_unadapted_and_says_why():
    data = profile({"a": 400, "b": 400})
    probes = report(probe("mobilenet_v2", 0.5)).model_copy(
        update={"domain_gap": _gap(0.1, 0.1, 0.02)})
    advice = decide(data, probes)
    assert advice.recipe.domain_adaptation.method == "none"
    assert any(f.rule == "DA04" for f in advice.firings)
    without = decide(data, report(probe("mobilenet_v2", 0.5)))
    assert without.recipe.domain_adaptation == advice.recipe.domain_adaptation
    assert not without.facts["target_known"] and not any(
        f.rule in TARGET_RULES for f in without.firings)


def test_target_class_folders_never_change_a_decision():
    data = profile({"a": 400, "b": 400})
    labelled = TargetEvaluation(n_images=100, classes=["a", "b"], source_only_linear_accuracy=0.1)
    for a, aligned, tv in ((0.1, 0.1, 0.02), (1.0, 0.9, 0.05), (1.0, 0.1, 0.3), (1.9, 0.1, 0.05)):
        plain = report(probe("mobilenet_v2", 0.5)).model_copy(
            update={"domain_gap": _gap(a, aligned, tv)})
        evaluated = plain.model_copy(update={"domain_gap": _gap(a, aligned, tv, labelled)})
        assert target_facts(plain) == target_facts(evaluated)
        assert decide(data, plain).recipe == decide(data, evaluated).recipe
