"""A search around a recipe that adapts to target images (rule DA11): adapting trials, ranked by
DA09's criterion on the target, λ searched, target labels never read."""

from __future__ import annotations

import dataclasses
import json
import time

import pytest

from autotransfer.advisor.rules import rule_params
from autotransfer.recipe.schema import Reason
from autotransfer.tuning import adapting
from autotransfer.tuning.results import TrialRecord
from autotransfer.tuning.space import apply, search_space
from tests.train.helpers import source_and_target, tiny_recipe, untouchable_target


def _recipe(method: str = "coral", weight: float = 1.0, **overrides):
    return tiny_recipe(domain_adaptation={"method": method, "weight": weight},
                       phases=[{"name": "head", "epochs": 2, "trainable_from": 5,
                                "learning_rate": 0.01}], **overrides)


def test_lambda_is_a_dimension_over_0_and_da09s_weights_only_for_a_loss_method():
    grid = tuple(float(w) for w in str(rule_params("DA09")["weights"]).split(","))
    recipe = _recipe(weight=0.5)
    dim = search_space(recipe)[adapting.DIMENSION]
    assert dim.kind == "choice" and dim.default == 0.5 and dim.range_rule == "DA11"
    assert set(dim.values) == {0.0, 0.5, *grid}
    assert apply(recipe, search_space(recipe).defaults()) == recipe  # trial 0: the recipe
    changed = apply(recipe, {adapting.DIMENSION: 0.0})
    assert changed.domain_adaptation.weight == 0.0 and changed.domain_adaptation.method == "coral"
    for method in ("none", "adabn_target"):
        assert adapting.DIMENSION not in search_space(tiny_recipe(
            domain_adaptation={"method": method})).names


def _row(trial_id, score, val_loss=0.5, **changed):
    base = {"dropout": 0.0, adapting.DIMENSION: 1.0}
    return TrialRecord(trial_id=trial_id, status="COMPLETED", values={**base, **changed},
                       changed=changed, val_accuracy=0.9, val_loss=val_loss, score=score)


def test_the_linear_probe_value_makes_a_trial_the_exact_linear_head():
    from autotransfer.tuning.trial_recipe import LINEAR_PROBE

    recipe = _recipe().model_copy(update={"reasons": {"dropout": Reason(rule="X", text="t")}})
    probe = apply(recipe, {LINEAR_PROBE: True, "dropout": 0.3},
                  search_space(recipe, include=["dropout"]))
    assert probe.head.solver == "lbfgs" and probe.head.hidden_units == 0
    assert [p.trainable_from for p in probe.phases] == [5]
    assert probe.domain_adaptation.method == "none" and not probe.domain_adaptation.needs_target
    assert probe.head.dropout == recipe.head.dropout  # the head's other values are unused
    assert probe.reasons == recipe.reasons  # the search records its own provenance
    assert LINEAR_PROBE not in search_space(recipe).names  # a value no oracle draws


def _probe_row(score, seconds=2.0):
    from autotransfer.tuning.trial_recipe import LINEAR_PROBE

    return TrialRecord(trial_id=adapting.PROBE_TRIAL, status="COMPLETED",
                       values={LINEAR_PROBE: True}, changed={LINEAR_PROBE: True},
                       val_accuracy=0.8, val_loss=0.6, seconds=seconds, epochs=1.0, score=score)


def test_the_exact_linear_head_is_kept_when_it_scores_as_well_and_the_cheaper_wins_ties(
        tmp_path):
    recipe = _recipe()
    space = search_space(recipe, include=["dropout", adapting.DIMENSION])
    rows = [_row("00", -0.40), _row("01", -0.30, **{adapting.DIMENSION: 0.1})]
    rows = [dataclasses.replace(r, seconds=30.0) for r in rows]
    kept = adapting.summarise(tmp_path, recipe, space, [*rows, _probe_row(-0.30)],
                              role_name="local", stopped="", seconds=1.0, algorithm="random",
                              name="dev")
    assert kept.best_trial == adapting.PROBE_TRIAL
    refined = kept.refined
    assert refined.head.solver == "lbfgs" and refined.domain_adaptation.method == "none"
    assert all(p.trainable_from == 5 for p in refined.phases)
    reason = refined.reasons["head.solver"]
    assert reason.rule == "DA11" and reason.evidence["dev"] == -0.30
    why = kept.selection["why"]
    assert "exact linear head" in why and "at least the best adapting trial's (01: -0.3000)" in why
    assert "the cheaper model to train" in why and "(28 s less training than trial 01)" in why
    assert kept.selection["linear_probe"] == {"trial": "probe", "dev": -0.30, "seconds": 2.0,
                                              "kept": True}
    lost = adapting.summarise(tmp_path, recipe, space, [*rows, _probe_row(-0.35)],
                              role_name="local", stopped="", seconds=1.0, algorithm="random",
                              name="dev")
    assert lost.best_trial == "01" and lost.refined.domain_adaptation.method == "coral"
    assert "exact linear head (trial probe, the backbone frozen, no adaptation) scored " \
           "-0.3500, below it" in lost.selection["why"]
    assert lost.selection["linear_probe"]["kept"] is False


