"""decide(): pure, deterministic, explained, constrained — on synthetic measurements."""

from __future__ import annotations

import subprocess
import sys

import pytest

from autotransfer.advisor.advise import decide
from autotransfer.advisor.rules import load_rules
from autotransfer.errors import InvalidParameterError
from autotransfer.recipe.io import dump_recipe, load_recipe, save_recipe
from tests.advisor.synthetic import probe, profile, report

NEAR = report(probe("mobilenet_v2", 0.5, shift=0.1, entropy=0.3),
              probe("efficientnet_lite0", 0.3, shift=0.1, entropy=0.3))
FAR = report(probe("mobilenet_v2", 0.5, shift=3.0, entropy=0.7),
             probe("efficientnet_lite0", 0.3, shift=3.0, entropy=0.7), rotation=0.26)


def test_near_small_data_stays_mostly_frozen_and_far_data_unfreezes_deeper():
    small = profile({"a": 120, "b": 120})
    near = decide(small, NEAR).recipe
    far = decide(small, FAR).recipe
    assert [p.trainable_from for p in near.phases] == [5, 4]
    assert far.phases[-1].trainable_from < near.phases[-1].trainable_from
    assert near.domain_adaptation.method == "none" and far.domain_adaptation.method == "adabn"
    assert far.augmentation.vertical_flip and far.augmentation.rotate90
    assert not near.augmentation.vertical_flip


def test_fine_tuning_rates_are_lower_and_discriminative():
    recipe = decide(profile({"a": 600, "b": 600}), FAR).recipe
    head, *finetune = recipe.phases
    assert len(finetune) == 2 and finetune[0].trainable_from == 4  # gradual: last group first
    for phase in finetune:
        assert phase.learning_rate < head.learning_rate
        active = phase.group_lr_multipliers[phase.trainable_from:]
        assert active == sorted(active) and active[-1] == 1.0  # deeper groups learn faster
        assert all(m == 0.0 for m in phase.group_lr_multipliers[: phase.trainable_from])


def test_every_decided_field_has_a_reason_with_rule_and_evidence():
    advice = decide(profile({"a": 600, "b": 200}), FAR)
    reasons = advice.recipe.reasons
    for path in ("backbone.name", "backbone.input_size", "phases.2.trainable_from",
                 "phases.1.learning_rate", "augmentation.rotate90", "domain_adaptation.method",
                 "data.class_weighting", "bn_policy", "data.batch_size"):
        assert path in reasons, path
    assert reasons["phases.2.trainable_from"].rule == "FZ02"  # FZ01 said 2; FZ02 went deeper
    assert reasons["phases.2.trainable_from"].evidence["early_shift"] == 3.0
    assert reasons["phases.2.trainable_from"].thresholds == {"early_high": 2.0}
    assert reasons["data.class_weighting"].rule == "IMB01"
    assert reasons["backbone.name"].evidence["logme[mobilenet_v2]"] == 0.5
    assert "mobilenet_v2 has the highest LogME" in reasons["backbone.name"].text


def test_deterministic_and_the_recipe_file_round_trips(tmp_path):
    first = decide(profile({"a": 300, "b": 300}), FAR)
    again = decide(profile({"a": 300, "b": 300}), FAR)
    assert dump_recipe(first.recipe) == dump_recipe(again.recipe)
    assert load_recipe(save_recipe(first.recipe, tmp_path / "r.yaml")) == first.recipe


def test_constraints_exclude_backbones_with_the_reason():
    advice = decide(profile({"a": 300, "b": 300}), FAR, max_params_m=3.0)
    assert advice.recipe.backbone.name == "mobilenet_v2"
    excluded = {c.backbone: c.excluded_because for c in advice.candidates if not c.allowed}
    assert excluded == {"efficientnet_lite0": "3.4M parameters > the limit of 3M"}
    assert "excluded: efficientnet_lite0" in advice.recipe.reasons["backbone.name"].text
    with pytest.raises(InvalidParameterError, match="No probed backbone satisfies"):
        decide(profile({"a": 300, "b": 300}), FAR, max_params_m=0.5)
    allowed = decide(profile({"a": 300, "b": 300}), FAR, allow=["efficientnet_lite0"])
    assert allowed.recipe.backbone.name == "efficientnet_lite0"


def test_a_tie_on_logme_goes_to_the_better_linear_probe_and_a_near_tie_to_logme():
    tie = report(probe("mobilenet_v2", 0.50, linear=0.80), probe("efficientnet_lite0", 0.50, linear=0.90))
    assert decide(profile({"a": 300, "b": 300}), tie).recipe.backbone.name == "efficientnet_lite0"
    # tie_margin 0: chosen leave one dataset out by issue 18's study (docs/benchmarks/advice.md)
    near = report(probe("mobilenet_v2", 0.50, linear=0.80), probe("efficientnet_lite0", 0.49, linear=0.90))
    assert decide(profile({"a": 300, "b": 300}), near).recipe.backbone.name == "mobilenet_v2"


