"""The study's arithmetic: regret per decision, noise, FZ04's leave-one-dataset-out refit, the cell
roles, the noise ceiling of the ranking, and the advice kept between chunks."""

from __future__ import annotations

import json
import math

import pytest

from tests.tools.load import load_tool


@pytest.fixture(scope="module")
def bench():
    return load_tool("bench_advice")


def cell(name: str, acc: float, *, depth: int | None = None, rate: float | None = None,
         aug: str | None = None, tunes: bool = True, n: int = 400, dataset: str = "d") -> dict:
    phases = [{"trainable_from": 5}] + ([{"trainable_from": depth if depth is not None else 2}]
                                        if tunes else [])
    c = {"dataset": dataset, "cell": name, "test_accuracy": acc, "test_balanced_accuracy": acc,
         "n_test": n, "phases": phases}
    if depth is not None:
        c |= {"depth": depth, "rate": rate, "aug": aug}
    return c


def test_cell_roles_name_the_one_factor_neighbours(bench):
    assert bench.cell_roles(2) == {
        "centre": "d2-x1-advised", "no_aug": "d2-x1-none", "rate_up": "d2-x3-advised",
        "rate_down": "d2-x0.333-advised", "shallower": "d3-x1-advised",
        "deeper": "d1-x1-advised"}
    assert bench.cell_roles(4)["shallower"] == "linear_probe"


def test_regret_per_decision_is_the_best_on_each_axis_minus_the_advised_point(bench):
    cells = [cell("advised", 0.80, depth=None), cell("linear_probe", 0.70, tunes=False),
             cell("d2-x1-advised", 0.78, depth=2, rate=1.0, aug="advised"),
             cell("d2-x1-none", 0.79, depth=2, rate=1.0, aug="none"),
             cell("d2-x3-advised", 0.90, depth=2, rate=3.0, aug="advised"),
             cell("d3-x1-advised", 0.75, depth=3, rate=1.0, aug="advised")]
    r = bench.regrets(cells)["d"]
    assert r["centre"] == "d2-x1-advised"  # from the advised recipe's deepest phase
    assert r["regret"] == pytest.approx(10.0) and r["best_cell"] == "d2-x3-advised"
    assert r["significant"]  # 0.80 against 0.90 on 400 images
    assert r["rate"]["regret"] == pytest.approx(12.0) and r["rate"]["best"] == "d2-x3-advised"
    assert r["aug"]["regret"] == pytest.approx(1.0) and not r["aug"]["significant"]
    assert r["depth"]["regret"] == pytest.approx(0.0)  # the centre beats d3 and the probe
    assert r["depth"]["cells"] == ["d2-x1-advised", "d3-x1-advised", "linear_probe"]
    assert not r["axes_complete"]["depth"] and not r["axes_complete"]["rate"]
    assert r["finetune_gain"] == pytest.approx(10.0)
    # fine-tune at all: the advice (which fine-tunes) against the linear probe only
    assert r["finetune"]["best"] == "advised" and r["finetune"]["regret"] == 0.0


def test_a_head_only_advice_is_judged_as_the_linear_probe_on_the_depth_axis(bench):
    cells = [cell("advised", 0.90, tunes=False), cell("linear_probe", 0.90, tunes=False),
             cell("d4-x1-advised", 0.93, depth=4, rate=1.0, aug="advised")]
    cells[2]["centre"] = "d4-x1-advised"
    r = bench.regrets(cells)["d"]
    assert r["depth"]["advised"] == "linear_probe" and r["depth"]["regret"] == pytest.approx(3.0)
    assert "finetune_gain" not in r  # the advice does not fine-tune: no gain to forecast
    assert r["best_finetuned"]["gain"] == pytest.approx(3.0)
    assert r["finetune"]["cells"] == ["linear_probe", "d4-x1-advised"]
    assert r["finetune"]["regret"] == pytest.approx(3.0)


def test_significance_is_a_two_proportion_test_on_the_test_images(bench):
    assert not bench.significant(0.90, 0.84, 63)  # a 6-point gap on 63 images is noise
    assert bench.significant(0.90, 0.84, 1000)
    assert not bench.significant(0.5, 0.5, 10)


def test_fz04_refit_leaves_each_dataset_out_and_keeps_the_current_thresholds_on_ties(bench):
    params = {"separable": 0.92, "medium": 200, "far_shift": 0.5, "far_entropy": 0.5}

    def case(name, linear_acc, lp, ft, entropy=0.3):
        return {"dataset": name, "facts": {"linear_acc": linear_acc, "per_class": 50,
                                           "bn_shift": 0.1, "entropy": entropy},
                "linear_probe": lp, "fine_tuned": ft, "n_test": 200}

    # fine-tuning wins below 0.90 on the sample and loses above: any threshold in (0.88, 0.95]
    # is right on the others; ties go to the current 0.92
    cases = [case("a", 0.85, 0.80, 0.85), case("b", 0.88, 0.85, 0.88),
             case("c", 0.95, 0.95, 0.93), case("d", 0.97, 0.96, 0.95)]
    out = bench.fz04_lodo(cases, params)
    assert out["current"] == (0.92, 0.5)
    assert all(v["loss"] == 0 for v in out["held_out"].values())
    assert out["held_out"]["a"]["chosen"] == (0.92, 0.5)
    assert bench.fz04_fires(cases[2]["facts"], 0.92, 0.5, params)
    assert not bench.fz04_fires(case("e", 0.99, 0, 0, entropy=0.6)["facts"], 0.92, 0.5, params)


def test_the_noise_ceiling_is_high_for_far_apart_backbones_and_low_for_close_ones(bench):
    def rows(accs, n):
        return [{"dataset": f"s{n}", "backbone": str(i), "n_test": n,
                 "truth": {"test_accuracy": a}} for i, a in enumerate(accs)]

    apart = bench.noise_ceiling(rows([0.5, 0.6, 0.7, 0.8, 0.9], 1000), draws=50)
    close = bench.noise_ceiling(rows([0.85, 0.86, 0.87, 0.88, 0.89], 60), draws=50)
    assert apart["s1000"] > 0.95 and close["s60"] < 0.7


def test_the_kept_advice_survives_json_with_its_unknown_facts(bench):
    from autotransfer.advisor import advise
    from tests.advisor.synthetic import probe, profile, report

    advice = advise.decide(profile({"a": 60, "b": 60}),
                           report(probe("mobilenet_v2", 0.5, linear=0.8)))
    assert any(isinstance(v, float) and math.isnan(v) for v in advice.facts.values())
    again = advise.Advice.model_validate(json.loads(json.dumps(advice.model_dump(mode="json"))))
    assert again.recipe == advice.recipe and again.firings == advice.firings
    assert bench.advised_finetune(again) == bench.advised_finetune(advice)


def test_a_score_that_ties_every_backbone_ranks_nothing(bench):
    rows = [{"dataset": "s", "backbone": str(i), "truth": {"test_accuracy": a},
             "probe": {"logme": a, "sfda": 1.0}} for i, a in enumerate([0.7, 0.8, 0.9])]
    tau = bench.ranking_tau(rows)["s"]
    assert tau["sfda"] == 0.0 and tau["logme"] == pytest.approx(1.0)
