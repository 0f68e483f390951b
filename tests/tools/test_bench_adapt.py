"""The adaptation benchmark's bookkeeping: intervals, criterion summaries and the report."""

from __future__ import annotations

import json

import pytest

from tests.tools.load import load_tool


def bench():
    return load_tool("bench_adapt")


def _results(b):
    runs = {}
    for i, (name, method, weight) in enumerate(b.candidates()):
        acc = 0.5 + 0.02 * i
        runs[name] = {"method": method, "weight": weight, "target_accuracy": acc,
                      "n_target": 100, "correct": int(acc * 100), "seconds": 1.0,
                      "source_val_accuracy": 0.9,
                      # dev ranks like accuracy, snd against it
                      "scores": {"snd": -acc, "dev": acc, "iwv": acc, "entropy": 0.0,
                                 "source": 0.9}}
    return {"config": {"backbone": "mobilenet_v2", "size": 224, "batch": 32, "epochs": 1,
                       "tasks": ["A-W"], "machine": "test", "started": "now"},
            "tasks": {"A-W": {"source": "amazon", "target": "webcam", "runs": runs}}}


def test_wilson_interval_brackets_the_accuracy():
    b = bench()
    low, high = b.wilson(80, 100)
    assert low < 0.8 < high and high - low < 0.2
    assert b.wilson(0, 0) == (0.0, 1.0)


def test_summary_measures_how_each_criterion_ranks_and_picks(tmp_path, monkeypatch):
    b = bench()
    results = _results(b)
    summary = b.summarise(results)
    assert summary["complete_tasks"] == ["A-W"]
    assert summary["criteria"]["dev"]["mean_spearman"] == pytest.approx(1.0)
    assert summary["criteria"]["dev"]["overall_regret"] == pytest.approx(0.0)
    assert summary["criteria"]["snd"]["mean_spearman"] == pytest.approx(-1.0)
    assert summary["criteria"]["snd"]["overall_regret"] > 0.3
    monkeypatch.setattr(b, "OUT_JSON", tmp_path / "adapt.json")
    monkeypatch.setattr(b, "OUT_MD", tmp_path / "adapt.md")
    b.write_report(results)
    text = (tmp_path / "adapt.md").read_text()
    assert "| A-W | 100 |" in text and "## Notes" in text
    assert json.loads((tmp_path / "adapt.json").read_text())["summary"]["complete_tasks"] == ["A-W"]


def test_the_rules_choice_is_scored_with_the_candidate_the_rules_name(tmp_path, monkeypatch):
    b = bench()
    results = _results(b)
    facts = {"gap_a": 1.9, "gap_bn": 0.1, "gap_bn_early": 0.12, "gap_bn_deep": 0.08,
             "class_shift": 0.05, "n_train": 900.0, "linear_acc": 0.95,
             "pred_entropy_rise": 0.1, "target_entropy_rise": 0.0}
    from autotransfer.advisor.rules import load_rules

    rule, method = b.target_decision(load_rules(), facts)
    assert (rule, method) == ("DA08", "cdan")
    results["rules_choice"] = {"A-W": {"rule": rule, "method": method, "per_class": 32,
                                       "facts": facts}}
    (row,) = b.choice_rows(results, ["A-W"], "dev")
    runs = results["tasks"]["A-W"]["runs"]
    # λ by dev among cdan's weights and its bottleneck baseline: dev ranks like accuracy here
    assert row["candidate"] == "cdan@1"
    assert row["accuracy"] == runs["cdan@1"]["target_accuracy"]
    assert row["source_only"] == runs["source_only"]["target_accuracy"]
    assert row["best"] == max(r["target_accuracy"] for r in runs.values())
    assert b.rules_pick(runs, "none", "dev") == "source_only"
    monkeypatch.setattr(b, "OUT_JSON", tmp_path / "adapt.json")
    monkeypatch.setattr(b, "OUT_MD", tmp_path / "adapt.md")
    b.write_report(results)
    assert "## autotransfer's own choice" in (tmp_path / "adapt.md").read_text()


