"""The recipe grid: fixed recipes around the advised one, each trained to its early stop."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

from advice_study import store
from advice_study.cells import (
    AFTER_CENTRES, MAX_EPOCHS, advised_finetune, cell_roles, grid_cells, rate_variant,
    recipe_changes)
from advice_study.layouts import layout
from advice_study.length import lr05_fold, with_floor
from advice_study.store import BEFORE, append, load, machine, rules_sha, save, stable_rules


def cached_advice(name: str, root: Path, profile: Any, args: argparse.Namespace,
                  rules: Any, tag: str | None = None) -> tuple[Any, float, bool]:
    """The advice the grid is built around, computed once per layout and preset and kept as JSON
    under the work folder: every cell of every later run (and a resumed cell, whose recipe must
    not change) is built around the same centre, even when recipes/rules.yaml is edited
    meanwhile. Returns (advice, seconds it took to compute, whether it came from the cache).
    ``tag``: the advice of the rule base in force, kept apart from the grid's centre (the
    re-advised cell, ``--readvise``)."""
    from autotransfer.advisor.advise import Advice, Advisor

    path = store.WORK / "advice" / (f"{root.name}-{args.preset}-seed{args.seed}"
                              + (f"-{tag}" if tag else "") + ".json")
    if path.is_file():
        saved = json.loads(path.read_text())  # NaN facts are kept as NaN (json allows them)
        try:
            return Advice.model_validate(saved["advice"]), saved["seconds"], True
        except ValueError as e:
            print(f"WARNING: {path} is not a valid advice ({e}); advising again", flush=True)
    if not tag:  # a centre computed now comes from the rule base the other centres came from
        rules = rules.model_copy(update={"rules": [r for r in rules.rules
                                                   if r.id not in AFTER_CENTRES]})
    t0 = time.perf_counter()
    advice = Advisor(preset=args.preset, precision="float32", rules=rules, verbose=0,
                     seed=args.seed).fit(profile).advice_
    seconds = round(time.perf_counter() - t0, 1)
    from autotransfer._io import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"dataset": name, "seconds": seconds,
                                        "machine": machine(),
                                        "advice": advice.model_dump(mode="json")}))
    return advice, seconds, False


def run_grid(args: argparse.Namespace) -> None:
    from autotransfer.data.profile import profile_dataset
    from autotransfer.data.splits import make_splits
    from autotransfer.errors import RunDirectoryError
    from autotransfer.train.run import train

    os.environ["AUTOTRANSFER_CACHE"] = str(store.WORK / "cache")
    # a chunk ended by `timeout` (SIGTERM) unwinds, so that its cell's seconds so far are kept
    signal.signal(signal.SIGTERM, _terminate)
    rules, sha = stable_rules(), rules_sha()  # the rule base as this run loaded it
    for name in args.datasets:
        root = layout(name, args.max_train, args.max_test)
        profile = profile_dataset(root)
        advice, advise_s, from_cache = cached_advice(name, root, profile, args, rules)
        splits = make_splits(profile, val_fraction=advice.recipe.data.val_fraction,
                             seed=advice.recipe.seed, exclude_leaks=advice.recipe.data.exclude_leaks)
        recorded = next((c for c in load()["grid"] if c["dataset"] == name
                         and c["cell"] in ("advised", BEFORE) and not c.get("advice_tag")), None)
        def decided(recipe: dict[str, Any]) -> dict[str, Any]:  # without the reasons' text
            return {k: v for k, v in recipe.items() if k not in ("reasons", "name")}

        if recorded is not None and decided(recorded["recipe"]) != decided(advice.recipe.to_dict()):
            print(f"WARNING: {name}: the advised recipe differs from the recorded 'advised' cell "
                  "(rules or probe changed since); new cells are built around today's advice",
                  flush=True)
        roles = cell_roles(advised_finetune(advice)[0])
        wanted = {roles.get(c, c) for c in args.cells or ()}
        print(f"{name}: advice {'cached' if from_cache else 'computed'} ({advise_s:.0f} s); "
              f"centre {roles['centre']}; cells {sorted(wanted) or 'all'}", flush=True)
        cells = grid_cells(advice)
        tag = args.readvise
        if args.advised_rate is not None:  # the recorded advised cell's recipe at another rate
            from autotransfer.recipe.schema import Recipe

            kept = next((c for c in load()["grid"] if c["dataset"] == name
                         and c["cell"] == "advised" and c.get("advice_tag") == args.advice_tag),
                        None)
            if kept is None:
                print(f"{name}: no advised cell re-advised as {args.advice_tag}; skipped",
                      flush=True)
                continue
            kept_recipe = Recipe.model_validate(kept["recipe"])
            cells = [rate_variant(kept_recipe, args.advised_rate, args.advice_tag)]
            if args.paired:  # both rates again, each keeping its per-image results
                cells = [(f"paired-x{m:g}", {**coords, "paired": True}, recipe)
                         for m in (1.0, args.advised_rate)
                         for _, coords, recipe in [rate_variant(kept_recipe, m, args.advice_tag)]]
            # --cells picks among them (e.g. paired-x3 alone, in a process of its own)
            wanted = {c[0] for c in cells} & set(args.cells or [c[0] for c in cells])
        elif tag:  # only the advised cell, advised by the rule base in force; the centre is kept
            fold = lr05_fold(name)
            print(f"{name}: LR05's floor fitted leave one dataset out: {fold}", flush=True)
            readvised, advise_s, from_cache = cached_advice(
                name, root, profile, args, with_floor(rules, fold.get("floor")), tag=tag)
            cells = [("advised", {"advised": True}, readvised.recipe)]
            changes = recipe_changes(advice.recipe, readvised.recipe)
            print(f"{name}: re-advised ({tag}, {advise_s:.0f} s{', cached' if from_cache else ''})"
                  f"; changed from the centre's advice: {changes or 'nothing'}", flush=True)
            if not changes:  # the advised cell stands: say so on it, train nothing
                mark_unchanged(name, tag)
                continue
        for cell_id, coords, recipe in cells:
            if args.cells and cell_id not in wanted and not tag:
                continue
            data = load()
            part = "paired" if coords.get("paired") else "grid"
            if any(c["dataset"] == name and c["cell"] == cell_id
                   and c.get("advice_tag") == tag for c in data[part]):
                continue
            out = store.WORK / "runs" / name / (cell_id + (f"-{tag}" if tag else ""))
            shutil.rmtree(out, ignore_errors=True)
            # a cell interrupted earlier resumes from its last epoch's checkpoint; the seconds
            # its earlier attempts ran are kept beside it and added
            resume = (out.with_name(out.name + ".partial") / "checkpoints" / "latest.json").is_file()
            spent_file = out.with_name(out.name + ".seconds")
            before = float(spent_file.read_text()) if resume and spent_file.is_file() else 0.0
            print(f"{name} / {cell_id} …{' (resumed after %.0f s)' % before if resume else ''}",
                  flush=True)
            started = time.perf_counter()
            try:
                try:
                    run = train(splits, recipe, out, resume=resume)
                except RunDirectoryError as e:  # built around another centre: start it over
                    if not resume:
                        raise
                    print(f"  cannot resume ({e}); starting the cell over", flush=True)
                    shutil.rmtree(out.with_name(out.name + ".partial"))
                    resume, before, started = False, 0.0, time.perf_counter()
                    run = train(splits, recipe, out, resume=False)
            except BaseException:
                spent_file.parent.mkdir(parents=True, exist_ok=True)
                spent_file.write_text(f"{before + time.perf_counter() - started:.1f}")
                raise
            m = run.metrics
            # best_epoch (0-based) and the validation curve: what issue 18's fine-tuning length
            # is measured from (cells before session 4 kept only epochs_run and stopped_early)
            phases = [{"trainable_from": p.get("trainable_from"), "epochs_run": p.get("epochs_run"),
                       "epochs_planned": p.get("epochs_planned", p.get("epochs")),
                       "stopped_early": p.get("stopped_early"), "seconds": p.get("seconds"),
                       "best_epoch": p.get("best_epoch"), "batch_size": p.get("batch_size"),
                       "val_accuracy": (p.get("history") or {}).get("val_accuracy"),
                       "val_loss": (p.get("history") or {}).get("val_loss")}
                      for p in m.get("phases", [])]
            last = m.get("phases", [{}])[-1]
            capped = (cell_id != "advised" and last.get("trainable_from", 5) < 5
                      and not last.get("stopped_early") and last.get("epochs_run") == MAX_EPOCHS)
            cell = {"dataset": name, "cell": cell_id, **coords, "centre": roles["centre"],
                    "backbone": recipe.backbone.name,
                    "input_size": recipe.backbone.input_size, "n_train": len(splits.train),
                    "n_val": len(splits.val), "n_test": len(splits.test),
                    "test_accuracy": m["test"]["accuracy"],
                    "test_balanced_accuracy": m["test"]["balanced_accuracy"],
                    "val_accuracy": m["val"]["accuracy"],
                    "val_balanced_accuracy": m["val"]["balanced_accuracy"],
                    "phases": phases, "epoch_cap_reached": bool(capped),
                    "seconds": round(before + time.perf_counter() - started, 1),
                    "resumed": resume,
                    "seconds_this_attempt": round(time.perf_counter() - started, 1),
                    "lane": os.environ.get("BENCH_ADVICE_LANE", ""),
                    "advise_seconds": round(advise_s, 1), "advice_cached": from_cache,
                    "preset": args.preset,
                    "recipe": recipe.to_dict(), "machine": machine()}
            cell["test_correct"] = test_correct(run.out)
            if cell_id == "advised":
                cell["facts"] = {k: v for k, v in (readvised if tag else advice).facts.items()
                                 if isinstance(v, (int, float, str, bool))}
            if tag:
                cell.update(advice_tag=tag, rules_sha=sha, lr05_fold=fold,
                            changed_from_centre=recipe_changes(advice.recipe, recipe))
            append(part, cell)
            shutil.rmtree(out, ignore_errors=True)  # the numbers are kept; the model is not
            spent_file.unlink(missing_ok=True)
            print(f"  test {cell['test_accuracy']:.4f} in {cell['seconds']:.0f} s "
                  f"(load {cell['machine']['load']})", flush=True)


def test_correct(run_dir: Path) -> str | None:
    """Which held-out images a cell's model got right, as '1'/'0' by image path (sorted), from
    the run's ``predictions.csv``: what a paired test of two cells needs (cells before session 6
    kept none); None when the run wrote no predictions."""
    from autotransfer.train.analysis import PREDICTIONS_FILE, read_predictions_csv

    path = Path(run_dir) / PREDICTIONS_FILE
    if not path.is_file():
        return None
    rows = sorted((r.path, r.correct) for r in read_predictions_csv(path) if r.split == "test")
    return "".join("1" if ok else "0" for _, ok in rows) or None


def mark_unchanged(name: str, tag: str) -> None:
    """Record on a dataset's advised cell that the rule base ``tag`` advises the same recipe."""
    import fcntl

    with open(store.WORK / "advice.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = load()
        for c in data["grid"]:
            if c["dataset"] == name and c["cell"] == "advised" and not c.get("advice_tag"):
                c["same_advice_under"] = tag
        save(data)


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)
