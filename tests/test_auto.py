"""auto(): a folder of images in, a tuned, evaluated model and a report out."""

from __future__ import annotations

import json

import pytest

from autotransfer.cli import EXIT_USER_ERROR, main
from autotransfer.errors import RunDirectoryError
from autotransfer.oneshot import auto, final_recipe, reuse_head_c
from autotransfer.train.phases import CVPoint, PhaseRecord, SolverRecord, phase_records
from autotransfer.recipe.io import load_recipe
from tests.train.helpers import make_colour_dataset, tiny_recipe

COUNTS = {"red": 8, "green": 8, "blue": 8}


@pytest.fixture
def run(tiny_auto_run):
    """The session's tiny run that searches (tests/conftest.py; the report's tests read it too):
    auto with COUNTS and a test split, 2 trials, full_search."""
    return tiny_auto_run


def test_auto_writes_a_complete_run_folder(run):
    result, said = run
    out = result.out
    assert not out.with_name(out.name + ".partial").exists()
    names = {p.name for p in out.iterdir()}
    assert {"report.md", "summary.json", "profile.json", "advice.json", "recipe.yaml",
            "recipe.tuned.yaml", "tuning", "tuning.png", "model"} <= names
    assert (out / "model" / "model.keras").is_file() and (out / "model" / "labels.txt").is_file()
    assert load_recipe(out / "recipe.tuned.yaml") == result.tuning.refined
    assert len(result.tuning.trials) == 2 and result.tuning.trials[0].changed == {}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["final"] == "train+val"  # there is a test split
    assert summary["test_accuracy"] == result.test_accuracy is not None
    assert 0.0 <= result.test_accuracy <= 1.0
    assert result.metrics["n_test"] == 12
    assert any(s.startswith("[3/6]") for s in said) and any(s.startswith("[6/6]") for s in said)


def test_every_decision_of_the_run_names_a_rule_of_the_rule_base(run):
    """summary.json, tuning.json and every recipe the run wrote trace to rules.yaml in one hop."""
    from autotransfer.advisor.rules import load_rules

    result, _ = run
    out = result.out
    ids = {r.id for r in load_rules().rules}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["budget"]["rules"]["reserve_factor"] == "PLAN01"
    assert summary["budget"]["rules"]["final"] == "PLAN04"
    assert {v for v in summary["budget"]["rules"].values() if v} <= ids
    tuning = json.loads((out / "tuning" / "tuning.json").read_text())
    assert tuning["selection"].get("rule", "TUNE01") in ids  # no test when trial 0 was best
    assert {d["range_rule"] for d in tuning["space"]["dimensions"]} <= ids
    for name in ("recipe.yaml", "recipe.tuned.yaml", "model/recipe.yaml"):
        recipe = load_recipe(out / name)
        unknown = {path: r.rule for path, r in recipe.reasons.items()
                   if r.rule not in ids and not r.rule.startswith("preset:") and r.rule != "user"}
        assert not unknown, (name, unknown)
    final = load_recipe(out / "model" / "recipe.yaml")
    assert final.reasons["early_stopping.patience"].rule == "FINAL01"  # train + val


def test_the_report_tells_the_story(run):
    result, _ = run
    text = (result.out / "report.md").read_text()
    for heading in ("## 1. The data", "## 2. What was measured", "## 3. What was decided",
                    "## 4. What tuning changed", "## 5. Final model", "## 6. Time"):
        assert heading in text
    assert "**FZ01**" in text and "**LR01**" in text  # rule by rule
    assert "Test accuracy" in text and "| trial |" in text
    assert "![tuning trials](tuning.png)" in text
    # learning curves for epochs, the cross-validated accuracy against C for an exact head
    pictures = [n for n in ("learning_curves.png", "regularization_path.png")
                if (result.out / "model" / n).is_file()]
    assert pictures and all(f"(model/{n})" in text for n in pictures)
    assert "(model/predictions.csv)" in text


