#!/usr/bin/env python3
"""Which of the epochs tied at the best validation value should early stopping restore (ES01)?

Each dataset's advised recipe (mobilenet_v2, preset quick) is trained once, phase by phase, by the
trainer's own executor. Every epoch's logs are replayed through ``PhaseRecord.after_epoch`` under
each tie-break of rule ES01 (``earliest``: Keras' and fastai's strict comparison, the former rule;
``latest``; ``second_metric``: the lowest validation loss among epochs tied on accuracy). Patience
counts from the last strict improvement under every tie-break, so all of them stop a phase at the
same epoch and differ only in the epoch they restore: one run serves them all. The weights of each
epoch that some tie-break currently holds as its best are kept in memory; at a phase's end the
epoch each tie-break restores is evaluated on the test split (the dataset's own ``val``/``test``
folder, which nothing trains or selects on, as in ``tools/bench_auto.py``), and the next phase
starts from the ``--drive`` tie-break's epoch (default ``earliest``: the trajectory the former rule
trains). So the comparison is exact per phase: the same run, the same epochs, only the restored
epoch differs. The last phase's restored model is what ``train`` ships.

Records test accuracy (95% Wilson interval), per-image right/wrong (paired exact McNemar test of
each tie-break against ``earliest``, per phase and pooled over the datasets' shipped models),
seconds and the load average. ``--records FILE.json`` instead replays the per-epoch validation
records of ``tools/bench_advice.py``'s grid (no training): how often the tie-breaks disagree.

Resumable per dataset, seed and ``--longer`` (results in ``<out>.json``, rendered to
``<out>.md``, default ``docs/benchmarks/es_ties_runs``; no ``--datasets``: render only).

    python tools/bench_es_ties.py --datasets eurosat_rgb_3k --max-train 1000 [--longer 16]
        [--seed S]
    python tools/bench_es_ties.py --records docs/benchmarks/advice.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))
from _shared_weights import use_shared_weights  # noqa: E402
from bench_auto import held_out_layout, wilson  # noqa: E402
from bench_budget_use import cap_training_folder, paired, variant  # noqa: E402

from autotransfer._io import atomic_write_json, atomic_write_text  # noqa: E402
from autotransfer.train.phases import TIE_BREAKS, PhaseRecord  # noqa: E402


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def replay(history: dict[str, list[float]], monitor: str, patience: int, planned: int,
           tie_break: str) -> PhaseRecord:
    """The record a phase with these per-epoch ``history`` values gets under ``tie_break``."""
    r = PhaseRecord("replay", 0, planned, monitor=monitor)
    n = len(history[monitor])
    for e in range(n):
        logs = {k: v[e] for k, v in history.items() if len(v) == n and k.startswith("val_")}
        r, _ = r.after_epoch(logs, 0.0, patience=patience, tie_break=tie_break)
        if r.finished:
            break
    return r


def make_hooks(clf: Any, inputs: Any, batch_size: int, drive: str, es: Any) -> Any:
    """Executor hooks that replay every tie-break, keep the weights they hold, and evaluate the
    epoch each one restores on the test split at the phase's end."""
    import numpy as np

    from autotransfer.train.executor import ExecutionHooks

    labels = np.asarray(inputs.labels("test"))

    class Hooks(ExecutionHooks):
        def __init__(self) -> None:
            self.phases: list[dict[str, Any]] = []
            self._reset()

        def _reset(self) -> None:
            self.records: dict[str, PhaseRecord] = {}
            self.kept: dict[int, list[Any]] = {}

        def progress(self, text: str) -> None:
            print("   ", text, flush=True)

        def on_epoch_end(self, state: Any, logs: dict[str, float], optimizer: Any,
                         best_weights: Any) -> None:
            record = state.phases[state.phase]
            e = record.epochs_run - 1
            for t in TIE_BREAKS:
                r = self.records.get(t) or PhaseRecord(record.name, record.trainable_from,
                                                       record.epochs_planned, monitor=es.monitor)
                self.records[t], new = r.after_epoch(logs, 0.0, patience=es.patience,
                                                     tie_break=t)
                if new and e not in self.kept:
                    self.kept[e] = clf.model.get_weights()
                assert self.records[t].stopped_early == record.stopped_early, "patience differs"
            held = {r.best_epoch for r in self.records.values()}
            self.kept = {k: w for k, w in self.kept.items() if k in held}

        def on_phase_end(self, state: Any) -> None:
            p = state.phase - 1
            record = state.phases[p]
            if not self.records:  # a solved head: one fit, nothing to tie
                self.phases.append({"name": record.name, "solved": True})
                return
            best = {t: r.best_epoch for t, r in self.records.items()}
            test: dict[str, str] = {}
            for e in sorted(set(best.values())):
                clf.model.set_weights(self.kept[e])
                probs = clf.model.predict(inputs.eval_set("test", batch_size), verbose=0)
                test[str(e)] = "".join("1" if ok else "0"
                                       for ok in np.argmax(probs, axis=1) == labels)
            clf.model.set_weights(self.kept[best[drive]])
            self.phases.append({
                "name": record.name, "trainable_from": record.trainable_from,
                "epochs_planned": record.epochs_planned, "epochs_run": record.epochs_run,
                "stopped_early": record.stopped_early, "monitor": es.monitor,
                "patience": es.patience, "seconds": round(record.seconds, 1),
                "val_accuracy": list(record.history.get("val_accuracy", ())),
                "val_loss": list(record.history.get("val_loss", ())),
                "best": best, "test": test})
            self._reset()

    return Hooks()


