"""Every decision traces to a rule of recipes/rules.yaml in one hop (issue 16).

Each ``reasons`` entry of an advised, a tuned and a final recipe names a rule of the rule base (or
the preset / the user); every field the search or the final training changed carries the rule that
changed it; every searched range names its rule. auto's own report (``summary.json``,
``tuning.json``) is checked on a real run in tests/test_auto.py.
"""

from __future__ import annotations

import pytest

from autotransfer.advisor.advise import decide
from autotransfer.advisor.rules import load_rules
from autotransfer.oneshot.final import final_recipe, reuse_head_c
from autotransfer.oneshot.plan import FINAL_DATA, SHARES, Shares, final_mode, search_skipped
from autotransfer.recipe.schema import Recipe
from autotransfer.train.phases import PhaseRecord
from autotransfer.tuning.provenance import recipe_changes
from autotransfer.tuning.results import TrialRecord
from autotransfer.tuning.space import RANGE_RULES, search_space
from autotransfer.tuning.summary import summarise
from tests.advisor.synthetic import probe, profile, report

IDS = {r.id for r in load_rules().rules}
NEAR = report(probe("mobilenet_v2", 0.5, shift=0.1, entropy=0.3),
              probe("efficientnet_lite0", 0.3, shift=0.1, entropy=0.3))


def known(rule: str) -> bool:
    """A rule of the rule base, or the preset's or the user's value."""
    return rule in IDS or rule.startswith("preset:") or rule == "user"


def assert_traced(recipe: Recipe) -> None:
    unknown = {path: r.rule for path, r in recipe.reasons.items() if not known(r.rule)}
    assert not unknown, f"reasons name rules that recipes/rules.yaml lacks: {unknown}"


def advised() -> Recipe:
    return decide(profile({"a": 120, "b": 120}), NEAR).recipe


def tuned(tmp_path) -> tuple[Recipe, Recipe]:
    recipe = advised()
    space = search_space(recipe)
    base = space.defaults()
    changed = {"dropout": min(space["dropout"].high, base["dropout"] + 0.1),
               "epochs_scale": 2.0}
    rows = [TrialRecord(trial_id="00", status="COMPLETED", values=base, changed={},
                        val_accuracy=0.8, val_loss=0.5),
            TrialRecord(trial_id="01", status="COMPLETED", values={**base, **changed},
                        changed=changed, val_accuracy=0.9, val_loss=0.4)]
    result = summarise(tmp_path, recipe, space, rows, role_name="local", stopped="",
                       seconds=1.0, algorithm="random")
    assert result.refined is not None and result.changes
    return recipe, result.refined


def test_the_advised_recipe_names_only_rules_of_the_rule_base():
    assert_traced(advised())


def test_every_field_the_search_changed_carries_tune01_and_its_ranges_rules(tmp_path):
    recipe, refined = tuned(tmp_path)
    assert_traced(refined)
    for change in recipe_changes(recipe, refined):
        reason = refined.reasons[change["path"]]
        assert reason.rule == "TUNE01", change
        assert {v for k, v in reason.thresholds.items() if k.endswith(".rule")} <= IDS


def test_every_searched_range_names_its_rule():
    space = search_space(advised())
    assert set(RANGE_RULES.values()) <= IDS
    for dim in space:
        assert dim.range_rule == RANGE_RULES[dim.name] and dim.range_rule in IDS
        assert dim.to_dict()["range_rule"] == dim.range_rule


@pytest.mark.parametrize("seconds_left", [None, 1000.0])
def test_every_field_the_final_training_rewrote_carries_a_final_rule(tmp_path, seconds_left):
    _, refined = tuned(tmp_path)
    n = len(refined.phases)
    records = [PhaseRecord(p.name, p.trainable_from, p.epochs, epochs_run=p.epochs,
                           best_epoch=p.epochs - 1 if i == n - 1 else 0,
                           epoch_seconds=(1.0,) * p.epochs)
               for i, p in enumerate(refined.phases)]
    final = final_recipe(refined, records, seconds_left=seconds_left)
    assert_traced(final)
    changes = recipe_changes(refined, final)
    assert changes
    for change in changes:
        assert final.reasons[change["path"]].rule in ("FINAL01", "FINAL02"), change
    lengthened = [r for r in final.reasons.values() if r.rule == "FINAL02"]
    assert bool(lengthened) is (seconds_left is not None)


def test_the_head_strength_kept_from_the_trial_carries_final03():
    from autotransfer.train.phases import CVPoint, SolverRecord

    recipe = advised()
    exact = recipe.model_copy(update={"head": recipe.head.model_copy(update={"solver": "lbfgs"})})
    solver = SolverRecord(c=0.5, chosen_by="cross-validation", folds=5,
                          cv=(CVPoint(0.5, 0.9, 0.3),), n_images=40, n_views=1,
                          train_accuracy=0.95, train_loss=0.2, seconds=1.0)
    final = reuse_head_c(exact, [PhaseRecord("head", 5, 1, solver=solver)], "03")
    assert [c["path"] for c in recipe_changes(exact, final)] == ["head.lbfgs_c"]
    assert final.reasons["head.lbfgs_c"].rule == "FINAL03"
    assert_traced(final)


def test_auto_plan_decisions_are_rules_with_their_params():
    shares = Shares.from_rules()
    params = load_rules().get(SHARES).params
    assert (shares.search_share, shares.final_factor, shares.wrap_up_s) == (
        params["search_share"], params["final_factor"], params["wrap_up_s"])
    assert shares.reserve_factor("train", 100, 20) == params["final_factor"]
    assert shares.reserve_factor("train+val", 100, 20) == pytest.approx(
        params["final_factor"] * 1.2)
    assert FINAL_DATA in IDS and final_mode("auto", True) == "train+val"
    assert final_mode("auto", False) == "train" and final_mode("train", True) == "train"


def test_the_search_skip_says_its_rule_text():
    recipe = advised()
    whole = recipe
    split = recipe.model_copy(update={"phases": [
        p.model_copy(update={"epochs": 1}) for p in recipe.phases]})
    if split.total_epochs >= whole.total_epochs:
        pytest.skip("the advised recipe has single-epoch phases")
    why = search_skipped(split, whole, trials=10)
    text = " ".join(load_rules().get("PLAN02").text.split())
    assert why is not None and why.startswith(text.split("{", 1)[0].strip())
