#!/usr/bin/env python3
"""What should spare budget buy? The advised recipe against three ways of spending more time.

For each dataset, the advisor's recipe (preset ``quick``, no time budget: the schedule rule LR03's
length at the preset's scale) is trained, and variants that each spend more time, named
``KIND[:EPOCHS]`` (EPOCHS: the deepest fine-tuning phase's epochs; default in brackets):

* ``longer``: the deepest fine-tuning phase runs more epochs (2× the advised), same schedule shape;
* ``deeper``: that phase trains one more layer group (``trainable_from`` − 1, the search's own
  depth change, ``tuning/trial_recipe.apply``: the new group's rate follows the phase's decay)
  [the advised epochs];
* ``larger``: the input size one step up (×1.5, rounded to 32 px, at most 320 px) for every
  phase [the advised epochs]; ``larger@SIZE`` (e.g. ``larger@224``, ``larger:9@160``): that
  size instead, named ``larger224-9`` (each size its own kind in the pooled table).

A deeper or larger epoch costs more than a longer one, so giving ``deeper`` and ``larger`` fewer
epochs than ``longer`` compares what the same extra *seconds* buy (the measured seconds are in
the table: the comparison is per second, not per epoch).

Each run trains on the dataset's ``train/`` folder (the recipe's stratified validation split held
out of it, early stopping as advised) and is tested on its ``val``/``test`` folder, which nothing
selects on; same splits and seeds for every variant (``--max-train``: a seeded,
class-proportional sample of the training folder, the same for every variant). Records test accuracy (with its 95% Wilson
interval, and each test image right or wrong, for a paired exact McNemar test between variants),
training seconds, the deepest phase's epochs and median seconds per epoch, each phase's restored
epoch (rule ES01), and the load average before and after each run; the table ends with each kind
pooled over the datasets against the advised recipe (summed discordant images, exact McNemar).

Resumable per variant: results are saved after each variant to ``<out>.json`` (and rendered to
``<out>.md``), merged under a file lock with what other processes saved there meanwhile (so
arms of one side by side can run at once, in separate commands on separate cores); a rerun reuses the dataset's saved advised recipe (so it trains the same recipe
without advising again) and skips the variants already measured (``--rerun`` measures them
again, ``--fresh`` forgets the dataset's saved recipe and rows). So a long side by side can run
in chunks, each stopped by ``timeout`` and continued by the next; with ``--work DIR`` a variant
stopped mid-run resumes from its last checkpoint (the trainer's own resume: the same data and
seeds as an uninterrupted run), its seconds summed over its chunks.

    python tools/bench_budget_use.py [--datasets eurosat_rgb_3k]
        [--variants advised longer:16 deeper:8 larger:8 larger@224] [--max-train N]
        [--rerun] [--fresh]
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import platform
import random
import shutil
import statistics
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

from autotransfer._io import atomic_write_json, atomic_write_text  # noqa: E402

KINDS = ("advised", "longer", "deeper", "larger")
DEFAULT_VARIANTS = ("advised", "longer:16", "deeper:8", "larger:8")


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def parse_variant(spec: str) -> tuple[str, int | None, int | None]:
    """``KIND[:EPOCHS][@SIZE]`` as (kind, epochs or None, input size or None)."""
    head, _, size = spec.partition("@")
    kind, _, epochs = head.partition(":")
    if (kind not in KINDS or (epochs and not epochs.isdigit()) or (kind == "advised" and epochs)
            or ("@" in spec and (kind != "larger" or not size.isdigit() or int(size) < 32))):
        raise argparse.ArgumentTypeError(
            f"variant {spec!r}: expected one of {', '.join(KINDS)}, optionally with ':EPOCHS' "
            "(the deepest fine-tuning phase's epochs; not for 'advised'), and for 'larger' "
            "optionally '@SIZE' (the input size in pixels, at least 32)")
    return kind, int(epochs) if epochs else None, int(size) if size else None


def _deepest(d: dict[str, Any]) -> int | None:
    tuned = [i for i, p in enumerate(d["phases"]) if p["trainable_from"] < 5]
    return min(tuned, key=lambda i: d["phases"][i]["trainable_from"]) if tuned else None


def variant(recipe: Any, kind: str, epochs: int | None = None,
            size: int | None = None) -> Any | None:
    """``recipe`` changed to spend more time as ``kind`` says, its deepest fine-tuning phase
    ``epochs`` long (None: the kind's default), a ``larger`` one at ``size`` px (None: one step
    up); None when it cannot."""
    from autotransfer.recipe.schema import Recipe
    from autotransfer.tuning.trial_recipe import apply

    if kind == "advised":
        return recipe
    if kind == "deeper":
        deepest = _deepest(recipe.to_dict())
        if deepest is None or recipe.phases[deepest].trainable_from <= 0:
            return None
        recipe = apply(recipe, {"finetune_from": recipe.phases[deepest].trainable_from - 1})
    d = recipe.to_dict()
    d.pop("reasons", None)  # the advised recipe's reasons, which no longer describe it
    deepest = _deepest(d)
    if deepest is None:
        return None
    if kind == "larger":
        current = int(d["backbone"]["input_size"])
        bigger = size or min(320, int(round(current * 1.5 / 32)) * 32)
        if bigger <= current:
            return None
        d["backbone"]["input_size"] = bigger
    phase = d["phases"][deepest]
    old = int(phase["epochs"])
    phase["epochs"] = epochs or (2 * old if kind == "longer" else old)
    # the warm-up keeps its fraction of the phase (LR04), as when the advisor sizes the phase
    phase["warmup_epochs"] = round(float(phase["warmup_epochs"]) * phase["epochs"] / old, 2)
    if phase["warmup_epochs"] >= phase["epochs"]:
        phase["warmup_epochs"] = 0.0
    return Recipe.model_validate(d)


def variant_name(kind: str, recipe: Any, size: int | None = None) -> str:
    """``advised``, or the kind (with its size, if given) and the deepest phase's epochs
    (``longer-8``, ``larger224-9``)."""
    if kind == "advised":
        return kind
    return f"{kind}{size or ''}-{recipe.phases[_deepest(recipe.to_dict())].epochs}"


def test_correct(run_dir: Path) -> str:
    """Each test image right (1) or wrong (0), in the order of their paths."""
    from autotransfer.train.analysis import read_predictions_csv

    found = sorted(run_dir.rglob("predictions.csv"))
    if not found:
        return ""
    rows = sorted((r.path, r.correct) for r in read_predictions_csv(found[0]) if r.split == "test")
    return "".join("1" if ok else "0" for _, ok in rows)


def measure(splits: Any, recipe: Any, advised: Any, out: Path) -> dict[str, Any]:
    """Train ``recipe`` on ``splits`` into ``out``: the row of the table."""
    import keras

    from autotransfer.advisor.cost import ESTIMATE_KEY, compare
    from autotransfer.train.run import train

    load_before = _load()
    chunks, resume = _chunks(out)
    started = time.time()
    run = train(splits, recipe, out, progress=False, resume=resume)
    seconds = time.time() - started + sum(c["end"] - c["start"] for c in chunks[:-1])
    chunks[-1]["end"] = time.time()
    m = run.metrics
    phases = [p for p in m.get("phases", []) if p["trainable_from"] < 5 and p["epoch_seconds"]]
    deepest = min(phases, key=lambda p: p["trainable_from"]) if phases else None
    estimate = advised.reasons.get(ESTIMATE_KEY)
    row = {"epoch_time": compare(estimate.evidence if estimate else None, m.get("phases", []),
                                 len(splits.train), len(splits.val), recipe.backbone.input_size),
           "test_accuracy": m["test"]["accuracy"], "n_test": len(splits.test),
           "test_correct": test_correct(out), "seconds": round(seconds, 1),
           "input_size": recipe.backbone.input_size,
           "phases": [(p.name, p.epochs, p.trainable_from) for p in recipe.phases],
           "phase_seconds": [(p["name"], round(float(p.get("seconds") or 0.0), 1))
                             for p in m.get("phases", [])],
           "val_accuracy": m["val"]["accuracy"],
           # each phase's restored epoch (1-based; ES01's tie-break), epochs run, best value
           "restored": [(p.name, None if p.best_epoch is None else p.best_epoch + 1,
                         p.epochs_run, p.best_value) for p in run.phases],
           "deepest_epochs_run": deepest["epochs_run"] if deepest else 0,
           "deepest_epoch_s": statistics.median(deepest["epoch_seconds"][1:] or
                                                deepest["epoch_seconds"]) if deepest else None,
           "load_before": load_before, "load_after": _load(),
           "chunks": [{k: (time.strftime("%H:%M:%S", time.gmtime(v)) if k in ("start", "end")
                           else v) for k, v in c.items()} for c in chunks],
           "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    keras.backend.clear_session()
    return row


def _chunks(out: Path) -> tuple[list[dict[str, Any]], bool]:
    """The run's chunks so far and whether it resumes: a run stopped by ``timeout`` (its
    ``<out>.partial`` holds a checkpoint) resumes from its last checkpoint; each earlier chunk
    counts from its start to that checkpoint (the epochs after it are trained again, and
    counted, in the next chunk). Kept in ``<out>.chunks.json``, the new chunk started now."""
    partial = out.with_name(out.name + ".partial")
    pointer = partial / "checkpoints" / "latest.json"
    sidecar = out.with_name(out.name + ".chunks.json")
    resume = pointer.is_file()
    chunks: list[dict[str, Any]] = []
    if resume:
        chunks = (json.loads(sidecar.read_text()) if sidecar.is_file() else
                  [{"start": (partial / "recipe.yaml").stat().st_mtime, "end": None}])
        if chunks[-1]["end"] is None:  # killed: it counts up to its last checkpoint
            chunks[-1]["end"] = max(chunks[-1]["start"], pointer.stat().st_mtime)
    chunks.append({"start": time.time(), "end": None, "load": _load()})
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(sidecar, chunks)
    return chunks, resume


def cap_training_folder(folder: Path, cap: int, seed: int = 0) -> None:
    """Keep a seeded, class-proportional ``cap`` of the images under ``folder/<class>/``."""
    rng = random.Random(seed)
    by_class = {c: sorted(p for p in c.iterdir() if p.is_file())
                for c in sorted(folder.iterdir()) if c.is_dir()}
    total = sum(len(m) for m in by_class.values())
    if total <= cap:
        return
    for members in by_class.values():
        keep = set(rng.sample(members, max(2, round(cap * len(members) / total))))
        for f in members:
            if f not in keep:
                f.unlink()


def run_dataset(name: str, specs: list[tuple[str, int | None, int | None]], work: Path,
                saved: dict[str, Any] | None, rerun: bool, save: Any,
                max_train: int | None = None) -> dict[str, Any]:
    """Measure the variants of ``name`` not in ``saved`` (all with ``rerun``), saving each."""
    from autotransfer.advisor.advise import Advisor
    from autotransfer.data.profile import profile_dataset
    from autotransfer.data.splits import make_splits
    from autotransfer.recipe.schema import Recipe

    root = work / name
    if not (root / "train").is_dir() or not (root / "test").is_dir():
        root = held_out_layout(name, work)
    if max_train:
        cap_training_folder(root / "train", max_train)
    if saved and saved.get("max_train") != max_train:
        raise SystemExit(f"{name}: the saved rows were measured with --max-train "
                         f"{saved.get('max_train')}, not {max_train}: use the same cap, or --fresh")
    profile = profile_dataset(root)
    if saved and saved.get("recipe"):
        advised = Recipe.model_validate(saved["recipe"])
        print("  advised recipe: reused from the saved results", flush=True)
    else:
        advice = Advisor(backbones=["mobilenet_v2"], preset="quick", verbose=0).fit(profile).advice_
        advised = advice.recipe
        step = advice.probes.get(advised.backbone.name).step
        print(f"  step: {step.describe() if step else None}", flush=True)
    print(f"  advised: {advised.backbone.input_size} px, "
          f"{[(p.epochs, p.trainable_from) for p in advised.phases]}", flush=True)
    splits = make_splits(profile, val_fraction=advised.data.val_fraction, seed=advised.seed,
                         exclude_leaks=advised.data.exclude_leaks)
    result = {"dataset": name, "n_train": len(splits.train), "n_val": len(splits.val),
              "n_test": len(splits.test), "max_train": max_train, "recipe": advised.to_dict(),
              "variants": dict((saved or {}).get("variants", {}))}
    for kind, epochs, size in specs:
        recipe = variant(advised, kind, epochs, size)
        if recipe is None:
            print(f"  {kind}: not applicable", flush=True)
            continue
        v = variant_name(kind, recipe, size)
        if v in result["variants"] and not rerun:
            print(f"  {v}: measured before, kept", flush=True)
            continue
        print(f"  {v}: {recipe.backbone.input_size} px, "
              f"{[(p.name, p.epochs, p.trainable_from) for p in recipe.phases]} "
              f"(start {time.strftime('%H:%M:%S', time.gmtime())}, load {_load()})", flush=True)
        row = measure(splits, recipe, advised, work / "runs" / name / v)
        result["variants"][v] = row
        save(result)
        print(f"  {v}: test {row['test_accuracy']:.4f} in {row['seconds']:.0f} s, deepest "
              f"phase {row['deepest_epochs_run']} epochs at {row['deepest_epoch_s'] or 0:.1f} "
              f"s (load {row['load_before']} → {row['load_after']})", flush=True)
    return result


def paired(a: str, b: str) -> tuple[int, int, float] | None:
    """Images ``b`` gets right and ``a`` wrong, the reverse, and the two-sided exact McNemar p."""
    if not a or len(a) != len(b):
        return None
    from scipy.stats import binomtest

    gained = sum(1 for x, y in zip(a, b, strict=True) if y == "1" and x == "0")
    lost = sum(1 for x, y in zip(a, b, strict=True) if x == "1" and y == "0")
    n = gained + lost
    return gained, lost, 1.0 if n == 0 else float(binomtest(gained, n, 0.5).pvalue)


def _versus(rows: dict[str, Any], v: str, other: str | None) -> str:
    if other is None or other == v or other not in rows:
        return "–"
    t = paired(rows[other].get("test_correct", ""), rows[v].get("test_correct", ""))
    return "–" if t is None else f"+{t[0]} −{t[1]}, p = {t[2]:.2g}"


def _nearest_longer(rows: dict[str, Any], v: str) -> str | None:
    longer = [k for k in rows if k.startswith("longer") and k != v]
    if not v.startswith(("deeper", "larger")) or not longer:
        return None
    return min(longer, key=lambda k: abs(rows[k]["seconds"] - rows[v]["seconds"]))


def markdown(results: list[dict[str, Any]], env: dict[str, Any]) -> str:
    lines = ["# What spare budget buys (`tools/bench_budget_use.py`)", "",
             f"{env['cpus']} CPU cores (this process allowed {env.get('affinity', '?')}), no GPU; "
             f"chunks started {', '.join(env.get('chunks', [env['started']]))}; mobilenet_v2, "
             "preset quick. Test = the dataset's own held-out folder (nothing selects on it); the "
             "interval is the 95% Wilson interval; paired: test images the variant gets right "
             "and the other wrong (+), the reverse (−), two-sided exact McNemar p.", ""]
    for r in results:
        rows = r["variants"]
        base = rows.get("advised")
        cap = (f"; the training folder capped to a seeded, class-proportional {r['max_train']}"
               if r.get("max_train") else "")
        lines += [f"## {r['dataset']} ({r['n_train']} train, {r['n_val']} validation, "
                  f"{r['n_test']} test{cap})", "",
                  "| variant | phases (name epochs×from group) | input | test accuracy (95%) | "
                  "training time | deepest phase: epochs run, s/epoch | restored epoch "
                  "(ES01) | points per extra minute | paired vs advised | paired vs "
                  "nearest-time longer | epoch estimate (COST01) | load before → after |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for v, row in rows.items():
            lo, hi = wilson(row["test_accuracy"], row["n_test"])
            ep = row["deepest_epoch_s"]
            extra = row["seconds"] - base["seconds"] if base and v != "advised" else 0.0
            rate = (f"{100 * (row['test_accuracy'] - base['test_accuracy']) / (extra / 60):+.2f}"
                    if base and extra > 0 else "–")
            lines.append(
                f"| {v} | {', '.join(f'{n} {e}×{t}' for n, e, t in row['phases'])} | "
                f"{row['input_size']} | {row['test_accuracy']:.4f} ({lo:.3f}–{hi:.3f}) | "
                f"{row['seconds']:.0f} s | {row['deepest_epochs_run']}, "
                f"{'–' if ep is None else f'{ep:.1f}'} | {_restored(row)} | {rate} | "
                f"{_versus(rows, v, 'advised')} | "
                f"{_versus(rows, v, _nearest_longer(rows, v))} | "
                f"{_estimate(row.get('epoch_time'))} | {row['load_before']} → "
                f"{row['load_after']} |")
        lines.append("")
    return "\n".join(lines + pooled(results)) + "\n"


def _restored(row: dict[str, Any]) -> str:
    """The deepest phase's restored epoch of those run (``9 of 13``), or – (older rows)."""
    phases = [p for p in row.get("restored", []) if p[1] is not None]
    if not phases:
        return "–"
    name, best, run, _ = phases[-1]
    return f"{best} of {run}"


