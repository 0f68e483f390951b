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
    assert bench.cells.cell_roles(2) == {
        "centre": "d2-x1-advised", "no_aug": "d2-x1-none", "rate_up": "d2-x3-advised",
        "rate_down": "d2-x0.333-advised", "shallower": "d3-x1-advised",
        "deeper": "d1-x1-advised"}
    assert bench.cells.cell_roles(4)["shallower"] == "linear_probe"


def test_regret_per_decision_is_the_best_on_each_axis_minus_the_advised_point(bench):
    cells = [cell("advised", 0.80, depth=None), cell("linear_probe", 0.70, tunes=False),
             cell("d2-x1-advised", 0.78, depth=2, rate=1.0, aug="advised"),
             cell("d2-x1-none", 0.79, depth=2, rate=1.0, aug="none"),
             cell("d2-x3-advised", 0.90, depth=2, rate=3.0, aug="advised"),
             cell("d3-x1-advised", 0.75, depth=3, rate=1.0, aug="advised")]
    r = bench.regret.regrets(cells)["d"]
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
    r = bench.regret.regrets(cells)["d"]
    assert r["depth"]["advised"] == "linear_probe" and r["depth"]["regret"] == pytest.approx(3.0)
    assert "finetune_gain" not in r  # the advice does not fine-tune: no gain to forecast
    assert r["best_finetuned"]["gain"] == pytest.approx(3.0)
    assert r["finetune"]["cells"] == ["linear_probe", "d4-x1-advised"]
    assert r["finetune"]["regret"] == pytest.approx(3.0)


def test_significance_is_a_two_proportion_test_on_the_test_images(bench):
    assert not bench.regret.significant(0.90, 0.84, 63)  # a 6-point gap on 63 images is noise
    assert bench.regret.significant(0.90, 0.84, 1000)
    assert not bench.regret.significant(0.5, 0.5, 10)


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
    out = bench.refits.fz04_lodo(cases, params)
    assert out["current"] == (0.92, 0.5)
    assert all(v["loss"] == 0 for v in out["held_out"].values())
    assert out["held_out"]["a"]["chosen"] == (0.92, 0.5)
    assert bench.refits.fz04_fires(cases[2]["facts"], 0.92, 0.5, params)
    assert not bench.refits.fz04_fires(case("e", 0.99, 0, 0, entropy=0.6)["facts"], 0.92, 0.5, params)


def test_the_noise_ceiling_is_high_for_far_apart_backbones_and_low_for_close_ones(bench):
    def rows(accs, n):
        return [{"dataset": f"s{n}", "backbone": str(i), "n_test": n,
                 "truth": {"test_accuracy": a}} for i, a in enumerate(accs)]

    apart = bench.ranking.noise_ceiling(rows([0.5, 0.6, 0.7, 0.8, 0.9], 1000), draws=50)
    close = bench.ranking.noise_ceiling(rows([0.85, 0.86, 0.87, 0.88, 0.89], 60), draws=50)
    assert apart["s1000"] > 0.95 and close["s60"] < 0.7


def test_the_kept_advice_survives_json_with_its_unknown_facts(bench):
    from autotransfer.advisor import advise
    from tests.advisor.synthetic import probe, profile, report

    advice = advise.decide(profile({"a": 60, "b": 60}),
                           report(probe("mobilenet_v2", 0.5, linear=0.8)))
    assert any(isinstance(v, float) and math.isnan(v) for v in advice.facts.values())
    again = advise.Advice.model_validate(json.loads(json.dumps(advice.model_dump(mode="json"))))
    assert again.recipe == advice.recipe and again.firings == advice.firings
    assert bench.cells.advised_finetune(again) == bench.cells.advised_finetune(advice)


def test_a_score_that_ties_every_backbone_ranks_nothing(bench):
    rows = [{"dataset": "s", "backbone": str(i), "truth": {"test_accuracy": a},
             "probe": {"logme": a, "sfda": 1.0}} for i, a in enumerate([0.7, 0.8, 0.9])]
    tau = bench.ranking.ranking_tau(rows)["s"]
    assert tau["sfda"] == 0.0 and tau["logme"] == pytest.approx(1.0)