def test_presets_change_the_budget():
    data = profile({"a": 1500, "b": 1500}, side=64)
    quick, standard, thorough = (decide(data, FAR, preset=p).recipe for p in ("quick", "standard", "thorough"))
    assert quick.total_epochs < standard.total_epochs < thorough.total_epochs
    assert quick.backbone.input_size == 128 and standard.backbone.input_size == 224
    # below 2000 images LR05's floor keeps the quick preset's fine-tuning at the length the
    # study found it needs, where the preset's scale would have cut it to 2 + 3 epochs
    data = profile({"a": 300, "b": 300}, side=64)
    quick, standard, thorough = (decide(data, FAR, preset=p).recipe for p in ("quick", "standard", "thorough"))
    assert quick.total_epochs <= standard.total_epochs < thorough.total_epochs
    floor = load_rules().get("LR05").params["min_epochs"]
    assert len(quick.phases) == 3 and quick.phases[2].epochs == floor  # head, last group, deeper
    assert quick.reasons["phases.2.epochs"].rule == "LR05"


def test_folded_bn_backbone_gets_no_adabn_and_frozen_bn():
    folded = report(probe("mobilenet_v3_small", 0.5, shift=None, entropy=0.7))
    recipe = decide(profile({"a": 2000, "b": 2000}), folded).recipe
    assert recipe.domain_adaptation.method == "none" and recipe.bn_policy == "frozen"


def test_deciding_imports_no_tensorflow():
    code = ("import sys; from tests.advisor.test_decide import FAR; from tests.advisor.synthetic import profile;"
            "from autotransfer.advisor.advise import decide; decide(profile({'a': 50, 'b': 50}), FAR);"
            "sys.exit(1 if 'tensorflow' in sys.modules or 'keras' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def _with_precision(rep, speedup: float, acc_delta: float):
    from autotransfer.probes.precision import PrecisionCheck

    best = rep.probes[0]
    t = best.transferability
    check = PrecisionCheck(measured=True, reason="timed", float32_ms=20.0,
                           bfloat16_ms=20.0 / speedup, timed_images=96,
                           linear_probe_accuracy=t.linear_probe_accuracy,
                           bfloat16_linear_probe_accuracy=t.linear_probe_accuracy + acc_delta,
                           logme=t.logme, bfloat16_logme=t.logme, n_samples=100)
    return rep.model_copy(update={"probes": [best.model_copy(update={"precision": check}),
                                             *rep.probes[1:]]})


def test_precision_is_decided_from_the_timing_and_the_feature_check():
    small = profile({"a": 120, "b": 120})
    fast = decide(small, _with_precision(NEAR, 3.3, 0.0)).recipe
    assert fast.precision == "bfloat16"
    assert fast.reasons["precision"].rule == "PREC01"
    assert fast.reasons["precision"].evidence["bfloat16_ms"] == pytest.approx(20.0 / 3.3, 1e-4)
    disagree = decide(small, _with_precision(NEAR, 3.3, -0.05)).recipe
    assert disagree.precision == "float32" and disagree.reasons["precision"].rule == "PREC02"
    assert decide(small, NEAR).recipe.precision == "auto"  # not measured: the device's default


def test_the_users_precision_overrides_the_measured_decision():
    small = profile({"a": 120, "b": 120})
    advice = decide(small, _with_precision(NEAR, 3.3, 0.0), precision="float32")
    assert advice.recipe.precision == "float32"
    assert advice.recipe.reasons["precision"].rule == "user"
    assert not [f for f in advice.firings if f.rule.startswith("PREC")]
    with pytest.raises(InvalidParameterError, match="precision"):
        decide(small, NEAR, precision="float16")


def test_the_epoch_estimate_is_carried_by_the_recipe_and_sizes_the_budget():
    from autotransfer.advisor.cost import ESTIMATE_KEY
    from autotransfer.probes.step_time import StepTiming

    data = profile({"a": 300, "b": 300}, side=64)
    base = FAR.probes[0].model_copy(update={"forward_ms": 2.0})
    untimed = report(base)
    assert decide(data, untimed).recipe.reasons[ESTIMATE_KEY].rule == "COST01"
    tuned = decide(data, untimed).recipe
    depth = min(p.trainable_from for p in tuned.phases)
    step = StepTiming(trainable_from=depth, input_size=tuned.backbone.input_size, batch_size=32,
                      cached=True, step_ms=40.0, eval_ms=10.0, timed_images=64)
    slow = report(base.model_copy(update={"step": step}))
    fast = report(base.model_copy(update={"step": step.model_copy(update={"step_ms": 4.0,
                                                                          "eval_ms": 1.0})}))
    carried = decide(data, slow).recipe.reasons[ESTIMATE_KEY]
    assert carried.evidence["step_ms"] == 40.0 and carried.evidence["step_from"] == depth
    # the same budget buys more fine-tuning epochs on the faster machine
    epochs = [sum(p.epochs for p in decide(data, r, time_budget=150.0).recipe.phases
                  if p.trainable_from < 5) for r in (slow, fast)]
    assert epochs[0] < epochs[1]
