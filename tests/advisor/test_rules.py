"""Each rule on synthetic facts, at and around its thresholds."""

from __future__ import annotations

import math

import pytest

from autotransfer.advisor.presets import load_preset
from autotransfer.advisor.rules import load_rules
from tests.advisor.synthetic import NAN, facts

RULES = load_rules()


def run(rule_id: str, decisions: dict | None = None, *, also: tuple[str, ...] = (),
        **fact_overrides):
    """Decisions after the preset and ``rule_id`` alone (and the rules ``also`` names, in the
    rule base's order), and whether ``rule_id`` fired."""
    start = {**load_preset("standard").decisions, "backbone": "x", "input_size": 224, **(decisions or {})}
    final, firings = RULES.evaluate(facts(**fact_overrides), start, only={rule_id, *also})
    return final, [f for f in firings if f.rule == rule_id]


@pytest.mark.parametrize(
    "per_class, shift, entropy, expected",
    [
        (49, 0.1, 0.3, 4), (199, 0.1, 0.3, 4), (200, 0.1, 0.3, 3), (999, 0.1, 0.3, 3), (1000, 0.1, 0.3, 2),
        (49, 0.6, 0.3, 4), (50, 0.6, 0.3, 3), (199, 0.6, 0.3, 3), (200, 0.6, 0.3, 2), (1000, 0.6, 0.3, 1),
        (200, 0.5, 0.3, 3),  # the threshold itself is not "far"
        (200, NAN, 0.6, 2),  # no BN measure: entropy decides
        (200, NAN, NAN, 3),  # nothing measured: treated as near
    ],
)
def test_fz01_freeze_depth_from_size_and_shift(per_class, shift, entropy, expected):
    final, fired = run("FZ01", per_class=per_class, bn_shift=shift, entropy=entropy)
    assert final["finetune_from"] == expected and fired
    if not math.isnan(shift):
        assert fired[0].evidence["bn_shift"] == pytest.approx(shift)
    assert fired[0].thresholds["far_shift"] == 0.5


@pytest.mark.parametrize(
    "early, start, expected, fires",
    [(2.1, 3, 2, True), (2.0, 3, 3, False), (5.0, 4, 4, False), (5.0, 1, 0, True),
     (5.0, 0, 0, False), (NAN, 2, 2, False)],
)
def test_fz02_one_group_deeper_when_early_layers_shift(early, start, expected, fires):
    final, fired = run("FZ02", {"finetune_from": start}, early_shift=early)
    assert final["finetune_from"] == expected and bool(fired) == fires


@pytest.mark.parametrize("min_per_class, expected", [(9, 5), (10, 3)])
def test_fz03_linear_probe_only_when_tiny(min_per_class, expected):
    final, _ = run("FZ03", {"finetune_from": 3}, min_per_class=min_per_class)
    assert final["finetune_from"] == expected


@pytest.mark.parametrize("linear, per_class, shift, entropy, expected", [
    (0.92, 199, 0.1, 0.3, 5), (0.919, 199, 0.1, 0.3, 4),  # the separability threshold
    (0.95, 200, 0.1, 0.3, 4),                              # enough images to fine-tune
    (0.95, 100, 0.6, 0.3, 4), (0.95, 100, 0.1, 0.6, 4),    # far data: the features must adapt
    (0.95, 100, NAN, NAN, 5),                              # nothing measured: treated as near
])
def test_fz04_head_only_when_a_linear_probe_already_separates_near_small_data(
        linear, per_class, shift, entropy, expected):
    final, fired = run("FZ04", {"finetune_from": 4}, linear_acc=linear, per_class=per_class,
                       bn_shift=shift, entropy=entropy)
    assert final["finetune_from"] == expected
    if fired:
        assert fired[0].evidence["linear_acc"] == linear
        assert fired[0].thresholds["separable"] == 0.92