def test_the_advised_recipe_is_sized_to_its_share_of_the_budget(run):
    result, _ = run
    facts = result.advice.facts
    factor = result.budget["reserve_factor"]  # the final training: 1.2 × (train + val) / train
    assert factor > 1.2
    # what is left after probing, shared by trial 0, the final training and some search
    assert 0 < facts["budget_s"] <= 600 / (1 + factor + 0.5)
    assert facts["budget_s"] > (600 - result.budget["advise_seconds"]) / (1 + factor + 0.5) - 1
    assert facts["forward_ms"] > 0  # timed while probing
    advice = json.loads((result.out / "advice.json").read_text())
    assert advice["facts"]["budget_s"] == pytest.approx(facts["budget_s"])


def test_final_training_fixes_the_epochs_at_the_best_trial(run):
    result, _ = run
    final = load_recipe(result.out / "model" / "recipe.yaml")
    best = json.loads((result.out / "tuning" / "search" / f"trial_{result.tuning.best_trial}"
                       / "run" / "metrics.json").read_text())
    assert [p.epochs for p in final.phases] == [
        (p["best_epoch"] + 1 if p["best_epoch"] is not None else p["epochs_run"])
        for p in best["phases"]]
    assert final.early_stopping.restore_best_weights is False


def test_final_recipe_alone():
    recipe = tiny_recipe()
    final = final_recipe(recipe, [PhaseRecord("head", 5, 2, epochs_run=2, best_epoch=0),
                                  PhaseRecord("fine_tune", 2, 2, epochs_run=1)])
    assert [p.epochs for p in final.phases] == [1, 1]
    assert final.early_stopping.patience > max(p.epochs for p in final.phases)


def _trial_phases(last_best: int, *, stopped: bool = False) -> list[PhaseRecord]:
    """Phase records of a trial of tiny_recipe: head 10 s, last phase 3 of 3 epochs at 5 s."""
    return [PhaseRecord("head", 5, 2, epochs_run=2, best_epoch=0, epoch_seconds=(5.0, 5.0)),
            PhaseRecord("fine_tune", 2, 3, epochs_run=3, best_epoch=last_best,
                        epoch_seconds=(5.0, 5.0, 5.0), stopped_early=stopped)]


@pytest.mark.parametrize("seconds_left, growth, extra", [
    (100.0, 1.0, 3),   # (0.85 × 100 − 25) / 5 = 12 epochs would fit: at most doubled, +3
    (40.0, 1.0, 1),    # (34 − 25) / 5 = 1.8: one more
    (40.0, 1.25, 0),   # train + val makes every epoch 25% longer: (34 − 31.25) / 6.25 < 1
    (None, 1.0, 0),    # no budget: fixed at the best epoch
])
def test_final_training_lengthens_a_phase_still_improving_to_fit_the_time_left(
        seconds_left, growth, extra):
    recipe = tiny_recipe()
    recipe = recipe.model_copy(update={"phases": [
        recipe.phases[0].model_copy(update={"epochs": 2}),
        recipe.phases[-1].model_copy(update={"epochs": 3})]})
    final = final_recipe(recipe, _trial_phases(2), seconds_left=seconds_left, growth=growth)
    assert [p.epochs for p in final.phases] == [1, 3 + extra]
    reason = final.reasons.get("phases.1.epochs")
    assert (reason is not None and reason.rule == "FINAL02") == (extra > 0)
    if extra:
        assert reason.evidence["epochs_run"] == 3 and reason.evidence["seconds_left"] == seconds_left
        assert "still improving" in reason.text


@pytest.mark.parametrize("best, stopped", [(1, False), (2, True)])
def test_final_training_is_not_lengthened_when_the_trial_had_peaked(best, stopped):
    recipe = tiny_recipe()
    recipe = recipe.model_copy(update={"phases": [
        recipe.phases[0].model_copy(update={"epochs": 2}),
        recipe.phases[-1].model_copy(update={"epochs": 3})]})
    final = final_recipe(recipe, _trial_phases(best, stopped=stopped), seconds_left=1000.0)
    assert final.phases[-1].epochs == best + 1
    assert not any(r.rule == "FINAL02" for r in final.reasons.values())