def test_a_tiny_bn_shift_with_a_large_gap_is_not_adabn_and_a_corruption_is(tmp_path):
    b = bench()
    from autotransfer.advisor.rules import load_rules

    rules = load_rules()
    office_like = {"gap_a": 1.95, "gap_bn": 0.23, "gap_bn_early": 0.37, "gap_bn_deep": 0.11,
                   "class_shift": 0.15, "n_train": 157}
    assert b.target_decision(rules, office_like) == ("DA06", "coral")
    contrast = {**office_like, "gap_bn": 1.46, "gap_bn_early": 2.8, "gap_bn_deep": 0.29}
    assert b.target_decision(rules, contrast) == ("DA05", "adabn_target")
    clean = {**office_like, "gap_a": 0.0, "class_shift": 0.03}
    assert b.target_decision(rules, clean) == ("DA04", "none")


def test_leave_one_task_out_chooses_da07_on_the_other_tasks_and_reports_before_and_now(
        tmp_path, monkeypatch):
    b = bench()
    from autotransfer.advisor.rules import load_rules

    results = _results(b)
    runs = results["tasks"]["A-W"]["runs"]
    for name, acc in (("source_only", 0.30), ("exact_head", 0.35), ("mcc@0.1", 0.40),
                      ("mcc@0.3", 0.41), ("mcc@1", 0.42),
                      ("bottleneck@0", 0.80)):  # MCC poor, CORAL's λ = 0 good
        runs[name] = {**runs[name], "target_accuracy": acc,
                      "scores": {**runs[name]["scores"], "dev": acc}}
    for name in ("coral@0.1", "coral@0.3", "coral@1"):
        runs[name] = {**runs[name], "target_accuracy": 0.7, "scores": {**runs[name]["scores"],
                                                                       "dev": 0.7}}
    moved = {"gap_a": 1.9, "gap_bn": 0.2, "gap_bn_early": 0.3, "gap_bn_deep": 0.1,
             "class_shift": 0.22, "n_train": 157.0, "linear_acc": 1.0,
             "pred_entropy_rise": 0.1, "target_entropy_rise": 0.0}
    results["tasks"]["D-A"] = {"source": "dslr", "target": "amazon",
                               "runs": json.loads(json.dumps(runs))}
    results["rules_choice"] = {t: {"rule": "?", "method": "?", "per_class": 32, "facts": moved}
                               for t in ("A-W", "D-A")}
    rules = load_rules()
    before = b.rules_variant(rules, 0.2, "mcc")
    assert b.target_decision(before, moved) == ("DA07", "mcc")
    assert b.target_decision(rules, moved) == ("DA07", "coral")
    b.redecide(results, rules)
    assert results["rules_choice"]["D-A"]["method"] == "coral"
    loto = b.leave_one_task_out(results, rules, "dev")
    for task in ("A-W", "D-A"):  # the other task shows MCC losing: each fold chooses CORAL
        fold = loto["folds"][task]
        assert fold["da07"] == "coral" and fold["method"] == "coral"
        assert fold["accuracy"] == 0.80  # CORAL's λ = 0 (its bottleneck head) by dev
        assert loto["per_task"][task]["before"] == {"rule": "DA07", "method": "mcc",
                                                    "accuracy": 0.42}
    results["leave_one_task_out"] = loto
    monkeypatch.setattr(b, "OUT_JSON", tmp_path / "adapt.json")
    monkeypatch.setattr(b, "OUT_MD", tmp_path / "adapt.md")
    b.write_report(results)
    text = (tmp_path / "adapt.md").read_text()
    assert "DA07 judged leave one task out" in text
    assert "| D-A | 0.22 | – |" in text and "mcc 42.0 | coral 80.0 | coral 80.0 (coral," in text