@pytest.mark.parametrize("finetune_from, solver", [(5, "lbfgs"), (4, "gradient"), (0, "gradient")])
def test_head01_exact_linear_head_only_when_the_head_trains_alone(finetune_from, solver):
    final, fired = run("HEAD01", {"finetune_from": finetune_from})
    assert final["head_solver"] == solver and bool(fired) == (solver == "lbfgs")
    if fired:
        assert "cross-validation" in fired[0].text and fired[0].evidence["finetune_from"] == 5


@pytest.mark.parametrize("start, gradual", [(3, True), (0, True), (4, False), (5, False)])
def test_uf01_gradual_unfreezing_below_the_last_group(start, gradual):
    final, _ = run("UF01", {"finetune_from": start, "gradual": False})
    assert final["gradual"] is gradual


@pytest.mark.parametrize("shift, batch, optimizer, head, finetune", [
    (0.1, 32, "adamw", 1e-3, 1e-4), (0.6, 32, "adamw", 1e-3, 2e-4), (NAN, 32, "adam", 1e-3, 1e-4),
    (0.1, 16, "adamw", 1e-3 * 0.5**0.5, 1e-4 * 0.5**0.5),  # Adam: square-root scaling
    (0.1, 16, "sgd", 5e-4, 5e-5)])                          # SGD: linear scaling
def test_lr01_fine_tuning_rate_is_lower_and_scales_with_batch(shift, batch, optimizer, head,
                                                              finetune):
    final, _ = run("LR01", {"batch_size": batch, "optimizer": optimizer}, bn_shift=shift)
    assert final["head_lr"] == pytest.approx(head) and final["finetune_lr"] == pytest.approx(finetune)
    assert final["finetune_lr"] < final["head_lr"]


@pytest.mark.parametrize("start, decay", [(3, 0.5), (4, 1.0)])
def test_lr02_discriminative_rates_only_with_several_groups(start, decay):
    final, _ = run("LR02", {"finetune_from": start, "group_lr_decay": 1.0})
    assert final["group_lr_decay"] == decay


@pytest.mark.parametrize("n_train, scale, head, finetune", [
    (499, 1.0, 40, 12), (500, 1.0, 40, 10), (1999, 1.0, 40, 10), (2000, 1.0, 20, 6),
    (10000, 1.0, 20, 4), (50000, 1.0, 20, 3), (2000, 0.5, 20, 3), (499, 0.5, 40, 6),
    (300, 2.0, 80, 24)])
def test_lr03_schedule_length_shrinks_in_epochs_as_data_grows(n_train, scale, head, finetune):
    final, _ = run("LR03", {"epoch_scale": scale}, n_train=n_train)
    assert (final["head_epochs"], final["finetune_epochs"]) == (head, finetune)
    assert final["patience"] == (10 if n_train < 2000 else 5)  # outlasts a small split's noise


def _schedule(preset: str, n_train: int, start: int, *, budget: float = NAN,
              rules: tuple[str, ...] = ("UF01", "LR03", "LR05", "LR04")):
    """Decisions of ``preset`` after the schedule rules for fine-tuning from group ``start``."""
    from autotransfer.advisor.assemble import build_phases

    begin = {**load_preset(preset).decisions, "backbone": "x", "input_size": 224,
             "finetune_from": start}
    final, firings = RULES.evaluate(
        facts(n_train=n_train, forward_ms=2.0, probe_size=224, budget_s=budget), begin,
        only=set(rules))
    return final, {f.rule: f for f in firings}, [p.epochs for p in build_phases(final)[1:]]


FLOOR = RULES.get("LR05").params["min_epochs"]  # fitted by the study (docs/benchmarks/advice.md)
GRADUAL = [round(int(FLOOR * 1.5 + 0.5) / 3), FLOOR]  # the last group's third, then the floor


