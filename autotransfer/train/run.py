"""Execute a recipe: ``train(dataset, recipe, out)`` -> :class:`RunResult`.

The run is assembled in ``<out>.partial/`` (recipe, splits, checkpoints, TensorBoard logs) and
renamed to ``<out>`` only when every output is written, so ``<out>`` is either complete or
absent. An interrupted run (Ctrl-C, killed process, out of memory) continues with
``resume=True`` from its last complete epoch (see :mod:`.checkpoint`).

Order of work (:class:`~autotransfer.train.executor.PhaseExecutor`, the loop tuning trials run
too): AdaBN (if the recipe asks, before its phase), then each phase: freeze the groups before
``trainable_from`` (BN policy applied), decide on feature caching, build the optimizer (schedule,
per-group rates, weight decay), compile, and train epoch by epoch with early stopping on the
validation metric; at the end of a phase the best epoch's weights are restored. Each phase gives
one typed :class:`~autotransfer.train.phases.PhaseRecord` (``RunResult.phases``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autotransfer._io import atomic_write_json, atomic_write_text, read_run_json
from autotransfer.errors import InvalidConfigError, RunDirectoryError
from autotransfer.recipe.io import load_recipe, save_recipe
from autotransfer.recipe.schema import Recipe
from autotransfer.train.phases import PhaseRecord, phase_records

RUN_FILE = "run.json"
Progress = Callable[[str], None]
#: a recipe, or the file holding one (``None``: the interrupted run's own, when resuming)
RecipeSource = Recipe | str | os.PathLike[str] | None


class RunMetrics:
    """Accuracy accessors of anything that holds a run's ``metrics.json`` as ``metrics``."""

    metrics: dict[str, Any]

    @property
    def val_accuracy(self) -> float:
        return float(self.metrics["val"]["accuracy"])

    @property
    def test_accuracy(self) -> float | None:
        test = self.metrics.get("test")
        return None if not test else float(test["accuracy"])


@dataclass(frozen=True)
class RunResult(RunMetrics):
    """What a finished run produced."""

    out: Path
    model_path: Path
    metrics: dict[str, Any] = field(repr=False)
    resumed: bool = False

    @property
    def phases(self) -> tuple[PhaseRecord, ...]:
        """One typed record per phase (from ``metrics["phases"]``)."""
        return phase_records(self.metrics)

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "model": str(self.model_path), "resumed": self.resumed,
                "val_accuracy": self.val_accuracy, "test_accuracy": self.test_accuracy,
                "val_balanced_accuracy": self.metrics["val"]["balanced_accuracy"],
                "seconds_total": self.metrics["seconds_total"],
                "left_out": self.metrics.get("left_out", []),
                "phases": [{"name": p.name, "epochs_run": p.epochs_run,
                            "epochs_planned": p.epochs_planned, "stopped_early": p.stopped_early,
                            "best_value": p.best_value, "seconds": p.seconds,
                            "seconds_per_epoch": p.seconds_per_epoch,
                            "feature_cache": p.features.used} for p in self.phases]}


def partial_dir(out: str | os.PathLike[str]) -> Path:
    """Where a run is assembled before it is renamed to ``out``."""
    path = Path(out)
    return path.with_name(path.name + ".partial")


