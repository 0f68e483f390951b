"""Rule FINAL03 for the linear probe: its cross-validated C is kept by the final training."""

from __future__ import annotations

import pytest

from autotransfer.data.models import ImageRecord
from autotransfer.data.splits import DataSplits
from autotransfer.oneshot.final_plan import probe_c, probe_final, refined_final
from autotransfer.train.phases import CVPoint, PhaseRecord, SolverRecord
from autotransfer.tuning.baseline import ProbeRun, linear_probe_recipe
from tests.train.helpers import tiny_recipe

HEAD_ONLY = [{"name": "head", "epochs": 3, "trainable_from": 5, "learning_rate": 0.01}]


def _image(i: int, split: str) -> ImageRecord:
    return ImageRecord(path=f"{split}/{i}.png", label="a" if i % 2 else "b", split=split,
                       format="PNG", width=8, height=8, mode="RGB", file_size=10, sha=f"{i}",
                       grayscale=False, has_alpha=False)


def _splits(n_train: int = 8, n_val: int = 2) -> DataSplits:
    return DataSplits(root="/data", class_names=["a", "b"],
                      train=[_image(i, "train") for i in range(n_train)],
                      val=[_image(100 + i, "val") for i in range(n_val)],
                      test=[_image(200, "test")], val_source="folder")


def _probe(recipe, c: float = 0.316) -> ProbeRun:
    solver = SolverRecord(c=c, chosen_by="cross-validation", folds=5,
                          cv=(CVPoint(c, 0.9, 0.3),), n_images=8, n_views=4,
                          train_accuracy=1.0, train_loss=0.1, seconds=0.1)
    phase = PhaseRecord("head", 5, 1, epochs_run=1, best_epoch=0, solver=solver)
    return ProbeRun(linear_probe_recipe(recipe), {"phases": [phase.to_dict()]}, 1.0)


def _exact(**overrides):
    return tiny_recipe(head={"dropout": 0.0, "solver": "lbfgs"}, phases=HEAD_ONLY, **overrides)


@pytest.mark.parametrize("mode, growth", [("train", None), ("train+val", "1.25×")])
def test_the_kept_linear_probe_trains_with_its_cross_validated_c(mode, growth):
    final = probe_final(_probe(tiny_recipe()), mode, _splits())
    assert final.recipe.head.lbfgs_c == pytest.approx(0.316)  # no second cross-validation
    reason = final.recipe.reasons["head.lbfgs_c"]
    assert reason.rule == "FINAL03" and "the linear probe's 5-fold" in reason.text
    assert len(final.splits.train) == (10 if mode == "train+val" else 8)
    assert reason.evidence["growth"] == (1.25 if growth else 1.0)
    assert (growth or "the same images") in reason.text


@pytest.mark.parametrize("mode", ["train", "train+val"])
def test_an_advised_head_only_recipe_keeps_the_probes_c(mode):
    probe = _probe(tiny_recipe())  # the probe of the recipe sized before the budget shrank
    final = refined_final(mode, _exact(), None, (), _splits(), None, probe=probe)
    assert final.recipe.head.lbfgs_c == pytest.approx(0.316)
    assert "FINAL03" == final.recipe.reasons["head.lbfgs_c"].rule
    assert "the linear probe's" in final.note
    # without the probe it cross-validates, as before
    alone = refined_final(mode, _exact(), None, (), _splits(), None)
    assert alone.recipe.head.lbfgs_c is None


def test_the_probes_c_is_kept_only_for_the_same_features():
    probe = _probe(tiny_recipe())
    other_size = _exact(backbone={"name": "test_tiny", "input_size": 48, "weights": "none"})
    assert probe_c(other_size, probe) == other_size  # other features: C is chosen again
    other_seed = _exact(seed=3)  # other folds
    assert probe_c(other_seed, probe) == other_seed
    assert probe_c(tiny_recipe(), probe) == tiny_recipe()  # it fine-tunes: not the probe
    assert probe_c(_exact(), None) == _exact()
    assert probe_c(_exact(), probe).head.lbfgs_c == pytest.approx(0.316)