def test_the_best_score_is_kept_ties_go_to_trial_0_and_changes_carry_da11(tmp_path):
    recipe = _recipe()
    space = search_space(recipe, include=["dropout", adapting.DIMENSION])
    rows = [_row("00", -0.40), _row("01", -0.30, **{adapting.DIMENSION: 0.1}),
            _row("02", -0.35, dropout=0.1)]
    result = adapting.summarise(tmp_path, recipe, space, rows, role_name="local", stopped="",
                                seconds=1.0, algorithm="random", name="dev")
    assert result.best_trial == "01" and result.refined.domain_adaptation.weight == 0.1
    reason = result.refined.reasons["domain_adaptation.weight"]
    assert isinstance(reason, Reason) and reason.rule == "DA11"
    assert reason.evidence["dev"] == -0.30 and reason.evidence["dev_trial0"] == -0.40
    assert result.selection["rule"] == "DA11" and result.objective["rule"] == "DA11"
    assert result.objective["metric"] == "target_dev"
    assert result.to_dict()["objective"]["criterion"] == "dev"
    tie = adapting.summarise(tmp_path, recipe, space, [_row("00", -0.3), rows[1]],
                             role_name="local", stopped="", seconds=1.0, algorithm="random",
                             name="dev")
    assert tie.best_trial == "00" and tie.refined.domain_adaptation.weight == 1.0
    assert "the recipe as given is kept" in tie.selection["why"]
    from autotransfer.tuning.markdown import markdown

    text = markdown(tie)  # tuning.md says how the trials were ranked, and why nothing changed
    assert "Trials ranked by dev on the target images" in text and "rule DA11" in text
    assert "None: trial 00 has the best dev score" in text


def test_an_unchanged_trial_that_wins_says_the_recipe_as_given_is_kept(tmp_path):
    recipe = _recipe()
    space = search_space(recipe, include=["dropout", adapting.DIMENSION])
    # trial 02 proposed the recipe's own values (nothing changes), and scored best
    rows = [_row("00", -0.40), _row("01", -0.35, dropout=0.1), _row("02", -0.30)]
    result = adapting.summarise(tmp_path, recipe, space, rows, role_name="local", stopped="",
                                seconds=1.0, algorithm="random", name="dev")
    assert result.best_trial == "02" and result.refined.domain_adaptation.weight == 1.0
    assert result.selection["why"].endswith(": the recipe as given is kept")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return source_and_target(tmp_path_factory.mktemp("tune_adapt"), source=10, target=6)