def kind_of(v: str) -> str:
    """The variant's kind: ``longer-18`` → ``longer``."""
    return v.partition("-")[0]


def pooled(results: list[dict[str, Any]]) -> list[str]:
    """Each kind against the advised recipe, pooled over the datasets (one variant of a kind per
    dataset, the first measured): the summed discordant test images (exact McNemar on the sums), the datasets where it gained / lost, seconds."""
    by_kind: dict[str, list[tuple[str, tuple[int, int, float], float]]] = {}
    for r in results:
        rows, base = r["variants"], r["variants"].get("advised")
        for v, row in rows.items():
            t = None if v == "advised" or not base else paired(
                base.get("test_correct", ""), row.get("test_correct", ""))
            cells = by_kind.setdefault(kind_of(v), [])
            if t is not None and all(d != r["dataset"] for d, _, _ in cells):
                # one variant per dataset and kind (the first measured): the same test images
                # counted twice would pool as if independent
                extra = row["seconds"] / base["seconds"] if base["seconds"] else float("nan")
                cells.append((r["dataset"], t, extra))
    by_kind = {k: cells for k, cells in by_kind.items() if cells}
    if not by_kind:
        return []
    lines = ["## Pooled over the datasets (each kind against the advised recipe)", "",
             "| kind | datasets (+ gained − lost, p; time × advised) | pooled | higher on | "
             "lower on |", "|---|---|---|---|---|"]
    for kind, cells in by_kind.items():
        gained, lost = sum(t[0] for _, t, _ in cells), sum(t[1] for _, t, _ in cells)
        p = paired("0" * gained + "1" * lost, "1" * gained + "0" * lost)
        each = "; ".join(f"{d}: +{t[0]} −{t[1]}, p = {t[2]:.2g}; {x:.2f}×" for d, t, x in cells)
        lines.append(f"| {kind} | {each} | +{gained} −{lost}, p = {p[2] if p else 1.0:.2g} | "
                     f"{sum(t[0] > t[1] for _, t, _ in cells)} of {len(cells)} | "
                     f"{sum(t[0] < t[1] for _, t, _ in cells)} of {len(cells)} |")
    return lines + [""]


