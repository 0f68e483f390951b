#!/usr/bin/env python3
"""Is the advice measured? Backbone ranking, a recipe grid and the forecast, on the shared datasets.

Three parts (``--part``), each resumable — every completed cell is appended to
``docs/benchmarks/advice.json`` at once, and a rerun skips the cells already there:

- **ranking**: for every backbone with weights here, the ground truth is the held-out accuracy of
  the exact linear probe (``train.linear_head.fit_linear_head``: L-BFGS, L2 strength by 5-fold
  CV) fitted on the features of the whole (capped) training split; the predictors are measured by
  the project's own probe (``probes.probe.probe_dataset``) on its sample: LogME, k-NN and
  linear-probe CV accuracy, separability, and the scores the literature compares (H-score,
  shrinkage H-score, GBC; NCE and LEEP where the ImageNet classifier is available). Weighted
  Kendall τ (``scipy.stats.weightedtau``) per dataset and averaged.
- **grid**: on the advised backbone, fixed recipes (freeze depth × fine-tuning rate ×
  augmentation) and the advised recipe, each trained by ``autotransfer.train`` to its early stop,
  scored on a held-out split that nothing selects on; regret per dataset and per decision.
- **forecast**: fits ``recipes/forecast.yaml`` from the ranking and grid cells and reports its
  leave-one-dataset-out error (see ``autotransfer/advisor/forecast.py``).

Held-out data: the dataset's own ``test`` (else ``val``) folder; ``flowers5_small`` has no split,
so a seeded stratified 20% of it is held out. To fit the 2-core machine the splits are capped
(``--max-train``, ``--max-test``: a seeded, class-proportional subsample, recorded per cell) and
images smaller than the backbone's input are run at the quick preset's size (rule RES02). The
subsampled layouts are copies under the work folder (``$BENCH_ADVICE_WORK``, default
``~/.cache/autotransfer-bench-advice``), kept so that every part and every rerun sees the same
images.

    python tools/bench_advice.py --part ranking [--datasets brain_mri hymenoptera]
    python tools/bench_advice.py --render-only
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))
from _shared_weights import use_shared_weights  # noqa: E402

SHARED = Path(os.environ.get("AUTOTRANSFER_SHARED", REPO.parent / "shared"))
WORK = Path(os.environ.get("BENCH_ADVICE_WORK",
                           Path.home() / ".cache" / "autotransfer-bench-advice"))
OUT = REPO / "docs" / "benchmarks" / "advice"
#: cheapest first (images × pixels)
DATASETS = ("brain_mri", "hymenoptera", "clothing_small_lite", "animal_silhouette_28",
            "eurosat_rgb_3k", "chest_xray_224", "omniglot_scripts", "flowers5_small")
HELD_OUT_FRACTION = 0.2  # of a dataset without a split
#: the scores compared as predictors of the linear probe's held-out accuracy (higher is better)
PREDICTORS = ("logme", "knn_accuracy", "linear_probe_accuracy", "separability", "h_score",
              "shrinkage_h_score", "gbc", "nce", "leep")


# ----------------------------------------------------------------------------- results file
def load() -> dict[str, Any]:
    path = OUT.with_suffix(".json")
    data = json.loads(path.read_text()) if path.is_file() else {}
    for part in ("ranking", "grid", "forecast"):
        data.setdefault(part, [] if part != "forecast" else {})
    return data


def save(data: dict[str, Any]) -> None:
    from autotransfer._io import atomic_write_json, atomic_write_text

    OUT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(OUT.with_suffix(".json"), data)
    atomic_write_text(OUT.with_suffix(".md"), markdown(data))


def append(part: str, cell: dict[str, Any]) -> None:
    """Add one completed cell to the results, under a lock (parts may run side by side)."""
    import fcntl

    WORK.mkdir(parents=True, exist_ok=True)
    with open(WORK / "advice.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = load()
        data[part].append(cell)
        save(data)


def machine() -> dict[str, Any]:
    return {"load": " ".join(f"{x:.2f}" for x in os.getloadavg()), "cpus": os.cpu_count(),
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def rule_params(rule_id: str) -> dict[str, Any]:
    """A rule's params, read from recipes/rules.yaml without validating the whole rule base (a
    long run must not stop because someone is editing another rule)."""
    import yaml

    rules = yaml.safe_load((REPO / "recipes" / "rules.yaml").read_text())["rules"]
    return dict(next(r for r in rules if r["id"] == rule_id)["params"])


def stable_rules() -> Any:
    """The rule base, loaded once for the whole run (an edit during a long run does not mix in)."""
    from autotransfer.advisor.rules import load_rules

    return load_rules()


# ----------------------------------------------------------------------------- layouts
def layout(name: str, max_train: int, max_test: int, seed: int = 0) -> Path:
    """``WORK/layouts/<name>-<max_train>-<max_test>/{train,test}/<class>/<file>``: copies of a
    seeded, class-proportional subsample of the dataset's training and held-out images (copies:
    the profiler rightly follows no link out of the dataset folder)."""
    root = WORK / "layouts" / f"{name}-{max_train}-{max_test}"
    if (root / ".complete").is_file():
        return root
    source = SHARED / "datasets" / name
    held = next((source / n for n in ("test", "val") if (source / n).is_dir()), None)
    rng = random.Random(seed)

    def files(folder: Path) -> dict[str, list[Path]]:
        return {c.name: sorted(p for p in c.iterdir() if p.is_file())
                for c in sorted(folder.iterdir()) if c.is_dir()}

    if held is None:  # no split: hold out a stratified share of every class
        train, test = {}, {}
        for label, members in files(source).items():
            members = list(members)
            rng.shuffle(members)
            k = max(2, round(HELD_OUT_FRACTION * len(members)))
            test[label], train[label] = sorted(members[:k]), sorted(members[k:])
    else:
        train, test = files(source / "train"), files(held)
    for split, by_class, cap in (("train", train, max_train), ("test", test, max_test)):
        total = sum(len(m) for m in by_class.values())
        for label, members in by_class.items():
            keep = members if total <= cap else sorted(
                rng.sample(members, max(2, round(cap * len(members) / total))))
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for f in keep:
                shutil.copy2(f, folder / f.name)  # the profiler follows no link outside
    (root / ".complete").write_text("")
    return root


def counts(name: str) -> dict[str, int]:
    source = SHARED / "datasets" / name
    held = next((n for n in ("test", "val") if (source / n).is_dir()), None)
    n = {s: sum(1 for _ in (source / s).rglob("*") if _.is_file())
         for s in ("train", held) if s}
    if not held:
        n = {"all": sum(1 for _ in source.rglob("*") if _.is_file())}
    return n


def input_size(spec: Any, median_side: float) -> int:
    """The quick preset's input size (rule RES02) for images whose median side is given."""
    floor = rule_params("RES02")["floor"]
    if median_side >= spec.default_input_size:
        return spec.default_input_size
    want = 2 ** math.ceil(math.log2(2 * median_side))
    return int(min(max(want, max(spec.min_input_size, floor)), spec.default_input_size))