def train(
    dataset: str | os.PathLike[str] | Any,
    recipe: RecipeSource,
    out: str | os.PathLike[str],
    *,
    resume: bool = False,
    export_savedmodel: bool = False,
    export_tflite: bool = False,
    feature_cache: bool = True,
    cache_views: int | None = None,
    max_cache_bytes: int | None = None,
    strategy: Any = None,
    callbacks: Sequence[Any] = (),
    verbose: int = 0,
    progress: Progress | bool | None = True,
    feature_source: Any = None,
    objective: Any = None,
    target: str | os.PathLike[str] | Any = None,
) -> RunResult:
    """Train the classifier ``recipe`` describes on ``dataset`` and write the run to ``out``.

    Args:
        dataset: a dataset path (profiled, then split as the recipe says) or a
            :class:`~autotransfer.data.splits.DataSplits`.
        recipe: a :class:`Recipe` or a recipe file; with ``resume`` it may be ``None`` (the
            run's own recipe is used) and otherwise must equal it.
        out: the run folder to create; it must not exist (or be empty).
        resume: continue the interrupted run assembled in ``<out>.partial``.
        export_savedmodel, export_tflite: also write ``savedmodel/`` and ``model.tflite``.
        feature_cache: train on cached activations while groups are frozen (see
            :mod:`.feature_cache`); ``cache_views`` and ``max_cache_bytes`` tune it.
        strategy: a ``tf.distribute`` strategy (default: chosen from the GPUs present).
        callbacks: extra Keras callbacks passed to every ``fit`` call.
        verbose: Keras progress output (0 silent, 1 bars, 2 one line per epoch).
        progress: ``True`` (the default, as ``auto(verbose=1)``: a run takes minutes) shows each
            step, and each phase's epochs with a bar and the time left, on stderr (the CLI's
            display); ``False`` or ``None`` is silent; a callable is called with each step's
            short description instead.
        feature_source: where frozen features come from (a
            :class:`~autotransfer.train.feature_cache.FeatureSource`, e.g. the search's
            :class:`~autotransfer.tuning.activations.ActivationStore`, which hands back what its
            trials computed for the same prefix and images); default: computed for this run.
        objective: what epoch-trained phases fit (a
            :class:`~autotransfer.train.objective.PhaseObjective`; default: supervised, or the
            recipe's domain adaptation to ``target``).
        target: unlabelled images from where the model will be used (a folder, any layout, or
            a :class:`~autotransfer.data.target.TargetSet`), which the recipe's
            ``domain_adaptation.method`` adapts to; their class folders are never read. Recorded
            in ``metrics["target"]``.

    Raises:
        RunDirectoryError: ``out`` exists, or (``resume``) there is nothing to resume.
        InvalidConfigError: the recipe asks for something the trainer cannot honour.
    """
    if progress is True:  # the CLI's display on stderr, as auto(verbose=1)
        arguments = {k: v for k, v in locals().items() if k != "progress"}
        from autotransfer._progress import ProgressDisplay

        with ProgressDisplay() as display:
            return train(**arguments, progress=display.say)
    progress = progress or None
    from autotransfer.data.splits import DataSplits
    from autotransfer.data.target import resolve_target

    # a bad target folder fails before any folder is made (overlap with a dataset path: below)
    target_set = resolve_target(target, dataset if isinstance(dataset, DataSplits) else None)
    out = Path(out)
    from autotransfer._io import check_apart

    # never written into the data, whose next read would take the run folder for a class (splits
    # already made were checked against the path the user gave: a manifest's folder may hold runs)
    if not isinstance(dataset, DataSplits):
        check_apart(out, dataset, option="out", replaced=False)
    partial = partial_dir(out)
    recipe = _resumed_recipe(out, partial, recipe) if resume else _started(out, partial, recipe)
    runner, metrics = _run_in_partial(
        dataset, recipe, out, partial, resume=resume, target_set=target_set, objective=objective,
        feature_cache=feature_cache, cache_views=cache_views, max_cache_bytes=max_cache_bytes,
        strategy=strategy, callbacks=callbacks, verbose=verbose, progress=progress,
        feature_source=feature_source)
    _publish(runner, metrics, recipe, out, partial, target_set,
             export_savedmodel=export_savedmodel, export_tflite=export_tflite)
    return RunResult(out, out / "model.keras", metrics, resumed=resume)


def _resumed_recipe(out: Path, partial: Path, recipe: RecipeSource) -> Recipe:
    """The recipe the interrupted run in ``partial`` started with (``recipe``, when given, must
    equal it)."""
    if not (partial / "recipe.yaml").is_file():
        if (out / RUN_FILE).is_file():
            raise RunDirectoryError(f"The run in '{out}' is already complete: nothing to "
                                    "resume. Choose a new --out to train again.")
        raise RunDirectoryError(f"There is no interrupted run to resume at '{out}' (no "
                                f"'{partial}'). Start it without --resume.")
    try:
        saved = load_recipe(partial / "recipe.yaml")
    except InvalidConfigError as exc:
        raise RunDirectoryError(
            f"The interrupted run in '{partial}' cannot be resumed: its recipe.yaml cannot be "
            f"used.\n{exc}\nIf it names your own backbone, pass the same --backbone-file as "
            f"when the run started; if the file was damaged or edited, delete '{partial}' and "
            "start the run again without --resume.") from None
    if recipe is not None:
        given = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
        if given.to_dict() != saved.to_dict():
            raise InvalidConfigError(
                f"The recipe given differs from the one the interrupted run in '{partial}' "
                "started with; a run resumes with its own recipe. Omit the recipe, or start a "
                "new run with a new --out.")
    return saved


def _started(out: Path, partial: Path, recipe: RecipeSource) -> Recipe:
    """A new run: ``out`` checked to be free, ``partial`` created with the recipe in it."""
    if recipe is None:
        raise InvalidConfigError("A recipe is needed to start a run (pass --recipe FILE).")
    recipe = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RunDirectoryError(f"The run folder '{out}' already exists. Choose another --out "
                                "or delete it.")
    if partial.exists():
        raise RunDirectoryError(f"An interrupted run is in '{partial}'. Continue it with "
                                "--resume, or delete that folder to start over.")
    partial.mkdir(parents=True)
    save_recipe(recipe, partial / "recipe.yaml")
    return recipe