def test_a_search_with_a_target_runs_adapting_trials_ranked_by_da09s_criterion(
        folders, tmp_path, monkeypatch):
    from autotransfer.train.adaptation import selection
    from autotransfer.tuning.tuner import tune

    source, target_dir = folders
    asked = []
    real = selection.scores

    def spy(c, criteria=selection.CRITERIA, seed=0):
        asked.append(tuple(criteria))
        return real(c, criteria, seed)

    monkeypatch.setattr(selection, "scores", spy)
    result = tune(source, _recipe("coral"), tmp_path / "t", trials=4, algorithm="random",
                  include=["dropout", adapting.DIMENSION], target=untouchable_target(target_dir),
                  stop_when_futile=True, verbose=0)
    criterion = str(rule_params("DA09")["criterion"])
    assert asked and set(asked) == {(criterion,)}  # the rule's criterion, nothing else
    done = [t for t in result.trials
            if t.status == "COMPLETED" and t.trial_id != adapting.PROBE_TRIAL]
    assert len(done) == 4  # TUNE02's stop (source validation) does not apply here
    saved = json.loads((tmp_path / "t" / "tuning.json").read_text())
    assert saved["objective"]["rule"] == "DA11" and saved["objective"]["criterion"] == criterion
    assert saved["selection"]["rule"] == "DA11"
    for t in done:  # every trial adapted to the target and was scored on it
        folder = tmp_path / "t" / "search" / f"trial_{t.trial_id}"
        metrics = json.loads((folder / "run" / "metrics.json").read_text())
        assert metrics["domain_adaptation"]["method"] == "coral"
        assert metrics["domain_adaptation"]["target_images"] == 12
        assert metrics["phases"][0]["history"]["adapt_loss"][-1] >= 0
        weight = t.values[adapting.DIMENSION]
        assert metrics["domain_adaptation"]["weight"] == pytest.approx(weight)
        assert metrics["target_score"] == {"criterion": criterion, "rule": "DA11",
                                           "score": pytest.approx(t.score)}
        result_file = json.loads((folder / "trial_result.json").read_text())
        assert result_file["objective"][f"target_{criterion}"] == pytest.approx(t.score)
    probe = result.trial(adapting.PROBE_TRIAL)  # scored beside the trials, ties to it
    best = max([*done, probe], key=lambda t: (t.score, t is probe, not t.changed))
    assert result.best_trial == best.trial_id
    if best is not probe:
        assert result.refined.domain_adaptation.weight == pytest.approx(
            best.values[adapting.DIMENSION])


def test_an_adapting_recipe_without_a_target_is_a_clear_error(folders, tmp_path):
    from autotransfer.errors import InvalidConfigError
    from autotransfer.tuning.tuner import tune

    with pytest.raises(InvalidConfigError, match="--target DIR"):
        tune(folders[0], _recipe("mcc"), tmp_path / "t", trials=1, verbose=0)
    assert not (tmp_path / "t").exists()


def test_a_target_for_a_recipe_that_does_not_adapt_is_a_clear_error(folders, tmp_path):
    from autotransfer.errors import InvalidConfigError
    from autotransfer.tuning.tuner import tune

    recipe = _recipe("none").model_copy(update={"name": "plain"})
    with pytest.raises(InvalidConfigError, match=r"'plain'.*method is 'none'.*--target"):
        tune(folders[0], recipe, tmp_path / "t", trials=1, verbose=0, target=folders[1])
    assert not (tmp_path / "t").exists()


def test_an_advised_recipe_is_advised_with_the_target(folders, tmp_path, monkeypatch):
    from autotransfer.advisor import advise
    from autotransfer.tuning.tuner import tune

    seen = {}

    class _Stop(Exception):
        pass

    def fit(self, dataset, progress=None):
        seen["target"] = self.target
        raise _Stop

    monkeypatch.setattr(advise.Advisor, "fit", fit)
    with pytest.raises(_Stop):
        tune(folders[0], None, tmp_path / "t", trials=1, verbose=0, target=folders[1])
    assert seen["target"] == folders[1]


def test_in_memory_scores_match_the_trainers_and_share_the_target_features(folders, tmp_path):
    """The score from cached features equals the one from the trained model on images, and a
    second trial on the same prefix reuses the target's features."""
    from autotransfer.data.splits import DataSplits
    from autotransfer.train.run import train
    from autotransfer.tuning.hypermodel import run_score
    from autotransfer.tuning.trials import ActivationStore, TrialAdaptation, run_trial

    source, target_dir = folders
    target = untouchable_target(target_dir)
    recipe = _recipe("coral", weight=0.3)
    run = train(source, recipe, tmp_path / "run", target=target, progress=False)
    splits = DataSplits.load(run.out / "splits.json")
    reference = run_score(run.out, target, recipe, "dev")
    store, shared = ActivationStore(splits), {}
    first = TrialAdaptation(recipe, target, shared)
    trial = run_trial(recipe, store, tmp_path / "trial", objective=first, criterion="dev")
    assert trial.metrics["target_score"]["score"] == pytest.approx(reference, rel=1e-2, abs=1e-3)
    assert len(shared) == 1 and first.last_target is not None
    second = TrialAdaptation(recipe.model_copy(update={"seed": recipe.seed}), target, shared)
    run_trial(recipe, store, tmp_path / "trial2", objective=second, criterion="dev")
    assert len(shared) == 1 and second.last_target is next(iter(shared.values()))


