"""The typed phase record: frozen, returned anew by every update, and round-tripped through JSON."""

from __future__ import annotations

import dataclasses
import json

import pytest

from autotransfer.train.phases import (AdaBNRecord, CVPoint, ExecState, FeatureUse, Measure,
                                       PhaseRecord, SolverRecord, phase_records, total_epochs)


def record(**kw):
    return PhaseRecord(name="head", trainable_from=5, epochs_planned=3, monitor="val_loss", **kw)


def test_epochs_give_new_records_and_early_stopping_follows_the_monitor():
    r0 = record()
    r1, improved = r0.after_epoch({"loss": 1.0, "val_loss": 0.9, "lr": 0.1}, 2.0, patience=1)
    assert improved and r0.epochs_run == 0 and r0.history == {}  # the old record is unchanged
    assert (r1.epochs_run, r1.best_epoch, r1.best_value, r1.wait) == (1, 0, 0.9, 0)
    r2, improved = r1.after_epoch({"loss": 0.8, "val_loss": 0.95, "lr": 0.1}, 4.0, patience=1)
    assert not improved and r2.stopped_early and r2.finished and r2.best_epoch == 0
    assert r2.history["val_loss"] == (0.9, 0.95) and r2.seconds_per_epoch == 3.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        r2.epochs_run = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        r2.history["loss"] = (1.0,)  # type: ignore[index]
    acc = PhaseRecord("h", 5, 2, monitor="val_accuracy")
    acc, up = acc.after_epoch({"val_accuracy": 0.5}, 1.0, patience=5)
    acc, up = acc.after_epoch({"val_accuracy": 0.7}, 1.0, patience=5)
    assert up and acc.best_epoch == 1 and acc.still_improving and not acc.stopped_early
    with pytest.raises(RuntimeError, match="monitor"):
        record().after_epoch({"loss": 1.0}, 1.0, patience=1)


def test_a_record_round_trips_through_json_with_its_solver_and_features():
    solver = SolverRecord(c=0.1, chosen_by="cross-validation", folds=5,
                          cv=(CVPoint(0.1, 0.9, 0.3), CVPoint(1.0, 0.8, 0.4)), n_images=20,
                          n_views=4, train_accuracy=0.95, train_loss=0.2, seconds=1.5)
    features = FeatureUse(True, "4 augmented view(s) per image", 4, "pooled features", (32,),
                          1024, build_seconds=2.0, shared=True, reused_seconds=1.0,
                          view_seconds=(0.6, 0.5, 0.5, 0.5), val_seconds=0.3)
    r = dataclasses.replace(record(), features=features, batch_size=8,
                            trainable_params={"head": 66}).solved(
        solver, {"accuracy": 0.95, "loss": 0.2, "val_accuracy": 0.9, "val_loss": 0.3})
    assert r.solver.cv_accuracy == 0.9 and r.best_value == 0.3 and r.seconds == 3.5
    back = PhaseRecord.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back == r
    assert phase_records({"phases": [r.to_dict(), record().to_dict()]}) == (r, record())
    assert total_epochs([r, record()]) == 1


def test_a_dict_written_before_the_records_existed_still_reads():
    old = {"name": "fine_tune", "trainable_from": 2, "epochs_planned": 4, "epochs_run": 2,
           "stopped_early": False, "monitor": "val_loss", "best_value": 0.5, "best_epoch": 1,
           "wait": 0, "seconds": 3.0, "epoch_seconds": [1.0, 2.0], "seconds_per_epoch": 1.5,
           "history": {"loss": [1.0, 0.8]}, "feature_cache": {"used": False, "reason": "x",
                                                             "views": 0, "boundary": "",
                                                             "feature_shape": [], "bytes": 0,
                                                             "build_seconds": 0.0},
           "trainable_params": {"stem": 0}, "batch_size": 8}
    r = PhaseRecord.from_dict(old)
    assert r.epochs_run == 2 and r.solver is None and not r.features.used
    assert r.seconds == 3.0 and r.history["loss"] == (1.0, 0.8)


def test_the_execution_state_round_trips_as_a_checkpoint_saves_it():
    adabn = AdaBNRecord(0, 12, 40, 0.3, Measure(0.5, 1.0), Measure(0.6, 0.9))
    state = ExecState(batch_size=4, phase=1, global_epoch=3,
                      phases=(record(epochs_run=2, best_epoch=1, best_value=0.4),), adabn=adabn)
    state = state.with_record(1, PhaseRecord("fine", 2, 2))
    assert ExecState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    with pytest.raises(IndexError):
        state.with_record(5, record())
    assert AdaBNRecord.from_dict(None) is None


def test_readers_of_records_import_no_tensorflow_and_lower_layers_no_trainer():
    import ast
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, autotransfer.train.phases, autotransfer._version; "
            "print('tensorflow' in sys.modules, 'keras' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False"]
    root = Path(__file__).parents[2] / "autotransfer"
    for layer in ("data", "backbones", "probes"):  # AdaBN lives with the backbones
        for path in (root / layer).glob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module:
                    assert not node.module.startswith("autotransfer.train"), (path, node.module)


def replay(values, tie_break, patience=10, losses=None, planned=None):
    """The record after feeding ``values`` of val_accuracy (and ``losses`` of val_loss)."""
    r = PhaseRecord("ft", 2, planned or len(values), monitor="val_accuracy")
    news = []
    for i, v in enumerate(values):
        logs = {"val_accuracy": v} | ({} if losses is None else {"val_loss": losses[i]})
        r, new = r.after_epoch(logs, 1.0, patience=patience, tie_break=tie_break)
        news.append(new)
        if r.finished:
            break
    return r, news


