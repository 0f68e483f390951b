"""The epoch-time model that sizes schedules to a time budget."""

from __future__ import annotations

import math

import pytest

from autotransfer.advisor.cost import epoch_seconds, forward_seconds


def test_forward_time_scales_with_images_and_pixels():
    assert forward_seconds(1000, 2.0, 224, 224) == pytest.approx(2.0)
    assert forward_seconds(2000, 2.0, 224, 224) == pytest.approx(4.0)
    assert forward_seconds(1000, 2.0, 112, 224) == pytest.approx(0.5)


def test_epoch_time_grows_with_the_trainable_share():
    times = [epoch_seconds(1000, 2.0, 224, 224, start) for start in (5, 4, 3, 1, 0)]
    assert times[0] == pytest.approx(2.0)  # head only: one forward pass
    assert times == sorted(times)
    assert times[-1] == pytest.approx(6.0)  # everything trains: forward + 2 × backward


@pytest.mark.parametrize("forward_ms, probe_size", [(math.nan, 224), (0.0, 224), (2.0, 0)])
def test_unknown_timing_gives_nan(forward_ms, probe_size):
    assert math.isnan(epoch_seconds(1000, forward_ms, 224, probe_size, 3))


# --- the timed training step (rule COST01) -------------------------------------------------

from autotransfer.advisor.cost import (  # noqa: E402
    EPOCH_OVERHEAD_S, calibration, compare, epoch_estimate, fit_and_eval, measured_epoch,
    step_epoch_seconds)


def test_without_a_validation_split_the_recipe_holds_out_a_fifth():
    assert fit_and_eval(1000, 0) == (800.0, 200.0)
    assert fit_and_eval(245, 153) == (245.0, 153.0)


def test_step_epoch_is_training_steps_plus_the_validation_pass_plus_overhead():
    # 800 images at 5 ms, 200 at 1 ms: 4.2 s
    assert step_epoch_seconds(800, 200, 5.0, 1.0, 224, 224) == pytest.approx(4.2 + EPOCH_OVERHEAD_S)
    # twice the side, four times the pixels
    assert step_epoch_seconds(800, 200, 5.0, 1.0, 112, 224) == pytest.approx(
        4 * 4.2 + EPOCH_OVERHEAD_S)
    assert math.isnan(step_epoch_seconds(800, 200, math.nan, 1.0, 224, 224))


def test_the_timed_step_decides_at_its_own_depth():
    timed = epoch_estimate(1000, 0, 2.0, 224, 224, 3, 5.0, 1.0, 3, 224)
    assert timed == pytest.approx(5.2)
    # not timed: the forward-pass model alone (3.6 s from group 3)
    assert epoch_estimate(1000, 0, 2.0, 224, 224, 3, math.nan, math.nan, math.nan,
                          math.nan) == pytest.approx(3.6)


def test_other_depths_scale_the_forward_model_by_its_error_at_the_timed_depth():
    ratio = 5.2 / 3.6  # timed / modelled, from group 3
    for depth in (0, 1, 2, 4):
        assert epoch_estimate(1000, 0, 2.0, 224, 224, depth, 5.0, 1.0, 3, 224) == pytest.approx(
            epoch_seconds(1000, 2.0, 224, 224, depth) * ratio)


def test_a_slower_machine_gives_a_proportionally_longer_estimate():
    idle = epoch_estimate(1000, 0, 2.0, 224, 224, 3, 5.0, 1.0, 3, 224)
    loaded = epoch_estimate(1000, 0, 2.0, 224, 224, 3, 10.0, 2.0, 3, 224)
    assert loaded - EPOCH_OVERHEAD_S == pytest.approx(2 * (idle - EPOCH_OVERHEAD_S))


def _phase(trainable_from, seconds):
    return {"trainable_from": trainable_from, "epoch_seconds": seconds}


def test_measured_epoch_is_the_deepest_phases_steady_state():
    phases = [_phase(5, [0.5]), _phase(4, [9.0, 3.0, 3.2]), _phase(1, [20.0, 10.0, 12.0, 11.0])]
    assert measured_epoch(phases) == (11.0, 1)  # its first (tracing) epoch left out
    assert measured_epoch([_phase(2, [7.0])]) == (7.0, 2)
    assert measured_epoch([_phase(5, [0.5])]) is None  # nothing fine-tuned


def test_compare_recomputes_the_estimate_for_the_run_and_reports_the_ratio():
    evidence = {"forward_ms": 2.0, "input_size": 224, "probe_size": 224, "step_ms": 5.0,
                "step_eval_ms": 1.0, "step_from": 3, "step_size": 224, "n_train": 1000}
    got = compare(evidence, [_phase(3, [9.0, 5.0, 5.4])], n_train=800, n_val=200)
    assert got["estimate_s"] == pytest.approx(5.2) and got["measured_s"] == pytest.approx(5.2)
    assert got["ratio"] == pytest.approx(1.0) and got["source"] == "training step"
    # the run trained deeper than the step was timed at: the calibrated forward model
    got = compare(evidence, [_phase(2, [9.0, 8.0])], n_train=800, n_val=200)
    assert got["source"].startswith("forward pass calibrated")
    assert got["estimate_s"] == pytest.approx(4.4 * 5.2 / 3.6, abs=0.01)
    # a larger input than advised (a tuned recipe)
    got = compare(evidence, [_phase(3, [9.0, 8.0])], n_train=800, n_val=200, input_size=448)
    assert got["estimate_s"] == pytest.approx(4 * 4.2 + EPOCH_OVERHEAD_S)
    assert compare(None, [_phase(3, [5.0])], 800, 200) is None
    assert compare(evidence, [_phase(5, [0.4])], 800, 200) is None