class _ClockPassesAfterTraining:
    """Moves ``deadline`` into the past once training ends: the clock ran out between the last
    batch and the scoring on the target."""

    def __init__(self, deadline):
        import keras

        class _Mover(keras.callbacks.Callback):
            def on_train_end(self, logs=None):
                deadline.deadline = 0.0

        self.callbacks = [_Mover(), deadline]


def test_a_trial_past_its_plan01_deadline_is_not_scored(folders, tmp_path, monkeypatch):
    import time

    from autotransfer.train.splits import load_or_make
    from autotransfer.tuning import trials
    from autotransfer.tuning.hypermodel import Deadline, TrialFailed
    from autotransfer.tuning.recipe_tuner import PAST_OWN_DEADLINE

    source, target_dir = folders
    recipe = _recipe("coral", weight=0.3)
    store = trials.ActivationStore(load_or_make(source, recipe, tmp_path / "splits.json",
                                                resume=False))

    def never(*args, **kwargs):
        raise AssertionError("a trial past its deadline was scored")

    monkeypatch.setattr(trials, "outputs", never)
    clock = _ClockPassesAfterTraining(Deadline(time.time() + 3600.0, PAST_OWN_DEADLINE))
    with pytest.raises(TrialFailed, match=r"ran past its own deadline \(rule PLAN01\)"):
        trials.run_trial(recipe, store, tmp_path / "trial", callbacks=clock.callbacks,
                         objective=trials.TrialAdaptation(recipe, untouchable_target(target_dir),
                                                          {}), criterion="dev")


def test_an_in_memory_trial_checks_its_deadline_while_the_target_features_are_computed(
        folders, tmp_path, monkeypatch):
    """The target images' pass through the frozen prefix is under the trial's deadline, batch by
    batch (rule PLAN01): a trial whose time runs out during it stops there, keeping no target
    features, rather than at the next fit's start. The hypermodel gives the trial its
    deadlines."""
    from autotransfer.train.splits import load_or_make
    from autotransfer.tuning import trials
    from autotransfer.tuning.hypermodel import Deadline, NaNGuard, RecipeHyperModel, TrialFailed
    from autotransfer.tuning.recipe_tuner import PAST_OWN_DEADLINE

    class _RunsOutOnTheTargetPass(Deadline):
        def on_predict_batch_begin(self, batch, logs=None):
            self.deadline = 0.0  # the clock runs out while the target images pass the prefix

    source, target_dir = folders
    recipe, target = _recipe("coral", weight=0.3), untouchable_target(target_dir)
    splits = load_or_make(source, recipe, tmp_path / "splits.json", resume=False)
    store, shared = trials.ActivationStore(splits), {}
    deadline = _RunsOutOnTheTargetPass(time.time() + 3600.0, PAST_OWN_DEADLINE)
    adaptation = trials.TrialAdaptation(recipe, target, shared, callbacks=[NaNGuard(), deadline])
    assert adaptation.callbacks == [deadline]  # the deadlines alone run with the pass
    with pytest.raises(TrialFailed, match=r"ran past its own deadline \(rule PLAN01\)"):
        trials.run_trial(recipe, store, tmp_path / "trial", callbacks=[deadline],
                         objective=adaptation, criterion="dev")
    assert shared == {}  # stopped during the pass, before the features were kept
    given = []

    def recording(recipe, store, out, *, objective=None, **kwargs):
        given.append(objective.callbacks)
        raise TrialFailed("recorded")

    monkeypatch.setattr(trials, "run_trial", recording)
    model = RecipeHyperModel(recipe, splits, store=store, target=target, criterion="dev")
    in_time = Deadline(time.time() + 3600.0)
    with pytest.raises(TrialFailed, match="recorded"):
        model.fit(None, recipe, trial_dir=tmp_path / "fit", callbacks=[in_time])
    assert given == [[in_time]]