def test_an_existing_run_folder_is_refused(run):
    result, _ = run
    with pytest.raises(RunDirectoryError, match="already exists"):
        auto(result.out.parent.parent / "colours", result.out, backbones=["test_tiny"],
             weights=None)
    code = main(["auto", str(result.out.parent.parent / "colours"), "--out", str(result.out)])
    assert code == EXIT_USER_ERROR


def test_a_bad_budget_is_a_clean_error(tmp_path, capsys):
    code = main(["auto", str(tmp_path), "--time-budget", "soon"])
    assert code == EXIT_USER_ERROR
    assert "30m" in capsys.readouterr().err


def _phases(*finetune_epochs: int) -> list[dict]:
    return [{"name": "head", "epochs": 3, "trainable_from": 5, "learning_rate": 0.01},
            *({"name": f"ft{i}", "epochs": e, "trainable_from": 2, "learning_rate": 0.001}
              for i, e in enumerate(finetune_epochs))]


@pytest.mark.parametrize("split, whole, trials, skipped", [
    ((1, 1), (2, 4), 30, True),  # the budget binds: each trial would shorten the final training
    ((), (2,), 30, True),  # BUD02 dropped fine-tuning from the share
    ((2, 4), (2, 4), 30, False),  # the schedule fits a share: search
    ((), (), 30, False),  # head only: trials take seconds
    ((1, 1), (2, 4), 1, False),  # trial 0 only, as asked
])
def test_the_search_is_skipped_only_when_the_budget_binds_the_fine_tuning(split, whole, trials,
                                                                          skipped):
    from autotransfer.oneshot import search_skipped

    reason = search_skipped(tiny_recipe(phases=_phases(*split)), tiny_recipe(phases=_phases(*whole)),
                            trials)
    assert bool(reason) is skipped
    if skipped:
        assert f"fine-tunes for {sum(split)} epoch(s)" in reason and f"against {sum(whole)}" in reason


def test_the_search_runs_when_the_whole_budget_does_not_bind_the_recipe():
    # the share holds fewer epochs than the whole budget, but twice the budget would advise no
    # more than the whole (BUD04's cap bounds it): the search takes nothing the final model uses
    from autotransfer.oneshot import search_skipped

    split, whole = tiny_recipe(phases=_phases(1, 2)), tiny_recipe(phases=_phases(2, 4))
    asked = []

    def doubled(epochs):
        return lambda: asked.append(epochs) or tiny_recipe(phases=_phases(2, epochs))

    assert search_skipped(split, whole, 10, doubled=doubled(4)) is None
    assert search_skipped(split, whole, 10, doubled=doubled(8)) is not None  # the budget binds
    assert asked == [4, 8]
    assert search_skipped(whole, whole, 10, doubled=doubled(4)) is None and asked == [4, 8]


def test_without_a_search_the_advised_recipe_trains_on_train_and_val(tmp_path, monkeypatch):
    # the decision is tested above; here, the path auto takes once it is made (the tiny data is
    # advised a head-only recipe, which never skips the search: the decision is forced)
    import autotransfer.oneshot.plan as plan

    seen = []

    def skipped(split, whole, trials, doubled=None):
        seen.append((split, whole))
        return "sized to a share of the budget, the advised recipe fine-tunes for 1 epoch(s)"

    monkeypatch.setattr(plan, "search_skipped", skipped)
    dataset = tmp_path / "colours"
    make_colour_dataset(dataset, COUNTS, split="train")
    make_colour_dataset(dataset, {k: 4 for k in COUNTS}, split="test", seed=1)
    result = auto(dataset, tmp_path / "run", time_budget="10m", preset="quick",
                  backbones=["test_tiny"], weights=None)
    (split, whole), = seen
    assert result.tuning is None and result.advice.recipe == whole  # sized to the whole budget
    assert result.advice.facts["budget_s"] > 500  # 10 min less probing and the wrap-up
    assert not (result.out / "tuning").exists() and not (result.out / "recipe.tuned.yaml").exists()
    summary = json.loads((result.out / "summary.json").read_text())
    assert summary["tuning"] == {"skipped": result.budget["search_skipped"], "rule": "PLAN02"}
    assert summary["final"] == "train+val" and summary["test_accuracy"] is not None
    assert result.metrics["n_train"] == 24  # train + validation
    text = (result.out / "report.md").read_text()
    assert "No search ran (rule PLAN02): sized to a share of the budget" in text and "tuning: none" in text
    assert "with the advised recipe, for its own epochs" in text


