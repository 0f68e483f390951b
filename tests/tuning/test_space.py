"""The search space around a recipe, and trial values back to a recipe (pure, no TensorFlow)."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from autotransfer.advisor.advise import decide
from autotransfer.errors import InvalidParameterError
from autotransfer.recipe.schema import Reason, Recipe
from autotransfer.tuning.space import (apply, excluded_backbones, runner_up_backbones,
                                       search_space)
from tests.advisor.synthetic import probe, profile, report
from tests.train.helpers import tiny_recipe

NEAR = report(probe("mobilenet_v2", 0.5, shift=0.1, entropy=0.3),
              probe("efficientnet_lite0", 0.3, shift=0.1, entropy=0.3))
FAR = report(probe("mobilenet_v2", 0.5, shift=3.0, entropy=0.7),
             probe("efficientnet_lite0", 0.3, shift=3.0, entropy=0.7), rotation=0.26)


def near_recipe() -> Recipe:
    return decide(profile({"a": 120, "b": 120}), NEAR).recipe


def far_recipe() -> Recipe:
    return decide(profile({"a": 600, "b": 600}), FAR).recipe


def tiny_classes_recipe() -> Recipe:
    return decide(profile({"a": 6, "b": 6}), NEAR).recipe


RECIPES = {"near": near_recipe, "far": far_recipe, "tiny": tiny_classes_recipe,
           "tiny_recipe": tiny_recipe}


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_defaults_are_the_recipe_and_map_back_to_it_field_by_field(name):
    recipe = RECIPES[name]()
    space = search_space(recipe)
    assert len(space) >= 4
    same = apply(recipe, space.defaults(), space)
    assert same.model_dump() == recipe.model_dump()
    assert same == recipe
    assert space.changed(space.defaults()) == {}


def test_ranges_are_centred_on_the_advised_values():
    recipe = near_recipe()
    space = search_space(recipe)
    head, fine = recipe.phases[0], recipe.phases[-1]
    for name, advised in (("head_lr", head.learning_rate), ("finetune_lr", fine.learning_rate)):
        dim = space[name]
        assert dim.default == advised and dim.sampling == "log"
        # geometric centre: low * high == advised**2
        assert math.isclose(dim.low * dim.high, advised**2, rel_tol=1e-9)
        assert dim.high / advised == pytest.approx(4.0)
        assert "LR01" in dim.why and dim.rule == "LR01"
    depth = space["finetune_from"]
    assert depth.default == fine.trainable_from == 4
    assert (depth.low, depth.high) == (3, 5)  # one group either side
    assert space["augmentation_scale"].default == 1.0
    assert space["augmentation_scale"].values == (0.5, 1.0, 1.5)
    dropout = space["dropout"]
    assert dropout.low < dropout.default < dropout.high
    assert dropout.default - dropout.low == pytest.approx(dropout.high - dropout.default)
    assert space["backbone"].values == ("mobilenet_v2", "efficientnet_lite0")
    assert all(d.contains(d.default) for d in space)


def test_far_data_widens_and_a_linear_probe_narrows():
    far = search_space(far_recipe())
    recipe = far_recipe()
    fine = far["finetune_lr"]
    assert fine.default / fine.low == pytest.approx(6.0)  # wider below
    # ... but never above half the head's rate: fine-tuning stays slower than the head
    assert fine.high == pytest.approx(min(6.0 * fine.default, 0.5 * recipe.phases[0].learning_rate))
    assert fine.high < 6.0 * fine.default and "half the head's rate" in fine.why
    depth = far["finetune_from"]
    assert depth.high - depth.default == 2 and "far" in depth.why
    tiny = tiny_classes_recipe()
    assert tiny.phases[-1].trainable_from == 5
    narrow = search_space(tiny)["finetune_from"]
    assert (narrow.low, narrow.high) == (4, 5) and "head alone" in narrow.why


def test_changed_values_give_a_valid_recipe_with_exactly_those_changes():
    recipe = near_recipe()
    space = search_space(recipe)
    values = {**space.defaults(), "head_lr": recipe.phases[0].learning_rate * 2,
              "dropout": 0.4, "augmentation_scale": 1.5, "weight_decay": 10.0}
    trial = apply(recipe, values, space)
    assert trial.phases[0].learning_rate == pytest.approx(recipe.phases[0].learning_rate * 2)
    assert trial.phases[1].learning_rate == recipe.phases[1].learning_rate
    assert trial.head.dropout == 0.4
    assert trial.augmentation.zoom == pytest.approx(recipe.augmentation.zoom * 1.5)
    assert all(p.weight_decay == pytest.approx(q.weight_decay * 10)
               for p, q in zip(trial.phases, recipe.phases, strict=True))
    assert trial.regularization == recipe.regularization and trial.backbone == recipe.backbone
    longer = apply(recipe, {"epochs_scale": 2.0}, space)
    assert [p.epochs for p in longer.phases] == [2 * p.epochs for p in recipe.phases]
    assert all(p.warmup_epochs < p.epochs for p in longer.phases)
    assert space["epochs_scale"].values == (0.5, 1.0, 2.0) and "LR03" in space["epochs_scale"].why


def test_unfreeze_depth_moves_merges_or_drops_fine_tuning_phases():
    far = far_recipe()  # head, finetune-last-group (4), finetune (k < 4)
    assert [p.trainable_from for p in far.phases][:2] == [5, 4] and len(far.phases) == 3
    space = search_space(far)
    deeper = apply(far, {"finetune_from": far.phases[-1].trainable_from - 1}, space)
    last = deeper.phases[-1]
    assert last.trainable_from == far.phases[-1].trainable_from - 1
    assert last.group_lr_multipliers[last.trainable_from] > 0
    assert all(m == 0 for m in last.group_lr_multipliers[:last.trainable_from])
    merged = apply(far, {"finetune_from": 4}, space)  # the gradual first phase merges into it
    assert [p.trainable_from for p in merged.phases] == [5, 4]
    assert merged.total_epochs == far.total_epochs
    head_only = apply(near_recipe(), {"finetune_from": 5})
    assert [p.trainable_from for p in head_only.phases] == [5]
    grown = apply(tiny_classes_recipe(), {"finetune_from": 4})
    assert [p.trainable_from for p in grown.phases] == [5, 4]
    assert grown.phases[1].learning_rate < grown.phases[0].learning_rate


def test_backbone_change_follows_the_new_backbone():
    recipe = far_recipe()
    assert runner_up_backbones(recipe) == ["efficientnet_lite0"]
    other = apply(recipe, {"backbone": "efficientnet_lite0"})
    assert other.backbone.name == "efficientnet_lite0"
    assert search_space(recipe, backbones=[])  # backbone fixed on request
    assert "backbone" not in search_space(recipe, backbones=[]).names


def test_backbones_the_advisor_excluded_are_no_runner_ups():
    recipe = decide(profile({"a": 600, "b": 600}), FAR, max_params_m=3.0).recipe
    evidence = recipe.reasons["backbone.name"].evidence
    assert evidence["excluded[efficientnet_lite0]"] == "3.4M parameters > the limit of 3M"
    assert runner_up_backbones(recipe) == []
    assert "backbone" not in search_space(recipe).names


def _as_before_the_rule_base(recipe: Recipe, excluded: str) -> Recipe:
    """``recipe`` with its BB01 reason as the advisor wrote it before the rule base filled its
    text (no ``excluded[...]`` evidence, no thresholds; the exclusions only in the text)."""
    old = recipe.reasons["backbone.name"]
    evidence = {k: v for k, v in old.evidence.items() if not k.startswith("excluded[")}
    text = ("mobilenet_v2 has the highest LogME among the allowed candidates. LogME 0.500, "
            "linear probe 90.0%" + (f"; excluded: {excluded}." if excluded else "."))
    reason = Reason(rule="BB01", text=text, evidence=evidence)
    return recipe.model_copy(update={"reasons": {**recipe.reasons, "backbone.name": reason}})


def test_an_older_recipe_keeps_the_backbones_its_text_says_were_excluded():
    recipe = decide(profile({"a": 600, "b": 600}), FAR, max_params_m=3.0).recipe
    old = _as_before_the_rule_base(recipe, "efficientnet_lite0 (3.4M parameters > the limit of 3M)")
    assert excluded_backbones(old.reasons["backbone.name"]) == {"efficientnet_lite0"}
    assert runner_up_backbones(old) == []
    assert "backbone" not in search_space(old).names
    # a name inside a why (the allowed list) is not an exclusion; nothing listed: none excluded
    three = report(probe("mobilenet_v2", 0.5, shift=3.0, entropy=0.7),
                   probe("efficientnet_lite0", 0.4, shift=3.0, entropy=0.7),
                   probe("resnet50", 0.3, shift=3.0, entropy=0.7), rotation=0.26)
    recipe = decide(profile({"a": 600, "b": 600}), three).recipe
    listed = _as_before_the_rule_base(
        recipe, "efficientnet_lite0 (not in the allowed list (mobilenet_v2, resnet50))")
    assert runner_up_backbones(listed) == ["resnet50"]
    assert runner_up_backbones(_as_before_the_rule_base(recipe, "")) == [
        "efficientnet_lite0", "resnet50"]


def test_a_reason_that_cannot_tell_what_was_excluded_offers_no_runner_up():
    recipe = _as_before_the_rule_base(far_recipe(), "one backbone (too large)")
    assert excluded_backbones(recipe.reasons["backbone.name"]) is None
    assert runner_up_backbones(recipe) == []
    space = search_space(recipe)
    assert "backbone" not in space.names
    assert any("does not say which probed backbones" in n for n in space.notes)
    named = search_space(recipe, backbones=["efficientnet_lite0"])  # the user's own choice
    assert space["head_lr"] == named["head_lr"]
    assert named["backbone"].values == ("mobilenet_v2", "efficientnet_lite0")


def test_unknown_names_are_refused():
    with pytest.raises(InvalidParameterError, match="dimensions"):
        apply(tiny_recipe(), {"learning_rate": 0.1})
    with pytest.raises(InvalidParameterError, match="include"):
        search_space(tiny_recipe(), include=["nope"])


def test_the_space_imports_no_tensorflow():
    code = ("import sys; from autotransfer.tuning.space import search_space; "
            "from tests.train.helpers import tiny_recipe; search_space(tiny_recipe()); "
            "sys.exit('tensorflow' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_an_exactly_fitted_head_has_no_learning_rate_to_search():
    tiny = tiny_classes_recipe()  # FZ03 keeps the backbone frozen, so HEAD01 fits the head
    assert tiny.head.solver == "lbfgs" and tiny.reasons["head.solver"].rule == "HEAD01"
    space = search_space(tiny)
    assert "head_lr" not in space.names and any("HEAD01" in n for n in space.notes)
    fine = apply(tiny, {**space.defaults(), "finetune_from": 4}, space)
    assert fine.head.solver == "lbfgs" and fine.solves_head(fine.phases[0])  # then fine-tunes
    assert not fine.solves_head(fine.phases[-1])
    assert "head_lr" in search_space(near_recipe()).names