# ----------------------------------------------------------------------------- ranking
def ranking_cell(name: str, root: Path, profile: Any, backbone: str, seed: int) -> dict[str, Any]:
    """Probe ``backbone`` on the sample, extract the rest of the training and the held-out
    images, fit the exact linear probe on the whole training split, score it held out."""
    import numpy as np
    from sklearn.metrics import balanced_accuracy_score

    from autotransfer.backbones.catalog import get_backbone
    from autotransfer.probes import transferability as tr
    from autotransfer.probes.cache import FeatureCache
    from autotransfer.probes.extract import decode_sample, extract, plan_extraction
    from autotransfer.probes.precision import policy_scope
    from autotransfer.probes.probe import _key, probe_dataset
    from autotransfer.probes.sample import sample_records
    from autotransfer.train.linear_head import fit_linear_head

    spec = get_backbone(backbone)
    sides = sorted(min(r.width, r.height) for r in profile.records)
    size = input_size(spec, float(np.median(sides)))
    started = time.perf_counter()
    report = probe_dataset(profile, [backbone], input_size=size, seed=seed,
                           measure_orientation_with="none")
    probe_s = time.perf_counter() - started
    probe = report.probes[0]
    sample = sample_records(profile, seed=seed)
    plan = plan_extraction(spec, size)
    arrays = FeatureCache().load(_key(plan, [r.sha for r in sample], seed,
                                      extra=f"top={plan.with_top}"))
    assert arrays is not None, "the probe's features are cached"
    classes = profile.classes
    ys = np.asarray([classes.index(r.label) for r in sample])
    f = arrays["features"]
    scores = {"h_score": tr.h_score(f, ys), "shrinkage_h_score": tr.shrinkage_h_score(f, ys),
              "gbc": tr.gbc(f, ys)}
    if "probs" in arrays:
        scores |= {"nce": tr.nce(arrays["probs"], ys), "leep": tr.leep(arrays["probs"], ys)}

    # the rest: training images outside the sample and the held-out images (extracted once)
    store = WORK / "features" / name
    store.mkdir(parents=True, exist_ok=True)
    rest_file = store / f"{backbone}-{size}.npz"
    in_sample = {r.path for r in sample}
    rest = [r for r in profile.records if r.path not in in_sample]
    t0 = time.perf_counter()
    if rest_file.is_file():
        rest_f = np.load(rest_file)["features"]
    else:
        images = decode_sample(rest, profile.root, size)
        with policy_scope("float32"):
            rest_f = extract(plan, images)["features"]
        np.savez(rest_file, features=rest_f)
    extract_s = time.perf_counter() - t0
    train_x = np.concatenate([f, rest_f[[r.split == "train" for r in rest]]])
    train_y = np.concatenate([ys, [classes.index(r.label) for r in rest if r.split == "train"]])
    test_x = rest_f[[r.split == "test" for r in rest]]
    test_y = np.asarray([classes.index(r.label) for r in rest if r.split == "test"])
    fit = fit_linear_head([train_x], train_y, len(classes), seed=seed)
    predicted = fit.predict_proba(test_x).argmax(axis=1)
    t = probe.transferability
    imagenet = probe.imagenet
    return {
        "dataset": name, "backbone": backbone, "input_size": size,
        "n_train": int(len(train_y)), "n_test": int(len(test_y)), "n_sample": len(sample),
        "n_classes": len(classes),
        "probe": {"logme": t.logme, "knn_accuracy": t.knn_accuracy,
                  "linear_probe_accuracy": t.linear_probe_accuracy,
                  "separability": t.separability, **scores,
                  "bn_shift": probe.bn_shift.overall,
                  "entropy": imagenet.normalized_entropy if imagenet else None},
        "truth": {"test_accuracy": float((predicted == test_y).mean()),
                  "test_balanced_accuracy": float(balanced_accuracy_score(test_y, predicted)),
                  "c": fit.c, "cv_accuracy": fit.cv_accuracy},
        "seconds": {"probe": round(probe_s, 1), "extract_rest": round(extract_s, 1),
                    "fit": round(fit.seconds, 1)},
        "machine": machine(),
    }