def _solver_phases(c: float, chosen_by: str = "cross-validation") -> list[PhaseRecord]:
    solver = SolverRecord(c=c, chosen_by=chosen_by, folds=5, cv=(CVPoint(c, 0.9, 0.3),),
                          n_images=12, n_views=4, train_accuracy=1.0, train_loss=0.1, seconds=0.1)
    return [PhaseRecord("head", 5, 1, epochs_run=1, best_epoch=0, solver=solver)]


def test_the_final_head_keeps_the_l2_strength_the_trial_cross_validated():
    exact = tiny_recipe(head={"dropout": 0.0, "solver": "lbfgs"}, phases=_phases()[:1])
    final = reuse_head_c(exact, _solver_phases(0.316), "03")
    assert final.head.lbfgs_c == pytest.approx(0.316)
    reason = final.reasons["head.lbfgs_c"]
    assert reason.rule == "FINAL03" and reason.evidence["trial"] == "03"
    assert "C=0.316" in reason.text and "5-fold" in reason.text
    # nothing to keep: a gradient head, a C the recipe fixes, a C the trial did not choose
    assert reuse_head_c(tiny_recipe(), _solver_phases(0.316), "03") == tiny_recipe()
    fixed = tiny_recipe(head={"dropout": 0.0, "solver": "lbfgs", "lbfgs_c": 2.0},
                        phases=_phases()[:1])
    assert reuse_head_c(fixed, _solver_phases(0.316), "03") == fixed
    assert reuse_head_c(exact, _solver_phases(1.0, "given"), "03") == exact
    assert reuse_head_c(exact, [], "03") == exact


def test_a_final_training_on_the_tuning_splits_does_not_cross_validate_again(tmp_path):
    dataset = tmp_path / "colours"
    make_colour_dataset(dataset, COUNTS)  # no test split: the final model trains on train
    result = auto(dataset, tmp_path / "run", time_budget="10m", trials=1, preset="quick",
                  backbones=["test_tiny"], weights=None)
    assert result.final == "train" and result.advice.recipe.head.solver == "lbfgs"
    trial = json.loads((result.out / "tuning" / "search" / f"trial_{result.tuning.best_trial}"
                        / "run" / "metrics.json").read_text())
    trial_fit = next(p["solver"] for p in trial["phases"] if "solver" in p)
    assert trial_fit["chosen_by"] == "cross-validation"
    final = load_recipe(result.out / "model" / "recipe.yaml")
    assert final.head.lbfgs_c == pytest.approx(trial_fit["c"])
    final_fit = next(p["solver"] for p in result.metrics["phases"] if "solver" in p)
    assert final_fit["chosen_by"] == "given" and final_fit["c"] == pytest.approx(trial_fit["c"])
    # the final training computed no frozen feature again: the search's store served them
    assert all(p.features.shared for p in phase_records(result.metrics) if p.features.used)
    assert result.val_accuracy == pytest.approx(result.tuning.best_accuracy)  # the same model
    report = (result.out / "report.md").read_text()
    assert "on the same images, instead of cross-validating again" in report
    # one trial is one bar: said in words, no picture (issue 15)
    assert len(result.tuning.trials) == 1 and not (result.out / "tuning.png").exists()
    assert "One trial ran" in report and "tuning.png" not in report
    # the final head's C was given: neither epochs nor a cross-validation to draw, said so
    assert "nothing was cross-validated, so there is no curve to draw" in report
    assert (result.out / "model" / "predictions.csv").is_file()