@pytest.mark.parametrize("preset, n_train, start, phases, fires", [
    ("quick", 800, 2, GRADUAL, True),     # 2 + 3 before: the deepest phase now gets the floor
    ("quick", 300, 2, GRADUAL, True),
    ("quick", 800, 4, [FLOOR], True),     # one phase (no gradual unfreezing): the floor
    ("standard", 800, 2, GRADUAL, True),  # LR03's 10 would split 3 + 7
    ("standard", 800, 4, [10], False),
    ("thorough", 800, 2, [7, 13], False),  # presets may scale above the floor
    ("quick", 2000, 2, [1, 2], False),    # beyond the measured sizes LR03 stands
    ("quick", 800, 5, [], False),         # head only: nothing to lengthen
])
def test_lr05_the_deepest_fine_tuning_phase_gets_the_floor(preset, n_train, start, phases,
                                                          fires):
    assert 6 <= FLOOR <= 10  # the cases below assume a floor above quick's 5 and below 10
    final, fired, got = _schedule(preset, n_train, start)
    assert got == phases and ("LR05" in fired) == fires
    if fires:
        assert f"at least {FLOOR}" in fired["LR05"].text


@pytest.mark.parametrize("floor", [6, 7, 8, 9, 10, 12, 15])
def test_lr05s_total_gives_the_deepest_phase_its_floor_after_the_gradual_split(floor):
    from autotransfer.advisor.assemble import build_phases
    from autotransfer.advisor.rules import RuleBase

    lr05 = RULES.get("LR05").model_copy(update={"params": {**RULES.get("LR05").params,
                                                           "min_epochs": floor}})
    rules = RuleBase(rules=[RULES.get("UF01"), RULES.get("LR03"), lr05])
    for start in (0, 2, 3, 4):
        final, _ = rules.evaluate(facts(n_train=800), {**load_preset("quick").decisions,
                                                       "backbone": "x", "input_size": 224,
                                                       "finetune_from": start})
        epochs = [p.epochs for p in build_phases(final)[1:]]
        assert epochs[-1] >= floor and sum(epochs) == final["finetune_epochs"]
        assert epochs[-1] <= floor + 1  # no more than the floor needs (LR03 gives 5 here)


def test_lr05_keeps_bud01s_cap_at_lr03s_full_length_with_the_floor():
    budget_rules = ("UF01", "LR03", "LR05", "COST01", "BUD01")
    # a budget that holds everything: quick and standard get the same full-scale length (the
    # floor's, above LR03's 10), not the quick preset's floor divided by its scale
    for preset in ("quick", "standard"):
        final, fired, _ = _schedule(preset, 800, 2, budget=1e6, rules=budget_rules)
        assert final["finetune_epochs"] == sum(GRADUAL) and "BUD01" in fired
    final, _, _ = _schedule("quick", 800, 4, budget=1e6, rules=budget_rules)
    assert final["finetune_epochs"] == 10  # one phase: LR03's full 10 is above the floor


def test_lr06_a_budget_that_cannot_hold_the_floor_still_caps_it_and_says_so():
    rules = ("UF01", "LR03", "LR05", "COST01", "BUD01", "BUD02", "BUD04", "LR06")
    # from group 2 on 1000 images at 2 ms: 4.4 s an epoch, 68 s of fixed costs and head
    final, fired, phases = _schedule("quick", 1000, 2, budget=68 + 4.4 * 5 + 0.1, rules=rules)
    assert final["finetune_epochs"] == 5 and sum(phases) == 5  # the budget's, not the floor's
    assert "LR06" in fired and "5 fine-tuning epoch(s)" in fired["LR06"].text
    assert "budget caps" in fired["LR06"].text
    full = sum(GRADUAL)
    final, fired, _ = _schedule("quick", 1000, 2, budget=68 + 4.4 * full / 0.8 + 1, rules=rules)
    assert final["finetune_epochs"] >= full and "LR06" not in fired
    final, fired, _ = _schedule("quick", 1000, 2, rules=rules)  # no budget: the floor
    assert final["finetune_epochs"] == full and "LR06" not in fired