def run_ranking(args: argparse.Namespace) -> None:
    from autotransfer.data.profile import profile_dataset
    from autotransfer.probes.probe import default_candidates

    os.environ["AUTOTRANSFER_CACHE"] = str(WORK / "cache")
    backbones = args.backbones or default_candidates()
    for name in args.datasets:
        data = load()
        done = {(c["dataset"], c["backbone"]) for c in data["ranking"]}
        todo = [b for b in backbones if (name, b) not in done]
        if not todo:
            continue
        root = layout(name, args.max_train, args.max_test)
        profile = profile_dataset(root)
        for backbone in todo:
            print(f"{name} / {backbone} …", flush=True)
            cell = ranking_cell(name, root, profile, backbone, args.seed)
            cell["source_counts"] = counts(name)
            cell["caps"] = {"max_train": args.max_train, "max_test": args.max_test}
            append("ranking", cell)
            print(f"  linear probe {cell['truth']['test_accuracy']:.4f} held out; "
                  f"{cell['seconds']} load {cell['machine']['load']}", flush=True)


def ranking_tau(cells: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Weighted Kendall τ (hyperbolic weights on rank, top-heavy) of each predictor against the
    held-out linear-probe accuracy, per dataset with at least 3 backbones."""
    from scipy.stats import weightedtau

    by_dataset: dict[str, list[dict[str, Any]]] = {}
    for c in cells:
        by_dataset.setdefault(c["dataset"], []).append(c)
    out: dict[str, dict[str, float]] = {}
    for name, rows in by_dataset.items():
        if len(rows) < 3:
            continue
        out[name] = {}
        for p in PREDICTORS:  # over the backbones where the score exists (NCE, LEEP: top only)
            known = [r for r in rows if r["probe"].get(p) is not None
                     and math.isfinite(r["probe"][p])]
            if len(known) >= 3:
                out[name][p] = float(weightedtau([r["truth"]["test_accuracy"] for r in known],
                                                 [r["probe"][p] for r in known]).statistic)
    return out

# ----------------------------------------------------------------------------- grid
#: fine-tuning rate multiples around the advised one
RATES = (1 / 3, 1.0, 3.0)
#: epochs of a grid cell's fine-tuning phase: its schedule (the advised one, e.g. cosine) anneals
#: the rate over them, and the recipe's early stopping (patience, best weights restored) ends it
#: sooner; a cell that runs them all is marked "schedule completed" (rate annealed to its floor)
MAX_EPOCHS = 20
NO_AUGMENTATION = {"horizontal_flip": False, "vertical_flip": False, "rotate90": False,
                   "rotation": 0.0, "zoom": 0.0, "translation": 0.0, "brightness": 0.0,
                   "contrast": 0.0, "saturation": 0.0, "hue": 0.0, "mixup_alpha": 0.0,
                   "cutmix_alpha": 0.0}


def advised_finetune(advice: Any) -> tuple[int, float, list[float]]:
    """(depth, rate, group multipliers) of the advised fine-tuning; for a head-only recipe, what
    the rules decided it would have been (the last firing that set them), else the preset's."""
    from autotransfer.advisor.presets import load_preset

    tuned = [p for p in advice.recipe.phases if p.trainable_from < 5]
    if tuned:
        deepest = min(tuned, key=lambda p: p.trainable_from)
        return deepest.trainable_from, deepest.learning_rate, list(deepest.group_lr_multipliers)
    decided = dict(load_preset(advice.preset).decisions)
    for f in advice.firings:
        decided.update({k: v for k, v in f.set.items() if k in ("finetune_from", "finetune_lr")})
    depth = int(decided.get("finetune_from", 4))
    return (depth if depth < 5 else 4), float(decided["finetune_lr"]), [1.0] * 5


def grid_cells(advice: Any) -> list[tuple[str, dict[str, Any], Any]]:
    """(cell id, its coordinates, recipe) in the order they run (cheapest first). The grid is
    coordinate-wise around the advised recipe: every freeze depth at the advised rate and
    augmentation, every rate at the advised depth, no augmentation at the advised depth and rate;
    plus the advised recipe itself and the exact linear probe (head only)."""
    from autotransfer.recipe.schema import Recipe
    from autotransfer.tuning.baseline import linear_probe_recipe

    recipe = advice.recipe
    depth, rate, multipliers = advised_finetune(advice)
    head = next((p for p in recipe.phases if p.trainable_from >= 5), None)

    def cell(d: int, m: float, aug: str) -> Recipe:
        data = recipe.model_dump()
        tune = dict((min((p for p in recipe.phases if p.trainable_from < 5),
                         key=lambda p: p.trainable_from, default=None) or recipe.phases[-1]
                     ).model_dump())
        tune.update(name="fine_tune", trainable_from=d, learning_rate=rate * m,
                    epochs=MAX_EPOCHS, group_lr_multipliers=multipliers)
        data["phases"] = ([head.model_dump()] if head else []) + [tune]
        if aug == "none":
            data["augmentation"] = dict(NO_AUGMENTATION)
        data["name"] = f"grid d{d} x{m:.3g} aug-{aug}"
        data["reasons"] = {}
        return Recipe.model_validate(data)

    cells = [("advised", {"advised": True}, recipe),
             ("linear_probe", {"depth": 5}, linear_probe_recipe(recipe)),
             (f"d{depth}-x1-advised", {"depth": depth, "rate": 1.0, "aug": "advised"},
              cell(depth, 1.0, "advised")),
             (f"d{depth}-x1-none", {"depth": depth, "rate": 1.0, "aug": "none"},
              cell(depth, 1.0, "none"))]
    rates = [(f"d{depth}-x{m:.3g}-advised", {"depth": depth, "rate": m, "aug": "advised"},
              cell(depth, m, "advised")) for m in (3.0, 1 / 3)]
    depths = [(f"d{d}-x1-advised", {"depth": d, "rate": 1.0, "aug": "advised"},
               cell(d, 1.0, "advised")) for d in range(4, -1, -1) if d != depth]
    return cells + depths[:1] + rates + depths[1:]


def run_grid(args: argparse.Namespace) -> None:
    from autotransfer.advisor.advise import Advisor
    from autotransfer.data.profile import profile_dataset
    from autotransfer.data.splits import make_splits
    from autotransfer.train.run import train

    os.environ["AUTOTRANSFER_CACHE"] = str(WORK / "cache")
    rules = stable_rules()
    for name in args.datasets:
        root = layout(name, args.max_train, args.max_test)
        profile = profile_dataset(root)
        t0 = time.perf_counter()
        advice = Advisor(preset=args.preset, precision="float32", rules=rules, verbose=0,
                         seed=args.seed).fit(profile).advice_
        advise_s = time.perf_counter() - t0
        splits = make_splits(profile, val_fraction=advice.recipe.data.val_fraction,
                             seed=advice.recipe.seed, exclude_leaks=advice.recipe.data.exclude_leaks)
        for cell_id, coords, recipe in grid_cells(advice):
            if args.cells and cell_id not in args.cells:
                continue
            data = load()
            if any(c["dataset"] == name and c["cell"] == cell_id for c in data["grid"]):
                continue
            out = WORK / "runs" / name / cell_id
            shutil.rmtree(out, ignore_errors=True)
            # a cell interrupted earlier resumes from its last epoch's checkpoint (its seconds
            # then count this session's part only; "resumed" says so)
            resume = (out.with_name(out.name + ".partial") / "checkpoints" / "latest.json").is_file()
            print(f"{name} / {cell_id} …{' (resumed)' if resume else ''}", flush=True)
            started = time.perf_counter()
            run = train(splits, recipe, out, resume=resume)
            m = run.metrics
            phases = [{"trainable_from": p.get("trainable_from"), "epochs_run": p.get("epochs_run"),
                       "epochs_planned": p.get("epochs"), "stopped_early": p.get("stopped_early"),
                       "seconds": p.get("seconds")} for p in m.get("phases", [])]
            last = m.get("phases", [{}])[-1]
            capped = (cell_id != "advised" and last.get("trainable_from", 5) < 5
                      and not last.get("stopped_early") and last.get("epochs_run") == MAX_EPOCHS)
            cell = {"dataset": name, "cell": cell_id, **coords, "backbone": recipe.backbone.name,
                    "input_size": recipe.backbone.input_size, "n_train": len(splits.train),
                    "n_val": len(splits.val), "n_test": len(splits.test),
                    "test_accuracy": m["test"]["accuracy"],
                    "test_balanced_accuracy": m["test"]["balanced_accuracy"],
                    "val_accuracy": m["val"]["accuracy"],
                    "val_balanced_accuracy": m["val"]["balanced_accuracy"],
                    "phases": phases, "epoch_cap_reached": bool(capped),
                    "seconds": round(time.perf_counter() - started, 1), "resumed": resume,
                    "advise_seconds": round(advise_s, 1), "preset": args.preset,
                    "recipe": recipe.to_dict(), "machine": machine()}
            if cell_id == "advised":
                cell["facts"] = {k: v for k, v in advice.facts.items()
                                 if isinstance(v, (int, float, str, bool))}
            append("grid", cell)
            shutil.rmtree(out, ignore_errors=True)  # the numbers are kept; the model is not
            print(f"  test {cell['test_accuracy']:.4f} in {cell['seconds']:.0f} s "
                  f"(load {cell['machine']['load']})", flush=True)


def regrets(cells: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per dataset: best cell − advised (test accuracy, points), and per decision the best along
    its axis − the advised point on that axis (depth, rate, augmentation, fine-tune at all)."""
    out: dict[str, dict[str, Any]] = {}
    by: dict[str, dict[str, dict[str, Any]]] = {}
    for c in cells:
        by.setdefault(c["dataset"], {})[c["cell"]] = c
    for name, rows in by.items():
        if "advised" not in rows or len(rows) < 2:
            continue
        adv = rows["advised"]["test_accuracy"]
        # the advised depth is the one whose no-augmentation cell exists
        none = next((k for k in rows if k.endswith("-x1-none")), None)
        centre = rows.get(none.replace("-none", "-advised")) if none else None
        r: dict[str, Any] = {"cells": len(rows), "advised": adv,
                             "best": max(c["test_accuracy"] for c in rows.values()),
                             "best_cell": max(rows.values(), key=lambda c: c["test_accuracy"])["cell"]}
        r["regret"] = 100 * (r["best"] - adv)
        if centre is not None:
            a = centre["test_accuracy"]
            depth = [c for c in rows.values() if c.get("rate") == 1.0 and c.get("aug") == "advised"]
            depth += [rows["linear_probe"]] if "linear_probe" in rows else []
            rate = [c for c in rows.values() if c.get("depth") == centre["depth"]
                    and c.get("aug") == "advised" and "rate" in c]
            aug = [c for c in rows.values() if c.get("depth") == centre["depth"]
                   and c.get("rate") == 1.0 and "aug" in c]
            r["depth_regret"] = 100 * (max(c["test_accuracy"] for c in depth) - a)
            r["rate_regret"] = 100 * (max(c["test_accuracy"] for c in rate) - a)
            r["aug_regret"] = 100 * (max(c["test_accuracy"] for c in aug) - a)
            r["axes_complete"] = {"depth": len(depth) == 6, "rate": len(rate) == 3,
                                  "aug": len(aug) == 2}
        if "linear_probe" in rows:
            r["linear_probe"] = rows["linear_probe"]["test_accuracy"]
            r["finetune_gain"] = 100 * (adv - r["linear_probe"])
        out[name] = r
    return out

# ----------------------------------------------------------------------------- forecast
#: feature sets compared for the linear probe's forecast (the one with the smallest median
#: leave-one-dataset-out error is kept; the choice is reported with every set's error)
FEATURE_SETS = (("logit_cv",), ("logit_cv", "logit_knn"), ("logit_cv", "log_train_over_sample"),
                ("logit_cv", "logit_knn", "log_train_over_sample", "log_classes"))


#: BB01 tie margins compared leave one dataset out
TIE_MARGINS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2)


def lodo_tie_margin(cells: list[dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """For each dataset: the tie margin with the least mean top-1 regret on the other datasets
    (ties to the smallest), and the regret it gives this one."""
    by = {d: rows for d, rows in _by_dataset(cells).items() if len(rows) >= 3}

    def loss(rows: list[dict[str, Any]], margin: float) -> float:
        return 100 * (max(r["truth"]["test_accuracy"] for r in rows)
                      - chosen_backbone(rows, margin)["truth"]["test_accuracy"])

    out = {}
    for held in by:
        mean = {m: sum(loss(by[d], m) for d in by if d != held) for m in TIE_MARGINS}
        m = min(TIE_MARGINS, key=lambda x: (round(mean[x], 9), x))
        out[held] = (m, loss(by[held], m))
    return out


def chosen_backbone(rows: list[dict[str, Any]], margin: float | None = None) -> dict[str, Any]:
    """The cell of the backbone BB01 chooses (highest LogME; within the tie margin, the better
    linear probe on the sample)."""
    if margin is None:
        margin = rule_params("BB01").get("tie_margin", 0.02)
    best = max(r["probe"]["logme"] for r in rows)
    return max((r for r in rows if r["probe"]["logme"] >= best - margin),
               key=lambda r: r["probe"]["linear_probe_accuracy"])


def figures_of(cell: dict[str, Any]) -> Any:
    from autotransfer.advisor.forecast import ProbeFigures

    p = cell["probe"]
    return ProbeFigures(linear_probe_accuracy=p["linear_probe_accuracy"],
                        knn_accuracy=p["knn_accuracy"], n_sample=cell["n_sample"],
                        n_train=cell["n_train"], n_classes=cell["n_classes"])


def run_forecast(args: argparse.Namespace) -> None:
    """Fit recipes/forecast.yaml from the ranking (linear probe) and grid (gain) cells; judge it
    leave one dataset out."""
    import numpy as np
    import yaml

    from autotransfer._io import atomic_write_text
    from autotransfer.advisor.forecast import ForecastModel, LinearModel, features, fit_linear

    data = load()
    cells = data["ranking"]
    by: dict[str, list[dict[str, Any]]] = {}
    for c in cells:
        by.setdefault(c["dataset"], []).append(c)
    datasets = sorted(d for d, rows in by.items() if len(rows) >= 3)
    if len(datasets) < 3:
        print(f"the forecast needs ranking cells of 3 datasets or more; there are {datasets}")
        return
    rows = [(c["dataset"], features(figures_of(c)), c["truth"]["test_accuracy"])
            for c in cells if c["dataset"] in datasets]
    compared = {}
    for names in FEATURE_SETS:
        per_cell = lodo_cells(rows, list(names))
        compared[",".join(names)] = {
            "median_abs": float(np.median([abs(e) for _, e in per_cell])),
            "max_abs": float(max(abs(e) for _, e in per_cell))}
    names = min(FEATURE_SETS, key=lambda n: compared[",".join(n)]["median_abs"])
    per_cell = lodo_cells(rows, list(names))
    b0, w = fit_linear([x for _, x, _ in rows], [_logit(y) for _, _, y in rows], list(names))
    chosen = {d: chosen_backbone(by[d]) for d in datasets}
    lp_errors = {}
    for d in datasets:  # the chosen backbone's forecast, fitted without its dataset
        others = [r for r in rows if r[0] != d]
        c0, cw = fit_linear([x for _, x, _ in others], [_logit(y) for _, _, y in others],
                            list(names))
        x = features(figures_of(chosen[d]))
        pred = _sigmoid(c0 + sum(cw[n] * x[n] for n in names))
        lp_errors[d] = 100 * (pred - chosen[d]["truth"]["test_accuracy"])
    half = float(np.percentile([abs(e) for _, e in per_cell], 90))
    linear = LinearModel(intercept=b0, weights=w, half_width=round(half, 2),
                         lodo_errors={d: round(e, 2) for d, e in lp_errors.items()})

    gain_model = None
    reg = regrets(data["grid"])
    tunes = {c["dataset"] for c in data["grid"]  # the gain of fine-tuning where it was advised
             if c["cell"] == "advised" and any(p["trainable_from"] < 5 for p in c["phases"])}
    gains = [(d, features(figures_of(chosen[d])) if d in chosen else None, r["finetune_gain"])
             for d, r in reg.items() if "finetune_gain" in r and d in tunes]
    gains = [g for g in gains if g[1] is not None]
    gain_lodo: dict[str, float] = {}
    if len(gains) >= 2:  # the mean gain: too few fine-tuned datasets for a slope
        mean = float(np.mean([g for _, _, g in gains]))
        for d, _, g in gains:
            rest = [h for e, _, h in gains if e != d]
            gain_lodo[d] = round(float(np.mean(rest)) - g, 2)
        gain_model = LinearModel(intercept=round(mean, 3), weights={},
                                 half_width=round(max(abs(e) for e in gain_lodo.values()), 2),
                                 lodo_errors=gain_lodo)
    model = ForecastModel(fitted_on=datasets, source="docs/benchmarks/advice.json (tools/"
                          "bench_advice.py)", linear_probe=linear, gain=gain_model)
    path = REPO / "recipes" / "forecast.yaml"
    header = ("# The forecast's coefficients (autotransfer/advisor/forecast.py), fitted by\n"
              "# 'python tools/bench_advice.py --part forecast' on docs/benchmarks/advice.json;\n"
              "# see docs/benchmarks/advice.md for the leave-one-dataset-out errors. Data only.\n")
    atomic_write_text(path, header + yaml.safe_dump(model.model_dump(mode="json"),
                                                    sort_keys=False))
    data = load()
    data["forecast"] = {"feature_sets": compared, "chosen_features": list(names),
                        "linear_probe_lodo_errors": lp_errors,
                        "chosen_backbones": {d: c["backbone"] for d, c in chosen.items()},
                        "gain_lodo_errors": gain_lodo, "model": model.model_dump(mode="json"),
                        "machine": machine()}
    save(data)
    print(f"wrote {path}: features {names}, LODO errors {lp_errors}")


def lodo_cells(rows: list[tuple[str, dict[str, float], float]],
               names: list[str]) -> list[tuple[str, float]]:
    """(dataset, forecast − measured in points) of every cell, each forecast by the model
    fitted without its dataset."""
    from autotransfer.advisor.forecast import fit_linear

    out = []
    for d in sorted({r[0] for r in rows}):
        others = [r for r in rows if r[0] != d]
        b0, w = fit_linear([x for _, x, _ in others], [_logit(y) for _, _, y in others], names)
        out += [(d, 100 * (_sigmoid(b0 + sum(w[n] * x[n] for n in names)) - y))
                for e, x, y in rows if e == d]
    return out


def _logit(p: float) -> float:
    p = min(max(p, 1e-3), 1 - 1e-3)
    return math.log(p / (1 - p))


def _sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def _by_dataset(cells: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by: dict[str, list[dict[str, Any]]] = {}
    for c in cells:
        by.setdefault(c["dataset"], []).append(c)
    return by


def top1_regret(cells: list[dict[str, Any]]) -> dict[str, float]:
    """Per predictor: mean over datasets of (best held-out accuracy − that of the backbone the
    predictor ranks first), in points, over datasets where the score exists for every backbone."""
    by: dict[str, list[dict[str, Any]]] = {}
    for c in cells:
        by.setdefault(c["dataset"], []).append(c)
    out: dict[str, float] = {}
    for p in PREDICTORS:
        losses = []
        for rows in by.values():
            if len(rows) < 3 or any(r["probe"].get(p) is None for r in rows):
                continue
            best = max(r["truth"]["test_accuracy"] for r in rows)
            top = max(rows, key=lambda r: r["probe"][p])
            losses.append(100 * (best - top["truth"]["test_accuracy"]))
        if losses:
            out[p] = sum(losses) / len(losses)
    return out


def lodo_pick(tau: dict[str, dict[str, float]]) -> dict[str, tuple[str, float]]:
    """For each dataset, the predictor with the best mean τ on the other datasets and its τ on
    this one (how well 'rank with whichever wins' generalises)."""
    out = {}
    for held in tau:
        means = {p: [tau[d][p] for d in tau if d != held and p in tau[d]] for p in PREDICTORS}
        means = {p: sum(v) / len(v) for p, v in means.items() if len(v) == len(tau) - 1 and v}
        if not means:
            continue
        p = max(means, key=means.__getitem__)
        if p in tau[held]:
            out[held] = (p, tau[held][p])
    return out


# ----------------------------------------------------------------------------- report
def markdown(data: dict[str, Any]) -> str:
    lines = ["# Is the advice measured? (issue 18)", "",
             "Generated by `tools/bench_advice.py` from `advice.json` (every cell records its "
             "input size, image counts, seconds and the load average when it finished). "
             "Held-out images are the dataset's own test (else val) folder, or a seeded "
             "stratified 20% for flowers5_small; nothing trains or selects on them.", ""]
    cells = data.get("ranking", [])
    if cells:
        tau = ranking_tau(cells)
        lines += ["## Backbone ranking", "",
                  "Truth: held-out accuracy of the exact linear probe (L-BFGS, L2 by 5-fold CV on "
                  "the training images) on the features of the whole (capped) training split. "
                  "Predictors: measured by `probe_dataset` on its sample (≤ 64 images per class). "
                  "Weighted Kendall τ (scipy.stats.weightedtau, top-weighted) per dataset; NCE "
                  "and LEEP need the ImageNet classifier, which exists at the default input size "
                  "only.", "",
                  "| dataset | backbones | " + " | ".join(PREDICTORS) + " |",
                  "|---|---|" + "---|" * len(PREDICTORS)]
        for name, row in tau.items():
            n = sum(c["dataset"] == name for c in cells)
            lines.append(f"| {name} | {n} | " + " | ".join(
                f"{row[p]:+.2f}" if p in row else "–" for p in PREDICTORS) + " |")
        means = {p: [row[p] for row in tau.values() if p in row] for p in PREDICTORS}
        lines.append("| **mean** | | " + " | ".join(
            f"**{sum(v) / len(v):+.2f}** ({len(v)})" if v else "–" for v in means.values())
            + " |")
        regret = top1_regret(cells)
        lines.append("| top-1 regret, mean pts | | " + " | ".join(
            f"{regret[p]:.2f}" if p in regret else "–" for p in PREDICTORS) + " |")
        bb01 = [100 * (max(r["truth"]["test_accuracy"] for r in rows)
                       - chosen_backbone(rows)["truth"]["test_accuracy"])
                for rows in _by_dataset(cells).values() if len(rows) >= 3]
        lines.append(f"| BB01's choice (LogME, near-ties to the linear probe): top-1 regret "
                     f"{sum(bb01) / len(bb01):.2f} pts mean, {max(bb01):.2f} worst | |"
                     + " |" * len(PREDICTORS))
        ties = lodo_tie_margin(cells)
        lines += ["", "BB01's tie margin chosen leave one dataset out (least mean top-1 regret on "
                  "the others, from " + ", ".join(f"{m:g}" for m in TIE_MARGINS) + "): "
                  + ", ".join(f"{d} → {m:g} (regret {r:.2f})" for d, (m, r) in ties.items())
                  + f"; mean top-1 regret {sum(r for _, r in ties.values()) / len(ties):.2f} pts."]
        picked = lodo_pick(tau)
        if picked:
            lines += ["", "Top-1 regret: held-out accuracy of the best backbone minus that of the "
                      "backbone the score ranks first (mean over datasets, points). "
                      "Choosing the score leave one dataset out (the best mean τ on the other "
                      "datasets, judged on the held-out one): " + ", ".join(
                          f"{d} → {p} (τ {t:+.2f})" for d, (p, t) in picked.items())
                      + f"; mean τ {sum(t for _, t in picked.values()) / len(picked):+.2f}."]
        lines += ["", "Published means to compare (other benchmarks, fine-tuned accuracy as "
                  "truth): Transfer-Learning-Library 10 CNNs × 8 datasets — H-score 0.670, LogME "
                  "0.665, NCE 0.501, LEEP 0.287; SFDA's 11 × 11 — SFDA 0.710, LogME 0.509.", "",
                  "### Cells", "",
                  "| dataset | backbone | px | train / test / sample | linear probe held out "
                  "(balanced) | sample: linear CV, k-NN, LogME, H-score | seconds (probe, rest, "
                  "fit) | load |", "|---|---|---|---|---|---|---|---|"]
        for c in cells:
            p, t, s = c["probe"], c["truth"], c["seconds"]
            lines.append(
                f"| {c['dataset']} | {c['backbone']} | {c['input_size']} | {c['n_train']} / "
                f"{c['n_test']} / {c['n_sample']} | {t['test_accuracy']:.4f} "
                f"({t['test_balanced_accuracy']:.4f}) | {p['linear_probe_accuracy']:.3f}, "
                f"{p['knn_accuracy']:.3f}, {p['logme']:.3f}, {p['h_score']:.2f} | "
                f"{s['probe']:.0f}, {s['extract_rest']:.0f}, {s['fit']:.0f} | "
                f"{c['machine']['load']} |")
        lines.append("")
    lines += grid_markdown(data.get("grid", [])) + forecast_markdown(data.get("forecast") or {})
    lines += goals_markdown(data)
    return "\n".join(lines) + "\n"


def wilson(accuracy: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of an accuracy measured on ``n`` images."""
    centre = (accuracy + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((accuracy * (1 - accuracy) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def grid_markdown(cells: list[dict[str, Any]]) -> list[str]:
    if not cells:
        return []
    lines = ["## Recipe grid (coordinate-wise around the advised recipe)", "",
             "Each cell is the advised recipe (preset in the cell) with one decision changed: "
             "the fine-tuning phase from layer group d (5 = head only: the exact linear probe), "
             "its rate × 1/3, 1 or 3, augmentation none or advised. Grid cells keep the advised "
             f"head phase, then fine-tune in one phase of {MAX_EPOCHS} epochs whose schedule "
             "(the advised one) anneals the rate over them, under the recipe's early stopping "
             "(patience, best weights restored): each ends early-stopped (`s`) or with its "
             "schedule completed (**sched**). `advised` is the recipe exactly as advised (its "
             "own phases and epochs). Test = the held-out split; "
             "the validation split is 20% of the (capped) training split.", ""]
    reg = regrets(cells)
    if reg:
        lines += ["| dataset | cells | advised | best (cell) | regret (pts) | depth / rate / aug "
                  "regret | linear probe | fine-tuning gain (pts) |", "|---|---|---|---|---|---|---|---|"]
        for name, r in reg.items():
            axes = " / ".join(
                f"{r[k]:+.1f}" + ("" if r.get("axes_complete", {}).get(a) else "*")
                if k in r else "–" for k, a in (("depth_regret", "depth"),
                                                 ("rate_regret", "rate"), ("aug_regret", "aug")))
            lines.append(f"| {name} | {r['cells']} | {r['advised']:.4f} | {r['best']:.4f} "
                         f"({r['best_cell']}) | {r['regret']:+.1f} | {axes} | "
                         f"{r.get('linear_probe', float('nan')):.4f} | "
                         f"{r.get('finetune_gain', float('nan')):+.1f} |")
        lines += ["", "\\* that axis is not complete yet (cells still to run).", ""]
    lines += ["| dataset | cell | backbone, px | train / val / test | test (95% interval) | "
              "balanced | val | epochs (early stop?) | seconds | load |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        lo, hi = wilson(c["test_accuracy"], c["n_test"])
        epochs = ", ".join(f"{p['epochs_run']}{'' if p['trainable_from'] == 5 else ('s' if p['stopped_early'] else '')}"
                           for p in c["phases"])
        cap = " **sched**" if c["epoch_cap_reached"] else ""
        lines.append(f"| {c['dataset']} | {c['cell']} | {c['backbone']}, {c['input_size']} | "
                     f"{c['n_train']} / {c['n_val']} / {c['n_test']} | {c['test_accuracy']:.4f} "
                     f"({lo:.3f}–{hi:.3f}) | {c['test_balanced_accuracy']:.4f} | "
                     f"{c['val_accuracy']:.4f} | {epochs}{cap} | {c['seconds']:.0f} | "
                     f"{c['machine']['load']} |")
    lines += ["", "Epochs per phase; `s` = stopped early by the recipe's patience.", ""]
    return lines


def forecast_markdown(f: dict[str, Any]) -> list[str]:
    if not f:
        return []
    lp = f["model"]["linear_probe"]
    lines = ["## Forecast (leave one dataset out)", "",
             "The linear probe's held-out accuracy forecast from the probe's sample "
             f"(features {', '.join(f['chosen_features'])}; logit scale; fitted on every "
             f"backbone's cell), interval ±{lp['half_width']:.1f} points (90th percentile of the "
             "cells' leave-one-dataset-out errors). Error = forecast − measured, for the backbone "
             "BB01 chooses, by the model fitted without that dataset:", "",
             "| dataset | chosen backbone | LODO error (pts) | within ±3? |", "|---|---|---|---|"]
    errors = f["linear_probe_lodo_errors"]
    for d, e in errors.items():
        lines.append(f"| {d} | {f['chosen_backbones'][d]} | {e:+.1f} | "
                     f"{'yes' if abs(e) <= 3 else 'no'} |")
    within = sum(abs(e) <= 3 for e in errors.values())
    lines += ["", f"Within ±3 points on {within} of {len(errors)} datasets.", "",
              "Feature sets compared (median / max absolute LODO error over all cells, points): "
              + "; ".join(f"{k}: {v['median_abs']:.1f} / {v['max_abs']:.1f}"
                          for k, v in f["feature_sets"].items()) + ".", ""]
    gain = f["model"].get("gain")
    if gain:
        lines += [f"Gain of the advised fine-tuning over the linear probe: {gain['intercept']:+.1f} "
                  f"points (mean over {len(f['gain_lodo_errors'])} grid datasets), "
                  f"interval ±{gain['half_width']:.1f}; LODO errors: "
                  + ", ".join(f"{d} {e:+.1f}" for d, e in f["gain_lodo_errors"].items()) + ".", ""]
    else:
        lines += ["No gain model: fewer than two datasets have both the advised recipe and the "
                  "linear probe in the grid, so `advise` forecasts the linear probe only.", ""]
    return lines


def goals_markdown(data: dict[str, Any]) -> list[str]:
    """The issue's goals against what was measured (on the datasets measured so far)."""
    import statistics

    lines = ["## Goals (issue 18)", "", "| goal | measured | met? |", "|---|---|---|"]
    reg = regrets(data.get("grid", []))
    if reg:
        values = [r["regret"] for r in reg.values()]
        med, worst = statistics.median(values), max(values)
        lines.append(f"| advised recipe: median regret ≤ 1 pt, worst ≤ 3 | median {med:.1f}, "
                     f"worst {worst:.1f} over {len(values)} dataset(s) "
                     f"({', '.join(f'{d} {v:.1f}' for d, v in zip(reg, values))}), grid "
                     f"coordinate-wise and partly run | {'yes' if med <= 1 and worst <= 3 else 'no'}"
                     f" (on {len(values)} of 8) |")
    tau = ranking_tau(data.get("ranking", []))
    if tau:
        ranked_by = data.get("ranked_by", "logme")
        v = [row[ranked_by] for row in tau.values() if ranked_by in row]
        mean = sum(v) / len(v)
        lines.append(f"| the ranking's mean τ ≥ 0.6 | {ranked_by}: {mean:+.2f} over {len(v)} "
                     f"dataset(s) | {'yes' if mean >= 0.6 else 'no'} |")
    f = data.get("forecast") or {}
    if f:
        e = f["linear_probe_lodo_errors"]
        k = sum(abs(x) <= 3 for x in e.values())
        lines.append(f"| forecast within ±3 pts on ≥ 6 of 8 (LODO) | linear probe: {k} of "
                     f"{len(e)} | {'yes' if k >= 6 else 'no'} |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("ranking", "grid", "forecast"), default="ranking")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--backbones", nargs="+", default=None,
                        help="default: every backbone with weights on this machine")
    parser.add_argument("--max-train", type=int, default=1000)
    parser.add_argument("--max-test", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default="quick", help="the advice the grid is built around")
    parser.add_argument("--cells", nargs="+", default=None,
                        help="grid: run only these cells (e.g. advised linear_probe)")
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args()
    if args.render_only:
        save(load())
        return
    use_shared_weights()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    {"ranking": run_ranking, "grid": run_grid, "forecast": run_forecast}[args.part](args)


if __name__ == "__main__":
    main()
