"""The recipe's domain_adaptation fields (issue 19): methods, their parameters, validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from autotransfer.recipe.schema import (FEATURE_METHODS, LOSS_METHODS, TARGET_METHODS,
                                        DomainAdaptation)
from tests.train.helpers import tiny_recipe

HEAD_ONLY = [{"name": "head", "epochs": 2, "trainable_from": 5, "learning_rate": 0.01}]


@pytest.mark.parametrize("method", ["none", "adabn", "adabn_target", *LOSS_METHODS])
def test_every_method_validates_with_its_defaults(method):
    recipe = tiny_recipe(domain_adaptation={"method": method})
    da = recipe.domain_adaptation
    assert da.needs_target == (method in TARGET_METHODS)
    assert da.has_loss == (method in LOSS_METHODS)


def test_loss_parameters_validate():
    da = DomainAdaptation(method="mcc", weight=0.3, mcc_temperature=2.0)
    assert da.weight == 0.3
    for bad in ({"weight": -0.1}, {"weight": 1000}, {"mcc_temperature": 0},
                {"discriminator_units": 2}, {"ramp_steps": -1}, {"weight": float("nan")}):
        with pytest.raises(ValidationError):
            DomainAdaptation(method="dann", **bad)
    with pytest.raises(ValidationError, match="unexpected|extra|not permitted"):
        DomainAdaptation(method="coral", target="/data/target")  # the target is no recipe field


@pytest.mark.parametrize("method", ["none", "adabn", "adabn_target"])
def test_loss_parameters_with_a_method_without_loss_are_refused(method):
    with pytest.raises(ValidationError, match="only apply to the loss methods"):
        DomainAdaptation(method=method, weight=0.5)


def test_a_loss_method_needs_a_gradient_phase():
    with pytest.raises(ValidationError, match="every phase fits the head exactly"):
        tiny_recipe(domain_adaptation={"method": "mcc"}, phases=HEAD_ONLY,
                    head={"solver": "lbfgs", "dropout": 0.0})


@pytest.mark.parametrize("method", FEATURE_METHODS)
def test_feature_methods_need_trainable_features(method):
    with pytest.raises(ValidationError, match="aligns features"):
        tiny_recipe(domain_adaptation={"method": method, "bottleneck_units": 0},
                    phases=HEAD_ONLY)
    with pytest.raises(ValidationError, match="cannot fit"):
        tiny_recipe(domain_adaptation={"method": method},
                    phases=HEAD_ONLY + [{"name": "ft", "epochs": 1, "trainable_from": 3,
                                         "learning_rate": 0.001}],
                    head={"solver": "lbfgs", "dropout": 0.0})
    # a bottleneck, a hidden layer or an unfrozen group each make the features trainable
    tiny_recipe(domain_adaptation={"method": method}, phases=HEAD_ONLY)
    tiny_recipe(domain_adaptation={"method": method, "bottleneck_units": 0}, phases=HEAD_ONLY,
                head={"hidden_units": 32, "dropout": 0.0})
    tiny_recipe(domain_adaptation={"method": method, "bottleneck_units": 0})


def test_the_bottleneck_becomes_the_heads_hidden_layer_for_feature_methods_only():
    from autotransfer.train.model import head_hidden_units

    assert head_hidden_units(tiny_recipe(domain_adaptation={"method": "coral"})) == 256
    assert head_hidden_units(tiny_recipe(domain_adaptation={"method": "mcc"})) == 0
    assert head_hidden_units(tiny_recipe(domain_adaptation={"method": "dann"},
                                         head={"hidden_units": 64, "dropout": 0.0})) == 64


def test_adabn_target_before_phase_must_exist():
    with pytest.raises(ValidationError, match="before_phase"):
        tiny_recipe(domain_adaptation={"method": "adabn_target", "before_phase": 5})