def test_auto_stops_a_search_that_cannot_beat_the_advised_recipe(tmp_path):
    dataset = tmp_path / "colours"
    make_colour_dataset(dataset, COUNTS, split="train")
    make_colour_dataset(dataset, {k: 4 for k in COUNTS}, split="test", seed=1)
    result = auto(dataset, tmp_path / "run", time_budget="10m", trials=5, preset="quick",
                  backbones=["test_tiny"], weights=None)
    # 6 validation images: trial 0 misses at most 6, and p = 0.5 ** misses > 0.05 needs <= 4
    correct = json.loads((result.out / "tuning" / "search" / f"trial_{result.tuning.baseline_trial}"
                          / "trial_result.json").read_text())["val_correct"]
    misses = len(correct) - sum(correct)
    if misses <= 4:
        assert len(result.tuning.trials) == 1
        assert result.tuning.stopped_because.startswith("stopped after trial 0")
        assert "no trial could replace the recipe" in (result.out / "report.md").read_text()
    else:
        assert len(result.tuning.trials) > 1


# ---------------------------------------------------------------- the time budget (BUD03)
def test_summary_and_report_say_where_the_budget_went(run):
    result, _ = run
    budget = json.loads((result.out / "summary.json").read_text())["budget"]
    steps = budget["steps"]
    names = [s["step"] for s in steps]
    assert names[:2] == ["profile", "probe and advise"]
    assert names[-3:] == ["tune", "final training, evaluation and export", "plots and report"]
    assert all(s["seconds"] >= 0 for s in steps)
    assert sum(s["seconds"] for s in steps) == pytest.approx(budget["used_seconds"], abs=0.5)
    for s in steps:
        assert s["share"] == pytest.approx(s["seconds"] / 600, abs=1e-3)
    assert budget["exceeded"] == (budget["used_seconds"] > 600)
    # the final training's cost as the best trial measured it, beside what it took (PLAN01)
    estimate = budget["final_estimate"]
    assert estimate["measured_s"] > 0 and estimate["total"] == pytest.approx(sum(
        v for k, v in estimate.items() if k not in ("total", "measured_s")), abs=0.3)
    text = (result.out / "report.md").read_text()
    assert "| step | time | share of the budget |" in text and "| tune |" in text
    assert ("was kept" in text) != budget["exceeded"]


def test_a_budget_below_the_fixed_costs_is_refused_before_probing(tmp_path, capsys):
    from autotransfer.errors import TimeBudgetError

    dataset = make_colour_dataset(tmp_path / "colours", COUNTS)
    with pytest.raises(TimeBudgetError, match=r"BUD03.*at least --time-budget 1m\d0s") as caught:
        auto(dataset, tmp_path / "run", time_budget="10s", backbones=["test_tiny"],
             weights=None, verbose=0)
    assert "before probing" in str(caught.value)
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()
    assert capsys.readouterr().err == ""  # verbose=0: silent
    code = main(["auto", str(dataset), "--out", str(tmp_path / "run"), "--time-budget", "10s",
                 "-b", "test_tiny"])
    assert code == EXIT_USER_ERROR
    assert "cannot be kept" in capsys.readouterr().err


def test_a_budget_below_the_cheapest_training_is_refused_after_probing(tmp_path, monkeypatch):
    import autotransfer.budget as budget_module
    from autotransfer.errors import TimeBudgetError

    # the head alone "needs" 10 minutes: a 3-minute budget passes the first floor, not this one
    monkeypatch.setattr(budget_module, "head_seconds",
                        lambda facts, size, params, **_: 600.0)
    dataset = make_colour_dataset(tmp_path / "colours", COUNTS)
    with pytest.raises(TimeBudgetError, match="profiling and probing took") as caught:
        auto(dataset, tmp_path / "run", time_budget="3m", backbones=["test_tiny"],
             weights=None, verbose=0)
    assert "at least --time-budget 1" in str(caught.value)  # 10 min and more
    assert not (tmp_path / "run.partial").exists() and not (tmp_path / "run").exists()