def test_calibration_is_the_median_ratio_of_measured_to_estimated():
    assert calibration([(10.0, 12.0), (20.0, 22.0), (5.0, 30.0)]) == pytest.approx(1.2)
    assert calibration([]) == 1.0 and calibration([(0.0, 3.0)]) == 1.0


def test_a_runs_metrics_get_the_estimate_its_recipe_carries():
    from autotransfer.advisor.cost import ESTIMATE_KEY, run_epoch_time
    from autotransfer.recipe.schema import Reason, Recipe

    evidence = {"forward_ms": 2.0, "input_size": 224, "probe_size": 224, "step_ms": 5.0,
                "step_eval_ms": 1.0, "step_from": 3, "step_size": 224}
    recipe = Recipe.model_validate({
        "backbone": {"name": "mobilenet_v2", "input_size": 224},
        "phases": [{"name": "ft", "epochs": 3, "trainable_from": 3, "learning_rate": 1e-4}]})
    metrics = {"n_train": 800, "n_val": 200, "phases": [_phase(3, [9.0, 5.0, 5.4])]}
    assert run_epoch_time(recipe, metrics) is None  # a recipe without an estimate
    carried = recipe.model_copy(update={"reasons": {ESTIMATE_KEY: Reason(
        rule="COST01", text="…", evidence=evidence)}})
    got = run_epoch_time(carried, metrics)
    assert got["estimate_s"] == pytest.approx(5.2) and got["ratio"] == pytest.approx(1.0)


def test_a_steady_epoch_is_estimated_and_old_tracing_evidence_is_ignored():
    """The trainer traces once per phase (its first epoch, which neither side counts): an
    estimate carried by a recipe written when the probe timed a retrace (``step_trace_s``) is
    the same steady epoch."""
    evidence = {"forward_ms": 2.0, "input_size": 224, "probe_size": 224, "step_ms": 5.0,
                "step_eval_ms": 1.0, "step_from": 3, "step_size": 224}
    old = {**evidence, "step_trace_s": 12.0}
    phases = [_phase(3, [30.0, 5.2, 5.2])]
    got = compare(old, phases, n_train=800, n_val=200)
    assert got == compare(evidence, phases, n_train=800, n_val=200)
    assert got["estimate_s"] == pytest.approx(5.2) and got["ratio"] == pytest.approx(1.0)


# --- the epoch's fixed cost, measured with the step (issue 17) -------------------------------

def test_the_measured_fixed_cost_replaces_the_default_overhead():
    # 800 training images at 5 ms, 200 validated at 1 ms: 4.2 s, and 0.3 s measured besides
    assert step_epoch_seconds(800, 200, 5.0, 1.0, 224, 224, 0.3) == pytest.approx(4.5)
    # the fixed cost does not scale with the pixels; the steps do
    assert step_epoch_seconds(800, 200, 5.0, 1.0, 112, 224, 0.3) == pytest.approx(4 * 4.2 + 0.3)
    # not measured (NaN: a step timed before it was) keeps the default overhead
    assert step_epoch_seconds(800, 200, 5.0, 1.0, 224, 224, math.nan) == pytest.approx(
        4.2 + EPOCH_OVERHEAD_S)
    assert step_epoch_seconds(800, 200, 5.0, 1.0, 224, 224, 0.0) == pytest.approx(4.2)


def test_cost01_and_compare_carry_the_fixed_cost():
    assert epoch_estimate(1000, 0, 2.0, 224, 224, 3, 5.0, 1.0, 3, 224, 2.5) == pytest.approx(
        4.2 + 2.5)
    evidence = {"forward_ms": 2.0, "input_size": 224, "probe_size": 224, "step_ms": 5.0,
                "step_eval_ms": 1.0, "step_from": 3, "step_size": 224, "step_overhead_s": 2.5}
    got = compare(evidence, [_phase(3, [20.0, 6.7, 6.7])], n_train=800, n_val=200)
    assert got["estimate_s"] == pytest.approx(6.7) and got["ratio"] == pytest.approx(1.0)
    # a recipe advised before the fixed cost was measured: the old estimate, 1 s besides
    old = {k: v for k, v in evidence.items() if k != "step_overhead_s"}
    assert compare(old, [_phase(3, [20.0, 6.7])], 800, 200)["estimate_s"] == pytest.approx(5.2)
    # a saved NaN is read as None (JSON): also the default
    none = {**evidence, "step_overhead_s": None}
    assert compare(none, [_phase(3, [20.0, 6.7])], 800, 200)["estimate_s"] == pytest.approx(5.2)