def test_lr06_reads_lr05s_floor():
    assert RULES.get("LR06").params == RULES.get("LR05").params


# BUD01 on 1000 images at 224 px probed at 224 px, 2 ms per image: a forward pass over the
# training set takes 2 s; from group 3 (2 of 5 groups train) an epoch takes 2 × (1 + 2 × 0.4) =
# 3.6 s; the head phase's 4 views cost 8 s and the fixed costs 60 s.
@pytest.mark.parametrize("budget, expected", [
    (60 + 8 + 3.6 * 5, 5),            # exactly five epochs
    (60 + 8 + 3.6 * 5 - 0.1, 4),      # a little less: four
    (60 + 8 + 3.6 * 100, 10),         # plenty: never longer than the schedule rule's 10
    (60 + 8 + 1.0, 1),                # less than one epoch: one (BUD02 then goes head-only)
])
def test_bud01_fits_the_fine_tuning_epochs_to_the_budget(budget, expected):
    final, fired = run("BUD01", {"finetune_from": 3, "finetune_epochs": 10}, also=("COST01",),
                       n_train=1000, forward_ms=2.0, probe_size=224, budget_s=budget)
    assert fired and final["finetune_epochs"] == expected
    assert final["epoch_estimate_s"] == pytest.approx(3.6)
    assert fired[0].evidence["budget_s"] == pytest.approx(budget)
    assert fired[0].evidence["forward_ms"] == 2.0
    assert fired[0].evidence["finetune_epochs"] == 10  # the value it read, before shortening
    assert "3.6" not in fired[0].text and "about 4 s" in fired[0].text


def test_bud01_budget_replaces_the_presets_epoch_scale_up_to_full_length():
    final, fired = run("BUD01", {"finetune_from": 3, "finetune_epochs": 3, "epoch_scale": 0.5},
                       also=("COST01",), n_train=1000, forward_ms=2.0, probe_size=224,
                       budget_s=1e6)
    assert fired and final["finetune_epochs"] == 6
    final, _ = run("BUD01", {"finetune_from": 3, "finetune_epochs": 20, "epoch_scale": 2.0},
                   also=("COST01",), n_train=1000, forward_ms=2.0, probe_size=224, budget_s=1e6)
    assert final["finetune_epochs"] == 20  # a longer preset keeps its length


def test_bud01_scales_the_estimate_with_the_pixels():
    final, _ = run("BUD01", {"finetune_from": 3, "finetune_epochs": 10, "input_size": 448},
                   also=("COST01",), n_train=1000, forward_ms=2.0, probe_size=224, budget_s=1e6)
    assert final["epoch_estimate_s"] == pytest.approx(4 * 3.6)


# COST01 with a training step timed from group 3 at 224 px: 1000 images without a validation
# split train on 800 at 5 ms and validate on 200 at 1 ms: 4.0 + 0.2 s + 1 s of overhead
def test_cost01_estimates_the_epoch_from_the_timed_training_step():
    timed = dict(n_train=1000, forward_ms=2.0, probe_size=224, step_ms=5.0, step_eval_ms=1.0,
                 step_from=3, step_size=224)
    final, fired = run("COST01", {"finetune_from": 3}, **timed)
    assert fired and final["epoch_estimate_s"] == pytest.approx(5.2)
    assert fired[0].evidence["step_ms"] == 5.0 and fired[0].evidence["step_from"] == 3
    # one group deeper: the forward-pass model (3.6 s from group 3, 4.4 s from group 2),
    # scaled by how far it was off where the step was timed (5.2 / 3.6)
    final, _ = run("COST01", {"finetune_from": 2}, **timed)
    assert final["epoch_estimate_s"] == pytest.approx(4.4 * 5.2 / 3.6)
    # the budget then buys epochs of the measured length
    final, _ = run("BUD01", {"finetune_from": 3, "finetune_epochs": 10}, also=("COST01",),
                   budget_s=60 + 8 + 5.2 * 3 + 0.01, **timed)
    assert final["finetune_epochs"] == 3