def test_a_budget_too_short_for_a_search_trains_once_and_shows_progress(tmp_path, capsys):
    # 2 minutes: after probing, a share for trial 0 is below the head's 60 s of fixed costs
    # (BUD03), the whole budget is not: no search, the advised recipe trains once
    dataset = make_colour_dataset(tmp_path / "colours", COUNTS)
    result = auto(dataset, tmp_path / "run", time_budget="2m", preset="quick",
                  backbones=["test_tiny"], weights=None)
    assert result.tuning is None and "BUD03" in result.budget["search_skipped"]
    assert any(f.rule == "BUD03" for f in result.advice.firings) is False  # sized to the whole
    budget = result.budget
    assert budget["exceeded"] == (budget["used_seconds"] > 120)
    err = capsys.readouterr().err  # verbose=1 (the default): the steps on stderr
    assert "[1/6] Profiling" in err and "[6/6] Writing the report" in err
    # the head is fit exactly: its dropout is not a setting of this recipe, and says so
    assert result.advice.recipe.head.solver == "lbfgs"
    text = (result.out / "report.md").read_text()
    assert "not in force: dropout=" in text and "not used: the head is fit exactly" in text


# ----------------------------------------------------------------------------- rule SEL02
def _advise_fine_tuning(monkeypatch, above_s: float = 0.0):
    """The tiny data is advised a head-only recipe: make the advice fine-tune (rule SEL02 then
    makes the linear probe a candidate) — when sized to more than ``above_s`` seconds."""
    import autotransfer.advisor.advise as advise_module

    real = advise_module.decide

    def decide(*args, **kwargs):
        advice = real(*args, **kwargs)
        if (kwargs.get("time_budget") or above_s + 1) <= above_s:
            return advice
        data = advice.recipe.model_dump()
        head = dict(data["phases"][0], name="head", trainable_from=5, epochs=1)
        data["phases"] = [head, {"name": "fine_tune", "epochs": 2, "trainable_from": 3,
                                 "learning_rate": 1e-3}]
        data["head"] = dict(data["head"], solver="gradient", lbfgs_c=None)
        data["domain_adaptation"] = {"method": "none", "before_phase": 0}
        return advice.model_copy(update={"recipe": type(advice.recipe).model_validate(data)})

    monkeypatch.setattr(advise_module, "decide", decide)


def test_the_linear_probe_is_a_trial_and_kept_when_fine_tuning_ties(tmp_path, monkeypatch):
    _advise_fine_tuning(monkeypatch)
    dataset = tmp_path / "colours"
    make_colour_dataset(dataset, COUNTS, split="train")
    make_colour_dataset(dataset, {k: 4 for k in COUNTS}, split="test", seed=1)
    result = auto(dataset, tmp_path / "run", time_budget=None, trials=1, preset="quick",
                  backbones=["test_tiny"], weights=None, verbose=0)
    assert result.tuning is not None and len(result.advice.recipe.phases) == 2
    choice = result.linear_probe
    # 6 validation images cannot show a gain beyond chance: the cheaper linear probe wins
    assert choice.winner == "linear probe" and choice.test["p"] > choice.alpha
    assert (result.out / "linear_probe" / "metrics.json").is_file()
    final = load_recipe(result.out / "model" / "recipe.yaml")
    assert [p.trainable_from for p in final.phases] == [5] and final.head.solver == "lbfgs"
    assert result.metrics["n_train"] == 24  # refitted on train + validation
    summary = json.loads((result.out / "summary.json").read_text())
    probe = summary["linear_probe"]
    assert probe["compared"] and probe["winner"] == "linear probe" and probe["rule"] == "SEL02"
    assert set(probe["scores"]) == {"linear probe", "fine-tuned"}
    assert probe["time_saved_s"] == choice.time_saved_s and "p" in probe["test"]
    assert summary["budget"]["linear_probe_seconds"] > 0
    assert "linear probe (SEL02)" in [s["step"] for s in summary["budget"]["steps"]]
    text = (result.out / "report.md").read_text()
    assert "### The linear probe against fine-tuning (rule SEL02)" in text
    assert "| linear probe **kept** |" in text and "the cheaper linear probe is kept" in text
    assert "The linear probe was kept (rule SEL02" in text  # the final model's note
    assert "The final model is the **linear probe** (rule SEL02; section 4)." in text


