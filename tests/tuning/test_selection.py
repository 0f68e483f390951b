"""The best trial replaces the advised recipe only when its validation gain is beyond chance."""

from __future__ import annotations

import json

import pytest

from autotransfer.tuning.selection import decide, futile, mcnemar
from tests.tuning.test_tuner import head_recipe


def test_mcnemar_counts_the_discordant_images_and_gives_the_exact_tail():
    base = [1, 1, 0, 0, 1, 0]
    best = [1, 0, 1, 1, 1, 1]
    test = mcnemar(base, best)
    assert (test["gained"], test["lost"], test["n_images"]) == (3, 1, 6)
    assert test["p"] == pytest.approx(5 / 16)  # P(X >= 3), X ~ Binomial(4, 1/2)
    assert mcnemar([1, 0], [1, 0])["p"] == 1.0
    with pytest.raises(ValueError, match="same images"):
        mcnemar([1], [1, 0])


@pytest.mark.parametrize("gained, lost, replace", [(2, 0, False), (5, 0, True), (9, 3, False),
                                                   (12, 2, True)])
def test_only_a_significant_gain_replaces_the_recipe(gained, lost, replace):
    n = 60
    base = [0] * gained + [1] * lost + [1] * (n - gained - lost)
    best = [1] * gained + [0] * lost + [1] * (n - gained - lost)
    decision = decide(base, best)
    assert decision["replace"] is replace
    assert ("significant gain" if replace else "advised recipe is kept") in decision["why"]


def test_without_per_image_results_the_best_trial_is_kept_and_says_so():
    decision = decide(None, [1, 0])
    assert decision["replace"] and decision["test"] is None and "no per-image" in decision["why"]


def _rows(root, space, results):
    from autotransfer.tuning.results import PROJECT, TrialRecord

    rows = []
    for trial_id, correct, changed in results:
        folder = root / PROJECT / f"trial_{trial_id}"
        folder.mkdir(parents=True)
        (folder / "trial_result.json").write_text(json.dumps({"val_correct": correct}))
        rows.append(TrialRecord(trial_id=trial_id, status="COMPLETED",
                                values={**space.defaults(), **changed}, changed=changed,
                                val_accuracy=sum(correct) / len(correct), val_loss=0.3))
    return rows


def test_summarise_keeps_trial_0_when_the_gain_is_chance(tmp_path):
    from autotransfer.tuning.space import search_space
    from autotransfer.tuning.markdown import markdown
    from autotransfer.tuning.summary import summarise

    recipe = head_recipe()
    space = search_space(recipe)
    rows = _rows(tmp_path, space, [("00", [1] * 46 + [0] * 3, {}),
                                   ("01", [1] * 48 + [0], {"dropout": 0.1})])
    kept = summarise(tmp_path, recipe, space, rows, role_name="local", stopped="", seconds=1.0,
                     algorithm="bayesian")
    assert kept.best_trial == "00" and kept.changes == [] and kept.gain == 0.0
    assert kept.refined.model_dump(exclude={"name", "reasons"}) == recipe.model_dump(
        exclude={"name", "reasons"})
    assert kept.selection["candidate"] == "01" and kept.selection["test"]["gained"] == 2
    text = markdown(kept)
    assert "trial 01 had the best validation accuracy" in text and "McNemar" in text
    assert kept.to_dict()["selection"]["replace"] is False


def test_summarise_takes_a_significantly_better_trial_and_says_why(tmp_path):
    from autotransfer.tuning.space import search_space
    from autotransfer.tuning.summary import summarise

    recipe = head_recipe()
    space = search_space(recipe)
    rows = _rows(tmp_path, space, [("00", [1] * 41 + [0] * 8, {}),
                                   ("01", [1] * 49, {"dropout": 0.1})])
    result = summarise(tmp_path, recipe, space, rows, role_name="local", stopped="",
                       seconds=1.0, algorithm="bayesian")
    assert result.best_trial == "01" and result.selection["replace"] is True
    reason = result.refined.reasons["head.dropout"]
    assert "McNemar p = 0.00391" in reason.text and reason.evidence["mcnemar_p"] < 0.05
    assert reason.thresholds["alpha"] == 0.05


@pytest.mark.parametrize("misses, is_futile", [(0, True), (3, True), (4, True), (5, False),
                                               (20, False)])
def test_a_search_is_futile_when_even_a_perfect_challenger_would_be_chance(misses, is_futile):
    base = [0] * misses + [1] * (49 - misses)
    verdict = futile(base)
    assert (verdict is not None) is is_futile
    # the best a challenger can do: right on every miss, wrong on nothing trial 0 gets right
    best_case = decide(base, [1] * 49)
    assert best_case["replace"] is not is_futile
    if is_futile:
        assert verdict["misses"] == misses and verdict["p_best"] == pytest.approx(0.5 ** misses)
        assert f"gets {misses} of the 49 validation images wrong" in verdict["why"]


def test_without_per_image_results_no_search_is_called_futile():
    assert futile(None) is None and futile([]) is None