def test_cost01_does_not_estimate_head_only_recipes():
    final, fired = run("COST01", {"finetune_from": 5}, n_train=1000, forward_ms=2.0)
    assert not fired and final["epoch_estimate_s"] == 0


# BUD04 after BUD01: epochs of 3.6 s (1000 images, 2 ms, from group 3), 68 s of fixed costs and
# head; the preset's 5 epochs at scale 0.5 become BUD01's 10 (LR03's full length) when they fit
@pytest.mark.parametrize("budget, expected", [
    (68 + 3.6 * 8 + 0.01, 8),          # BUD01 binds: nothing spare, BUD04 does not fire
    (68 + 3.6 * 10 / 0.8, 10),         # exactly the full length in 0.8 of the budget
    (68 + 3.6 * 15 / 0.8 + 0.1, 15),   # room for 15 epochs in 0.8 of the budget: 15
    (68 + 3.6 * 100, 20),              # plenty: at most twice the fitted length
])
def test_bud04_spends_a_spare_budget_on_longer_fine_tuning(budget, expected):
    final, fired = run("BUD04", {"finetune_from": 3, "finetune_epochs": 5, "epoch_scale": 0.5},
                       also=("COST01", "BUD01"), n_train=1000, forward_ms=2.0, probe_size=224,
                       budget_s=budget)
    assert final["finetune_epochs"] == expected
    assert bool(fired) == (expected > 10)
    if fired:
        assert fired[0].evidence["epoch_estimate_s"] == pytest.approx(3.6)
        assert fired[0].thresholds["max_growth"] == 2.0 and fired[0].thresholds["fill"] == 0.8
        assert f"{expected} fine-tuning epoch(s)" in fired[0].text


def test_bud04_leaves_head_only_recipes_and_runs_without_a_budget_alone():
    for decisions, overrides in (({"finetune_from": 5}, {"budget_s": 1e6}),
                                 ({"finetune_from": 3}, {"budget_s": NAN})):
        final, fired = run("BUD04", {**decisions, "finetune_epochs": 5}, also=("COST01", "BUD01"),
                           n_train=1000, forward_ms=2.0, **overrides)
        assert not fired and final["finetune_epochs"] == 5


@pytest.mark.parametrize("overrides, decisions", [
    ({"budget_s": NAN, "forward_ms": 2.0}, {"finetune_from": 3}),  # no budget
    ({"budget_s": 100.0, "forward_ms": NAN}, {"finetune_from": 3}),  # not timed (old cache)
    ({"budget_s": 100.0, "forward_ms": 2.0}, {"finetune_from": 5}),  # head only already
])
def test_bud01_needs_a_budget_a_timing_and_fine_tuning(overrides, decisions):
    final, fired = run("BUD01", {**decisions, "finetune_epochs": 10}, also=("COST01",),
                       n_train=1000, **overrides)
    assert not fired and final["finetune_epochs"] == 10


@pytest.mark.parametrize("budget, head_only", [(60 + 8 + 3.5, True), (60 + 8 + 3.7, False)])
def test_bud02_trains_only_the_head_when_no_epoch_fits(budget, head_only):
    start = {"finetune_from": 3, "finetune_epochs": 10}
    facts_ = dict(n_train=1000, forward_ms=2.0, probe_size=224, budget_s=budget)
    final, _ = RULES.evaluate(facts(**facts_), {**load_preset("standard").decisions, "backbone": "x",
                                                "input_size": 224, **start},
                              only={"COST01", "BUD01", "BUD02"})
    assert (final["finetune_from"] == 5) == head_only


@pytest.mark.parametrize("epochs, warmup", [(3, 0.0), (4, 0.1)])
def test_lr04_warmup_only_for_long_enough_phases(epochs, warmup):
    final, _ = run("LR04", {"finetune_epochs": epochs, "warmup_fraction": 0.0})
    assert final["warmup_fraction"] == warmup