def _run_in_partial(dataset: Any, recipe: Recipe, out: Path, partial: Path, *, resume: bool,
                    target_set: Any, objective: Any, **settings: Any) -> tuple[Any, dict[str, Any]]:
    """Train in ``partial`` (``settings``: the :class:`Runner`'s); the runner and the run's
    metrics, with what it left out, its target and its measured epoch time recorded. A run
    stopped before anything worth resuming leaves no folder behind."""
    from autotransfer.train._runner import Runner

    runner = None
    try:
        if objective is None and (target_set is not None
                                  or recipe.domain_adaptation.needs_target):
            from autotransfer.train.adaptation import objective_for

            objective = objective_for(recipe, target_set)  # a clear error without a target
        runner = Runner(dataset, recipe, out, partial, resume=resume, objective=objective,
                        **settings)
        if target_set is not None:
            from autotransfer.data.target import check_apart_from

            check_apart_from(target_set, runner.splits)
        metrics = runner.run()
        if target_set is not None:
            metrics["target"] = _target_record(target_set, recipe)
            from autotransfer.train.adaptation.gap_report import advised_gap

            metrics["domain_gap_before"] = advised_gap(recipe)  # the advisor's, for the report
            if getattr(objective, "record", None):
                metrics["domain_adaptation"] = objective.record
        # every file of the dataset the run does not use, with why (issue 14: never silently)
        metrics["left_out"] = [p.model_dump(mode="json") for p in runner.splits.left_out]
        # the epoch estimate the recipe carries (rule COST01) against the epochs measured here
        from autotransfer.advisor.cost import run_epoch_time

        metrics["epoch_time"] = run_epoch_time(recipe, metrics)
    except BaseException:
        # nothing worth resuming yet (bad dataset, recipe refused, stopped in the first epoch):
        # leave no folder behind, so the same command can simply be run again
        if not resume and (runner is None or runner.ckpt.latest_dir() is None):
            shutil.rmtree(partial, ignore_errors=True)
        raise
    return runner, metrics


def _publish(runner: Any, metrics: dict[str, Any], recipe: Recipe, out: Path, partial: Path,
             target_set: Any, *, export_savedmodel: bool, export_tflite: bool) -> None:
    """Write every output into ``partial`` (the gap to the target, when there is one, and the
    HTML report too), drop its scratch folders, write ``run.json`` and rename it to ``out``."""
    outputs = runner.finish(metrics, export_savedmodel=export_savedmodel,
                            export_tflite=export_tflite)
    if target_set is not None and runner.splits.val:  # issue 19: the gap the model leaves
        from autotransfer.train.adaptation.trained_gap import run_gap

        metrics["domain_gap"] = run_gap(partial / "model.keras", runner.splits, target_set,
                                        image_size=recipe.backbone.input_size,
                                        crop=recipe.data.crop).to_dict()
        atomic_write_json(partial / "metrics.json", metrics)
        from autotransfer.train.report import markdown_report

        write_text(partial / "report.md", markdown_report(metrics))  # now with the gap after
    from autotransfer.report.html import HTML_NAME, write_html_report

    write_html_report(partial / "report.md")  # the same story, one page with its plots embedded
    outputs["files"].append(HTML_NAME)
    # the run is complete in `partial`: drop the scratch folders, then publish it in one rename
    for scratch in ("checkpoints", "cache"):
        shutil.rmtree(partial / scratch, ignore_errors=True)
    atomic_write_json(partial / RUN_FILE, outputs)
    if out.is_dir():
        out.rmdir()  # empty (checked by _started); os.replace cannot replace a folder on every OS
    os.replace(partial, out)


def _target_record(target: Any, recipe: Recipe) -> dict[str, Any]:
    """What the run knows of its target: where, how many images, which (a fingerprint), and
    whether the recipe's method read it (a target the method does not read is noted, never
    silently dropped)."""
    from autotransfer.data.target import fingerprint

    used = recipe.domain_adaptation.needs_target
    return {"path": target.root, "n_images": target.n_images, "fingerprint": fingerprint(target),
            "used": used, "note": "" if used else (
                f"domain_adaptation.method '{recipe.domain_adaptation.method}' does not read "
                "target images: the target is recorded, not used for training")}


#: the fields of ``run.json`` that readers use, with the types they must have
RUN_FIELDS = {"files": list, "class_names": list, "crop": bool}


def read_run_info(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """``run.json`` of a finished run folder, if any; a damaged one is a
    :class:`RunDirectoryError` naming it (:func:`autotransfer._io.read_run_json`)."""
    return read_run_json(Path(folder) / RUN_FILE, fields=RUN_FIELDS)


def write_text(path: Path, text: str) -> None:
    atomic_write_text(path, text)