def grid_phase(dataset: str, cell_id: str, *, run: int, stopped: bool, n_train: int = 640,
               batch: int = 32, best: int | None = None, patience: int = 10) -> dict:
    """A grid cell whose fine-tuning phase ran ``run`` epochs (of 20)."""
    return {"dataset": dataset, "cell": cell_id, "depth": 2, "rate": 1.0, "aug": "advised",
            "n_train": n_train, "recipe": {"early_stopping": {"patience": patience},
                                           "data": {"batch_size": batch}},
            "phases": [{"trainable_from": 5, "epochs_run": 30, "stopped_early": True},
                       {"trainable_from": 2, "epochs_run": run, "stopped_early": stopped,
                        "best_epoch": best}]}


def test_the_best_epoch_is_exact_when_stopped_early_and_a_lower_bound_when_run_out(bench):
    phases = bench.length.converged_phases([
        grid_phase("a", "d2-x1-advised", run=14, stopped=True),         # best 14 − 10 = 4
        grid_phase("a", "d2-x3-advised", run=20, stopped=False),        # best ≥ 10
        grid_phase("a", "d2-x1-none", run=20, stopped=False, best=16),  # recorded: 17th epoch
        {**grid_phase("a", "advised", run=3, stopped=False), "depth": None}])  # not a grid phase
    got = {p["cell"]: (p["best_epoch"], p["exact"], p["best_step"]) for p in phases}
    assert got == {"d2-x1-advised": (4, True, 80), "d2-x3-advised": (10, False, 200),
                   "d2-x1-none": (17, True, 340)}