# BUD04's "longer" phase (docs/benchmarks/budget_use.md): 0.935 first at epoch 3, tied at 8, 11-13
TIED_ACC = [0.90, 0.92, 0.935, 0.93, 0.925, 0.93, 0.935, 0.93, 0.925, 0.935, 0.935, 0.935]
TIED_LOSS = [0.50, 0.40, 0.35, 0.34, 0.33, 0.32, 0.30, 0.31, 0.29, 0.28, 0.27, 0.275]


@pytest.mark.parametrize("tie_break, best", [("earliest", 2), ("latest", 11),
                                             ("second_metric", 10)])
def test_ties_at_the_best_value_are_broken_as_rule_es01_says(tie_break, best):
    r, news = replay(TIED_ACC, tie_break, losses=TIED_LOSS)
    assert r.best_epoch == best and r.best_value == 0.935
    assert news[best] and not any(news[best + 1:])  # the last "new best" is the one restored
    # patience counts from the last strict improvement (epoch 2), whichever tie-break
    assert r.wait == 9 and not r.stopped_early


def test_a_tie_never_lengthens_training():
    for tie_break in ("earliest", "latest", "second_metric"):
        r, _ = replay([0.8, 0.9, 0.9, 0.9, 0.9, 0.9], tie_break, patience=3, planned=10,
                      losses=[0.5, 0.4, 0.3, 0.2, 0.1, 0.05])
        assert r.stopped_early and r.epochs_run == 5, tie_break
        assert r.best_epoch == {"earliest": 1, "latest": 4, "second_metric": 4}[tie_break]


def test_second_metric_falls_back_to_the_earliest_and_works_for_val_loss():
    r, _ = replay([0.9, 0.9], "second_metric")  # no val_loss logged: nothing to break the tie
    assert r.best_epoch == 0
    r, _ = replay([0.9, 0.9, 0.9], "second_metric", losses=[0.3, 0.2, 0.25])
    assert r.best_epoch == 1  # a later tie with a higher loss does not replace it
    loss = PhaseRecord("ft", 2, 3, monitor="val_loss")
    for acc in (0.80, 0.85, 0.82):
        loss, _ = loss.after_epoch({"val_loss": 0.4, "val_accuracy": acc}, 1.0, patience=5,
                                   tie_break="second_metric")
    assert loss.best_epoch == 1 and loss.wait == 2


def test_a_plateau_won_on_ties_is_not_still_improving():
    """FINAL02 lengthens a phase only when its monitored value rose at its last epoch: an epoch
    that merely won a tie (ES01) is restored, but the phase is not lengthened for it."""
    for tie_break in ("earliest", "latest", "second_metric"):
        plateau, _ = replay([0.8, 0.9, 0.9, 0.9, 0.9], tie_break, patience=10,
                            losses=[0.5, 0.4, 0.3, 0.2, 0.1])
        assert not plateau.still_improving, tie_break
        rising, _ = replay([0.8, 0.85, 0.9], tie_break, patience=10, losses=[0.5, 0.4, 0.3])
        assert rising.still_improving, tie_break


@pytest.mark.parametrize("tolerance", ["0.1", True, -1e-6, 1.5])
def test_a_bad_tie_tolerance_in_the_rule_base_is_a_clear_error(monkeypatch, tolerance):
    from autotransfer.errors import InvalidConfigError
    from autotransfer.train import phases

    monkeypatch.setattr("autotransfer.advisor.rules.rule_params",
                        lambda rule_id: {"tie_break": "latest", "tolerance": tolerance})
    with pytest.raises(InvalidConfigError, match="ES01.*tolerance"):
        phases.tie_rule()


def test_the_rule_base_sets_the_tie_break(monkeypatch):
    from autotransfer.errors import InvalidConfigError
    from autotransfer.train import phases

    monkeypatch.setattr("autotransfer.advisor.rules.rule_params",
                        lambda rule_id: {"tie_break": "first", "tolerance": 1e-6})
    with pytest.raises(InvalidConfigError, match="ES01.*tie_break"):
        phases.tie_rule()


def test_a_resumed_record_breaks_ties_as_the_uninterrupted_one():
    whole, _ = replay(TIED_ACC, "second_metric", losses=TIED_LOSS)
    half, _ = replay(TIED_ACC[:6], "second_metric", losses=TIED_LOSS[:6],
                     planned=len(TIED_ACC))
    resumed = PhaseRecord.from_dict(json.loads(json.dumps(half.to_dict())))
    for acc, loss in zip(TIED_ACC[6:], TIED_LOSS[6:], strict=True):
        resumed, _ = resumed.after_epoch({"val_accuracy": acc, "val_loss": loss}, 1.0,
                                         patience=10, tie_break="second_metric")
    assert resumed == whole


def test_by_default_the_lowest_loss_of_the_tied_epochs_is_restored():
    """Rule ES01 as shipped: not the earliest of the tied epochs (the former rule)."""
    r = PhaseRecord("ft", 2, len(TIED_ACC), monitor="val_accuracy")
    for acc, loss in zip(TIED_ACC, TIED_LOSS, strict=True):
        r, new = r.after_epoch({"val_accuracy": acc, "val_loss": loss}, 1.0, patience=10)
    assert r.best_epoch == 10 and r.best_value == 0.935 and r.wait == 9 and not new
