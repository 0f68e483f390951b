"""``autotransfer tune``: JSON output, tables, the refined recipe next to the given one, errors."""

from __future__ import annotations

import json

from autotransfer.cli import EXIT_OK, EXIT_USER_ERROR, main
from autotransfer.recipe.io import load_recipe, save_recipe
from tests.train.helpers import make_colour_dataset, tiny_recipe


def test_tune_command_json_and_table(tmp_path, capsys):
    dataset = make_colour_dataset(tmp_path / "ds", {"red": 6, "green": 6, "blue": 6})
    recipe = tiny_recipe(phases=[{"name": "head", "epochs": 2, "trainable_from": 5,
                                  "learning_rate": 0.05}])
    save_recipe(recipe, tmp_path / "my.yaml")
    out = tmp_path / "tuning"
    args = ["tune", str(dataset), "-r", str(tmp_path / "my.yaml"), "-o", str(out), "--trials", "2",
            "--fixed", "weight_decay", "--backbones", "none"]
    assert main([*args, "--json"]) == EXIT_OK
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert data["role"] == "local" and len(data["trials"]) == 2
    assert "weight_decay" not in {d["name"] for d in data["space"]["dimensions"]}
    assert f"Wrote {out / 'tuning.json'}" in captured.err
    assert load_recipe(tmp_path / "my.tuned.yaml") == load_recipe(out / "recipe.tuned.yaml")
    # the same command again continues (nothing left to do) and prints the table
    assert main(args) == EXIT_OK
    assert "Trials" in capsys.readouterr().out


def test_tune_command_errors_exit_2(tmp_path, capsys):
    assert main(["tune", str(tmp_path / "missing"), "--time-budget", "10"]) == EXIT_USER_ERROR
    assert "30m" in capsys.readouterr().err
    save_recipe(tiny_recipe(), tmp_path / "r.yaml")
    code = main(["tune", str(tmp_path / "missing"), "-r", str(tmp_path / "r.yaml"), "-o",
                 str(tmp_path / "t"), "--only", "nope"])
    assert code == EXIT_USER_ERROR
    assert "include" in capsys.readouterr().err


def test_tune_with_a_target_and_a_recipe_that_does_not_adapt_exits_2(tmp_path, capsys):
    from tests.train.helpers import make_shifted_target

    dataset = make_colour_dataset(tmp_path / "ds", {"red": 4, "green": 4})
    target = make_shifted_target(tmp_path / "target", {"red": 2, "green": 2})
    save_recipe(tiny_recipe(), tmp_path / "plain.yaml")  # domain_adaptation.method 'none'
    code = main(["tune", str(dataset), "-r", str(tmp_path / "plain.yaml"), "-o",
                 str(tmp_path / "t"), "--target", str(target)])
    assert code == EXIT_USER_ERROR
    err = " ".join(capsys.readouterr().err.split())
    assert "domain_adaptation.method is 'none'" in err and "advise DATASET --target" in err
    assert not (tmp_path / "t").exists()