@pytest.mark.parametrize("per_class, strength", [(49, 0.8), (50, 0.6), (200, 0.4), (1000, 0.25)])
def test_aug01_strength_from_size(per_class, strength):
    assert run("AUG01", per_class=per_class)[0]["aug_strength"] == strength


@pytest.mark.parametrize("rotation, rot", [(0.25, True), (0.329, True), (0.33, False), (0.9, False), (NAN, False)])
def test_aug02_rotations_only_when_orientation_is_arbitrary(rotation, rot):
    final, _ = run("AUG02", rotation_acc=rotation)
    assert final["rot90"] is rot and final["vflip"] is rot


@pytest.mark.parametrize("flip, hflip", [(0.5, True), (0.599, True), (0.6, False), (NAN, True)])
def test_aug03_no_mirroring_when_handedness_matters(flip, hflip):
    final, _ = run("AUG03", {"vflip": True}, flip_acc=flip)
    assert final["hflip"] is hflip and final["vflip"] is hflip


@pytest.mark.parametrize("gray, jitter", [(0.95, False), (0.9, False), (0.89, True), (NAN, True)])
def test_aug04_no_colour_jitter_on_grayscale(gray, jitter):
    assert run("AUG04", grayscale=gray)[0]["color_jitter"] is jitter


@pytest.mark.parametrize("n_train, alpha", [(19999, 0.0), (20000, 0.1)])
def test_aug05_mixup_only_for_large_data(n_train, alpha):
    assert run("AUG05", n_train=n_train)[0]["mixup_alpha"] == alpha


@pytest.mark.parametrize("shift, folded, adabn", [(0.6, False, True), (0.5, False, False), (2.0, True, False), (NAN, False, False)])
def test_da01_adabn_when_the_shift_is_large(shift, folded, adabn):
    assert run("DA01", bn_shift=shift, bn_folded=folded)[0]["adabn"] is adabn


@pytest.mark.parametrize("shift, gain, rule, adabn", [
    (0.6, 0.02, "DA02", True), (0.6, 0.0, "DA03", False), (0.6, -0.06, "DA03", False),
    (0.4, 0.05, None, False)])
def test_a_measured_adabn_gain_decides_over_the_shift(shift, gain, rule, adabn):
    facts = dict(bn_shift=shift, bn_folded=False, adabn_known=True, linear_acc=0.9,
                 adabn_linear_acc=0.9 + gain, adabn_gain=gain)
    fired = {r: bool(run(r, **facts)[1]) for r in ("DA01", "DA02", "DA03")}
    assert [r for r, f in fired.items() if f] == ([rule] if rule else [])
    if rule:
        decisions, firings = run(rule, **facts)
        assert decisions["adabn"] is adabn
        assert f"{0.9 + gain:.1%}" in firings[0].text


@pytest.mark.parametrize("per_class, shift, folded, policy", [
    (1000, 0.6, False, "trainable"), (999, 0.6, False, "frozen"), (1000, 0.4, False, "frozen"),
    (1000, 0.6, True, "frozen")])
def test_bn01_policy(per_class, shift, folded, policy):
    assert run("BN01", per_class=per_class, bn_shift=shift, bn_folded=folded)[0]["bn_policy"] == policy


@pytest.mark.parametrize("ratio, weighting", [(1.49, "none"), (1.5, "balanced"), (2.9, "balanced")])
def test_imb01_class_weighting(ratio, weighting):
    assert run("IMB01", imbalance=ratio)[0]["class_weighting"] == weighting


@pytest.mark.parametrize("per_class, classes, dropout, smoothing", [(49, 2, 0.3, 0.05), (50, 3, 0.2, 0.1)])
def test_reg01_regularisation(per_class, classes, dropout, smoothing):
    final, _ = run("REG01", per_class=per_class, n_classes=classes)
    assert (final["dropout"], final["label_smoothing"]) == (dropout, smoothing)


