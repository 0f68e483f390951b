"""The estimator-style API and the 'advise' command, end to end on small synthetic data."""

from __future__ import annotations

import json

import pytest

from autotransfer.cli import main
from tests.data.builders import make_class_folders

pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    make_class_folders(root / "train", {"a": 12, "b": 12, "c": 4}, size=32)
    make_class_folders(root / "val", {"a": 3, "b": 3, "c": 3}, size=32, seed=900)
    return root


def test_advisor_fit_sets_fitted_attributes(dataset, tmp_path):
    from autotransfer.advisor.advise import Advisor
    from autotransfer.probes.cache import FeatureCache

    advisor = Advisor(backbones=["test_tiny"], weights=None, per_class=8)
    assert not hasattr(advisor, "recipe_")  # __init__ only stores arguments
    advisor.cache = FeatureCache(tmp_path)
    assert advisor.fit(dataset) is advisor
    assert advisor.recipe_.backbone.name == "test_tiny"
    assert advisor.recipe_.backbone.weights == "none"  # trains from the weights it probed
    assert advisor.profile_.n_images == 37 and advisor.candidates_[0].backbone == "test_tiny"
    assert advisor.facts_["imbalance"] == 3.0 and advisor.recipe_.data.class_weighting == "balanced"
    json.dumps(advisor.advice_.to_dict())  # serialisable, NaN facts included


def test_advise_command_writes_a_loadable_recipe_and_explains(dataset, tmp_path, capsys, shared_weights, monkeypatch):
    from autotransfer.recipe.io import load_recipe

    monkeypatch.setenv("AUTOTRANSFER_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "recipe.yaml"
    code = main(["advise", str(dataset), "-b", "mobilenet_025", "--sample", "8", "-o", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    recipe = load_recipe(out)
    assert recipe.backbone.name == "mobilenet_025"
    assert "Why" in captured.out and "BB01" in captured.out and "IMB01" in captured.out
    assert f"Wrote the recipe to {out}" in captured.err

    assert main(["advise", str(dataset), "-b", "mobilenet_025", "--sample", "8", "-o",
                 str(tmp_path / "r.json"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["recipe"]["backbone"]["name"] == "mobilenet_025" and data["recipe_path"].endswith("r.json")


def test_advise_rejects_an_unknown_preset_before_measuring(dataset, capsys):
    assert main(["advise", str(dataset), "--preset", "fastest"]) == 2
    assert "Unknown preset 'fastest'" in capsys.readouterr().err


def test_advise_rejects_a_bad_time_budget_before_measuring(dataset, tmp_path, capsys):
    assert main(["advise", str(dataset), "--time-budget", "soon", "-o",
                 str(tmp_path / "r.yaml")]) == 2
    err = capsys.readouterr().err
    assert "time_budget" in err and "'soon'" in err and "30m" in err
    assert not (tmp_path / "r.yaml").exists()


def test_advisor_follows_scikit_learn_conventions():
    from sklearn.base import clone

    from autotransfer.advisor.advise import Advisor

    advisor = Advisor(backbones=["test_tiny"], weights=None, per_class=8, time_budget="20m")
    assert repr(advisor) == ("Advisor(backbones=['test_tiny'], per_class=8, time_budget='20m', "
                             "weights=None)")  # the arguments that differ from the defaults
    assert repr(Advisor()) == "Advisor()"
    params = advisor.get_params()
    assert params["backbones"] == ["test_tiny"] and params["preset"] == "standard"
    assert params["verbose"] == 1 and params["precision"] == "auto"

    copy = clone(advisor)
    assert copy is not advisor and copy.get_params() == params
    assert copy.backbones is not advisor.backbones  # deep: a change to one leaves the other
    assert copy.set_params(preset="quick", max_params_m=5.0) is copy
    assert copy.preset == "quick" and advisor.preset == "standard"
    assert "preset='quick'" in repr(copy) and "max_params_m=5.0" in repr(copy)


def test_a_fitted_advisor_clones_unfitted(dataset, tmp_path):
    from sklearn.base import clone

    from autotransfer.advisor.advise import Advisor
    from autotransfer.probes.cache import FeatureCache

    advisor = Advisor(backbones=["test_tiny"], weights=None, per_class=8,
                      cache=FeatureCache(tmp_path), verbose=0).fit(dataset)
    assert hasattr(advisor, "advice_")
    fresh = clone(advisor)
    assert not hasattr(fresh, "advice_") and fresh.get_params()["per_class"] == 8
    with pytest.raises(ValueError, match="Invalid parameter 'speed'"):
        fresh.set_params(speed=2)


def test_advisor_fit_shows_progress_unless_silent(dataset, tmp_path, capsys):
    from autotransfer.advisor.advise import Advisor
    from autotransfer.probes.cache import FeatureCache

    Advisor(backbones=["test_tiny"], weights=None, per_class=8,
            cache=FeatureCache(tmp_path)).fit(dataset)
    assert "Probing test_tiny" in capsys.readouterr().err  # verbose=1: the steps on stderr
    Advisor(backbones=["test_tiny"], weights=None, per_class=8, cache=FeatureCache(tmp_path),
            verbose=0).fit(dataset)
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("failure", [RuntimeError("the probe failed"), KeyboardInterrupt()])
def test_a_failed_or_interrupted_fit_releases_the_decoded_sample(dataset, monkeypatch, failure):
    from autotransfer.advisor.advise import Advisor
    from autotransfer.data.profile import profile_dataset
    from autotransfer.probes import probe, sample

    profile = profile_dataset(dataset, workers=1)
    records = sample.sample_records(profile, per_class=2)
    kept = []

    def probe_then_fail(*args, **kwargs):
        decoded = sample.sample_images(records, profile.root)  # kept for the later measurements
        decoded.at(8)
        kept.append(decoded)
        raise failure

    monkeypatch.setattr(probe, "probe_dataset", probe_then_fail)
    with pytest.raises(type(failure)):
        Advisor(backbones=["test_tiny"], weights=None, verbose=0).fit(profile)
    assert kept and sample.sample_images(records, profile.root) is not kept[0]  # released
    sample.forget_sample_images()