def test_a_deadline_says_why_it_stopped_the_trial():
    from autotransfer.tuning.hypermodel import Deadline, TrialFailed

    for deadline, reason in ((Deadline(0.0), "end of the time budget"),
                             (Deadline(0.0, "ran past its own deadline"), "own deadline")):
        for hook in (deadline.on_train_begin, deadline.on_train_end,
                     lambda: deadline.on_train_batch_end(0)):
            with pytest.raises(TrialFailed, match=reason):
                hook()
    Deadline(time.time() + 60.0).on_train_end()  # before it: nothing


def test_an_adabn_target_trial_reports_the_validation_metrics_train_reports(folders, tmp_path):
    """Both measure the model as it ends, the target's BN statistics swapped in (what ``train``
    ships), not the frozen features computed before the swap."""
    from autotransfer.data.splits import DataSplits
    from autotransfer.train.run import train
    from autotransfer.tuning.trials import ActivationStore, TrialAdaptation, run_trial

    source, target_dir = folders
    target = untouchable_target(target_dir)
    recipe = _recipe("adabn_target")
    run = train(source, recipe, tmp_path / "run", target=target, progress=False)
    assert run.metrics["domain_adaptation"]["adabn_target"]["mean_abs_shift"] > 0
    store = ActivationStore(DataSplits.load(run.out / "splits.json"))
    trial = run_trial(recipe, store, tmp_path / "trial",
                      objective=TrialAdaptation(recipe, target, {}), criterion="dev")
    assert trial.metrics["domain_adaptation"]["adabn_target"] is not None
    for key in ("accuracy", "loss", "balanced_accuracy"):
        assert trial.metrics["val"][key] == pytest.approx(run.metrics["val"][key], rel=1e-3,
                                                          abs=1e-4), key


def test_trials_through_the_full_trainer_adapt_and_are_scored_too(folders, tmp_path):
    from autotransfer.tuning.tuner import tune

    source, target_dir = folders
    result = tune(source, _recipe("mcc", weight=0.3), tmp_path / "t", trials=1,
                  shared_cache=False, target=untouchable_target(target_dir), verbose=0)
    trial = result.trials[0]
    assert trial.status == "COMPLETED" and trial.score is not None
    run = tmp_path / "t" / "search" / f"trial_{trial.trial_id}" / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["domain_adaptation"]["method"] == "mcc" and (run / "model.keras").is_file()
    assert result.selection["rule"] == "DA11"


def test_the_final_training_reuses_the_target_features_of_the_trials(folders, tmp_path,
                                                                      monkeypatch):
    from autotransfer.data.profile import profile_dataset
    from autotransfer.data.splits import make_splits
    from autotransfer.oneshot.adapt import final_objective
    from autotransfer.train.adaptation.phase_objective import TargetAdaptation
    from autotransfer.train.run import train
    from autotransfer.tuning.trials import ActivationStore
    from autotransfer.tuning.tuner import tune

    source, target_dir = folders
    target, recipe = untouchable_target(target_dir), _recipe("coral")
    splits = make_splits(profile_dataset(source), val_fraction=0.25, seed=0)
    store = ActivationStore(splits)
    tune(splits, recipe, tmp_path / "t", trials=1, store=store, target=target, verbose=0)
    assert len(store.target_features) == 1  # kept with the store, for the final training
    cached = next(iter(store.target_features.values()))

    def recompute(*args, **kwargs):
        raise AssertionError("the target features were computed again")

    monkeypatch.setattr(TargetAdaptation, "target_features", recompute)
    objective = final_objective(recipe, target, store)
    run = train(splits, recipe, tmp_path / "final", feature_source=store, target=target,
                objective=objective, progress=False)
    assert objective.last_target is cached and run.metrics["domain_adaptation"]["method"] == "coral"
    assert final_objective(tiny_recipe(), target, store) is None  # no adaptation: the default


