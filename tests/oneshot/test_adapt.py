"""auto's adaptation step: λ chosen by DEV without target labels (DA09), kept when the budget
cannot hold the candidates (DA10), and the gap before and after in the report and summary."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from autotransfer.oneshot import adapt
from autotransfer.train.adaptation.selection import CandidateOutputs
from autotransfer.train.adaptation.trained_gap import features_gap
from tests.train.helpers import (make_colour_dataset, source_and_target, tiny_recipe,
                                 untouchable_target)


def _outputs(shift: float, seed: int = 0) -> CandidateOutputs:
    rng = np.random.default_rng(seed)
    fs, ft = rng.normal(0, 1, (40, 8)), rng.normal(shift, 1, (40, 8))
    probs = np.tile([[0.9, 0.1]], (40, 1))
    return CandidateOutputs("c", probs, np.zeros(40, int), fs, probs[:, ::-1], ft)


def test_the_trained_gap_grows_with_the_shift_and_the_report_shows_before_and_after():
    near, far = features_gap(_outputs(0.0), 2), features_gap(_outputs(3.0), 2)
    assert far.a_distance > 1.5 > 0.6 > near.a_distance
    assert far.class_tv == 1.0  # every prediction flips class on the "target"
    record = adapt.Adaptation("coral", 0.3, "DA09", "chosen by dev", {"0": -0.7, "0.3": -0.6},
                              "dev", gap={"before": {"a_distance": 1.2, "class_tv": 0.1},
                                          "after": far.to_dict()})
    text = "\n".join(adapt.markdown(record))
    assert "gap before and after" in text and "λ = 0.3 (rule DA09" in text
    assert "| before (advisor, frozen backbone) | 1.200 | 0.100 |" in text
    assert f"| after (final model) | {far.a_distance:.3f} | 1.000 |" in text


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return source_and_target(tmp_path_factory.mktemp("auto_adapt"), source=8, target=5)


def _recipe():
    return tiny_recipe(domain_adaptation={"method": "entropy", "weight": 1.0},
                       phases=[{"name": "head", "epochs": 2, "trainable_from": 5,
                                "learning_rate": 0.01}])


def test_the_weight_is_chosen_by_dev_with_da09_and_never_reads_the_target_labels(
        folders, tmp_path, monkeypatch):
    from autotransfer.data.splits import DataSplits
    from autotransfer.train.run import train

    source, target_dir = folders
    target = untouchable_target(target_dir)
    monkeypatch.setattr(adapt, "grid", lambda: ("dev", (1.0,)))
    said = []
    recipe, record = adapt.choose_in_budget(source, _recipe(), target, tmp_path,
                                            seconds_left=lambda: None, sized_s=None,
                                            factor=1.2, say=said.append)
    reason = recipe.reasons["domain_adaptation.weight"]
    assert reason.rule == "DA09" and "dev without target labels" in reason.text
    # head-only: the source-only exact head is a candidate beside λ 0 and 1
    assert record.rule == "DA09" and set(record.scores) == {"0", "1", "exact_head"}
    best = max(record.scores, key=lambda k: record.scores[k])  # DEV: higher is better
    if best == "exact_head":
        assert record.weight is None and record.candidate == "exact_head"
        assert record.method == recipe.domain_adaptation.method == "none"
        assert recipe.head.solver == "lbfgs"
    else:
        assert record.weight == recipe.domain_adaptation.weight == float(best)
        assert record.candidate == f"weight_{best}"
    assert set(reason.evidence) == {"dev@0", "dev@1", "dev@exact_head"}
    assert any("DA09" in s for s in said)
    text = "\n".join(adapt.markdown(record))
    assert "exact head (source-only, L-BFGS): " in text and "λ 1: " in text
    # the chosen candidate is the final model only for the same recipe on the same images
    from autotransfer.oneshot.final import merge_train_val
    from autotransfer.oneshot.final_plan import FinalTraining

    folder = tmp_path / adapt.FOLDER / record.candidate
    same = DataSplits.load(folder / "splits.json")
    renamed = recipe.model_copy(update={"name": "final", "reasons": {}})
    assert adapt.reuse_decision(record, FinalTraining(renamed, same, "", ""),
                                tmp_path) == (folder, "")
    merged = FinalTraining(recipe, merge_train_val(same), "", "")  # PLAN04: train + validation
    assert adapt.reuse_decision(record, merged, tmp_path) == (None, "")
    longer = recipe.model_copy(update={"phases": [recipe.phases[0].model_copy(
        update={"epochs": 3})]})
    assert adapt.reuse_decision(record, FinalTraining(longer, same, "", ""),
                                tmp_path) == (None, "")
    assert "trained again" in adapt.reuse_note(record, None)
    assert "not trained again" in adapt.reuse_note(record, folder)
    # the final training with the choice, then the gap before (λ = 0 run) and after
    run = train(source, recipe, tmp_path / "model", target=target, progress=False)
    assert run.metrics["domain_gap"]["n_target"] == 10  # train(target=) measures it, too
    splits = DataSplits.load(run.out / "splits.json")
    advice = SimpleNamespace(probes=SimpleNamespace(domain_gap=None))
    adapt.measure_gaps(record, advice, run.out, splits, target, recipe, tmp_path)
    for key in ("source_only", "after"):
        gap = record.gap[key]
        assert gap["n_target"] == 10 and 0.0 <= gap["a_distance"] <= 2.0
        assert 0.0 <= gap["class_tv"] <= 1.0


def test_an_unreadable_candidate_is_trained_again_and_the_note_says_why(tmp_path):
    from autotransfer.data.splits import DataSplits
    from autotransfer.oneshot.final_plan import FinalTraining
    from autotransfer.recipe.io import save_recipe

    recipe = _recipe()
    record = adapt.Adaptation("entropy", 1.0, "DA09", "chosen by dev", {"0": -0.7, "1": -0.6},
                              "dev", candidate="weight_1")
    folder = tmp_path / adapt.FOLDER / "weight_1"
    folder.mkdir(parents=True)
    splits = DataSplits(root=str(tmp_path), class_names=["a", "b"], train=[], val=[], test=[],
                        val_source="folder")
    final = FinalTraining(recipe, splits, "", "")
    files = {"run.json": json.dumps({"files": [], "class_names": ["a", "b"], "crop": False}),
             "splits.json": json.dumps(splits.model_dump(mode="json"))}
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    save_recipe(recipe, folder / "recipe.yaml")
    assert adapt.reuse_decision(record, final, tmp_path) == (folder, "")
    for name, damage in (("run.json", "{not json"), ("recipe.yaml", "backbone: [unclosed"),
                         ("splits.json", "[]")):
        intact = (folder / name).read_text(encoding="utf-8")
        (folder / name).write_text(damage, encoding="utf-8")
        reused, unreadable = adapt.reuse_decision(record, final, tmp_path)
        assert reused is None and name in unreadable
        note = adapt.reuse_note(record, reused, unreadable)
        assert "could not be read" in note and name in note and "trained again" in note
        (folder / name).write_text(intact, encoding="utf-8")


def test_a_reused_candidate_is_named_and_reported_as_the_final_model(folders, tmp_path):
    from autotransfer.train.run import train

    candidate = tiny_recipe(phases=[{"name": "head", "epochs": 1, "trainable_from": 5,
                                     "learning_rate": 0.01}]).model_copy(
        update={"name": "candidate λ 1"})
    run = train(folders[0], candidate, tmp_path / adapt.FOLDER / "weight_1", progress=False)
    final = candidate.model_copy(update={"name": "the final recipe"})
    result = adapt.reuse(run.out, tmp_path / "model", final, export_savedmodel=False,
                         export_tflite=False)
    model = tmp_path / "model"
    info = json.loads((model / "run.json").read_text(encoding="utf-8"))
    metrics = json.loads((model / "metrics.json").read_text(encoding="utf-8"))
    assert info["recipe"] == metrics["recipe"] == result.metrics["recipe"] == "the final recipe"
    assert metrics["reused"]["from"] == f"{adapt.FOLDER}/weight_1"
    report = (model / "report.md").read_text(encoding="utf-8")
    assert "# Run report: the final recipe" in report and "candidate λ 1" not in report
    html = (model / "report.html").read_text(encoding="utf-8")
    assert "the final recipe" in html and "candidate λ 1" not in html
    # the candidate itself is left as it was trained
    assert json.loads((run.out / "run.json").read_text(encoding="utf-8"))["recipe"] == \
        "candidate λ 1"


def _fine_tuning():
    return tiny_recipe(domain_adaptation={"method": "entropy", "weight": 1.0},
                       phases=[{"name": "head", "epochs": 1, "trainable_from": 5,
                                "learning_rate": 0.01},
                               {"name": "fine_tune", "epochs": 1, "trainable_from": 3,
                                "learning_rate": 0.001}])


def _check_probe_outcome(recipe, record, kept: bool) -> None:
    """The recipe and record of DA09's choice met by DA11's exact linear head."""
    reason = recipe.reasons["domain_adaptation.weight"]
    text = "\n".join(adapt.markdown(record))
    assert record.linear_probe["rule"] == "DA11" and record.linear_probe["kept"] is kept
    assert "exact linear head (DA11: frozen backbone, L-BFGS, no adaptation): " in text
    if kept:  # the cheaper model: trained again by the final training, in seconds
        assert record.rule == reason.rule == "DA11"
        assert "at least as well as DA09's best" in record.why
        assert record.method == recipe.domain_adaptation.method == "none"
        assert record.weight is None and record.candidate is None
        assert recipe.head.solver == "lbfgs" and [p.trainable_from for p in recipe.phases] == [5]
        assert reason.evidence["dev@probe"] == record.scores["probe"]
        assert record.linear_probe["score"] == pytest.approx(record.scores["probe"], abs=1e-5)
        assert "(rule DA11: the exact linear head" in text
        assert adapt.reuse_note(record, None) == ""  # no DA09 candidate to reuse
    else:
        assert record.rule == reason.rule == "DA09" and "below DA09's best" in record.why
        assert record.method == recipe.domain_adaptation.method == "entropy"
        assert record.weight == recipe.domain_adaptation.weight
        assert any(p.trainable_from < 5 for p in recipe.phases)  # still fine-tunes
    assert json.loads(json.dumps(record.to_dict()))["linear_probe"]["kept"] is kept


def test_without_a_search_a_fine_tuning_recipe_meets_da11s_exact_linear_head(
        folders, tmp_path, monkeypatch):
    """DA09's candidates of a recipe that fine-tunes (no exact head of DA09's own) meet the
    search's exact linear head (DA11's code, the same criterion), kept when it scores at least
    the best candidate's; both outcomes, and a head that cannot be scored in time."""
    from autotransfer.recipe.schema import Reason
    from autotransfer.train.adaptation.choose_weight import WeightChoice
    from autotransfer.tuning import adapting, trials

    source, target_dir = folders
    target = untouchable_target(target_dir)
    monkeypatch.setattr(adapt, "grid", lambda: ("dev", (1.0,)))
    said: list[str] = []

    recipe, record = adapt.choose_in_budget(source, _fine_tuning(), target, tmp_path,
                                            seconds_left=lambda: None, sized_s=None,
                                            factor=1.2, say=said.append)
    assert set(record.scores) == {"0", "1", "probe"}  # fine-tunes: DA09 has no exact head
    best = max(v for k, v in record.scores.items() if k != "probe")
    _check_probe_outcome(recipe, record, record.scores["probe"] >= best)  # ties: the head's
    assert any("DA11" in s for s in said)

    def again(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(trials, "run_trial", again)  # the head's score is read back
    folder = tmp_path / adapt.FOLDER
    stored = json.loads((folder / "search" / "trial_probe" / adapting.PROBE_RESULT).read_text(
        encoding="utf-8"))["objective"][adapting.metric("dev")]
    runs = {w: folder / f"weight_{w:g}" for w in (0.0, 1.0)}
    weighed = _fine_tuning().model_copy(update={"reasons": {"domain_adaptation.weight": Reason(
        rule="DA09", text="weight 1 for 'entropy' chosen by dev")}})
    for rival, kept in ((stored - 0.5, True), (stored, True), (stored + 0.5, False)):
        choice = WeightChoice(1.0, weighed, runs, {0.0: rival - 1.0, 1.0: rival}, "dev")
        fresh = adapt.Adaptation("entropy", 1.0, "DA09", "chosen by dev",
                                 {"0": rival - 1.0, "1": rival}, "dev", candidate="weight_1")
        chosen = adapt._versus_probe(choice, _fine_tuning(), fresh, target, folder, store=None,
                                     deadline=None, say=said.append)
        _check_probe_outcome(chosen, fresh, kept)  # a tie goes to the head, the cheaper
    # no time left for the head once the candidates trained: DA09's choice stands
    (folder / "search" / "trial_probe" / adapting.PROBE_RESULT).unlink()
    fresh = adapt.Adaptation("entropy", 1.0, "DA09", "chosen by dev", {"1": 0.0}, "dev")
    chosen = adapt._versus_probe(choice, _fine_tuning(), fresh, target, folder, store=None,
                                 deadline=time.time() - 1.0, say=said.append)
    assert chosen is choice.recipe and fresh.rule == "DA09" and "probe" not in fresh.scores
    assert fresh.linear_probe["kept"] is False and "not scored" in fresh.linear_probe["why"]
    assert "was not scored: skipped" in "\n".join(adapt.markdown(fresh))


def test_without_candidates_the_trained_adapting_model_meets_da11s_exact_linear_head(
        folders, tmp_path, monkeypatch):
    """DA10 kept λ (or a method without one): the exact linear head is scored by DA09's
    criterion against the adapting final model itself, when that trained on the training images
    alone; kept when at least as good (then trained as the final model); both outcomes."""
    from autotransfer.data.splits import DataSplits
    from autotransfer.oneshot.final import merge_train_val
    from autotransfer.oneshot.final_plan import FinalTraining
    from autotransfer.train.run import train
    from autotransfer.tuning import adapting, trials

    source, target_dir = folders
    target = untouchable_target(target_dir)
    recipe = _fine_tuning()
    run = train(source, recipe, tmp_path / "model", target=target, progress=False)
    splits = DataSplits.load(run.out / "splits.json")

    def meet(final=None, record=None, deadline=None):
        record = record or adapt.Adaptation("entropy", 1.0, "DA10", "λ kept", criterion="dev")
        head = adapt.versus_final(record, final or FinalTraining(recipe, splits, "", ""),
                                  run.out, splits, target, tmp_path, store=None,
                                  deadline=deadline, say=lambda text: None)
        return head, record

    head, record = meet()
    scores = record.scores
    assert set(scores) == {"final", "probe"} and record.linear_probe["rule"] == "DA11"
    assert record.linear_probe["kept"] is (scores["probe"] >= scores["final"])
    monkeypatch.setattr(trials, "run_trial", None)  # the head's score is read back from now on
    stored = tmp_path / adapt.FOLDER / "search" / "trial_probe" / adapting.PROBE_RESULT
    result = json.loads(stored.read_text(encoding="utf-8"))
    for shift, kept in ((1.0, True), (-1.0, False)):
        result["objective"][adapting.metric("dev")] = scores["final"] + shift
        stored.write_text(json.dumps(result), encoding="utf-8")
        head, record = meet()
        text = "\n".join(adapt.markdown(record))
        assert record.linear_probe["kept"] is kept
        assert "the adapting model (trained as the final model): " in text
        if kept:
            assert record.rule == "DA11" and record.weight is None and record.method == "none"
            assert head.head.solver == "lbfgs" and [p.trainable_from for p in head.phases] == [5]
            assert head.reasons["domain_adaptation.method"].rule == "DA11"
            assert "(rule DA11: the exact linear head" in text
        else:
            assert head is None and record.rule == "DA10" and record.weight == 1.0
            assert "below the adapting final model (" in record.why
    # the final model trained on validation images too (PLAN04): not compared
    head, record = meet(FinalTraining(recipe, merge_train_val(splits), "", ""))
    assert head is None and record.linear_probe["why"].startswith("not compared")
    assert "was not compared: the final model trained on the validation images" in "\n".join(
        adapt.markdown(record))
    assert "final" not in record.scores
    # DA09's candidates had the head (or DA09's own exact head): nothing more
    chosen = adapt.Adaptation("entropy", 1.0, "DA09", "chosen", criterion="dev")
    assert meet(record=chosen) == (None, chosen) and chosen.linear_probe is None
    stored.unlink()  # past the deadline: not scored, the adapting model stays
    head, record = meet(deadline=time.time() - 1.0)
    assert head is None and record.linear_probe["why"].startswith("not scored: skipped")


def test_a_budget_that_cannot_hold_the_candidates_keeps_the_weight_by_da10(folders, tmp_path):
    from autotransfer.data.target import read_target

    source, target_dir = folders
    recipe, record = adapt.choose_in_budget(source, _recipe(), read_target(target_dir), tmp_path,
                                            seconds_left=lambda: 30.0, sized_s=20.0, factor=1.2,
                                            say=lambda text: None)
    reason = recipe.reasons["domain_adaptation.weight"]
    assert reason.rule == record.rule == "DA10" and recipe.domain_adaptation.weight == 1.0
    assert "cannot hold the source-only candidate" in reason.text
    assert reason.evidence == {"seconds_left": 30.0, "sized_s": 20.0}
    assert not (tmp_path / adapt.FOLDER).exists()  # nothing trained


def _shifted_target(root):
    """Washed out and noisier copies of the colours (DA06: CORAL), in class folders."""
    rng = np.random.default_rng(1)
    for i in range(20):
        name, colour = [("r", (220, 40, 40)), ("g", (40, 200, 60))][i % 2]
        pixels = np.array(colour) * 0.5 + 100 + rng.normal(0, 60, (32, 32, 3))
        (root / name).mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        image.save(root / name / f"{i}.png")
    return root


def _auto(tmp_path, **kwargs):
    from autotransfer import auto

    source = make_colour_dataset(tmp_path / "src", {"r": 12, "g": 12})
    result = auto(source, tmp_path / "out", backbones=["test_tiny"], weights=None,
                  precision="float32", target=_shifted_target(tmp_path / "tgt"), verbose=0,
                  **kwargs)
    method = result.advice.recipe.domain_adaptation
    if not method.has_loss:
        pytest.skip(f"the advisor chose '{method.method}' here: no weight to choose")
    return result, json.loads((result.out / "summary.json").read_text())


def test_auto_searches_with_adapting_trials_and_records_da11_and_the_gap(tiny_target_auto_run):
    """auto(target=) with a loss method and room for a search: the trials adapt, DA09's criterion
    ranks them (DA11, in tuning.json and summary.json), the gap before and after is reported.
    The run (tests/conftest.py) is tests/test_auto_target.py's too: its target folder is flat."""
    from autotransfer.recipe.io import load_recipe

    result = tiny_target_auto_run
    method = result.advice.recipe.domain_adaptation
    if not method.has_loss:
        pytest.skip(f"the advisor chose '{method.method}' here: no weight to choose")
    summary = json.loads((result.out / "summary.json").read_text())
    assert summary["tuning"]["selection"]["rule"] == "DA11"
    tuning = json.loads((result.out / "tuning" / "tuning.json").read_text())
    assert tuning["objective"]["rule"] == "DA11" and tuning["objective"]["criterion"] == "dev"
    assert all(t["score"] is not None for t in tuning["trials"] if t["status"] == "COMPLETED")
    adaptation = summary["adaptation"]
    assert adaptation["rule"] == "DA11" and adaptation["criterion"] == "dev"
    final = load_recipe(result.out / "model" / "recipe.yaml")
    head_kept = tuning["best_trial"] == "probe"  # DA11's exact linear head scored best
    assert tuning["selection"]["linear_probe"]["kept"] is head_kept
    why = summary["linear_probe"]["why"]  # SEL02's note says what DA11 did with the probe
    assert "not a candidate" not in why and ("it is the final model" in why) is head_kept
    assert adaptation["method"] == final.domain_adaptation.method
    if head_kept:  # no adaptation, so no λ: the final model is the exact linear head
        assert adaptation["weight"] is None and final.domain_adaptation.method == "none"
        assert final.head.solver == "lbfgs" and "the exact linear head" in adaptation["why"]
    else:  # the kept trial's λ is the final recipe's
        assert adaptation["weight"] == final.domain_adaptation.weight is not None
    assert not (result.out / adapt.FOLDER).exists()  # the search replaced DA09's own step
    gap = adaptation["gap"]
    assert {"before", "after"} <= set(gap)
    metrics = json.loads((result.out / "model" / "metrics.json").read_text())
    assert metrics["domain_gap"] == gap["after"] and gap["after"]["n_target"] == 20
    report = (result.out / "report.md").read_text()
    assert "the gap before and after" in report and "| after (final model) |" in report
    assert "rule DA11" in report and "Trials scored by dev" in report
    assert "the gap before and after" in (result.out / "report.html").read_text()


def test_without_a_search_the_chosen_candidate_is_the_final_model_not_trained_again(
        tmp_path, monkeypatch):
    """No search (one trial cannot choose λ: DA11): DA09 chooses λ among its candidates, and the
    final training would train the chosen one again on the same images (no test split, PLAN04:
    the tuning splits): it is reused, the same model, and the report says so."""
    import keras

    from autotransfer.recipe.io import load_recipe
    from autotransfer.train import run as run_module

    monkeypatch.setattr(adapt, "grid", lambda: ("dev", (1.0,)))
    trained = []
    real_train = run_module.train

    def spy(dataset, recipe, out, *args, **kwargs):
        trained.append(Path(out).name)
        return real_train(dataset, recipe, out, *args, **kwargs)

    monkeypatch.setattr(run_module, "train", spy)
    result, summary = _auto(tmp_path, time_budget=None, trials=1)
    adaptation = summary["adaptation"]
    assert summary["tuning"]["rule"] == "DA11" and adaptation["rule"] == "DA09"
    assert summary["final"] == "train"
    chosen = adaptation["candidate"]
    # the candidates alone (the exact head too when the recipe trains the head alone): no final
    # training
    assert trained[:2] == ["weight_0", "weight_1"] and trained[2:] in ([], ["exact_head"])
    assert (trained[2:] == ["exact_head"]) == ("exact_head" in adaptation["scores"])
    folder = result.out / adapt.FOLDER / chosen
    ours = keras.saving.load_model(result.out / "model" / "model.keras", compile=False)
    theirs = keras.saving.load_model(folder / "model.keras", compile=False)
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    final = load_recipe(result.out / "model" / "recipe.yaml")
    assert final.reasons["domain_adaptation.weight"].rule == "DA09"
    metrics = json.loads((result.out / "model" / "metrics.json").read_text())
    assert metrics["reused"]["from"] == f"{adapt.FOLDER}/{chosen}"
    assert "not trained again" in summary["budget"]["note"]
    assert "not trained again" in (result.out / "report.md").read_text()


def test_auto_without_candidates_ships_the_exact_linear_head_that_scores_as_well(
        tmp_path, monkeypatch):
    """No search, and no DA09 candidates (here DA10's record, as when the budget cannot hold
    them): the adapting final model meets DA11's exact linear head; when the head is kept (made
    to win here: its choice is tested above) it is trained as the final model, the adapting one
    kept aside, and summary and report say so by rule DA11."""
    from autotransfer.recipe.io import load_recipe
    from autotransfer.tuning import adapting

    def kept_as_given(splits, recipe, target, partial, **kwargs):  # DA10: nothing trained
        return recipe, adapt.Adaptation(recipe.domain_adaptation.method,
                                        recipe.domain_adaptation.weight, "DA10", "λ kept",
                                        criterion="dev")

    monkeypatch.setattr(adapt, "choose_in_budget", kept_as_given)
    monkeypatch.setattr(adapting, "probe_kept", lambda probe, best: True)
    result, summary = _auto(tmp_path, time_budget=None, trials=1)
    adaptation = summary["adaptation"]
    assert adaptation["rule"] == "DA11" and adaptation["linear_probe"]["kept"] is True
    assert set(adaptation["scores"]) == {"final", "probe"} and adaptation["weight"] is None
    final = load_recipe(result.out / "model" / "recipe.yaml")
    assert final.head.solver == "lbfgs" and final.domain_adaptation.method == "none"
    assert final.reasons["domain_adaptation.method"].rule == "DA11"
    adapted = load_recipe(result.out / "adapted" / "recipe.yaml")  # the model it replaced
    assert adapted.domain_adaptation.method == result.advice.recipe.domain_adaptation.method
    assert "replaced the adapting model" in summary["budget"]["note"]
    assert adaptation["gap"]["after"]["n_target"] == 20  # measured on the shipped head
    report = (result.out / "report.md").read_text()
    assert "(rule DA11: the exact linear head" in report
    why = summary["linear_probe"]["why"]  # SEL02 compared nothing: DA11's head won, it says so
    assert "not a candidate" not in why and "DA11" in why and "is the final model: " in why
    assert why in report


def test_sel02s_note_in_an_adapting_run_says_what_da11_did_with_the_linear_probe(tmp_path):
    """SEL02 compares nothing when the recipe adapts; its note (summary.json, the report) must
    say what rule DA11 did with the linear probe instead — never that it was no candidate when
    its exact linear head became the final model — and the forecast reads the head's measure."""
    import dataclasses

    from autotransfer.oneshot.versus import check
    from autotransfer.train.adaptation.choose_weight import EXACT
    from autotransfer.tuning import adapting
    from autotransfer.tuning.space import search_space
    from tests.tuning.test_adapting import _probe_row, _recipe, _row

    recipe = _recipe()
    space = search_space(recipe, include=["dropout", adapting.DIMENSION])
    rows = [_row("00", -0.40), _row("01", -0.30, **{adapting.DIMENSION: 0.1})]
    for probe, kept in ((-0.30, True), (-0.35, False)):  # the search: the head won, then lost
        tuning = adapting.summarise(tmp_path, recipe, space, [*rows, _probe_row(probe)],
                                    role_name="local", stopped="", seconds=1.0,
                                    algorithm="random", name="dev")
        record = adapt.searched(tuning.refined, tuning)
        note = adapt.sel02_note("coral", record, tuning)
        assert note.startswith("the advised recipe adapts to the target images (coral)")
        assert "not a candidate" not in note and f"scored {probe:.4f} by dev" in note
        assert ("it is the final model (rule DA11)" in note) is kept
        assert ("below trial 01 (-0.3000): the adapting trial 01 is the final" in note) is not kept
        head = adapt.head_measure(record, tuning)  # measured on validation in the search
        assert head["val_accuracy"] == 0.8 and head["kept"] is kept
    forecast = SimpleNamespace(linear_probe=0.7, linear_probe_interval=(0.6, 0.8), advised=None,
                               advised_interval=None, fitted_on=("a",))
    lost = check(forecast, {"val": {"accuracy": 0.9}}, final_fine_tunes=True, probe=None,
                 choice=note, head=head)
    assert lost.linear_probe.measured == 0.8 and "DA11's exact linear head" in \
        lost.linear_probe.model
    failed = dataclasses.replace(tuning, selection={k: v for k, v in tuning.selection.items()
                                                    if k != "linear_probe"})
    assert "was not scored beside the search's trials" in adapt.sel02_note("coral", record,
                                                                           failed)
    # without a search: the exact linear head against DA09's candidates or the final model
    record = adapt.Adaptation("entropy", 1.0, "DA10", "λ kept", criterion="dev")
    won = dict(rule="DA11", trial="probe", kept=True, score=-0.2, val_accuracy=0.8,
               why="the exact linear head (...) scores -0.2000, at least as well as the "
                   "adapting final model (-0.3000)")
    for probe, says in (
            (won, "and the linear probe (rule DA11's exact linear head: the backbone frozen, "
                  "L-BFGS) is the final model: the exact linear head (...) scores -0.2000"),
            (dict(won, kept=False, why="the exact linear head scored -0.4, below it"),
             "and the adapting model is the final model: the exact linear head scored -0.4"),
            (dict(won, kept=False, why="not compared: the final model trained on the validation "
                                       "images the criterion weighs (PLAN04)"),
             "L-BFGS) was not compared: the final model trained on the validation images")):
        note = adapt.sel02_note("entropy", dataclasses.replace(record, linear_probe=probe))
        assert says in note and "not a candidate" not in note
    # DA09's own source-only exact head among its candidates: chosen, or not
    da09 = adapt.Adaptation("entropy", None, "DA09", "chosen", {"0": -0.5, EXACT: -0.3}, "dev",
                            candidate=EXACT)
    assert "scored -0.3000 by dev on the target, without target labels: it was chosen and is " \
           "the final model" in adapt.sel02_note("entropy", da09)
    other = dataclasses.replace(da09, weight=0.0, candidate="weight_0")
    assert "the λ = 0 candidate scored higher and is the final model" in adapt.sel02_note(
        "entropy", other)