@pytest.mark.parametrize("n_train, batch", [(40, 8), (245, 16), (256, 32), (2000, 32)])
def test_bs01_batch_size(n_train, batch):
    assert run("BS01", n_train=n_train)[0]["batch_size"] == batch


@pytest.mark.parametrize("side, fast, size", [(64, False, 224), (112, False, None), (111, False, 224),
                                               (113, False, None), (64, True, None)])
def test_res01_upscale_small_images(side, fast, size):
    final, fired = run("RES01", {"fast_resolution": fast, "input_size": 0}, median_side=side)
    assert (final["input_size"] if fired else None) == size


@pytest.mark.parametrize("side, size", [(64, 128), (32, 96), (100, 224), (224, None)])
def test_res02_fast_resolution(side, size):
    final, fired = run("RES02", {"fast_resolution": True}, median_side=side)
    assert (final["input_size"] if fired else None) == size


@pytest.mark.parametrize("rule, fact, value", [("DQ01", "leaks", 2), ("DQ02", "conflicts", 1), ("DQ03", "broken", 3)])
def test_data_quality_rules_warn_with_the_count(rule, fact, value):
    _, fired = run(rule, **{fact: value})
    assert fired and fired[0].kind == "warn" and str(value) in fired[0].text
    assert not run(rule, **{fact: 0})[1]


def _timed(speedup: float, acc: float, logme: float) -> dict:
    return dict(precision_known=True, float32_ms=20.0, bfloat16_ms=20.0 / speedup,
                bf16_speedup=speedup, bf16_acc_delta=acc, bf16_logme_delta=logme)


@pytest.mark.parametrize("speedup, acc, logme, rule, precision", [
    (3.3, 0.0, 0.004, "PREC01", "bfloat16"),
    (1.2, -0.01, -0.02, "PREC01", "bfloat16"),  # at the thresholds
    (1.19, 0.0, 0.0, "PREC02", "float32"),  # faster, but within the margin
    (0.79, NAN, NAN, "PREC02", "float32"),  # slower: its features were not even extracted
    (3.3, -0.03, 0.0, "PREC02", "float32"),  # faster, but the linear probe loses accuracy
    (3.3, 0.0, -0.05, "PREC02", "float32"),  # faster, but LogME drops
])
def test_prec_bfloat16_only_where_measured_faster_with_agreeing_features(speedup, acc, logme,
                                                                          rule, precision):
    fired = {r: run(r, **_timed(speedup, acc, logme)) for r in ("PREC01", "PREC02")}
    assert [r for r, (_, f) in fired.items() if f] == [rule]
    decisions, firings = fired[rule]
    assert decisions["precision"] == precision
    assert firings[0].evidence["bf16_speedup"] == round(speedup, 6)
    assert firings[0].evidence["float32_ms"] == 20.0
    assert firings[0].thresholds["min_speedup"] == RULES.get(rule).params["min_speedup"]
    assert f"{speedup:.2f}×" in firings[0].text


def test_prec_rules_do_not_fire_without_a_measurement():
    for rule in ("PREC01", "PREC02"):
        decisions, firings = run(rule)
        assert not firings and decisions["precision"] == "auto"  # the preset's: device default


def test_cost01_counts_the_fixed_cost_timed_with_the_step():
    timed = dict(n_train=1000, forward_ms=2.0, probe_size=224, step_ms=5.0, step_eval_ms=1.0,
                 step_from=3, step_size=224, step_overhead_s=2.5)
    final, fired = run("COST01", {"finetune_from": 3}, **timed)
    assert final["epoch_estimate_s"] == pytest.approx(4.2 + 2.5)
    assert fired[0].evidence["step_overhead_s"] == 2.5
    assert "2.5 s besides" in fired[0].text