def test_an_adapting_search_scores_the_exact_linear_head_on_its_criterion(folders, tmp_path,
                                                                          monkeypatch):
    """The exact linear head is scored beside the trials, from the cached frozen features and
    the target's, shared with trial 0 (the same score as the trainer's model on images), in
    the table and tuning.md; a resumed search reads it back instead of training it again."""
    from autotransfer.data.splits import DataSplits
    from autotransfer.train.run import train
    from autotransfer.tuning import trials
    from autotransfer.tuning.hypermodel import run_score
    from autotransfer.tuning.trial_recipe import LINEAR_PROBE
    from autotransfer.tuning.tuner import tune

    source, target_dir = folders
    target, recipe = untouchable_target(target_dir), _recipe("coral")
    result = tune(source, recipe, tmp_path / "t", trials=1, target=target, verbose=0)
    probe = result.trial(adapting.PROBE_TRIAL)
    assert probe.status == "COMPLETED" and probe.values == {LINEAR_PROBE: True}
    assert probe.score is not None and probe.seconds > 0
    run = tmp_path / "t" / "search" / "trial_probe" / "run"
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["domain_adaptation"]["method"] == "none"
    assert metrics["phases"][0]["solver"] is not None  # fitted exactly, not by gradient
    assert metrics["target_score"]["score"] == pytest.approx(probe.score)
    assert result.selection["linear_probe"]["kept"] == (result.best_trial == "probe")
    assert "| probe" in (tmp_path / "t" / "tuning.md").read_text()
    head = apply(recipe, {LINEAR_PROBE: True})
    trained = train(DataSplits.load(tmp_path / "t" / "splits.json"), head, tmp_path / "head",
                    progress=False)
    assert probe.score == pytest.approx(run_score(trained.out, target, head, "dev"), rel=1e-2,
                                        abs=1e-3)

    def again(*args, **kwargs):
        raise AssertionError("the exact linear head was trained again")

    monkeypatch.setattr(trials, "run_trial", again)
    resumed = tune(source, recipe, tmp_path / "t", trials=1, target=target, verbose=0)
    assert resumed.trial(adapting.PROBE_TRIAL) == probe


def test_the_exact_linear_head_past_the_deadline_is_recorded_failed(folders, tmp_path):
    from autotransfer.train.splits import load_or_make
    from autotransfer.tuning.hypermodel import RecipeHyperModel

    source, target_dir = folders
    recipe = _recipe("coral")
    splits = load_or_make(source, recipe, tmp_path / "splits.json", resume=False)
    model = RecipeHyperModel(recipe, splits, target=untouchable_target(target_dir),
                             criterion="dev")
    said = []
    record = adapting.probe_candidate(recipe, model, tmp_path / "t", deadline=time.time() - 1.0,
                                      say=said.append)
    assert record.status == "FAILED" and "end of the time budget" in record.message
    assert record.score is None and said and "exact linear head" in said[0]
    assert not (tmp_path / "t" / "search" / "trial_probe" / adapting.PROBE_RESULT).exists()


def test_an_unexpected_failure_of_the_exact_linear_head_is_a_failed_row(folders, tmp_path,
                                                                        monkeypatch):
    """Any error of its training is recorded as a failed row, as a trial's is, instead of
    aborting the search; nothing is written as its result."""
    from autotransfer.train.splits import load_or_make
    from autotransfer.tuning import trials
    from autotransfer.tuning.hypermodel import RecipeHyperModel

    source, target_dir = folders
    recipe = _recipe("coral")
    splits = load_or_make(source, recipe, tmp_path / "splits.json", resume=False)
    model = RecipeHyperModel(recipe, splits, target=untouchable_target(target_dir),
                             criterion="dev")

    def broken(*args, **kwargs):
        raise ValueError("a broken solver")

    monkeypatch.setattr(trials, "run_trial", broken)
    said = []
    record = adapting.probe_candidate(recipe, model, tmp_path / "t", deadline=None,
                                      say=said.append)
    assert record.status == "FAILED" and record.message == "ValueError: a broken solver"
    assert record.score is None and any("not scored" in s for s in said)
    assert not (tmp_path / "t" / "search" / "trial_probe" / adapting.PROBE_RESULT).exists()


def test_the_exact_linear_head_before_trial_0_is_bounded_so_trial_0_still_runs():
    from types import SimpleNamespace

    planned = SimpleNamespace(trial_deadline=lambda started: started + 40.0, deadline=200.0)
    assert adapting.probe_deadline(planned, now=100.0) == 140.0  # PLAN01's trial deadline
    alone = SimpleNamespace(trial_deadline=lambda started: None, deadline=200.0)
    assert adapting.probe_deadline(alone, now=100.0) == 150.0  # half the time left
    assert adapting.probe_deadline(SimpleNamespace(trial_deadline=lambda s: None,
                                                   deadline=None), now=100.0) is None