def test_the_fine_tuning_check_is_reported_per_task_and_arm(tmp_path, monkeypatch):
    b = bench()
    results = _results(b)

    def arm(method, rule, accuracy, before):
        return {"method": method, "weight": 1.0 if method != "none" else None, "rule": rule,
                "phases": [{"name": "head", "trainable_from": 5, "epochs_run": 12},
                           {"name": "finetune", "trainable_from": 4, "epochs_run": 12}],
                "source_val_accuracy": 1.0, "target_accuracy": accuracy,
                "gap_before": before, "gap_after": {"a_distance": 1.12, "class_tv": 0.07},
                "train_seconds": 176.0, "load_before": "['6.61', '7.96', '5.72']",
                "load_after": "['5.47', '6.35', '5.54']"}

    results["finetune"] = {"W-A": {
        "source_only": arm("none", None, 0.911, None),
        "rules": arm("coral", "DA06", 0.908, {"a_distance": 1.97, "class_tv": 0.07})}}
    monkeypatch.setattr(b, "OUT_JSON", tmp_path / "adapt.json")
    monkeypatch.setattr(b, "OUT_MD", tmp_path / "adapt.md")
    b.write_report(results)
    text = (tmp_path / "adapt.md").read_text()
    assert "## Deeper fine-tuning with a target" in text and "without rule FZ04" in text
    assert ("| W-A | source_only | none (–) | head 5 × 12, finetune 4 × 12 | 100.0 | 91.1 "
            "| – | 1.12 / 0.07 | 176 | 6.61 7.96 5.72 → 5.47 6.35 5.54 |") in text
    assert "| W-A | rules | coral λ 1 (DA06) |" in text and "| 1.97 / 0.07 |" in text


def test_the_exact_head_is_scored_beside_the_weights_as_da09_does(tmp_path, monkeypatch):
    b = bench()
    results = _results(b)
    runs = results["tasks"]["A-W"]["runs"]
    assert "exact_head" in runs and runs["exact_head"]["method"] == "exact_head"
    # the bench's CORAL/CDAN recipes train a linear head alone (their bottleneck aside): DA09's case
    from autotransfer.train.adaptation.choose_weight import exact_head_fits

    assert all(exact_head_fits(b.recipe_for(m)) for m in (*b.FEATURE_METHODS, *b.OUTPUT_METHODS))
    facts = {"gap_a": 1.9, "gap_bn": 0.1, "gap_bn_early": 0.12, "gap_bn_deep": 0.08,
             "class_shift": 0.05, "n_train": 900.0, "linear_acc": 0.95,
             "pred_entropy_rise": 0.1, "target_entropy_rise": 0.0}
    results["rules_choice"] = {"A-W": {"rule": "DA08", "method": "cdan", "per_class": 32,
                                       "facts": facts}}
    # dev scores the exact head best, and it is the most accurate: taken, and right
    runs["exact_head"] = {**runs["exact_head"], "target_accuracy": 0.99,
                          "scores": {**runs["exact_head"]["scores"], "dev": 2.0}}
    (row,) = b.choice_rows(results, ["A-W"], "dev")
    assert row["candidate"] == "exact_head" and row["accuracy"] == 0.99
    assert row["candidate_without_exact"] == "cdan@1"
    assert row["accuracy_without_exact"] == runs["cdan@1"]["target_accuracy"]
    assert b.rules_pick(runs, "cdan", "dev", exact=False) == "cdan@1"
    assert b.rules_pick(runs, "none", "dev") == "source_only"  # DA09 chooses only λ
    (verdict,) = b.exact_verdicts([row])
    assert verdict["took_exact"] and verdict["right"]
    # scored best but less accurate than the λ it passed over: taken, and wrong
    runs["exact_head"]["target_accuracy"] = 0.10
    (verdict,) = b.exact_verdicts(b.choice_rows(results, ["A-W"], "dev"))
    assert verdict["took_exact"] and not verdict["right"]
    # scored worst: passed over, right when it is the less accurate
    runs["exact_head"]["scores"]["dev"] = -2.0
    (verdict,) = b.exact_verdicts(b.choice_rows(results, ["A-W"], "dev"))
    assert verdict["candidate"] == "cdan@1" and not verdict["took_exact"] and verdict["right"]
    results["exact_load"] = {"before": "['1.00', '2.00', '3.00']",
                             "after": "['1.50', '2.00', '3.00']", "uptime": "up 1 day"}
    monkeypatch.setattr(b, "OUT_JSON", tmp_path / "adapt.json")
    monkeypatch.setattr(b, "OUT_MD", tmp_path / "adapt.md")
    b.write_report(results)
    text = (tmp_path / "adapt.md").read_text()
    assert "### The exact head as a candidate (DA09)" in text
    assert ("| A-W | cdan | 50.0 | 10.0 | 80.0 (cdan@1) | 80.0 (cdan@1) | λ | yes | "
            "92.0 (entropy@1) | 12.0 / 12.0 |") in text
    assert "1.00 2.00 3.00 before" in text