@pytest.mark.parametrize("fine_tuned_wins", [False, True])
def test_without_a_search_the_fine_tuned_recipe_is_measured_before_the_final_choice(
        tmp_path, monkeypatch, fine_tuned_wins):
    import dataclasses

    import autotransfer.oneshot.plan as plan
    from autotransfer.tuning import baseline

    _advise_fine_tuning(monkeypatch)
    monkeypatch.setattr(plan, "search_skipped", lambda split, whole, trials, doubled=None: "forced")
    if fine_tuned_wins:  # 6 validation images cannot show it: the plumbing, as if it had won
        real = baseline.compare
        monkeypatch.setattr(baseline, "compare", lambda *a, **k: dataclasses.replace(
            real(*a, **k), winner=baseline.FINE_TUNED, time_saved_s=None))
    dataset = tmp_path / "colours"
    make_colour_dataset(dataset, COUNTS, split="train")
    make_colour_dataset(dataset, {k: 4 for k in COUNTS}, split="test", seed=1)
    result = auto(dataset, tmp_path / "run", time_budget="10m", preset="quick",
                  backbones=["test_tiny"], weights=None, verbose=0)
    summary = json.loads((result.out / "summary.json").read_text())
    report = (result.out / "report.md").read_text()
    final = load_recipe(result.out / "model" / "recipe.yaml")
    assert result.tuning is None
    if fine_tuned_wins:
        # measured on the validation split it did not train on, then kept as it was trained
        assert result.linear_probe.winner == "fine-tuned"
        assert result.final == "train" and result.metrics["n_train"] < 24
        assert len(final.phases) == 2 and not (result.out / "fine-tuned").exists()
        assert "compared it with the linear probe (rule SEL02)" in report
        assert summary["linear_probe"]["winner"] == "fine-tuned" and summary["final"] == "train"
    else:
        # the fine-tuned model stays for comparison; the probe is refitted on train + validation
        assert result.linear_probe.winner == "linear probe"
        assert (result.out / "fine-tuned" / "model.keras").is_file()
        assert result.final == "train+val" and result.metrics["n_train"] == 24
        assert [p.trainable_from for p in final.phases] == [5]
        assert "which also decided the fine-tuned recipe's early stopping" in report
        assert summary["linear_probe"]["winner"] == "linear probe"


def test_no_fine_tuned_model_ships_that_the_budget_could_not_compare(tmp_path, monkeypatch):
    import autotransfer.budget as budget_module

    # fine-tuning fits the 10-minute budget (more than 300 s), but not beside a linear probe
    # estimated at 300 s: the advised recipe then trains the head alone, and no probe runs
    _advise_fine_tuning(monkeypatch, above_s=300.0)
    monkeypatch.setattr(budget_module, "head_seconds",
                        lambda facts, size, params, **_: 300.0)
    dataset = tmp_path / "colours"
    make_colour_dataset(dataset, COUNTS, split="train")
    make_colour_dataset(dataset, {k: 4 for k in COUNTS}, split="test", seed=1)
    result = auto(dataset, tmp_path / "run", time_budget="10m", trials=1, preset="quick",
                  backbones=["test_tiny"], weights=None, verbose=0)
    assert [p.trainable_from for p in result.advice.recipe.phases] == [5]
    assert not (result.out / "linear_probe").exists()
    summary = json.loads((result.out / "summary.json").read_text())
    assert summary["linear_probe"]["compared"] is False
    assert "fits the budget only without the linear probe" in summary["linear_probe"]["why"]
    assert "fits the budget only without the linear probe" in (result.out / "report.md").read_text()