def test_the_length_unit_is_the_one_that_predicts_a_left_out_dataset(bench):
    # three datasets converge after 6 epochs whatever their steps per epoch (5, 10, 20): a
    # length in epochs predicts each left-out one exactly, one in steps does not
    cells = [grid_phase(d, f"c{i}", run=16, stopped=True, n_train=n, batch=32)
             for d, n in (("a", 160), ("b", 320), ("c", 640)) for i in range(3)]
    fit = bench.length.length_lodo(bench.length.converged_phases(cells))
    assert fit["unit"] == "epochs" and fit["mae"]["epochs"] == 0.0 and fit["mae"]["steps"] > 1
    assert fit["floor_epochs"] == 6 and fit["folds"]["a"]["coverage"] == 1.0
    # the same steps (60) at every size: steps win, and no epoch floor is given
    cells = [grid_phase(d, f"c{i}", run=10 + 60 // s, stopped=True, n_train=32 * s, batch=32)
             for d, s in (("a", 5), ("b", 10), ("c", 20)) for i in range(3)]
    fit = bench.length.length_lodo(bench.length.converged_phases(cells))
    assert fit["unit"] == "steps" and fit["floor_epochs"] is None


def test_a_median_among_lower_bounds_is_itself_a_lower_bound(bench):
    assert bench.length._median_bound([(4, True), (10, False), (10, False)]) == (10, False)
    assert bench.length._median_bound([(4, True), (5, True), (10, False)]) == (5, True)
    assert bench.length._median_bound([(4, True), (8, True), (10, False), (10, False)]) == (9, False)


def test_a_readvised_cell_keeps_the_earlier_one_beside_it(bench, tmp_path, monkeypatch):
    monkeypatch.setattr(bench.store, "WORK", tmp_path / "work")
    monkeypatch.setattr(bench.store, "OUT", tmp_path / "advice")
    monkeypatch.setattr(bench.report, "markdown", lambda data: "")
    old = cell("advised", 0.80, dataset="d")
    bench.store.append("grid", old)
    bench.store.append("grid", cell("linear_probe", 0.85, tunes=False, dataset="d"))
    new = {**cell("advised", 0.90, dataset="d"), "advice_tag": "lr05"}
    bench.store.append("grid", new)
    grid = bench.store.load()["grid"]
    assert [c["cell"] for c in grid] == [bench.store.BEFORE, "linear_probe", "advised"]
    r = bench.regret.regrets(grid)["d"]
    assert r["advised"] == 0.90 and r["rule_base"] == "lr05" and r["cells"] == 2
    assert r["before"]["value"] == 0.80 and r["before"]["regret"] == pytest.approx(10.0)
    with pytest.raises(RuntimeError, match="kept already"):  # a second re-advice loses nothing
        bench.store.append("grid", {**new, "advice_tag": "lr06"})


def test_recipe_changes_name_the_fields_and_phases_that_differ(bench):
    from autotransfer.recipe.schema import Recipe
    from tests.train.helpers import tiny_recipe

    before = tiny_recipe()
    data = before.to_dict()
    longer = json.loads(json.dumps(data))
    longer["phases"][-1]["epochs"] += 5
    longer["reasons"] = {}
    changes = bench.cells.recipe_changes(before, Recipe.model_validate(longer))
    assert set(changes) == {"phases"}
    assert changes["phases"][1][-1][1] == changes["phases"][0][-1][1] + 5
    longer["phases"][-1]["learning_rate"] = 0.5
    longer["seed"] = 7
    changes = bench.cells.recipe_changes(before, Recipe.model_validate(longer))
    assert changes["phases_other"] is True and changes["seed"] == [0, 7]


def depth_axis(dataset: str, accuracies: dict[int, float], **fact_overrides) -> list[dict]:
    """A dataset's advised cell (with its facts) and its depth axis at rate × 1: the linear
    probe (5) and fine-tuning from each other group in ``accuracies``."""
    from tests.advisor.synthetic import facts

    f = {k: v for k, v in facts(**fact_overrides).items() if isinstance(v, (int, float, str))}
    cells = [{**cell("advised", accuracies[2], dataset=dataset, depth=None), "facts": f,
              "preset": "quick"},
             {**cell("linear_probe", accuracies[5], tunes=False, dataset=dataset)}]
    cells += [{**cell(f"d{d}-x1-advised", a, depth=d, rate=1.0, aug="advised", dataset=dataset),
               "centre": "d2-x1-advised"} for d, a in accuracies.items() if d != 5]
    return cells


FAR_80 = dict(per_class=80.0, min_per_class=80, bn_shift=3.0, entropy=0.8, early_shift=9.0,
              linear_acc=0.8, n_train=800, n_classes=10)


def test_fz01_refit_moves_the_depth_only_where_every_held_out_axis_agrees(bench, monkeypatch):
    monkeypatch.setattr(bench.refits, "FZ01_GRID", {  # a small grid keeps the test fast
        "far_shift": (0.5, 4.0), "far_entropy": (0.5,), "small": (50,), "medium": (75, 200),
        "FZ02.early_high": (2.0, 16.0)})
    # group 3 beats the advised group 2 by 10 points on all three far datasets: the refit
    # (FZ02's early shift raised, so that FZ02 no longer moves group 3 to 2) is right held out
    axes = {1: 0.80, 2: 0.80, 3: 0.90, 5: 0.75}
    cells = [c for d in ("a", "b", "c") for c in depth_axis(d, axes, **FAR_80)]
    fit = bench.refits.fz01_lodo(cells)
    for h in fit["held_out"].values():
        assert (h["current_depth"], h["depth"]) == (2, 3)
        assert h["loss"] == pytest.approx(0.0) and h["loss_current"] == pytest.approx(10.0)
        assert h["chosen"]["FZ02.early_high"] > 9.0
    text = "\n".join(bench.refits.fz01_markdown(cells))
    assert "supports the refit" in text
    # where the datasets disagree, no refit wins held out and the thresholds stay
    cells = [c for d, best in (("a", 3), ("b", 2), ("c", 1)) for c in depth_axis(
        d, {g: (0.9 if g == best else 0.8) for g in (1, 2, 3, 5)}, **FAR_80)]
    assert "The thresholds are unchanged" in "\n".join(bench.refits.fz01_markdown(cells))


def test_fz01_refit_needs_three_complete_depth_axes(bench):
    cells = [c for d in ("a", "b") for c in depth_axis(d, {1: 0.8, 2: 0.8, 3: 0.9, 5: 0.7},
                                                       **FAR_80)]
    assert "held_out" not in bench.refits.fz01_lodo(cells)


def test_a_phase_that_never_beats_the_head_has_no_convergence_point(bench):
    flat = grid_phase("a", "d4-x1-none", run=11, stopped=True, best=0)
    flat["phases"][0]["val_accuracy"] = [0.98]
    flat["phases"][1]["val_accuracy"] = [0.98] + [0.94] * 10
    rising = grid_phase("a", "d4-x1-advised", run=16, stopped=True, best=5)
    rising["phases"][0]["val_accuracy"] = [0.90]
    rising["phases"][1]["val_accuracy"] = [0.90, 0.91, 0.92, 0.93, 0.94, 0.95] + [0.94] * 10
    phases = bench.length.converged_phases([flat, rising])
    assert [p["improved"] for p in phases] == [False, True]
    assert bench.length.length_lodo(phases)["per_dataset"]["a"]["best_epochs"] == [(6, True)]


def test_a_readvised_cell_runs_with_the_floor_of_its_fold(bench):
    from autotransfer.advisor.rules import load_rules

    rules = load_rules()
    folded = bench.length.with_floor(rules, 5)
    assert folded.get("LR05").params["min_epochs"] == folded.get("LR06").params["min_epochs"] == 5
    assert [r.id for r in folded.rules] == [r.id for r in rules.rules]
    assert folded.get("LR03") == rules.get("LR03") and bench.length.with_floor(rules, None) is rules
    cell_ = {"recipe": {"reasons": {"phases.2.epochs": {"rule": "LR05",
                                                        "thresholds": {"min_epochs": 5}}}}}
    assert bench.length.floor_used(cell_) == 5 and bench.length.floor_used({"recipe": {"reasons": {}}}) is None


def _case(d: str, x: float, a: float, b: float, n: int = 400) -> dict:
    return {"dataset": d, "facts": {k: x for k in ("linear_acc", "per_class")}, "n_test": n,
            "acc": {"keep": a, "alt": b}, "current": "keep"}


def test_a_one_fact_refit_learns_a_threshold_only_from_the_other_datasets(bench):
    # "alt" wins where the fact is high, on every dataset: each fold learns it without its own
    cases = [_case("a", 0.1, 0.90, 0.80), _case("b", 0.2, 0.85, 0.80),
             _case("c", 0.8, 0.80, 0.90), _case("d", 0.9, 0.70, 0.85)]
    held = bench.refits.one_fact_lodo(cases, "alt")
    assert all(h["loss"] == 0.0 for h in held.values())
    assert held["d"]["rule"].startswith("alt when") and held["d"]["choice"] == "alt"
    assert held["d"]["loss_current"] == pytest.approx(15.0) and held["d"]["significant"]
    # a lone dataset where "alt" wins cannot be learned from the others: its fold keeps the rules
    lone = [_case("a", 0.1, 0.90, 0.80), _case("b", 0.2, 0.85, 0.80),
            _case("c", 0.8, 0.80, 0.80), _case("d", 0.9, 0.70, 0.85)]
    held = bench.refits.one_fact_lodo(lone, "alt")
    assert held["d"]["rule"] == "the current rules" and held["d"]["loss"] == pytest.approx(15.0)
    const = bench.refits.one_fact_lodo(cases, "alt", keys=())
    assert {h["rule"] for h in const.values()} <= {"the current rules", "always alt",
                                                   "always keep"}


def test_the_augmentation_and_rate_decisions_read_the_centres_neighbours(bench):
    cells = [cell("advised", 0.80), cell("linear_probe", 0.70, tunes=False),
             cell("d2-x1-advised", 0.78, depth=2, rate=1.0, aug="advised"),
             cell("d2-x1-none", 0.81, depth=2, rate=1.0, aug="none"),
             cell("d2-x3-advised", 0.76, depth=2, rate=3.0, aug="advised")]
    cells[0]["facts"] = {"linear_acc": 0.9, "per_class": 50, "bn_shift": 1.0, "entropy": 0.6}
    aug = bench.refits.decision_cases(cells, "aug")
    assert aug[0]["acc"] == {"advised": 0.78, "none": 0.81} and aug[0]["current"] == "advised"
    rate = bench.refits.decision_cases(cells, "rate")
    assert rate[0]["acc"] == {"× 1": 0.78, "× 3": 0.76}
    ft = bench.refits.decision_cases(cells, "finetune")
    assert ft[0]["acc"] == {"head only": 0.70, "fine-tune": 0.80}
    assert ft[0]["current"] == "fine-tune"


def test_the_advised_forecasts_ceiling_counts_test_noise_alone(bench):
    sure = {"advised_cells": {"a": [10000, 0.9], "b": [10000, 0.5]}}
    assert bench.forecast.advised_ceiling(sure) == pytest.approx(2.0)
    noisy = {"advised_cells": {"a": [20, 0.5]}}
    assert bench.forecast.advised_ceiling(noisy) < 0.3  # one image is 5 points


def forecast_study(datasets: str = "abcde", shift: dict[str, float] | None = None
                   ) -> dict[str, list[dict]]:
    """Ranking and grid cells of a small synthetic study (``shift``: points added to a
    dataset's advised cell)."""
    ranking, grid = [], []
    for i, d in enumerate(datasets):
        for j, bb in enumerate(("m1", "m2", "m3")):
            cv = 0.6 + 0.06 * i + 0.03 * j
            ranking.append({"dataset": d, "backbone": bb, "n_train": 500, "n_sample": 250,
                            "n_classes": 2 + i, "probe": {"logme": float(j),
                                                          "linear_probe_accuracy": cv,
                                                          "knn_accuracy": cv - 0.05},
                            "truth": {"test_accuracy": min(0.99, cv + 0.02 - 0.01 * (i % 2))}})
        lp = min(0.99, 0.6 + 0.06 * i + 0.06)  # the chosen (m3) probe on the grid's split
        up = (shift or {}).get(d, 0.0) / 100
        for name, acc, tunes in (("linear_probe", lp - 0.02, False),
                                 ("advised", lp + 0.03 - 0.005 * i + up, True)):
            grid.append({**cell(name, acc, tunes=tunes, n=300, dataset=d), "backbone": "m3",
                         "n_train": 400})
    return {"ranking": ranking, "grid": grid, "forecast": {}}


@pytest.fixture
def study_files(bench, tmp_path, monkeypatch):
    monkeypatch.setattr(bench.store, "WORK", tmp_path / "work")
    monkeypatch.setattr(bench.store, "OUT", tmp_path / "advice")
    monkeypatch.setattr(bench.store, "REPO", tmp_path)
    monkeypatch.setattr(bench.report, "markdown", lambda data: "")
    monkeypatch.setattr(bench.store, "rule_params", lambda rule: {"tie_margin": 0.02})
    (tmp_path / "recipes").mkdir()
    return tmp_path


def test_the_forecast_compares_advised_models_and_keeps_the_least_lodo_error(bench, study_files):
    import yaml

    from autotransfer.advisor.forecast import ForecastModel

    tmp_path = study_files
    bench.store.save(forecast_study())
    bench.forecast.run_forecast(None)
    f = bench.store.load()["forecast"]
    assert len(f["advised_models"]) == 6  # 2 bases × (mean, logit_cv, headroom through 0)
    model = ForecastModel.model_validate(yaml.safe_load(
        (tmp_path / "recipes" / "forecast.yaml").read_text()))
    kept = f"{model.advised_base}+{','.join(model.gain.weights) or 'mean'}"
    score = {k: v["mean_abs"] + (bench.forecast.GAIN_SLOPE_MARGIN if "mean" not in k.split("+")[1]
                                  else 0.0) for k, v in f["advised_models"].items()}
    fixed = f["adopted"] == "fixed"
    assert fixed == bench.forecast.fixed_beats_nested(f["fixed"], f["nested"])
    pick = "fit+mean" if fixed else min(score, key=score.get)
    assert pick.split(" (")[0] == kept
    assert f["advised_lodo_errors"] == f["advised_models"][pick]["errors"]
    assert set(f["advised_cells"]) == set("abcde")
    # the stated interval is the largest nested error, not the kept model's own
    nested = ([abs(v) for v in f["fixed"]["advised"].values()] if fixed
              else [abs(v["error"]) for v in f["nested"]["advised"].values()])
    assert set(f["nested"]["advised"]) == set("abcde") == set(f["fixed"]["advised"])
    assert model.advised_half_width == pytest.approx(max(nested), abs=0.01)


def test_the_fixed_forecast_chooses_nothing_and_replaces_the_choice_only_when_it_beats_it(bench):
    inp = bench.forecast.forecast_inputs(forecast_study("abcdef"))
    fx = bench.forecast.fixed_forecast(inp)
    flat = bench.forecast.advised_lodo(inp, bench.forecast.FIXED_FEATURES).errors["fit+mean"]
    assert fx["advised"] == flat and fx["model"] == "fit+mean"  # no choice: nested as it stands
    moved = bench.forecast.fixed_forecast(bench.forecast.forecast_inputs(
        forecast_study("abcdef", {"a": -6.0})))
    assert moved["advised"]["a"] == pytest.approx(fx["advised"]["a"] + 6.0, abs=0.02)

    def nested(errors: dict) -> dict:
        return {"advised": {d: {"error": e} for d, e in errors.items()}}

    beats = bench.forecast.fixed_beats_nested
    assert beats({"advised": {"a": 1.0, "b": -2.0}}, nested({"a": 4.0, "b": -2.0}))
    assert not beats({"advised": {"a": 1.0, "b": -5.0}}, nested({"a": 4.0, "b": -2.0}))  # worst
    assert not beats({"advised": {"a": 2.9, "b": 2.9}}, nested({"a": 2.0, "b": 3.1}))  # mean
    assert not beats({"advised": {"a": 1.0}}, nested({"a": 4.0, "b": 1.0}))  # other datasets


def test_the_nested_choice_for_a_dataset_never_reads_that_dataset(bench):
    base = bench.forecast.nested_forecast(bench.forecast.forecast_inputs(forecast_study("abcdef")))
    for held in "af":  # its advised cell 6 points lower: its own forecast error 6 points higher
        moved = bench.forecast.nested_forecast(bench.forecast.forecast_inputs(forecast_study("abcdef",
                                                                           {held: -6.0})))
        assert moved["advised"][held]["model"] == base["advised"][held]["model"]
        assert moved["advised"][held]["features"] == base["advised"][held]["features"]
        assert moved["advised"][held]["error"] == pytest.approx(
            base["advised"][held]["error"] + 6.0, abs=0.02)
        # while the other datasets' errors, fitted with it, move
        assert any(moved["advised"][d]["error"] != base["advised"][d]["error"]
                   for d in "abcdef" if d != held)


def test_a_rate_variant_multiplies_only_the_fine_tuning_rates_of_the_advised_recipe(bench):
    from autotransfer.recipe.schema import BackboneChoice, Phase, Recipe

    advised = Recipe(backbone=BackboneChoice(name="mobilenet_v2", input_size=224), phases=[
        Phase(name="head", epochs=40, trainable_from=5, learning_rate=1e-3),
        Phase(name="gradual", epochs=5, trainable_from=4, learning_rate=2e-4),
        Phase(name="finetune", epochs=9, trainable_from=2, learning_rate=2e-4)])
    cell_id, coords, recipe = bench.cells.rate_variant(advised, 3.0, "lr05")
    assert cell_id == "advised-x3" and coords == {"advised_rate": 3.0, "advice_of": "lr05"}
    assert [p.learning_rate for p in recipe.phases] == pytest.approx([1e-3, 6e-4, 6e-4])
    assert [p.epochs for p in recipe.phases] == [40, 5, 9]  # the advised schedule, unchanged
    assert recipe.augmentation == advised.augmentation


def test_the_rate_variant_is_set_beside_the_advised_cell(bench):
    adv = cell("advised", 0.80, n=100)
    var = {**cell("advised-x3", 0.85, n=100), "advised_rate": 3.0, "seconds": 120.0,
           "lane": "lane 0: pinned", "machine": {"load": "1.00 1.00 1.00"}}
    var["phases"] = [{"trainable_from": 5, "epochs_run": 40, "stopped_early": True},
                     {"trainable_from": 2, "epochs_run": 9, "stopped_early": False}]
    lines = bench.refits.rate_variant_markdown([adv, var])
    row = next(line for line in lines if line.startswith("| d |"))
    assert "| 0.8000 | × 3 | 0.8500 | +5.0 |" in row and "40s, 9" in row and "(lane 0)" in row
    assert any("Higher on 1, lower on 0 of 1 datasets; +5 right over 100" in line
               for line in lines)
    assert bench.refits.rate_variant_markdown([adv]) == []
    r = bench.regret.regrets([adv, var, cell("linear_probe", 0.7, tunes=False, n=100)])["d"]
    assert r["best_cell"] == "advised-x3"  # a measured recipe that could have been chosen


def test_the_rate_evidence_is_paired_where_both_cells_kept_their_images(bench):
    a = {**cell("advised", 0.8, n=10), "test_correct": "1111111100"}
    v = {**cell("advised-x3", 0.9, n=10), "advised_rate": 3.0, "test_correct": "1111111011"}
    assert bench.regret.paired_counts(a["test_correct"], v["test_correct"]) == (2, 1)
    text = bench.refits.rate_evidence([a, v])[0]
    assert "Paired (exact McNemar, pooled): +2 −1, p = 1" in text
    assert "sign test over datasets p = 1.00 (1 higher, 0 lower)" in text
    del a["test_correct"]  # an older cell: the paired test's range instead
    text = bench.refits.rate_evidence([a, v])[0]
    assert "1 of these cell pairs did not keep" in text and "(+1 −0)" in text
    with pytest.raises(ValueError, match="different images"):
        bench.regret.paired_counts("101", "10")


def test_a_cells_images_are_read_from_its_predictions_in_path_order(bench, tmp_path):
    from autotransfer.train.analysis import CSV_COLUMNS

    rows = [("test", "b.png", "x", "x", "0.9", "True", "0.9"),
            ("val", "v.png", "x", "y", "0.6", "False", "0.4"),
            ("test", "a.png", "x", "y", "0.7", "False", "0.3")]
    (tmp_path / "predictions.csv").write_text(
        ",".join(CSV_COLUMNS) + "\n" + "".join(",".join(r) + "\n" for r in rows))
    assert bench.grid.test_correct(tmp_path) == "01"  # a.png wrong, b.png right; val left out
    assert bench.grid.test_correct(tmp_path / "none") is None


def test_the_cross_validated_truth_scores_each_image_once_and_can_leave_the_sample_out(bench):
    import numpy as np

    rng = np.random.default_rng(0)

    def blobs(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % 2
        return rng.normal(size=(n, 3)) + 4.0 * y[:, None], y

    sx, sy = blobs(20)
    rx, ry = blobs(30)
    every = bench.truth.cv_truth(sx, sy, rx, ry, 2)
    outside = bench.truth.cv_truth(sx, sy, rx, ry, 2, outside_sample_only=True)
    assert every["n_scored"] == 50 and outside["n_scored"] == 30
    assert every["accuracy"] == 1.0 and outside["accuracy"] == 1.0  # far-apart blobs
    noise_x = rng.normal(size=(30, 3))  # labels the features do not carry: chance, not 1
    assert bench.truth.cv_truth(sx, sy, noise_x, ry, 2, outside_sample_only=True)["accuracy"] < 0.9


def test_the_ranking_can_be_judged_against_a_cross_validated_truth(bench):
    cells = []
    for j, (held, cv) in enumerate(((0.80, 0.70), (0.75, 0.80), (0.70, 0.90))):
        cells.append({"dataset": "d", "backbone": f"m{j}", "n_test": 50,
                      "probe": {"logme": float(j)}, "truth": {"test_accuracy": held},
                      "truth_cv": {**{v: {"accuracy": cv, "n_scored": 200}
                                      for v in bench.truth.TRUTH_VARIANTS},
                                   "seconds": 1.0, "machine": {"load": "1.00 1.00 1.00"}}})
    assert bench.ranking.ranking_tau(cells)["d"]["logme"] < 0  # held out: LogME ranks backwards
    assert bench.ranking.ranking_tau(cells, "all_images")["d"]["logme"] == pytest.approx(1.0)
    lines = bench.ranking.truth_markdown(cells)
    assert any(line.startswith("| logme | -") and "| +1.00 (1) |" in line for line in lines)
    assert bench.ranking.truth_markdown([{k: v for k, v in c.items() if k != "truth_cv"}
                                 for c in cells]) == []


def test_the_paired_reruns_pool_their_discordant_images(bench):
    def rerun(rate: float, correct: str, dataset: str = "d") -> dict:
        return {**cell(f"paired-x{rate:g}", correct.count("1") / len(correct), n=len(correct),
                       dataset=dataset), "advised_rate": rate, "paired": True,
                "test_correct": correct, "seconds": 10.0, "machine": {"load": "1.00 1.00 1.00"}}

    paired = [rerun(1.0, "1100"), rerun(3.0, "1011"), rerun(1.0, "10", "e"), rerun(3.0, "11", "e")]
    lines = bench.paired.paired_markdown(paired, [cell("advised", 0.5, n=4)])
    assert any(line.startswith("| d | 4 | 0.5000 (0.5000) | 0.7500 | +25.0 | +2 −1 |")
               for line in lines)
    assert any("+3 −1, exact McNemar p = 0.625; the two rates disagree on 4 images (66.7%)" in line
               and "higher on 2, lower on 0, p = 0.5" in line for line in lines)
    assert any("| d | +1 | × 3 | 0.0 | 25.0 |" in line for line in lines)  # chosen on e alone
    assert any("**Decision: keep (within noise)**" in line for line in lines)
    assert bench.paired.paired_markdown([rerun(3.0, "11")], []) == []  # no × 1 to pair with


def _reruns(bench, rows: list[tuple[str, str, str]]) -> list[dict]:
    """× 1 and × 3 paired cells from (dataset, × 1's images, × 3's images)."""
    out = []
    for d, one, three in rows:
        for rate, correct in ((1.0, one), (3.0, three)):
            out.append({**cell(f"paired-x{rate:g}", correct.count("1") / len(correct),
                               n=len(correct), dataset=d),
                        "advised_rate": rate, "test_correct": correct})
    return out


def test_the_rate_is_chosen_leave_one_dataset_out_and_judged_on_the_one_left_out(bench):
    ev = bench.paired.paired_evidence(_reruns(bench, [
        ("a", "0" * 10, "1" * 10), ("b", "1" * 10, "0" * 2 + "1" * 8), ("c", "1100", "1100")]))
    folds = {f.held_out: f for f in ev.folds}
    assert (ev.up, ev.down, ev.wins, ev.losses) == (10, 2, 1, 1)
    assert folds["a"].chosen == 1.0 and folds["a"].net_on_others == -2  # b alone: × 1 better
    assert folds["a"].regret == pytest.approx(100.0) and folds["a"].regret_current == 100.0
    assert folds["b"].chosen == 3.0 and folds["b"].regret == pytest.approx(20.0)
    assert folds["c"].chosen == 3.0 and folds["c"].regret == 0.0  # a tie costs nothing
    decision, why = bench.paired.decide(ev)
    assert decision == "keep (within noise)" and "held-out regret 120.0 against 100.0" in why


def test_the_rate_changes_only_on_a_pooled_paired_test_and_no_significant_harm(bench):
    gain = [(d, "0" * 6 + "1" * 14, "1" * 20) for d in "abc"]  # +6 −0 on each of three
    ev = bench.paired.paired_evidence(_reruns(bench, gain))
    assert ev.p < 0.05 and bench.paired.decide(ev)[0] == "adopt"
    harm = gain + [("h", "1" * 20, "0" * 7 + "1" * 13)]  # −7 on one: p = 0.016 against × 3
    ev = bench.paired.paired_evidence(_reruns(bench, harm))
    decision, why = bench.paired.decide(ev)
    assert decision == "keep (within noise)" and "significantly worse on h" in why
    worse = [(d, three, one) for d, one, three in gain]
    assert bench.paired.decide(bench.paired.paired_evidence(_reruns(bench, worse)))[0] == (
        "keep (supported)")


def test_a_rerun_away_from_its_recorded_cell_names_the_restored_epoch(bench):
    head = {"val_accuracy": [0.5, 0.8, 0.7, 0.8], "val_loss": [0.9, 0.5, 0.6, 0.4]}
    assert bench.paired.restored_epoch(head) == {"earliest": 1, "lowest_loss": 3}
    runs = _reruns(bench, [("d", "10", "11")])
    for c, best in zip(runs, (3, 3)):
        c["phases"] = [{**head, "best_epoch": best}, {"val_accuracy": [0.9], "val_loss": [0.3]}]
    recorded = {**cell("advised", 0.5, n=2), "phases": [{**head, "best_epoch": 1}]}
    same = {**cell("advised-x3", 1.0, n=2), "phases": [dict(p) for p in runs[1]["phases"]]}
    notes = bench.paired.reproduction_notes(bench.paired.paired_evidence(runs).rows,
                                            [recorded, same], 3.0)
    assert notes[0].startswith("d × 1: phase 1's validation curve is identical")
    assert "restored epoch 1 in the recorded cell (the earliest tied epoch" in notes[0]
    assert "and 3 in the rerun (ES01's tie-break" in notes[0]
    assert notes[1] == "d × 3: every phase as recorded"


def test_the_advised_cells_follow_lr01s_rates_in_force(bench):
    assert bench.paired.rate_in_force({"ratio": 0.3, "ratio_far": 0.6}) == pytest.approx(3.0)
    assert bench.paired.rate_in_force({"ratio": 0.1, "ratio_far": 0.2}) == pytest.approx(1.0)
    assert bench.paired.rate_in_force({"ratio": 0.3, "ratio_far": 0.2}) is None  # moved apart
    grid = [cell("advised", 0.80), {**cell("advised-x3", 0.85), "advised_rate": 3.0},
            cell("linear_probe", 0.70, tunes=False), cell("advised", 0.9, dataset="e"),
            cell("linear_probe", 0.95, tunes=False, dataset="e")]
    assert bench.paired.rate_view(grid, 1.0) is grid
    view = {(c["dataset"], c["cell"]): c for c in bench.paired.rate_view(grid, 3.0)}
    assert view[("d", "advised")]["test_accuracy"] == 0.85
    assert view[("d", "advised-x1")]["test_accuracy"] == 0.80  # a cell that could be chosen
    assert view[("e", "advised")]["test_accuracy"] == 0.9  # no variant: unchanged
    r = bench.regret.regrets(list(view.values()))
    assert r["d"]["regret"] == pytest.approx(0.0) and r["e"]["regret"] == pytest.approx(5.0)