def run_dataset(name: str, work: Path, max_train: int | None, drive: str,
                seed: int | None = None, longer: int | None = None) -> dict[str, Any]:
    import keras

    from autotransfer.advisor.advise import Advisor
    from autotransfer.data.profile import profile_dataset
    from autotransfer.data.splits import make_splits
    from autotransfer.train.data import TrainingInputs
    from autotransfer.train.executor import PhaseExecutor
    from autotransfer.train.model import build_classifier
    from autotransfer.train.phases import ExecState
    from autotransfer.train.precision import run_policy

    load_before, started = _load(), time.time()
    root = held_out_layout(name, work)
    if max_train:
        cap_training_folder(root / "train", max_train)
    profile = profile_dataset(root)
    advisor = Advisor(backbones=["mobilenet_v2"], preset="quick", verbose=0)
    recipe = advisor.fit(profile).advice_.recipe
    if seed is not None:  # another run of the same recipe: its own splits, order and head
        recipe = type(recipe).model_validate(recipe.to_dict() | {"seed": seed})
    if longer:  # BUD04's "longer" variant: the deepest fine-tuning phase ``longer`` epochs
        recipe = variant(recipe, "longer", longer)
    print(f"  advised: {recipe.backbone.input_size} px, "
          f"{[(p.epochs, p.trainable_from) for p in recipe.phases]}, "
          f"patience {recipe.early_stopping.patience} ({time.time() - started:.0f} s)", flush=True)
    splits = make_splits(profile, val_fraction=recipe.data.val_fraction, seed=recipe.seed,
                         exclude_leaks=recipe.data.exclude_leaks)
    bs = recipe.data.batch_size
    with run_policy(recipe.precision):
        inputs = TrainingInputs(splits, recipe.backbone.input_size, crop=recipe.data.crop,
                                class_weighting=recipe.data.class_weighting,
                                cache_dir=work / "cache" / name)
        keras.utils.set_random_seed(recipe.seed)
        clf = build_classifier(recipe, inputs.n_classes)
        hooks = make_hooks(clf, inputs, bs, drive, recipe.early_stopping)
        trained = time.time()
        PhaseExecutor(recipe, clf, inputs, hooks=hooks, measure_adabn=False).run(
            ExecState(batch_size=bs))
    keras.backend.clear_session()
    return {"dataset": name, "seed": recipe.seed, "longer": longer,
            "n_train": len(splits.train), "n_val": len(splits.val),
            "n_test": len(splits.test), "max_train": max_train, "drive": drive,
            "recipe": recipe.to_dict(), "phases": hooks.phases,
            "seconds": round(time.time() - started, 1),
            "train_seconds": round(time.time() - trained, 1), "load_before": load_before,
            "load_after": _load(), "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


# ------------------------------------------------------------------------------ tables
def _acc(correct: str) -> str:
    n = len(correct)
    a = correct.count("1") / n
    lo, hi = wilson(a, n)
    return f"{a:.4f} ({lo:.3f}–{hi:.3f})"


def _versus(base: str, other: str, same_epoch: bool) -> str:
    if same_epoch:
        return "same epoch"
    t = paired(base, other)
    return "–" if t is None else f"+{t[0]} −{t[1]}, p = {t[2]:.2g}"


def pooled(results: list[dict[str, Any]], tie_break: str,
           last_only: bool) -> tuple[int, int, float]:
    """Images ``tie_break`` gets right and ``earliest`` wrong, the reverse, summed over the
    datasets' phases (the last phase only with ``last_only``), and the exact McNemar p."""
    from scipy.stats import binomtest

    gained = lost = 0
    for r in results:
        phases = [p for p in r["phases"] if not p.get("solved")]
        for p in phases[-1:] if last_only else phases:
            t = paired(p["test"][str(p["best"]["earliest"])], p["test"][str(p["best"][tie_break])])
            if t:
                gained, lost = gained + t[0], lost + t[1]
    n = gained + lost
    return gained, lost, 1.0 if n == 0 else float(binomtest(gained, n, 0.5).pvalue)


def markdown(results: list[dict[str, Any]], env: dict[str, Any],
             records: dict[str, Any] | None) -> str:
    lines = ["# Early stopping's tied epochs (rule ES01, `tools/bench_es_ties.py`)", "",
             f"{env['cpus']} CPU cores (this process allowed {env.get('affinity', '?')}), no GPU; "
             f"chunks: {', '.join(env.get('chunks', []))}. mobilenet_v2, preset quick, one run "
             "per dataset; every tie-break replayed on the same epochs (patience counts from the "
             "last strict improvement under each, so they stop together); test = the dataset's "
             "own held-out folder; 95% Wilson intervals; paired: images the tie-break gets right "
             "and `earliest` wrong (+), the reverse (−), two-sided exact McNemar p.", ""]
    for r in results:
        cap = f", training folder capped to {r['max_train']}" if r.get("max_train") else ""
        longer = f", deepest phase {r['longer']} epochs (BUD04's longer)" if r.get("longer") else ""
        lines += [f"## {r['dataset']}, seed {r.get('seed', 0)}{longer} ({r['n_train']} train, "
                  f"{r['n_val']} validation, "
                  f"{r['n_test']} test{cap}; {r['train_seconds']:.0f} s training, load "
                  f"{r['load_before']} → {r['load_after']}; next phase from "
                  f"`{r['drive']}`'s epoch)", "",
                  "| phase (epochs run / planned) | tie-break | restored epoch (val acc, val loss) "
                  "| test accuracy (95%) | paired vs earliest |", "|---|---|---|---|---|"]
        for p in r["phases"]:
            if p.get("solved"):
                lines.append(f"| {p['name']} (solved head) | – | – | – | – |")
                continue
            base = p["test"][str(p["best"]["earliest"])]
            for t in TIE_BREAKS:
                e = p["best"][t]
                lines.append(
                    f"| {p['name']} ({p['epochs_run']} / {p['epochs_planned']}"
                    f"{', stopped' if p['stopped_early'] else ''}) | {t} | {e + 1} "
                    f"({p['val_accuracy'][e]:.4f}, {p['val_loss'][e]:.4f}) | "
                    f"{_acc(p['test'][str(e)])} | "
                    f"{_versus(base, p['test'][str(e)], e == p['best']['earliest'])} |")
        lines.append("")
    if results:
        lines += ["## Pooled over the datasets", "",
                  "| tie-break | shipped model (last phase): + − p | every phase: + − p |",
                  "|---|---|---|"]
        for t in TIE_BREAKS[1:]:
            a, b = pooled(results, t, True), pooled(results, t, False)
            lines.append(f"| {t} | +{a[0]} −{a[1]}, p = {a[2]:.2g} | "
                         f"+{b[0]} −{b[1]}, p = {b[2]:.2g} |")
        lines.append("")
    if records:
        lines += records_table(records)
    return "\n".join(lines) + "\n"


def replay_records(path: Path) -> dict[str, Any]:
    """How often the tie-breaks restore different epochs on a study's per-epoch records."""
    grid = json.loads(path.read_text())["grid"]
    phases = differ = 0
    later: dict[str, list[int]] = {t: [] for t in TIE_BREAKS[1:]}
    for cell in grid:
        patience = int((cell.get("recipe") or {}).get("early_stopping", {}).get("patience", 10))
        for p in cell.get("phases") or ():
            acc, loss = p.get("val_accuracy"), p.get("val_loss")
            if not acc or not loss or len(acc) < 2:
                continue
            history = {"val_accuracy": acc, "val_loss": loss}
            planned = int(p.get("epochs_planned") or len(acc))
            best = {t: replay(history, "val_accuracy", patience, planned, t).best_epoch
                    for t in TIE_BREAKS}
            phases += 1
            differ += len(set(best.values())) > 1
            for t in later:
                later[t].append(best[t] - best["earliest"])
    return {"source": str(path.relative_to(REPO) if path.is_relative_to(REPO) else path),
            "phases": phases, "differ": differ,
            "later": {t: {"moved": sum(1 for d in v if d), "mean_epochs_later":
                          round(sum(v) / max(1, sum(1 for d in v if d)), 2)}
                      for t, v in later.items()}}


def records_table(rec: dict[str, Any]) -> list[str]:
    lines = [f"## How often ties matter: `{rec['source']}`'s per-epoch records (no training)", "",
             f"{rec['phases']} phases trained epoch by epoch (every recipe of the advice study, "
             f"8 datasets); the tie-breaks restore different epochs in {rec['differ']}.", "",
             "| tie-break | phases whose restored epoch moves | mean epochs later, where it "
             "moves |",
             "|---|---|---|"]
    for t, v in rec["later"].items():
        lines.append(f"| {t} | {v['moved']} of {rec['phases']} | {v['mean_epochs_later']} |")
    return lines + [""]


def _key(result: dict[str, Any]) -> tuple[str, int, int | None]:
    return result["dataset"], result.get("seed", 0), result.get("longer")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="*", default=[])
    parser.add_argument("--max-train", type=int, default=None)
    parser.add_argument("--drive", choices=TIE_BREAKS, default="earliest",
                        help="the tie-break whose restored epoch the next phase starts from")
    parser.add_argument("--records", type=Path, default=None,
                        help="also replay a bench_advice.py results file's per-epoch records")
    parser.add_argument("--seed", type=int, default=None,
                        help="the recipe's seed (default: the advised one); each seed is a run")
    parser.add_argument("--longer", type=int, default=None,
                        help="run BUD04's 'longer' variant: the deepest phase this many epochs")
    parser.add_argument("--rerun", action="store_true")
    parser.add_argument("--out", type=Path,
                        default=REPO / "docs" / "benchmarks" / "es_ties_runs")
    args = parser.parse_args()

    use_shared_weights()
    path = args.out.with_suffix(".json")
    state = json.loads(path.read_text()) if path.is_file() else {"results": []}
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    chunks = state.get("environment", {}).get("chunks", [])
    env = {"cpus": os.cpu_count(), "affinity": sorted(os.sched_getaffinity(0)),
           "chunks": [*chunks, f"{now} (load {_load()})"]}
    if not args.datasets:  # only re-rendering (or replaying --records): the runs' environment
        env = state.get("environment", env)
    results: list[dict[str, Any]] = state["results"]
    records = replay_records(args.records) if args.records else state.get("records")

    def save() -> None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, {"environment": env, "results": results, "records": records})
        atomic_write_text(args.out.with_suffix(".md"), markdown(results, env, records))

    work = Path(tempfile.mkdtemp(prefix="bench-es-ties-"))
    try:
        for name in args.datasets:
            key = (name, args.seed if args.seed is not None else 0, args.longer)
            if any(_key(r) == key for r in results) and not args.rerun:
                print(f"{name}: measured before, kept", flush=True)
                continue
            print(f"{name} (start {time.strftime('%H:%M:%S', time.gmtime())}, load {_load()}):",
                  flush=True)
            result = run_dataset(name, work, args.max_train, args.drive, args.seed, args.longer)
            results = [r for r in results if _key(r) != key] + [result]
            save()
            print(f"  done in {result['seconds']:.0f} s (load {result['load_after']})", flush=True)
        save()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
