"""The tie-break bench's arithmetic: replaying records, and pooling paired results."""

from __future__ import annotations

import json

import pytest

from tests.tools.load import load_tool


@pytest.fixture(scope="module")
def bench():
    return load_tool("bench_es_ties")


def phase(best: dict[str, int], test: dict[str, str]) -> dict:
    return {"name": "ft", "best": best, "test": test}


def test_replay_stops_as_the_trainer_and_breaks_ties_by_the_rule(bench):
    history = {"val_accuracy": [0.8, 0.9, 0.85, 0.9, 0.9, 0.7, 0.7], "val_loss": [
        0.5, 0.4, 0.45, 0.3, 0.35, 0.6, 0.6], "loss": [1.0] * 7}
    got = {t: bench.replay(history, "val_accuracy", 3, 10, t) for t in bench.TIE_BREAKS}
    assert {t: r.best_epoch for t, r in got.items()} == {
        "earliest": 1, "latest": 4, "second_metric": 3}
    assert all(r.stopped_early and r.epochs_run == 5 for r in got.values())


def test_pooled_paired_counts_use_the_shipped_phase_or_every_phase(bench):
    results = [{"phases": [{"solved": True},
                           phase({"earliest": 0, "latest": 1, "second_metric": 1},
                                 {"0": "1100", "1": "1011"}),
                           phase({"earliest": 2, "latest": 3, "second_metric": 2},
                                 {"2": "0000", "3": "1110"})]}]
    assert bench.pooled(results, "latest", True)[:2] == (3, 0)
    assert bench.pooled(results, "latest", False)[:2] == (5, 1)
    assert bench.pooled(results, "second_metric", True) == (0, 0, 1.0)


def test_records_replay_counts_where_the_tie_breaks_disagree(bench, tmp_path):
    grid = {"grid": [{"recipe": {"early_stopping": {"patience": 10}}, "phases": [
        {"val_accuracy": [0.5, 0.6, 0.6], "val_loss": [0.9, 0.8, 0.7], "epochs_planned": 3},
        {"val_accuracy": [0.5, 0.6, 0.55], "val_loss": [0.9, 0.8, 0.7], "epochs_planned": 3}]}]}
    (tmp_path / "advice.json").write_text(json.dumps(grid))
    rec = bench.replay_records(tmp_path / "advice.json")
    assert (rec["phases"], rec["differ"]) == (2, 1)
    assert rec["later"]["second_metric"] == {"moved": 1, "mean_epochs_later": 1.0}