def merge(saved: list[dict[str, Any]], result: dict[str, Any]) -> list[dict[str, Any]]:
    """``saved`` with ``result`` in its dataset's place: its rows over the saved ones, the saved
    rows it lacks kept (measured meanwhile by another process)."""
    old = next((o for o in saved if o["dataset"] == result["dataset"]), None)
    if old is not None:
        result = {**result, "variants": {**old.get("variants", {}), **result["variants"]}}
    return [o for o in saved if o["dataset"] != result["dataset"]] + [result]


def _estimate(t: dict[str, Any] | None) -> str:
    if not t:
        return "–"
    return f"{t['estimate_s']:.1f} s ({t['measured_s'] / t['estimate_s']:.2f}×, {t['source']})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["eurosat_rgb_3k"])
    parser.add_argument("--variants", nargs="+", type=parse_variant,
                        default=[parse_variant(v) for v in DEFAULT_VARIANTS],
                        help="KIND[:EPOCHS], KIND one of " + ", ".join(KINDS))
    parser.add_argument("--rerun", action="store_true", help="measure saved variants again")
    parser.add_argument("--fresh", action="store_true",
                        help="forget the datasets' saved recipes and rows (advise again)")
    parser.add_argument("--max-train", type=int, default=None,
                        help="keep a seeded, class-proportional sample of this many images of "
                             "the training folder (train + validation), for every variant alike")
    parser.add_argument("--work", type=Path, default=None,
                        help="keep the datasets' layouts and runs here (default: a temporary "
                             "folder, removed at the end); a run stopped by `timeout` there "
                             "resumes from its last checkpoint when measured again")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "budget_use_runs")
    args = parser.parse_args()

    use_shared_weights()
    path = args.out.with_suffix(".json")
    state = json.loads(path.read_text()) if path.is_file() else {"results": []}
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    env = {"cpus": os.cpu_count(), "platform": platform.platform(), "load": _load(),
           "started": now, "affinity": sorted(os.sched_getaffinity(0)),
           "chunks": [*state.get("environment", {}).get("chunks", []), f"{now} (load {_load()})"]}
    results: list[dict[str, Any]] = state["results"]
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-budget-use-"))

    def save(result: dict[str, Any]) -> None:
        nonlocal results
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process may save rows here meanwhile
            on_disk = json.loads(path.read_text()) if path.is_file() else {"results": []}
            results = merge(on_disk["results"], result)
            chunks = sorted({*on_disk.get("environment", {}).get("chunks", []), *env["chunks"]})
            env["chunks"] = chunks
            atomic_write_json(path, {"environment": env, "results": results})
            atomic_write_text(args.out.with_suffix(".md"), markdown(results, env))

    try:
        for name in args.datasets:
            print(f"{name}:", flush=True)
            saved = None if args.fresh else next(
                (o for o in results if o["dataset"] == name), None)
            save(run_dataset(name, args.variants, work, saved, args.rerun, save, args.max_train))
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
