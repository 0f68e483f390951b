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
- **rescore**: adds scores to the ranking cells from the probe's cached sample features (no
  extraction, no training; SFDA so far).

Held-out data: the dataset's own ``test`` (else ``val``) folder; ``flowers5_small`` has no split,
so a seeded stratified 20% of it is held out. To fit the 2-core machine the splits are capped
(``--max-train``, ``--max-test``: a seeded, class-proportional subsample, recorded per cell) and
images smaller than the backbone's input are run at the quick preset's size (rule RES02). The
subsampled layouts are copies under the work folder (``$BENCH_ADVICE_WORK``, default
``~/.cache/autotransfer-bench-advice``), kept so that every part and every rerun sees the same
images.

    python tools/bench_advice.py --part ranking [--datasets brain_mri hymenoptera]
    python tools/bench_advice.py --part grid --max-train 800 --max-test 400
        --datasets brain_mri --cells advised linear_probe centre no_aug rate_up shallower
    python tools/bench_advice.py --part rescore      # new scores from cached sample features
    python tools/bench_advice.py --part forecast     # refit recipes/forecast.yaml
    python tools/bench_advice.py --render-only

The grid's advice is computed once per dataset and kept under the work folder (advice/), so a
chunk stopped by a time limit resumes around the same centre: its interrupted cell continues from
its last epoch's checkpoint and its seconds so far are added.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
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
              "shrinkage_h_score", "gbc", "sfda", "sfda_lw", "nce", "leep")
#: scores that ``--part rescore`` can add to existing ranking cells from the cached sample features
RESCORABLE = ("sfda", "sfda_lw")


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
    try:  # the JSON is the record; a rendering that fails (e.g. a rule file mid-edit by
        # someone else) must not stop a run: --render-only writes the Markdown again
        text = markdown(data)
    except Exception as e:  # noqa: BLE001
        print(f"WARNING: {OUT.with_suffix('.md')} not rendered ({type(e).__name__}: {e}); "
              "run --render-only later", flush=True)
        return
    atomic_write_text(OUT.with_suffix(".md"), text)


def append(part: str, cell: dict[str, Any]) -> None:
    """Add one completed cell to the results, under a lock (parts may run side by side). A
    re-advised cell (``advice_tag``) takes the id ``advised``; the one it replaces is kept beside
    it as ``advised_before`` in the same write."""
    import fcntl

    WORK.mkdir(parents=True, exist_ok=True)
    with open(WORK / "advice.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = load()
        if part == "grid" and cell.get("advice_tag"):
            for c in data["grid"]:
                if c["dataset"] == cell["dataset"] and c["cell"] == "advised":
                    if any(b["dataset"] == c["dataset"] and b["cell"] == BEFORE
                           for b in data["grid"]):
                        raise RuntimeError(f"{c['dataset']}: an {BEFORE} cell is kept already")
                    c["cell"] = BEFORE
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
              "gbc": tr.gbc(f, ys), "sfda": tr.sfda(f, ys),
              "sfda_lw": tr.sfda(f, ys, shrinkage="ledoit_wolf")}
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


def run_rescore(args: argparse.Namespace) -> None:
    """Add the scores of :data:`RESCORABLE` to the ranking cells from the probe's cached sample
    features (no extraction, no training). The H-score is recomputed too and must match the
    stored one: the check that the cached features are the ones the cell was scored on."""
    import numpy as np

    from autotransfer.backbones.catalog import get_backbone
    from autotransfer.data.profile import profile_dataset
    from autotransfer.probes import transferability as tr
    from autotransfer.probes.cache import FeatureCache
    from autotransfer.probes.extract import plan_extraction
    from autotransfer.probes.probe import _key
    from autotransfer.probes.sample import sample_records

    import fcntl

    os.environ["AUTOTRANSFER_CACHE"] = str(WORK / "cache")
    cells = load()["ranking"]
    updates: dict[tuple[str, str], dict[str, Any]] = {}
    for name in args.datasets:
        rows = [c for c in cells if c["dataset"] == name
                and any(k not in c["probe"] for k in RESCORABLE)]
        if not rows:
            continue
        caps = rows[0]["caps"]
        profile = profile_dataset(layout(name, caps["max_train"], caps["max_test"]))
        sample = sample_records(profile, seed=args.seed)
        ys = np.asarray([profile.classes.index(r.label) for r in sample])
        for c in rows:
            plan = plan_extraction(get_backbone(c["backbone"]), c["input_size"])
            arrays = FeatureCache().load(_key(plan, [r.sha for r in sample], args.seed,
                                              extra=f"top={plan.with_top}"))
            if arrays is None:
                print(f"{name} / {c['backbone']}: the sample's features are not cached; skipped")
                continue
            f = arrays["features"]
            check = tr.h_score(f, ys)
            if not math.isclose(check, c["probe"]["h_score"], rel_tol=1e-6, abs_tol=1e-9):
                print(f"{name} / {c['backbone']}: cached features give H-score {check} against "
                      f"{c['probe']['h_score']} stored; skipped")
                continue
            t0 = time.perf_counter()
            new = {"sfda": tr.sfda(f, ys), "sfda_lw": tr.sfda(f, ys, shrinkage="ledoit_wolf")}
            updates[(name, c["backbone"])] = {"scores": new, "seconds": round(
                time.perf_counter() - t0, 2), "machine": machine()}
            print(f"{name} / {c['backbone']}: {new} in {updates[(name, c['backbone'])]['seconds']}"
                  " s", flush=True)
    with open(WORK / "advice.lock", "w") as lock:  # the grid may be appending meanwhile
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = load()
        for c in data["ranking"]:
            u = updates.get((c["dataset"], c["backbone"]))
            if u:
                c["probe"].update(u["scores"])
                c.setdefault("rescored", {}).update(
                    {k: {"seconds": u["seconds"], "machine": u["machine"]} for k in u["scores"]})
        save(data)


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
                t = float(weightedtau([r["truth"]["test_accuracy"] for r in known],
                                      [r["probe"][p] for r in known]).statistic)
                # a score that ties every backbone (τ undefined) ranks nothing: τ 0
                out[name][p] = 0.0 if math.isnan(t) else t
    return out

# ----------------------------------------------------------------------------- grid
#: fine-tuning rate multiples around the advised one
RATES = (1 / 3, 1.0, 3.0)
#: epochs of a grid cell's fine-tuning phase: its schedule (the advised one, e.g. cosine) anneals
#: the rate over them, and the recipe's early stopping (patience, best weights restored) ends it
#: sooner; a cell that runs them all is marked "schedule completed" (rate annealed to its floor)
MAX_EPOCHS = 20
#: rules added after the grid's centres were fixed (session 4): a centre advised now (a dataset
#: whose kept advice is missing) leaves them out, so that every centre comes from one rule base;
#: the re-advised cell (``--readvise``) uses the whole rule base in force
AFTER_CENTRES = ("LR05", "LR06")
#: the advised cell measured under an earlier rule base, kept beside the advised cell of the rule
#: base in force when that one is re-advised (``--readvise``; issue 18: LR05's floor)
BEFORE = "advised_before"
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


def rate_variant(recipe: Any, multiplier: float, tag: str) -> tuple[str, dict[str, Any], Any]:
    """(cell id, coordinates, recipe): ``recipe`` as advised (its phases, epochs, augmentation)
    with every fine-tuning phase's learning rate × ``multiplier`` — a candidate change of LR01's
    ratios measured at the advised schedule, not on the grid's one 20-epoch phase."""
    from autotransfer.recipe.schema import Recipe

    data = recipe.model_dump()
    for p in data["phases"]:
        if p["trainable_from"] < 5:
            p["learning_rate"] *= multiplier
    data["name"] = f"{recipe.name} (fine-tuning rate x{multiplier:g})"
    data["reasons"] = {}
    return (f"advised-x{multiplier:g}", {"advised_rate": multiplier, "advice_of": tag},
            Recipe.model_validate(data))


def cell_roles(depth: int) -> dict[str, str]:
    """Names for the cells one factor away from the centre (``d<depth>-x1-advised``), usable in
    ``--cells`` before the advised depth is known: centre, no_aug, rate_up, rate_down,
    shallower (one group fewer tuned; the linear probe when the centre tunes group 4 only),
    deeper (one group more)."""
    return {"centre": f"d{depth}-x1-advised", "no_aug": f"d{depth}-x1-none",
            "rate_up": f"d{depth}-x3-advised", "rate_down": f"d{depth}-x0.333-advised",
            "shallower": f"d{depth + 1}-x1-advised" if depth < 4 else "linear_probe",
            "deeper": f"d{depth - 1}-x1-advised" if depth > 0 else f"d{depth}-x1-advised"}


def cached_advice(name: str, root: Path, profile: Any, args: argparse.Namespace,
                  rules: Any, tag: str | None = None) -> tuple[Any, float, bool]:
    """The advice the grid is built around, computed once per layout and preset and kept as JSON
    under the work folder: every cell of every later run (and a resumed cell, whose recipe must
    not change) is built around the same centre, even when recipes/rules.yaml is edited
    meanwhile. Returns (advice, seconds it took to compute, whether it came from the cache).
    ``tag``: the advice of the rule base in force, kept apart from the grid's centre (the
    re-advised cell, ``--readvise``)."""
    from autotransfer.advisor.advise import Advice, Advisor

    path = WORK / "advice" / (f"{root.name}-{args.preset}-seed{args.seed}"
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

    os.environ["AUTOTRANSFER_CACHE"] = str(WORK / "cache")
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
            cells = [rate_variant(Recipe.model_validate(kept["recipe"]), args.advised_rate,
                                  args.advice_tag)]
            wanted = {cells[0][0]}
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
            if any(c["dataset"] == name and c["cell"] == cell_id
                   and c.get("advice_tag") == tag for c in data["grid"]):
                continue
            out = WORK / "runs" / name / (cell_id + (f"-{tag}" if tag else ""))
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
            if cell_id == "advised":
                cell["facts"] = {k: v for k, v in (readvised if tag else advice).facts.items()
                                 if isinstance(v, (int, float, str, bool))}
            if tag:
                cell.update(advice_tag=tag, rules_sha=sha, lr05_fold=fold,
                            changed_from_centre=recipe_changes(advice.recipe, recipe))
            append("grid", cell)
            shutil.rmtree(out, ignore_errors=True)  # the numbers are kept; the model is not
            spent_file.unlink(missing_ok=True)
            print(f"  test {cell['test_accuracy']:.4f} in {cell['seconds']:.0f} s "
                  f"(load {cell['machine']['load']})", flush=True)


def lr05_fold(name: str) -> dict[str, Any]:
    """LR05's floor for re-advising ``name``, fitted without it on the grid cells recorded so
    far (``length_lodo``): the leave-one-dataset-out protocol, applied as the cells run."""
    fit = length_lodo(converged_phases(load()["grid"]))
    if "folds" not in fit or fit["unit"] != "epochs":
        return {"floor": None, "why": "no epoch floor fitted"}
    fold = fit["folds"].get(name)
    fitted_on = sorted(d for d in fit["per_dataset"] if d != name)
    return {"floor": fold["floor_epochs"]["epochs"] if fold else fit["floor_epochs"],
            "fitted_on": fitted_on,
            "phases": sum(r["phases"] for d, r in fit["per_dataset"].items() if d != name)}


def with_floor(rules: Any, floor: int | None) -> Any:
    """The rule base with LR05's (and LR06's) floor set to ``floor`` (None: as it is)."""
    if floor is None:
        return rules
    return rules.model_copy(update={"rules": [
        r.model_copy(update={"params": {**r.params, "min_epochs": floor}})
        if r.id in ("LR05", "LR06") else r for r in rules.rules]})


def floor_used(c: dict[str, Any]) -> int | None:
    """LR05's floor as the cell's recipe recorded it (its epochs' reason), None where it did
    not fire."""
    for key, reason in (c.get("recipe", {}).get("reasons") or {}).items():
        if key.startswith("phases.") and key.endswith(".epochs") and reason.get("rule") in (
                "LR05", "LR06"):
            return int(reason["thresholds"]["min_epochs"])
    return None


def mark_unchanged(name: str, tag: str) -> None:
    """Record on a dataset's advised cell that the rule base ``tag`` advises the same recipe."""
    import fcntl

    with open(WORK / "advice.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = load()
        for c in data["grid"]:
            if c["dataset"] == name and c["cell"] == "advised" and not c.get("advice_tag"):
                c["same_advice_under"] = tag
        save(data)


def rules_sha() -> str:
    """The rule base a re-advised cell used: the first 12 hex digits of recipes/rules.yaml's
    SHA-256 (the file is also in the repository's history)."""
    import hashlib

    return hashlib.sha256((REPO / "recipes" / "rules.yaml").read_bytes()).hexdigest()[:12]


def recipe_changes(before: Any, after: Any) -> dict[str, Any]:
    """The recipe fields that differ (``phases`` as their (trainable_from, epochs) pairs; the
    reasons and the name left out): what a re-advised cell changes against the kept advice."""
    a, b = before.to_dict(), after.to_dict()
    out: dict[str, Any] = {}
    for key in sorted(set(a) | set(b)):
        if key in ("reasons", "name") or a.get(key) == b.get(key):
            continue
        if key == "phases":
            out[key] = [[[p["trainable_from"], p["epochs"]] for p in a[key]],
                        [[p["trainable_from"], p["epochs"]] for p in b[key]]]
            if any({k: v for k, v in p.items() if k not in ("epochs", "warmup_epochs")}
                   != {k: v for k, v in q.items() if k not in ("epochs", "warmup_epochs")}
                   for p, q in zip(a[key], b[key])) or len(a[key]) != len(b[key]):
                out["phases_other"] = True  # more than the epochs (and warm-up) changed
        else:
            out[key] = [a.get(key), b.get(key)]
    return out


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


def _centre(rows: dict[str, dict[str, Any]]) -> str | None:
    """The id of the grid's centre cell (the advised depth, rate × 1, advised augmentation):
    recorded in the cells since session 3, else read from the advised recipe's deepest phase."""
    recorded = next((c["centre"] for c in rows.values() if c.get("centre")), None)
    if recorded:
        return recorded
    adv = rows.get("advised")
    tuned = [p["trainable_from"] for p in (adv or {}).get("phases", [])
             if p["trainable_from"] < 5]
    return f"d{min(tuned)}-x1-advised" if tuned else None


def significant(a: float, b: float, n: int) -> bool:
    """Whether two accuracies on the same ``n`` held-out images differ at 95% by an unpaired
    two-proportion z-test (conservative here: the cells are scored on the same images, and a
    paired test, which needs per-image predictions the cells do not keep, would be tighter)."""
    se = math.sqrt(max(a * (1 - a) + b * (1 - b), 1e-12) / n)
    return abs(a - b) > 1.96 * se


def _axis(rows: dict[str, dict[str, Any]], members: list[dict[str, Any]],
          point: dict[str, Any] | None, metric: str) -> dict[str, Any] | None:
    """Best along one axis − the advised point on it (points), with the best cell's id."""
    if point is None or len(members) < 2:
        return None
    best = max(members, key=lambda c: (c[metric], c is point))  # ties go to the advised point
    return {"regret": 100 * (best[metric] - point[metric]), "best": best["cell"],
            "advised": point["cell"], "cells": [c["cell"] for c in members],
            "significant": significant(best[metric], point[metric], point["n_test"])}


def regrets(cells: list[dict[str, Any]], metric: str = "test_accuracy"
            ) -> dict[str, dict[str, Any]]:
    """Per dataset: best cell − advised (``metric``, points), and per decision the best along its
    axis − the advised point on that axis: depth (the linear probe and every depth at rate × 1
    with the advised augmentation), rate (× 1/3, 1, 3 at the centre's depth), augmentation (none
    against advised at the centre), and fine-tuning at all (the linear probe against the best
    fine-tuned cell)."""
    out: dict[str, dict[str, Any]] = {}
    by: dict[str, dict[str, dict[str, Any]]] = {}
    before: dict[str, dict[str, Any]] = {}  # the advised cell of an earlier rule base
    for c in cells:
        if c["cell"] == BEFORE:
            before[c["dataset"]] = c
        else:
            by.setdefault(c["dataset"], {})[c["cell"]] = c
    for name, rows in by.items():
        if "advised" not in rows or len(rows) < 2:
            continue
        adv = rows["advised"]
        best = max(rows.values(), key=lambda c: (c[metric], c["cell"] == "advised"))
        advised_tunes = any(p["trainable_from"] < 5 for p in adv["phases"])
        r: dict[str, Any] = {"cells": len(rows), "advised": adv[metric], "best": best[metric],
                             "best_cell": best["cell"], "n_test": adv["n_test"],
                             "regret": 100 * (best[metric] - adv[metric]),
                             "significant": significant(best[metric], adv[metric], adv["n_test"]),
                             "advised_tunes": advised_tunes,
                             "rule_base": adv.get("advice_tag") or (
                                 f"before = {adv['same_advice_under']}"
                                 if adv.get("same_advice_under") else "before")}
        if name in before:  # the same grid's best against the advice of the earlier rule base
            b = before[name]
            r["before"] = {"value": b[metric], "regret": 100 * (best[metric] - b[metric]),
                           "significant": significant(best[metric], b[metric], b["n_test"])}
        centre_id = _centre(rows)
        centre = rows.get(centre_id) if centre_id else None
        r["centre"] = centre_id
        lp = rows.get("linear_probe")
        if centre_id:
            d = int(centre_id[1])
            grid = [c for c in rows.values() if "depth" in c and "rate" in c]
            depth = [c for c in grid if c["rate"] == 1.0 and c["aug"] == "advised"]
            depth += [lp] if lp else []
            # the advised point on the depth axis: the linear probe when the advice is head-only
            r["depth"] = _axis(rows, depth, centre if advised_tunes else lp, metric)
            rate = [c for c in grid if c["depth"] == d and c["aug"] == "advised"]
            r["rate"] = _axis(rows, rate, centre, metric)
            aug = [c for c in grid if c["depth"] == d and c["rate"] == 1.0]
            r["aug"] = _axis(rows, aug, centre, metric)
            r["axes_complete"] = {"depth": len(depth) >= (3 if d == 4 else 4),
                                  "rate": len(rate) == 3,
                                  "aug": len(aug) == 2}
        if lp is not None:
            r["linear_probe"] = lp[metric]
            tuned = [c for c in rows.values() if c["cell"] != "linear_probe"
                     and any(p["trainable_from"] < 5 for p in c["phases"])]
            if advised_tunes:
                r["finetune_gain"] = 100 * (adv[metric] - lp[metric])
            if tuned:
                top = max(tuned, key=lambda c: c[metric])
                r["best_finetuned"] = {"cell": top["cell"], "value": top[metric],
                                       "gain": 100 * (top[metric] - lp[metric])}
            # fine-tune at all: the advice against the other choice — the linear probe where
            # it fine-tunes, else the centre (what FZ01 would have fine-tuned); the other
            # fine-tuned cells belong to the depth, rate and augmentation decisions
            other = lp if advised_tunes else centre
            if other is not None:
                r["finetune"] = _axis(rows, [lp, adv if advised_tunes else centre],
                                      adv if advised_tunes else lp, metric)
        out[name] = r
    return out


#: FZ04 thresholds compared leave one dataset out (separable × far_entropy; 1.01 = never fires)
FZ04_SEPARABLE = (0.80, 0.85, 0.88, 0.90, 0.92, 0.94, 0.96, 0.98, 1.01)
FZ04_FAR_ENTROPY = (0.40, 0.45, 0.50, 0.55, 0.60, 0.70)


def fz04_cases(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per dataset with the linear probe and a fine-tuned cell: the facts FZ04 reads (from the
    advised cell) and the held-out accuracy of either choice — the advised recipe where it
    fine-tunes, else the grid's centre cell (what FZ01 would have fine-tuned)."""
    reg = regrets(cells)
    out = []
    for d, r in reg.items():
        rows = {c["cell"]: c for c in cells if c["dataset"] == d}
        facts = rows["advised"].get("facts")
        tuned = rows["advised"] if r["advised_tunes"] else rows.get(r.get("centre") or "")
        if "linear_probe" not in rows or tuned is None or not facts:
            continue
        out.append({"dataset": d, "facts": {k: facts[k] for k in (
            "linear_acc", "per_class", "bn_shift", "entropy")},
            "linear_probe": rows["linear_probe"]["test_accuracy"],
            "fine_tuned": tuned["test_accuracy"], "fine_tuned_cell": tuned["cell"],
            "n_test": rows["linear_probe"]["n_test"]})
    return out


def fz04_fires(facts: dict[str, float], separable: float, far_entropy: float,
               params: dict[str, Any]) -> bool:
    """FZ04's condition with the given thresholds (its other params as in rules.yaml)."""
    near = not (facts["bn_shift"] > params["far_shift"] or facts["entropy"] > far_entropy)
    return facts["linear_acc"] >= separable and facts["per_class"] < params["medium"] and near


def fz04_lodo(cases: list[dict[str, Any]], params: dict[str, Any]) -> dict[str, Any]:
    """Choose (separable, far_entropy) on all datasets but one (least total regret of the
    fine-tune-or-not choice; ties to the thresholds nearest the current ones), judge it on the
    one left out, against the current thresholds on the same one."""
    def loss(case: dict[str, Any], s: float, e: float) -> float:
        chosen = case["linear_probe"] if fz04_fires(case["facts"], s, e, params) else \
            case["fine_tuned"]
        return 100 * (max(case["linear_probe"], case["fine_tuned"]) - chosen)

    current = (params["separable"], params["far_entropy"])
    grid = [(s, e) for s in FZ04_SEPARABLE for e in FZ04_FAR_ENTROPY]
    held_out = {}
    for case in cases:
        others = [c for c in cases if c is not case]
        total = {g: sum(loss(c, *g) for c in others) for g in grid}
        pick = min(grid, key=lambda g: (round(total[g], 9), abs(g[0] - current[0])
                                        + abs(g[1] - current[1])))
        held_out[case["dataset"]] = {"chosen": pick, "loss": loss(case, *pick),
                                     "loss_current": loss(case, *current),
                                     "fires_current": fz04_fires(case["facts"], *current, params)}
    whole = {g: sum(loss(c, *g) for c in cases) for g in grid}
    return {"held_out": held_out, "current": current,
            "best_on_all": min(grid, key=lambda g: (round(whole[g], 9), abs(g[0] - current[0])
                                                    + abs(g[1] - current[1]))),
            "loss_current_total": whole[current]}


#: FZ01 thresholds compared leave one dataset out (the per-class bands and what counts as far)
#: and FZ02's early shift (FZ02 moves FZ01's depth one group deeper, so together they decide it)
FZ01_GRID = {"far_shift": (0.25, 0.5, 1.0, 2.0, 4.0), "far_entropy": (0.4, 0.5, 0.6, 0.7, 0.8),
             "small": (25, 50, 100), "medium": (75, 100, 200, 400),
             "FZ02.early_high": (2.0, 4.0, 8.0, 16.0)}


#: facts a one-threshold rule may read (the advised cell's facts), in the study's "one fact"
#: leave-one-dataset-out checks of the fine-tune-at-all and augmentation decisions
ONE_FACT_KEYS = ("linear_acc", "knn_acc", "per_class", "n_train", "n_classes", "bn_shift",
                 "entropy", "early_shift", "median_side", "grayscale")


def _one_fact_choice(rule: tuple[Any, ...], case: dict[str, Any], alt: str, other: str) -> str:
    if rule[0] == "current":
        return case["current"]
    if rule[0] == "always":
        return rule[1]
    key, op, t = rule
    v = case["facts"][key]
    return alt if (v >= t if op == ">=" else v < t) else other


def _one_fact_name(rule: tuple[Any, ...], alt: str) -> str:
    if rule[0] == "current":
        return "the current rules"
    if rule[0] == "always":
        return f"always {rule[1]}"
    return f"{alt} when {rule[0]} {rule[1]} {rule[2]:.3g}"


def one_fact_lodo(cases: list[dict[str, Any]], alt: str,
                  keys: tuple[str, ...] = ONE_FACT_KEYS) -> dict[str, Any]:
    """A two-way decision refitted leave one dataset out. Each case: dataset, facts, ``acc``
    (choice → held-out accuracy, two choices), ``current`` (the rules' choice), n_test.
    Candidates: the current rules, always one choice, or ``alt`` when one fact (ONE_FACT_KEYS) is
    ≥ or < a threshold midway between the training datasets' values (``keys=()``: constants
    only). Chosen on the others by the
    least summed regret (points; ties: the current rules, then a constant, then the first),
    judged on the one left out."""
    choices = sorted({c for case in cases for c in case["acc"]})
    other = next(c for c in choices if c != alt)

    def regret(case: dict[str, Any], choice: str) -> float:
        return 100 * (max(case["acc"].values()) - case["acc"][choice])

    held: dict[str, dict[str, Any]] = {}
    for case in cases:
        train = [c for c in cases if c is not case]
        rules: list[tuple[Any, ...]] = [("current",), ("always", other), ("always", alt)]
        for key in keys:
            vals = sorted({c["facts"][key] for c in train if c["facts"].get(key) is not None})
            if len(vals) < 2 or case["facts"].get(key) is None:
                continue
            for lo, hi in zip(vals, vals[1:]):
                rules += [(key, ">=", (lo + hi) / 2), (key, "<", (lo + hi) / 2)]
        best = min(range(len(rules)), key=lambda i: (round(sum(
            regret(c, _one_fact_choice(rules[i], c, alt, other)) for c in train), 6), i))
        rule = rules[best]
        pick = _one_fact_choice(rule, case, alt, other)
        a, b = case["acc"][pick], case["acc"][case["current"]]
        held[case["dataset"]] = {"rule": _one_fact_name(rule, alt), "choice": pick,
                                 "current": case["current"], "loss": regret(case, pick),
                                 "loss_current": regret(case, case["current"]),
                                 "significant": pick != case["current"]
                                 and significant(a, b, case["n_test"])}
    return held


def decision_cases(cells: list[dict[str, Any]], decision: str) -> list[dict[str, Any]]:
    """The one_fact_lodo cases of ``decision``: "finetune" (the linear probe against the
    fine-tuned choice of fz04_cases), "aug" (augmentation none against advised at the grid's
    centre depth and rate) or "rate" (the rate × 3 against × 1 at the centre)."""
    full = {c["dataset"]: c["facts"] for c in cells if c["cell"] == "advised" and c.get("facts")}
    if decision == "finetune":
        return [{"dataset": c["dataset"], "facts": full[c["dataset"]], "n_test": c["n_test"],
                 "acc": {"head only": c["linear_probe"], "fine-tune": c["fine_tuned"]},
                 "current": "fine-tune" if c["fine_tuned_cell"] == "advised" else "head only"}
                for c in fz04_cases(cells)]
    out = []
    for d, r in regrets(cells).items():
        centre = r.get("centre")
        if not centre or d not in full:
            continue
        rows = {c["cell"]: c for c in cells if c["dataset"] == d}
        depth = centre.split("-", 1)[0]
        alt_id, names = ((f"{depth}-x1-none", ("advised", "none")) if decision == "aug" else
                         (f"{depth}-x3-advised", ("× 1", "× 3")))
        if alt_id in rows and centre in rows:
            out.append({"dataset": d, "facts": full[d], "n_test": rows[centre]["n_test"],
                        "acc": {names[0]: rows[centre]["test_accuracy"],
                                names[1]: rows[alt_id]["test_accuracy"]}, "current": names[0]})
    return out


def one_fact_markdown(cells: list[dict[str, Any]]) -> list[str]:
    """Fine-tune at all, and augmentation, refitted on one fact leave one dataset out."""
    lines: list[str] = []
    for decision, alt, title in (("finetune", "head only", "Fine-tune at all (FZ04)"),
                                 ("aug", "none", "Augmentation (AUG01–AUG04)"),
                                 ("rate", "× 3", "The fine-tuning rate (LR rules), × 3 against "
                                  "the advised")):
        cases = decision_cases(cells, decision)
        if len(cases) < 3:
            continue
        held = one_fact_lodo(cases, alt)
        lines += [f"{title}, refitted on one fact leave one dataset out: candidates are the "
                  "current rules, either choice always, or the other choice when one of "
                  f"{', '.join(ONE_FACT_KEYS)} (the advised cell's facts) lies above or below a "
                  "threshold midway between the other datasets' values; chosen on the others by "
                  "least summed regret (ties to the current rules), judged on the one left out "
                  "(† the refit's choice differs from the current one significantly):", "",
                  "| left out | " + " | ".join(cases[0]["acc"]) + " | chosen on the others | "
                  "held-out regret: refit, current |", "|---|---|---|---|---|"]
        for c in cases:
            h = held[c["dataset"]]
            lines.append(f"| {c['dataset']} | " + " | ".join(
                f"{v:.4f}" for v in c["acc"].values()) + f" | {h['rule']} | "
                f"{h['loss']:.1f}{'†' if h['significant'] else ''}, {h['loss_current']:.1f} |")
        refit = sum(h["loss"] for h in held.values())
        current = sum(h["loss_current"] for h in held.values())
        gain = sum((c["acc"][alt] - c["acc"][next(k for k in c["acc"] if k != alt)])
                   * c["n_test"] for c in cases)
        const = one_fact_lodo(cases, alt, keys=())
        lines += ["", f"Summed held-out regret {refit:.1f} points refitted against {current:.1f} "
                  f"with the current rules; significant on "
                  f"{sum(h['significant'] for h in held.values())} left-out dataset(s). "
                  f"Pooled over the {sum(c['n_test'] for c in cases)} test images, '{alt}' "
                  f"scores {gain:+.0f} images against the other choice. Constants only (the "
                  "current rules or either choice always, chosen on the others): summed held-out "
                  f"regret {sum(h['loss'] for h in const.values()):.1f} ("
                  + ", ".join(f"{d} → {h['rule']}" for d, h in const.items()) + ").", ""]
    return lines


def rate_variant_markdown(cells: list[dict[str, Any]]) -> list[str]:
    """The advised recipe against the same recipe with its fine-tuning rates × M (cells
    ``advised-xM``, ``--advised-rate``), side by side on the same splits."""
    variants = [c for c in cells if c.get("advised_rate") is not None]
    if not variants:
        return []
    adv = {c["dataset"]: c for c in cells if c["cell"] == "advised"}
    lines = ["The advised recipe (its phases, epochs and augmentation as advised) with every "
             "fine-tuning rate multiplied (`--advised-rate M`, cell `advised-xM`) against the "
             "advised cell, same splits (points; † significant on the test images):", "",
             "| dataset | advised | × M | test | difference | epochs | seconds | load |",
             "|---|---|---|---|---|---|---|---|"]
    diffs = []
    for v in variants:
        a = adv.get(v["dataset"])
        if a is None:
            continue
        d = 100 * (v["test_accuracy"] - a["test_accuracy"])
        diffs.append((d, v["n_test"]))
        sig = "†" if significant(v["test_accuracy"], a["test_accuracy"], v["n_test"]) else ""
        ea = [p.get("epochs") for p in a["recipe"]["phases"]] if a.get("recipe") else None
        ev = [p.get("epochs") for p in v["recipe"]["phases"]] if v.get("recipe") else None
        other = (f" (planned epochs {', '.join(map(str, ev))} against the advised cell's "
                 f"{', '.join(map(str, ea))}: its kept advice was re-advised under the rule "
                 "file's floor)" if ea and ev and ea != ev else "")
        lines.append(f"| {v['dataset']} | {a['test_accuracy']:.4f} | × {v['advised_rate']:g} | "
                     f"{v['test_accuracy']:.4f} | {d:+.1f}{sig}{other} | "
                     + ", ".join(f"{p['epochs_run']}{'s' if p.get('stopped_early') else ''}"
                                 for p in v["phases"])
                     + f" | {v['seconds']:.0f}{' (' + v['lane'].split(':')[0] + ')' if v.get('lane') else ''}"
                     f" | {v['machine']['load']} |")
    if diffs:
        wins = sum(d > 0 for d, _ in diffs)
        losses = sum(d < 0 for d, _ in diffs)
        right = sum(d * n / 100 for d, n in diffs)
        lines += ["", f"Higher on {wins}, lower on {losses} of {len(diffs)} datasets; "
                  f"{right:+.0f} right over {sum(n for _, n in diffs)} test images.", ""]
    return lines


def fz01_depth(facts: dict[str, Any], params: dict[str, Any], rules: Any, preset: str) -> int:
    """The fine-tuning depth the freezing rules (FZ01 with ``params``, then FZ02–FZ04 as they
    are) choose from a dataset's recorded facts."""
    def tuned(rule: Any) -> Any:
        mine = {k.split(".")[-1]: v for k, v in params.items()
                if (k.split(".")[0] if "." in k else "FZ01") == rule.id}
        return rule.model_copy(update={"params": {**rule.params, **mine}}) if mine else rule

    base = rules.model_copy(update={"rules": [tuned(r) for r in rules.rules
                                              if r.id in ("FZ01", "FZ02", "FZ03", "FZ04")]})
    facts = {k: (float("nan") if v is None else v) for k, v in facts.items()}
    final, _ = base.evaluate(facts, _preset_decisions(preset))
    return int(final["finetune_from"])


_PRESETS: dict[str, dict[str, Any]] = {}


def _preset_decisions(name: str) -> dict[str, Any]:
    """A preset's decisions, read once (the refits evaluate the rules thousands of times)."""
    from autotransfer.advisor.presets import load_preset

    if name not in _PRESETS:
        _PRESETS[name] = dict(load_preset(name).decisions)
    return dict(_PRESETS[name])


def fz01_lodo(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """FZ01 refitted leave one dataset out on the complete depth axes: per candidate (every
    combination of ``FZ01_GRID``), the depth the freezing rules choose for each dataset and its
    loss (best on the axis − the chosen depth's cell, points; None where that depth was not
    measured); the candidate with the least total loss on the other datasets (only candidates
    whose depths were all measured there; ties to the fewest and smallest changes from the
    current thresholds) is judged on the left-out one, against the current thresholds."""
    import itertools

    from autotransfer.advisor.rules import load_rules

    reg = regrets(cells)
    rules = load_rules()
    current = {k: rules.get(k.split(".")[0] if "." in k else "FZ01").params[k.split(".")[-1]]
               for k in FZ01_GRID}
    cases = []
    for name, r in reg.items():
        if not (r.get("depth") and r["axes_complete"]["depth"]):
            continue
        rows = {c["cell"]: c for c in cells if c["dataset"] == name and c["cell"] != BEFORE}
        axis = {5 if c == "linear_probe" else int(c[1]): rows[c]["test_accuracy"]
                for c in r["depth"]["cells"]}
        adv = rows["advised"]
        cases.append({"dataset": name, "facts": adv["facts"], "axis": axis,
                      "preset": adv.get("preset", "quick"), "best": max(axis.values())})
    if len(cases) < 3:
        return {"cases": cases}
    keys = list(FZ01_GRID)
    grid = [g for g in (dict(zip(keys, v)) for v in itertools.product(*(FZ01_GRID[k]
                                                                        for k in keys)))
            if g["small"] < g["medium"]]

    def distance(g: dict[str, Any]) -> tuple[int, float]:
        return (sum(g[k] != current[k] for k in keys),
                sum(abs(math.log(g[k] / current[k])) for k in keys))

    loss: dict[int, dict[str, float | None]] = {}
    depth: dict[int, dict[str, int]] = {}
    for i, g in enumerate(grid):
        depth[i] = {c["dataset"]: fz01_depth(c["facts"], g, rules, c["preset"]) for c in cases}
        loss[i] = {c["dataset"]: (100 * (c["best"] - c["axis"][depth[i][c["dataset"]]])
                                  if depth[i][c["dataset"]] in c["axis"] else None)
                   for c in cases}
    now = next(i for i, g in enumerate(grid) if g == current)
    held: dict[str, Any] = {}
    for case in cases:
        name = case["dataset"]
        usable = [i for i in loss if all(loss[i][c["dataset"]] is not None
                                         for c in cases if c is not case)]
        pick = min(usable, key=lambda i: (round(sum(loss[i][c["dataset"]] for c in cases
                                                    if c is not case), 9), distance(grid[i])))
        held[name] = {"chosen": grid[pick], "depth": depth[pick][name], "loss": loss[pick][name],
                      "current_depth": depth[now][name], "loss_current": loss[now][name],
                      "same_as_current": depth[pick][name] == depth[now][name]}
    return {"cases": cases, "held_out": held, "current": current, "candidates": len(grid)}


def rules_markdown(cells: list[dict[str, Any]]) -> list[str]:
    """FZ04 refitted leave one dataset out where the grid allows; what FZ01 still lacks."""
    cases = fz04_cases(cells)
    lines = ["## Rules against the grid (leave one dataset out)", ""]
    if not cases:
        return lines + ["No dataset has both the linear probe and a fine-tuned cell yet.", ""]
    params = rule_params("FZ04")
    lines += ["FZ04 (head only when the features already separate) decides between the linear "
              "probe and fine-tuning. Per dataset, the facts it reads (from the advised cell) and "
              "the held-out accuracy of either choice (fine-tuned = the advised recipe where it "
              "fine-tunes, else the grid's centre cell):", "",
              "| dataset | linear CV on the sample | per class | BN shift | entropy | linear probe "
              "| fine-tuned (cell) | difference significant? | FZ04 fires now? |",
              "|---|---|---|---|---|---|---|---|---|"]
    for c in cases:
        f = c["facts"]
        fires = fz04_fires(f, params["separable"], params["far_entropy"], params)
        lines.append(
            f"| {c['dataset']} | {f['linear_acc']:.3f} | {f['per_class']:.0f} | "
            f"{f['bn_shift']:.2f} | {f['entropy']:.2f} | {c['linear_probe']:.4f} | "
            f"{c['fine_tuned']:.4f} ({c['fine_tuned_cell']}) | "
            f"{'yes' if significant(c['linear_probe'], c['fine_tuned'], c['n_test']) else 'no'} | "
            f"{'yes' if fires else 'no'}"
            " |")
    if len(cases) >= 3:
        lodo = fz04_lodo(cases, params)
        h = lodo["held_out"]
        lines += ["", f"Thresholds (separable, far_entropy) chosen on the other datasets from "
                  f"{len(FZ04_SEPARABLE)} × {len(FZ04_FAR_ENTROPY)} candidates (least total "
                  "regret of the choice; ties to the values nearest the current ones), judged on "
                  "the one left out: " + ", ".join(
                      f"{d} → ({v['chosen'][0]:g}, {v['chosen'][1]:g}) regret {v['loss']:.1f} "
                      f"(current {v['loss_current']:.1f})" for d, v in h.items())
                  + f". Mean held-out regret {sum(v['loss'] for v in h.values()) / len(h):.2f} "
                  "points refitted against "
                  f"{sum(v['loss_current'] for v in h.values()) / len(h):.2f}"
                  f" with the current ({lodo['current'][0]:g}, {lodo['current'][1]:g}); on all "
                  f"datasets the best pair is ({lodo['best_on_all'][0]:g}, "
                  f"{lodo['best_on_all'][1]:g}).", ""]
    else:
        lines += ["", f"{len(cases)} dataset(s): too few for a leave-one-dataset-out refit "
                  "(3 or more needed).", ""]
    lines += one_fact_markdown(cells)
    lines += rate_variant_markdown(cells)
    reg = regrets(cells)
    depth = {d: r["depth"] for d, r in reg.items() if r.get("depth")}
    complete = [d for d in depth if reg[d]["axes_complete"]["depth"]]
    if len(complete) >= 3:
        return lines + fz01_markdown(cells)
    lines += ["FZ01 (freeze depth from size and shift): its thresholds (far_shift, far_entropy, "
              "the per-class bands) can be refitted leave one dataset out only from complete "
              "depth axes (linear probe, one group shallower, the advised depth, one deeper) on "
              "at least 3 datasets that fall on different sides of them. Depth axes so far: "
              + ("; ".join(f"{d}: best {v['best']} vs advised {v['advised']} "
                           f"({v['regret']:+.1f} pts, "
                           f"{'significant' if v['significant'] else 'within noise'}; "
                           f"{len(v['cells'])} cells{'' if d in complete else ', incomplete'})"
                           for d, v in depth.items()) or "none")
              + f". Complete on {len(complete)}: "
              + ("enough for a refit." if len(complete) >= 3 else
                 "too few, so FZ01 is unchanged.") + "", ""]
    return lines


def fz01_markdown(cells: list[dict[str, Any]]) -> list[str]:
    """FZ01 (with FZ02's early shift) refitted leave one dataset out on the complete depth axes."""
    from autotransfer.advisor.rules import load_rules

    fit = fz01_lodo(cells)
    cases, held = fit["cases"], fit["held_out"]
    lines = ["FZ01 (freeze depth from size and shift) refitted leave one dataset out on the "
             f"{len(cases)} complete depth axes (the linear probe, the advised depth, one group "
             "shallower and one deeper), with FZ02's early-shift threshold, since FZ02 moves "
             "FZ01's depth one group deeper and the two decide it together. Per dataset, the "
             "facts they read (from the advised cell) and the held-out accuracy at each depth "
             "(5 = the linear probe):", "",
             "| dataset | per class | BN shift | entropy | early shift | accuracy by depth | "
             "best |", "|---|---|---|---|---|---|---|"]
    for c in cases:
        f = c["facts"]
        best = max(c["axis"], key=c["axis"].get)
        n_test = next(x["n_test"] for x in cells if x["dataset"] == c["dataset"])
        lines.append(f"| {c['dataset']} | {f['per_class']:.0f} | {f['bn_shift']:.2f} | "
                     f"{f['entropy']:.2f} | {f['early_shift']:.2f} | "
                     + ", ".join(f"{d}: {a:.4f}" for d, a in sorted(c["axis"].items(),
                                                                     reverse=True))
                     + f" | {best} (n = {n_test}) |")
    cur = fit["current"]
    lines += ["", f"Candidates: every combination of {', '.join(f'{k} {v}' for k, v in FZ01_GRID.items())} "
              f"with small < medium ({fit['candidates']}); the depth each gives is the freezing "
              "rules' (FZ01 → FZ04) on the recorded facts. Chosen on the other datasets (least "
              "total regret, only candidates whose depths were all measured there; ties to the "
              "fewest, smallest changes from the current thresholds), judged on the one left "
              "out (regret = best on its axis − the chosen depth's cell, points; `–` = that "
              "depth was not measured):", "",
              "| left out | chosen thresholds | depth: refit, current | regret: refit, current |",
              "|---|---|---|---|"]
    for name, h in held.items():
        changed = {k: v for k, v in h["chosen"].items() if v != cur[k]}
        lines.append(f"| {name} | {', '.join(f'{k} {v:g}' for k, v in changed.items()) or 'current'}"
                     f" | {h['depth']}, {h['current_depth']} | "
                     + (f"{h['loss']:.1f}" if h["loss"] is not None else "–")
                     + f", {h['loss_current']:.1f} |")
    known = [h for h in held.values() if h["loss"] is not None]
    refit = sum(h["loss"] for h in known)
    now = sum(h["loss_current"] for h in known)
    sig = []
    for name, h in held.items():
        c = next(x for x in cases if x["dataset"] == name)
        n = next(x["n_test"] for x in cells if x["dataset"] == name)
        if h["loss"] is not None and h["depth"] != h["current_depth"] and significant(
                c["axis"][h["depth"]], c["axis"][h["current_depth"]], n):
            sig.append(name)
    better = len(known) == len(held) and refit < now and sig
    lines += ["", f"Held-out regret, summed over the {len(known)} datasets where the refit's "
              f"depth was measured: {refit:.1f} points refitted against {now:.1f} with the current "
              f"thresholds ({', '.join(f'{k} {v:g}' for k, v in cur.items())}); the refit's "
              "depth differs significantly from the current one on "
              f"{', '.join(sig) or 'no dataset'}. "
              + ("The held-out result supports the refit." if better else
                 "The thresholds are unchanged: a change needs a lower summed held-out regret "
                 "and, on at least one left-out dataset, a depth that differs from the current "
                 "one beyond noise; the held-out result does not show that.")
              + (f" All {len(cases)} complete axes are far from ImageNet (BN shift "
                 f"{min(c['facts']['bn_shift'] for c in cases):.2f} or more) with "
                 f"{min(c['facts']['per_class'] for c in cases):.0f}–"
                 f"{max(c['facts']['per_class'] for c in cases):.0f} images per class, so they "
                 "sit in one cell of FZ01's thresholds: the refit can move that cell's depth "
                 "(through FZ02), not the boundaries between the cells, which no measured axis "
                 "lies across." if all(c["facts"]["bn_shift"] > cur["far_shift"] for c in cases)
                 and len({fz01_depth(c["facts"], cur, load_rules(), c["preset"])
                          for c in cases}) == 1 else ""), ""]
    return lines


# ----------------------------------------------------------------------------- length (LR05)
#: the units a fine-tuning length is compared in (issue 18: epochs, or optimizer steps as in
#: BiT-HyperRule); the one that predicts a left-out dataset's length best is kept
LENGTH_UNITS = ("epochs", "steps")


def converged_phases(cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every grid cell's fine-tuning phase (one phase of up to ``MAX_EPOCHS`` epochs under the
    recipe's early stopping): the 1-based epoch of its best validation accuracy, and whether that
    is exact (recorded, or the phase stopped early: best = epochs run − patience) or a lower bound
    (the phase ran all its epochs: its best came after epoch planned − patience; the cells before
    session 4 did not record the best epoch)."""
    out = []
    for c in cells:
        if c["cell"] in ("advised", "linear_probe", BEFORE) or "depth" not in c:
            continue
        tuned = [p for p in c["phases"] if p["trainable_from"] < 5]
        if not tuned:
            continue
        p = tuned[-1]
        patience = c["recipe"]["early_stopping"]["patience"]
        batch = p.get("batch_size") or c["recipe"]["data"]["batch_size"]
        planned = p.get("epochs_planned") or MAX_EPOCHS
        if p.get("best_epoch") is not None:
            best, exact = p["best_epoch"] + 1, True
        elif p["stopped_early"]:
            best, exact = p["epochs_run"] - patience, True
        else:
            best, exact = max(1, planned - patience), False
        steps = math.ceil(c["n_train"] / batch)
        # a phase whose validation accuracy never rose above the head phase's (both curves
        # recorded) has no convergence point: its "best" epoch is its first by construction
        head = [q for q in c["phases"] if q["trainable_from"] >= 5 and q.get("val_accuracy")]
        improved = not (head and p.get("val_accuracy")
                        and max(p["val_accuracy"]) <= max(head[-1]["val_accuracy"]) + 1e-6)
        out.append({"dataset": c["dataset"], "cell": c["cell"], "best_epoch": best,
                    "exact": exact, "steps_per_epoch": steps, "best_step": best * steps,
                    "epochs_run": p["epochs_run"], "n_train": c["n_train"], "batch": batch,
                    "improved": improved})
    return out


def _median_bound(values: list[tuple[float, bool]]) -> tuple[float, bool]:
    """Median of (value, exact) pairs where inexact values are lower bounds: the median, and
    whether it is exact (no lower bound at or below the median's position decides it)."""
    import statistics

    xs = sorted(values)  # a lower bound sorts before an exact value equal to it
    med = statistics.median(v for v, _ in xs)
    return med, all(e for _, e in xs[:len(xs) // 2 + 1])


def length_lodo(phases: list[dict[str, Any]]) -> dict[str, Any]:
    """The fine-tuning length that converges, per dataset (median best epoch / step of its
    grid phases) and fitted leave one dataset out: for each dataset, the median of the other
    datasets' medians, in epochs and in steps, and the error of each in predicting the left-out
    dataset's median (in its epochs). The unit with the smaller mean absolute error is kept; the
    floor is its median over all datasets, rounded up to whole epochs (at the steps per epoch of
    the dataset where it applies, for steps)."""
    import statistics

    by: dict[str, list[dict[str, Any]]] = {}
    for p in phases:
        if p.get("improved", True):
            by.setdefault(p["dataset"], []).append(p)
    per: dict[str, dict[str, Any]] = {}
    for name, ps in by.items():
        e, exact = _median_bound([(p["best_epoch"], p["exact"]) for p in ps])
        s, _ = _median_bound([(p["best_step"], p["exact"]) for p in ps])
        per[name] = {"epochs": e, "steps": s, "exact": exact, "phases": len(ps),
                     "steps_per_epoch": ps[0]["steps_per_epoch"],
                     "n_train": ps[0]["n_train"], "batch": ps[0]["batch"],
                     "best_epochs": sorted((p["best_epoch"], p["exact"]) for p in ps)}
    if len(per) < 2:
        return {"per_dataset": per}
    folds: dict[str, dict[str, Any]] = {}
    for name, row in per.items():
        others = [r for n, r in per.items() if n != name]
        fit = {u: statistics.median(r[u] for r in others) for u in LENGTH_UNITS}
        pred = {"epochs": fit["epochs"], "steps": fit["steps"] / row["steps_per_epoch"]}
        folds[name] = {"fit": fit, "predicted_epochs": pred,
                       "error": {u: pred[u] - row["epochs"] for u in LENGTH_UNITS},
                       "floor_epochs": {u: math.ceil(pred[u] - 1e-9) for u in LENGTH_UNITS}}
    mae = {u: statistics.mean(abs(f["error"][u]) for f in folds.values()) for u in LENGTH_UNITS}
    unit = min(LENGTH_UNITS, key=lambda u: (mae[u], LENGTH_UNITS.index(u)))
    whole = statistics.median(r[unit] for r in per.values())
    for name, f in folds.items():  # would a phase of the fold's floor have reached its best?
        floor = f["floor_epochs"][unit]
        f["coverage"] = sum(e <= floor for e, _ in per[name]["best_epochs"]) / per[name]["phases"]
    return {"per_dataset": per, "folds": folds, "mae": mae, "unit": unit,
            "fitted": whole, "floor_epochs": math.ceil(whole - 1e-9) if unit == "epochs"
            else None}


def length_markdown(cells: list[dict[str, Any]]) -> list[str]:
    """How long fine-tuning took to converge in the grid, LR05's floor fitted leave one dataset
    out, and the re-advised cells it was judged by."""
    phases = converged_phases(cells)
    fit = length_lodo(phases)
    per = fit["per_dataset"]
    if not per:
        return []
    floor = rule_params("LR05").get("min_epochs")
    lines = ["## Fine-tuning length (LR05)", "",
             "When did the grid's fine-tuning phases reach their best validation accuracy? Each "
             f"grid cell fine-tunes in one phase of up to {MAX_EPOCHS} epochs (the advised "
             "schedule over them, early stopping with the recipe's patience, best weights "
             "restored). Its best epoch is exact when recorded (cells since session 4) or when "
             "the phase stopped early (best = epochs run − patience); a phase that ran all its "
             "epochs had its best after epoch planned − patience, a lower bound (`≥`). Steps "
             "= epochs × ⌈training images / batch⌉. A phase whose validation accuracy never "
             "rose above the head phase's (both curves recorded) has no convergence point and is "
             "left out: "
             + (", ".join(f"{p['dataset']} {p['cell']}" for p in phases if not p["improved"])
                or "none") + ".", "",
             "| dataset | training images, batch | steps / epoch | phases | best epoch of each | "
             "median epoch | median step |", "|---|---|---|---|---|---|---|"]
    for name, r in per.items():
        bound = "" if r["exact"] else "≥ "
        lines.append(f"| {name} | {r['n_train']}, {r['batch']} | {r['steps_per_epoch']} | "
                     f"{r['phases']} | "
                     + ", ".join(f"{'' if e else '≥'}{v}" for v, e in r["best_epochs"])
                     + f" | {bound}{r['epochs']:g} | {bound}{r['steps']:g} |")
    if "folds" not in fit:
        return lines + ["", "One dataset: too few to fit a length leave one dataset out.", ""]
    unit = fit["unit"]
    lines += ["", "Leave one dataset out: the length fitted on the other datasets (the median of "
              "their medians, in epochs or in steps) predicts the left-out dataset's median "
              "(error in its epochs); coverage = the share of its phases whose best epoch the "
              "fold's floor (the prediction rounded up, in the kept unit) reaches:", "",
              "| left out | fit: epochs, steps | predicted epochs (epochs, steps) | error "
              "(epochs, steps) | floor | coverage |", "|---|---|---|---|---|---|"]
    for name, f in fit["folds"].items():
        lines.append(f"| {name} | {f['fit']['epochs']:g}, {f['fit']['steps']:g} | "
                     f"{f['predicted_epochs']['epochs']:.1f}, {f['predicted_epochs']['steps']:.1f}"
                     f" | {f['error']['epochs']:+.1f}, {f['error']['steps']:+.1f} | "
                     f"{f['floor_epochs'][unit]} | {f['coverage']:.0%} |")
    folds = sorted({f["floor_epochs"][unit] for f in fit["folds"].values()})
    lines += ["", f"Mean absolute error: {fit['mae']['epochs']:.1f} epochs when the length is "
              f"fitted in epochs, {fit['mae']['steps']:.1f} when fitted in optimizer steps (as "
              f"BiT-HyperRule sets it): the length is kept in **{unit}**. Fitted on all "
              f"{len(per)} datasets: {fit['fitted']:g} → a floor of "
              f"{fit['floor_epochs'] if fit['floor_epochs'] is not None else '–'} epochs; the "
              f"folds give {', '.join(map(str, folds))}. LR05's floor is {floor} epochs for the "
              "deepest fine-tuning phase (the grid measured single phases at the advised depth; "
              "a gradual first phase keeps its third of the schedule)"
              + (" — as fitted." if fit["floor_epochs"] == floor else
                 f" — the fit now says {fit['floor_epochs']}: refit LR05.") + " Medians where "
              "half the phases or more ran to the end are lower bounds: the floor is the "
              "least length the study supports, not the most a dataset can use.", ""]
    readvised = {c["dataset"]: c for c in cells if c["cell"] == "advised" and c.get("advice_tag")}
    if readvised:
        reg = regrets(cells)
        rows = []
        for name, c in readvised.items():
            r = reg.get(name, {})
            f = fit["folds"].get(name)
            fold = (c.get("lr05_fold") or {}).get("floor") or (
                f["floor_epochs"][unit] if f else fit["floor_epochs"])
            used = floor_used(c)
            b = r.get("before")
            tuned = [p for p in c["phases"] if p["trainable_from"] < 5]
            rows.append(
                f"| {name} | {fold} (on "
                f"{', '.join((c.get('lr05_fold') or {}).get('fitted_on') or ['–'])}) | "
                f"{used if used is not None else '– (did not fire)'} | "
                f"{'yes' if fold == used else 'no'} | "
                + (", ".join(str(p["epochs_run"]) for p in tuned) or "head only") + " | "
                + (f"{b['value']:.4f} ({b['regret']:+.1f}{'†' if b['significant'] else ''})"
                   if b else "–")
                + f" | {c['test_accuracy']:.4f} ({r.get('regret', float('nan')):+.1f}"
                f"{'†' if r.get('significant') else ''}) | {c['seconds']:.0f} s |")
        lines += ["The advised recipe re-advised under LR05 (`advised`, its tag) beside the "
                  f"advised cell of the rule base before it (`{BEFORE}`), on the same splits and "
                  "grid: regret = best grid cell − the cell (points; † significant). Each cell "
                  "ran with LR05's floor fitted without its dataset on the grid cells recorded "
                  "when it started (`--readvise` applies the fold; the datasets it was fitted on "
                  "are named), so *held out* = its regret is a leave-one-dataset-out result:",
                  "",
                  "| dataset | floor fitted without it | floor it ran with | held out? | "
                  "fine-tuning epochs run | before: test (regret) | LR05: test (regret) | "
                  "seconds |",
                  "|---|---|---|---|---|---|---|---|"] + rows + [""]
    return lines


# ----------------------------------------------------------------------------- forecast
#: feature sets compared for the linear probe's forecast (the one with the smallest median
#: leave-one-dataset-out error is kept; the choice is reported with every set's error)
FEATURE_SETS = (("logit_cv",), ("logit_cv", "logit_knn"), ("logit_cv", "log_train_over_sample"),
                ("logit_cv", "logit_knn", "log_train_over_sample", "log_classes"))


#: points of mean absolute LODO error by which a gain slope must beat the mean gain to be kept
GAIN_SLOPE_MARGIN = 0.5

#: the advised recipe's forecast models compared leave one dataset out: (the linear-probe forecast
#: the gain is added to: "whole" training split or at the recipe's own training size "fit"; the
#: gain's inputs, () = the mean; whether the gain is fitted through the origin)
ADVISED_MODELS: tuple[tuple[str, tuple[str, ...], bool], ...] = (
    ("whole", (), False), ("whole", ("logit_cv",), False), ("whole", ("headroom_cv",), True),
    ("fit", (), False), ("fit", ("logit_cv",), False), ("fit", ("headroom_cv",), True))


def advised_model_key(base: str, names: tuple[str, ...], origin: bool) -> str:
    """The report's name of one advised-forecast model."""
    gain = ",".join(names) or "mean"
    return f"{base}+{gain}{' (through 0)' if origin else ''}"

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


def figures_of(cell: dict[str, Any], n_fit: int | None = None) -> Any:
    from autotransfer.advisor.forecast import ProbeFigures

    p = cell["probe"]
    return ProbeFigures(linear_probe_accuracy=p["linear_probe_accuracy"],
                        knn_accuracy=p["knn_accuracy"], n_sample=cell["n_sample"],
                        n_train=cell["n_train"], n_classes=cell["n_classes"], n_fit=n_fit)


def run_forecast(args: argparse.Namespace) -> None:
    """Fit recipes/forecast.yaml from the ranking (linear probe) and grid (gain) cells; judge it
    leave one dataset out."""
    import numpy as np
    import yaml

    from autotransfer._io import atomic_write_text
    from autotransfer.advisor.forecast import ForecastModel, LinearModel, features, fit_linear

    t0 = time.perf_counter()
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
    lp_errors: dict[str, float] = {}
    lp_fold: dict[str, tuple[float, dict[str, float]]] = {}
    for d in datasets:  # the chosen backbone's forecast, fitted without its dataset
        others = [r for r in rows if r[0] != d]
        c0, cw = fit_linear([x for _, x, _ in others], [_logit(y) for _, _, y in others],
                            list(names))
        lp_fold[d] = (c0, cw)
        x = features(figures_of(chosen[d]))
        pred = _sigmoid(c0 + sum(cw[n] * x[n] for n in names))
        lp_errors[d] = 100 * (pred - chosen[d]["truth"]["test_accuracy"])
    half = float(np.percentile([abs(e) for _, e in per_cell], 90))
    linear = LinearModel(intercept=b0, weights=w, half_width=round(half, 2),
                         lodo_errors={d: round(e, 2) for d, e in lp_errors.items()})

    advised_cells = {c["dataset"]: c for c in data["grid"] if c["cell"] == "advised"
                     and c["dataset"] in lp_errors}
    # the linear probe's forecast (fitted without the dataset) for the whole training split and
    # at the advised recipe's own training size (the grid's split less its validation images)
    base = {"whole": {d: chosen[d]["truth"]["test_accuracy"] + lp_errors[d] / 100
                      for d in advised_cells}, "fit": {}}
    for d, c in advised_cells.items():
        c0, cw = lp_fold[d]
        x = features(figures_of(chosen[d], n_fit=c["n_train"]))
        x["log_train_over_sample"] = math.log(c["n_train"] / chosen[d]["n_sample"])
        base["fit"][d] = _sigmoid(c0 + sum(cw[n] * x[n] for n in names))

    gain_model, gain_lodo, gain_compared = None, {}, {}
    advised_errors: dict[str, float] = {}
    advised_compared: dict[str, dict[str, Any]] = {}
    advised_base = "whole"
    reg = regrets(data["grid"])
    # the gain of fine-tuning where it was advised, against the probe of the backbone the grid
    # ran (the advised one)
    gains = [(d, features(figures_of(next(c for c in by[d] if c["backbone"] == r_backbone))),
              r["finetune_gain"])
             for d, r in reg.items() if "finetune_gain" in r and d in by
             for r_backbone in [next(c["backbone"] for c in data["grid"]
                                     if c["dataset"] == d and c["cell"] == "advised")]
             if any(c["backbone"] == r_backbone for c in by[d])]
    if len(gains) >= 2:
        # candidates: the mean gain and (from 4 datasets) a slope on the probe's linear CV or a
        # share of its headroom, each added to the linear probe's forecast for the whole split or
        # at the recipe's own training size; judged by the advised recipe's forecast leave one
        # dataset out (mean absolute error; a fitted slope must beat it by GAIN_SLOPE_MARGIN)
        fits: dict[tuple[str, ...], dict[str, float]] = {}
        preds: dict[tuple[str, ...], dict[str, float]] = {}
        for _, names_g, origin in ADVISED_MODELS:
            if (names_g and len(gains) < 4) or names_g in fits:
                continue
            errors, pred_g = {}, {}
            for d, _, g in gains:
                rest = [(x, h) for e, x, h in gains if e != d]
                x = next(x for e, x, _ in gains if e == d)
                c0, cw = fit_linear([x for x, _ in rest], [h for _, h in rest], list(names_g),
                                    intercept=not origin)
                pred_g[d] = c0 + sum(cw[n] * x[n] for n in names_g)
                errors[d] = round(pred_g[d] - g, 2)
            fits[names_g], preds[names_g] = errors, pred_g
            gain_compared[",".join(names_g) or "mean"] = {
                "mean_abs": float(np.mean([abs(e) for e in errors.values()])),
                "max_abs": float(max(abs(e) for e in errors.values()))}
        scored = []
        for base_name, names_g, origin in ADVISED_MODELS:
            if names_g not in preds:
                continue
            errs = {}
            for d, c in advised_cells.items():
                tunes = any(p["trainable_from"] < 5 for p in c["phases"])
                if tunes and d not in preds[names_g]:
                    continue
                g = preds[names_g][d] if tunes else 0.0
                errs[d] = round(100 * (base[base_name][d] + g / 100 - c["test_accuracy"]), 2)
            if not errs:
                continue
            v = list(errs.values())
            key = advised_model_key(base_name, names_g, origin)
            advised_compared[key] = {
                "errors": errs, "within_3": sum(abs(e) <= 3 for e in v), "n": len(v),
                "mean_abs": float(np.mean(np.abs(v))), "max_abs": float(max(abs(e) for e in v)),
                "bias": float(np.mean(v))}
            scored.append((advised_compared[key]["mean_abs"]
                           + (GAIN_SLOPE_MARGIN if names_g else 0.0), base_name, names_g, origin))
        _, advised_base, best_g, origin = min(scored, key=lambda t: t[0])
        advised_errors = advised_compared[advised_model_key(advised_base, best_g, origin)]["errors"]
        gain_lodo = fits[best_g]
        c0, cw = fit_linear([x for _, x, _ in gains], [g for _, _, g in gains], list(best_g),
                            intercept=not origin)
        gain_model = LinearModel(intercept=round(c0, 3), weights={k: round(v, 4) for k, v in
                                                                  cw.items()},
                                 half_width=round(max(abs(e) for e in gain_lodo.values()), 2),
                                 lodo_errors=gain_lodo)
    model = ForecastModel(fitted_on=datasets, source="docs/benchmarks/advice.json (tools/"
                          "bench_advice.py)", linear_probe=linear, gain=gain_model,
                          advised_base=advised_base)
    path = REPO / "recipes" / "forecast.yaml"
    header = ("# The forecast's coefficients (autotransfer/advisor/forecast.py), fitted by\n"
              "# 'python tools/bench_advice.py --part forecast' on docs/benchmarks/advice.json;\n"
              "# see docs/benchmarks/advice.md for the leave-one-dataset-out errors. Data only.\n")
    atomic_write_text(path, header + yaml.safe_dump(model.model_dump(mode="json"),
                                                    sort_keys=False))
    import fcntl

    WORK.mkdir(parents=True, exist_ok=True)
    with open(WORK / "advice.lock", "w") as lock:  # the grid may be appending meanwhile
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = load()
        data["forecast"] = {"feature_sets": compared, "chosen_features": list(names),
                            "advised_lodo_errors": advised_errors,
                            "advised_models": advised_compared,
                            "advised_cells": {d: [c["n_test"], c["test_accuracy"]]
                                              for d, c in advised_cells.items()},
                            "linear_probe_lodo_errors": lp_errors,
                            "chosen_backbones": {d: c["backbone"] for d, c in chosen.items()},
                            "gain_lodo_errors": gain_lodo, "gain_models": gain_compared,
                            "gain_data": {d: g for d, _, g in gains},
                            "model": model.model_dump(mode="json"), "machine": machine(),
                            "seconds": round(time.perf_counter() - t0, 1)}
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


def noise_ceiling(cells: list[dict[str, Any]], draws: int = 500, seed: int = 0
                  ) -> dict[str, float]:
    """Per dataset: the mean weighted τ that a *perfect* score (one ordering the backbones by
    their true accuracy) would get against held-out accuracies measured on ``n_test`` images,
    taking the measured accuracies as the true ones and redrawing each as Binomial(n, p) / n.
    It bounds what any score can reach on these test splits."""
    import numpy as np
    from scipy.stats import weightedtau

    rng = np.random.default_rng(seed)
    out = {}
    for name, rows in _by_dataset(cells).items():
        if len(rows) < 3:
            continue
        p = np.asarray([r["truth"]["test_accuracy"] for r in rows])
        n = rows[0]["n_test"]
        taus = [weightedtau(rng.binomial(n, p) / n, p).statistic for _ in range(draws)]
        out[name] = float(np.nanmean(taus))
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
        ceiling = noise_ceiling(cells)
        lines += ["", "Noise ceiling (why τ ≥ 0.6 is hard here): a score that ordered the "
                  "backbones exactly by their true held-out accuracy would still get, against "
                  "accuracies measured on these test splits (each redrawn as Binomial(n, p)/n, "
                  "p = the measured accuracy), a mean τ of "
                  f"{sum(ceiling.values()) / len(ceiling):+.2f} ("
                  + ", ".join(f"{d} {t:+.2f}" for d, t in ceiling.items()) + "): the six "
                  "backbones' accuracies differ by a few images on 63–400 test images. The "
                  "ceiling is optimistic: the measured spread, taken as the truth, is itself "
                  "widened by the same noise."]
        both = [row for row in tau.values() if "sfda" in row and "logme" in row]
        if both:
            saturated = sorted({c["dataset"] for c in cells if c["probe"].get("sfda") is not None
                                and c["probe"]["sfda"] > 1 - 1e-9})
            secs = [c["rescored"]["sfda"]["seconds"] for c in cells
                    if "sfda" in c.get("rescored", {})]
            constant = [d for d in tau if d in saturated and all(
                c["probe"]["sfda"] > 1 - 1e-9 for c in cells if c["dataset"] == d)]
            lines += ["", "SFDA (Shao et al., ECCV 2022) against LogME, on the "
                      f"{len(both)} datasets: mean τ "
                      f"{sum(r['sfda'] for r in both) / len(both):+.2f}"
                      " with the published shrinkage (exp(−5 λ_max of the within-class "
                      "covariance)) and "
                      f"{sum(r['sfda_lw'] for r in both) / len(both):+.2f} with Ledoit–Wolf's "
                      f"(`sfda_lw`, our variant), against LogME's "
                      f"{sum(r['logme'] for r in both) / len(both):+.2f}; SFDA ranks better than "
                      f"LogME on {sum(r['sfda'] > r['logme'] for r in both)} of {len(both)} "
                      f"datasets, `sfda_lw` on {sum(r['sfda_lw'] > r['logme'] for r in both)}. "
                      "It does not beat LogME here. The probe's sample (128–640 images) is mostly "
                      "smaller than the feature dimension (256–1280), the published shrinkage is "
                      "then ~1e-10 and the discriminant, scored on the images it was fitted on, "
                      "separates "
                      f"them perfectly: SFDA is 1.0 for at least one backbone on {len(saturated)} "
                      f"datasets and for all six on {len(constant)} ({', '.join(constant)}; τ "
                      "counted 0). Ledoit–Wolf shrinkage ends the saturation but not the in-sample "
                      "optimism. Both are computed from the cached probe-sample features "
                      "(`--part rescore`; no extraction, no training"
                      + (f"; both scores together {min(secs):.2f}–{max(secs):.0f} s per backbone, "
                         f"median {sorted(secs)[len(secs) // 2]:.1f} s, at nice 10 beside the "
                         "lanes" if secs else "")
                      + "); SFDA's paper scores the whole target training set, which the probe "
                      "does not extract."]
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
    lines += grid_markdown(data.get("grid", [])) + length_markdown(data.get("grid", []))
    lines += rules_markdown(data.get("grid", []))
    lines += forecast_markdown(data.get("forecast") or {})
    lines += goals_markdown(data)
    return "\n".join(lines) + "\n"


def wilson(accuracy: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of an accuracy measured on ``n`` images."""
    centre = (accuracy + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((accuracy * (1 - accuracy) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


#: the cells planned (roles as in ``--cells``): the advised recipe and the linear probe everywhere
#: (the gain of fine-tuning), the one-factor axes on the cheapest datasets
PLANNED = {name: ("advised", "linear_probe") for name in DATASETS} | {
    "brain_mri": ("advised", "linear_probe", "centre", "no_aug", "rate_up", "rate_down",
                  "shallower", "deeper"),
    "hymenoptera": ("advised", "linear_probe", "centre", "no_aug", "rate_up", "rate_down",
                    "deeper"),
    "clothing_small_lite": ("advised", "linear_probe", "centre", "no_aug", "rate_up",
                            "rate_down", "deeper"),
    "animal_silhouette_28": ("advised", "linear_probe", "centre", "no_aug", "rate_up",
                             "rate_down", "shallower", "deeper"),
    "eurosat_rgb_3k": ("advised", "linear_probe", "centre", "no_aug", "rate_up", "rate_down",
                       "shallower", "deeper")}


def _kind(cell_id: str) -> str:
    if cell_id == BEFORE:
        return "advised"
    return cell_id if cell_id in ("advised", "linear_probe") else "axis"


def _size(name: str, cells: list[dict[str, Any]]) -> float | None:
    """Images × megapixels of a dataset's grid layout (train + validation + test at the advised
    backbone's input size), from a grid cell, else from the ranking's chosen backbone."""
    c = next((c for c in cells if c["dataset"] == name), None)
    if c is not None:
        return (c["n_train"] + c["n_val"] + c["n_test"]) * (c["input_size"] / 1000) ** 2
    rows = _by_dataset(load().get("ranking", [])).get(name)
    if not rows:
        return None
    r = chosen_backbone(rows)
    return (r["n_train"] + r["n_test"]) * (r["input_size"] / 1000) ** 2


def _lane_rates(cells: list[dict[str, Any]]) -> dict[str, float]:
    """Median seconds per image·megapixel of the lane-0 cells, per kind of cell."""
    import statistics

    out: dict[str, list[float]] = {}
    for c in cells:
        if c.get("lane") and c.get("seconds"):
            out.setdefault(_kind(c["cell"]), []).append(c["seconds"] / _size(c["dataset"], [c]))
    return {k: statistics.median(v) for k, v in out.items()}


def _estimate(name: str, cell_id: str, cells: list[dict[str, Any]],
              rate: dict[str, float]) -> float | None:
    size = _size(name, [c for c in cells if c["dataset"] == name])
    r = rate.get(_kind(cell_id))
    return None if size is None or r is None else r * size


def missing_markdown(cells: list[dict[str, Any]]) -> list[str]:
    """The planned cells not run yet, per dataset."""
    have: dict[str, set[str]] = {}
    centres: dict[str, str] = {}
    for c in cells:
        have.setdefault(c["dataset"], set()).add(c["cell"])
    for name in have:
        centre = _centre({c["cell"]: c for c in cells if c["dataset"] == name})
        if centre:
            centres[name] = centre
    rate = _lane_rates(cells)
    rows = []
    for name, roles in PLANNED.items():
        ids = cell_roles(int(centres[name][1])) if name in centres else {}
        todo = [r for r in roles if ids.get(r, r) not in have.get(name, set())]
        if todo:
            est = [_estimate(name, ids.get(r, r), cells, rate) for r in todo]
            known = [e for e in est if e is not None]
            rows.append(f"{name}: " + ", ".join(ids.get(r, r) for r in todo)
                        + (f" (estimated {sum(known) / 60:.0f} min on lane 0"
                           + ("" if name in have else " plus advising, 4–8 min") + ")"
                           if known else ""))
    if not rows:
        return []
    return ["**Planned but not run yet** (session 3 had lane 0 — one core — from 14:15 to about "
            "15:35 UTC; estimates: the lane-0 seconds per image·megapixel of the cells of the "
            "same kind, times the dataset's images at its input size; the chain in "
            "`~/.cache/autotransfer-bench-advice/grid_chain4.sh` runs them in the order of its "
            "`job` lines and resumes an interrupted cell): " + "; ".join(rows)
            + ". Not planned: the full factorial grid (every "
            "depth × rate × augmentation) and depths more than one group from the advised one — "
            "the one-factor design answers *was each advised decision the best?* at a fraction "
            "of the cost.", ""]


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
             "the validation split is 20% of the (capped) training split — 38 to 160 images, "
             "so early stopping and the restored best epoch select on a noisy signal, one "
             "reason why neighbouring cells differ by a few points. The advice every session-3 "
             "cell is built around is computed once per dataset and kept "
             "(`~/.cache/autotransfer-bench-advice/advice/`), so every cell of a dataset shares "
             "one centre; the session-2 cells of brain_mri and hymenoptera were built around the "
             "same recipe (the run checks it: the rule base changed since in the reasons' "
             "wording only).", ""]
    reg, bal = regrets(cells), regrets(cells, "test_balanced_accuracy")
    if reg:
        lines += ["### Regret of the advised recipe and of each decision", "",
                  "Regret = best cell − advised, in points of held-out accuracy (balanced accuracy "
                  "after the slash). A per-decision regret compares the cells along one axis "
                  "with the advised point on it (the centre cell `d<advised depth>-x1-advised`; on "
                  "the depth axis the linear probe when the advice is head-only); "
                  "*fine-tune at all* compares the advice with the other choice (the linear "
                  "probe where it fine-tunes, else the centre cell). "
                  "`†` = the difference is significant at 95% (unpaired two-proportion test on the "
                  "held-out images; conservative, since every cell is scored on the same images); "
                  "without it the difference is within noise. `*` = the axis is incomplete.", "",
                  "The advised cell is the advice of the rule base named in its column: "
                  "`before` = the rules before LR05 (the grid's centre advice, quick preset: "
                  "2 + 3 fine-tuning epochs where it unfreezes gradually), a tag = re-advised by "
                  "the rule base in force when it ran (`--readvise`; its rules.yaml hash is in "
                  f"advice.json), the earlier advised cell kept beside it as `{BEFORE}` with its "
                  "regret against the same grid in the last column.", "",
                  "| dataset | test images | advised (95% interval) | rule base | best cell | "
                  "regret (pts) | depth | rate | augmentation | fine-tune at all | "
                  "before: advised, regret |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]

        def axis(name: str, key: str) -> str:
            a, b = reg[name].get(key), bal[name].get(key)
            if not a:
                return "–"
            done = reg[name].get("axes_complete", {}).get(key, True)
            return (f"{a['regret']:+.1f}{'†' if a['significant'] else ''} / {b['regret']:+.1f}"
                    f"{'†' if b['significant'] else ''} (best {a['best']}; "
                    f"{len(a['cells'])} cells){'' if done else '*'}")

        for name, r in reg.items():
            lo, hi = wilson(r["advised"], r["n_test"])
            b4 = r.get("before")
            lines.append(
                f"| {name} | {r['n_test']} | {r['advised']:.4f} ({lo:.3f}–{hi:.3f}) / "
                f"{bal[name]['advised']:.4f} | {r['rule_base']} | {r['best_cell']} "
                f"({r['cells']} cells) | "
                f"{r['regret']:+.1f}{'†' if r['significant'] else ''} / "
                f"{bal[name]['regret']:+.1f}{'†' if bal[name]['significant'] else ''} | "
                f"{axis(name, 'depth')} | {axis(name, 'rate')} | {axis(name, 'aug')} | "
                f"{axis(name, 'finetune')} | "
                + (f"{b4['value']:.4f}, {b4['regret']:+.1f}{'†' if b4['significant'] else ''}"
                   if b4 else "–") + " |")
        lines += ["", "Per decision, over the datasets where its axis has at least two cells "
                  "(points; accuracy / balanced accuracy; goal: median ≤ 1, worst ≤ 3):", "",
                  "| decision | datasets | median | worst | significant on | goal met? |",
                  "|---|---|---|---|---|---|"]
        import statistics

        for key, label in (("depth", "freeze depth"), ("rate", "fine-tuning rate"),
                           ("aug", "augmentation"), ("finetune", "fine-tune at all")):
            have = [n for n in reg if reg[n].get(key)]
            if not have:
                lines.append(f"| {label} | 0 | – | – | – | not measured |")
                continue
            a = [reg[n][key]["regret"] for n in have]
            b = [bal[n][key]["regret"] for n in have]
            sig = [n for n in have if reg[n][key]["significant"]]
            incomplete = [n for n in have if not reg[n].get("axes_complete", {}).get(key, True)]
            met = statistics.median(a) <= 1 and max(a) <= 3
            lines.append(f"| {label} | {len(have)} ({', '.join(have)}) | "
                         f"{statistics.median(a):.1f} / {statistics.median(b):.1f} | "
                         f"{max(a):.1f} / {max(b):.1f} | {', '.join(sig) or 'none'} | "
                         f"{'yes' if met else 'no'}"
                         + (f" (axis incomplete on {', '.join(incomplete)})" if incomplete else "")
                         + " |")
        lines += [""]
        gains = [(n, r) for n, r in reg.items() if "linear_probe" in r]
        seconds = {n: {c["cell"]: c["seconds"] for c in cells if c["dataset"] == n}
                   for n, _ in gains}
        if gains:
            lines += ["Fine-tuning against the linear probe (points of held-out accuracy; the "
                      "forecast's gain is advised − linear probe where the advice fine-tunes): "
                      + "; ".join(
                          f"{n}: linear probe {r['linear_probe']:.4f}, "
                          + (f"advised {r['finetune_gain']:+.1f} in "
                             f"{seconds[n]['advised']:.0f} s against {seconds[n]['linear_probe']:.0f}"
                             " s" if "finetune_gain" in r else "advised = head only")
                          + (f", best fine-tuned ({r['best_finetuned']['cell']}) "
                             f"{r['best_finetuned']['gain']:+.1f}" if "best_finetuned" in r
                             else "") for n, r in gains) + ".", ""]
    lines += ["| dataset | cell | backbone, px | train / val / test | test (95% interval) | "
              "balanced | val | epochs (early stop?) | seconds | load |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        lo, hi = wilson(c["test_accuracy"], c["n_test"])
        epochs = ", ".join(f"{p['epochs_run']}{'' if p['trainable_from'] == 5 else ('s' if p['stopped_early'] else '')}"
                           for p in c["phases"])
        cap = " **sched**" if c["epoch_cap_reached"] else ""
        label = c["cell"] + (f" ({c['advice_tag']})" if c.get("advice_tag") else "")
        lines.append(f"| {c['dataset']} | {label} | {c['backbone']}, {c['input_size']} | "
                     f"{c['n_train']} / {c['n_val']} / {c['n_test']} | {c['test_accuracy']:.4f} "
                     f"({lo:.3f}–{hi:.3f}) | {c['test_balanced_accuracy']:.4f} | "
                     f"{c['val_accuracy']:.4f} | {epochs}{cap} | {c['seconds']:.0f}"
                     f"{' (lane 0)' if c.get('lane') else ''} | {c['machine']['load']} |")
    lines += ["", "Epochs per phase; `s` = stopped early by the recipe's patience. Seconds: the "
              "whole cell (its part of every attempt, when a chunk's time limit interrupted it "
              "and it resumed from its checkpoint); `lane 0` cells ran pinned to core 0 at "
              "nice −10 while development work ran beside them at normal priority, the others "
              "(session 2) unpinned beside other benchmarks (see their load).", ""]
    return lines + missing_markdown(cells)


def forecast_markdown(f: dict[str, Any]) -> list[str]:
    if not f:
        return []
    lp = f["model"]["linear_probe"]
    m = f.get("machine") or {}
    lines = ["## Forecast (leave one dataset out)", "",
             "Fitted by `python tools/bench_advice.py --part forecast`: arithmetic on the recorded "
             "cells, no training"
             + (f", {f['seconds']:.1f} s" if f.get("seconds") is not None else "")
             + (f" at {m['at']}, load {m['load']} (nice 10, beside the lanes)" if m else "")
             + ".", "",
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
        form = (f"{gain['intercept']:+.2f}" + "".join(
            f" {w:+.2f}·{k}" for k, w in gain["weights"].items()))
        data_g = f.get("gain_data", {})
        lines += [f"Gain of the advised fine-tuning over the linear probe, in points: {form} "
                  f"(fitted on {len(f['gain_lodo_errors'])} grid datasets where the advice "
                  f"fine-tunes: " + ", ".join(f"{d} {g:+.1f}" for d, g in data_g.items())
                  + f"), interval ±{gain['half_width']:.1f} (the largest LODO error); "
                  "LODO errors (forecast − measured): "
                  + ", ".join(f"{d} {e:+.1f}" for d, e in f["gain_lodo_errors"].items()) + ".", ""]
        if f.get("advised_lodo_errors"):
            e = f["advised_lodo_errors"]
            base = f["model"].get("advised_base", "whole")
            lines += ["The advised recipe's forecast (the linear probe's "
                      + ("at the recipe's own training size — the training split less the "
                         "validation images it holds out — " if base == "fit" else "")
                      + "plus, where the advice fine-tunes, the gain; both fitted without the "
                      "dataset) against the advised cell of the grid (forecast − measured, "
                      "points): " + ", ".join(f"{d} {v:+.1f}" for d, v in e.items())
                      + f"; within ±3 on {sum(abs(v) <= 3 for v in e.values())} of {len(e)}.",
                      ""]
        models = f.get("advised_models") or {}
        if models:
            lines += ["Advised-recipe forecasts compared, leave one dataset out (base: the linear "
                      "probe's forecast for the whole training split, or at the recipe's own "
                      "training size; gain: the mean, a slope on the probe's logit CV accuracy, or "
                      "a share of its headroom, 100 × (1 − CV), through 0). Kept: the least mean "
                      "absolute error, a fitted slope charged "
                      f"{GAIN_SLOPE_MARGIN} points; the gain is measured against the linear probe "
                      "on the grid's split, so a whole-split base forecasts the probe on more "
                      "images than the recipe trains on:", "",
                      "| model | within ±3 | mean abs | max abs | bias | errors (forecast − "
                      "measured, points) |", "|---|---|---|---|---|---|"]
            kept = (f"{base}+" + (",".join(f["model"]["gain"]["weights"]) or "mean"))
            for k, v in models.items():
                mark = " **(kept)**" if k.split(" (")[0] == kept else ""
                lines.append(f"| {k}{mark} | {v['within_3']} of {v['n']} | {v['mean_abs']:.2f} | "
                             f"{v['max_abs']:.2f} | {v['bias']:+.2f} | " + ", ".join(
                                 f"{d} {x:+.1f}" for d, x in v["errors"].items()) + " |")
            lines += ["", f"Noise ceiling: a forecast equal to each advised cell's true accuracy "
                      f"would fall within ±3 points of the measured one (Binomial(n, p)/n on the "
                      f"test images) on {advised_ceiling(f):.1f} of {len(e)} datasets in "
                      "expectation.", ""]
        if f.get("gain_models"):
            lines += ["Gain models compared (mean / max absolute LODO error, points): " + "; ".join(
                f"{k}: {v['mean_abs']:.2f} / {v['max_abs']:.2f}"
                for k, v in f["gain_models"].items()) + f" (a slope is kept only when it beats "
                f"the mean by more than {GAIN_SLOPE_MARGIN} points).", ""]
    else:
        lines += ["No gain model: fewer than two datasets have both the advised recipe and the "
                  "linear probe in the grid, so `advise` forecasts the linear probe only.", ""]
    return lines


def advised_ceiling(f: dict[str, Any], draws: int = 20000, seed: int = 0) -> float:
    """Expected number of datasets on which a perfect forecast of the advised cell falls within
    ±3 points of its measured accuracy (test noise only, Binomial(n, p)/n, p = the measured)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    total = 0.0
    for n, p in f.get("advised_cells", {}).values():
        total += float(np.mean(np.abs(rng.binomial(n, p, draws) / n - p) <= 0.03 + 1e-9))
    return total


def not_readvised(cells: list[dict[str, Any]]) -> list[str]:
    """Datasets whose advised cell predates LR05 and fine-tunes its deepest phase for fewer
    epochs than LR05's floor: re-advising would change them (``--readvise``)."""
    floor = rule_params("LR05").get("min_epochs") or 0
    out = []
    for c in cells:
        if c["cell"] != "advised" or c.get("advice_tag"):
            continue
        tuned = [p for p in c["phases"] if p["trainable_from"] < 5]
        if tuned and c["n_train"] + c["n_val"] < rule_params("LR05").get("small", 0) and (
                tuned[-1]["epochs_run"] < floor):
            out.append(c["dataset"])
    return out


def held_out_note(cells: list[dict[str, Any]]) -> str:
    """Whether the re-advised cells are leave-one-dataset-out results for LR05's floor."""
    fit = length_lodo(converged_phases(cells))
    if "folds" not in fit or not any(c.get("advice_tag") for c in cells):
        return ""
    held, not_held = [], []
    for c in cells:
        if c["cell"] == "advised" and c.get("advice_tag"):
            f = fit["folds"].get(c["dataset"])
            fold = (c.get("lr05_fold") or {}).get("floor") or (
                f["floor_epochs"][fit["unit"]] if f else fit["floor_epochs"])
            (held if floor_used(c) in (fold, None) else not_held).append(c["dataset"])
    return (" (each re-advised cell ran with LR05's floor fitted without its dataset, a "
            "leave-one-dataset-out result" + (f", except {', '.join(not_held)}" if not_held
                                              else "") + ")")


def goals_markdown(data: dict[str, Any]) -> list[str]:
    """The issue's goals against what was measured (on the datasets measured so far)."""
    import statistics

    lines = ["## Goals (issue 18)", "", "| goal | measured | met? |", "|---|---|---|"]
    reg = regrets(data.get("grid", []))
    bal = regrets(data.get("grid", []), "test_balanced_accuracy")
    if reg:
        values = [r["regret"] for r in reg.values()]
        med, worst = statistics.median(values), max(values)
        bvalues = [r["regret"] for r in bal.values()]
        noisy = [d for d, r in reg.items() if r["regret"] > 0 and not r["significant"]]
        bases: dict[str, list[str]] = {}
        for d, r in reg.items():
            bases.setdefault(r["rule_base"], []).append(d)
        before = {d: r["before"]["regret"] for d, r in reg.items() if r.get("before")}
        was = {d: before.get(d, r["regret"]) for d, r in reg.items()}  # each before LR05
        lines.append(f"| advised recipe: median regret ≤ 1 pt, worst ≤ 3 | accuracy: median "
                     f"{med:.1f}, worst {worst:.1f}; balanced: median "
                     f"{statistics.median(bvalues):.1f}, worst {max(bvalues):.1f} — over "
                     f"{len(values)} dataset(s) "
                     f"({', '.join(f'{d} {v:.1f}' for d, v in zip(reg, values))}); rule base "
                     "of the advised cells: "
                     + "; ".join(f"{b} on {', '.join(ds)}" for b, ds in bases.items())
                     + (f"; before LR05 the same datasets had median "
                        f"{statistics.median(was.values()):.1f}, worst {max(was.values()):.1f}"
                        if before else "") + held_out_note(data.get("grid", [])) + "; "
                     + (f"the positive regrets ({', '.join(noisy)}) are within noise; "
                        if noisy else "")
                     + "against a one-factor grid on "
                     + (", ".join(f"{d} ({r['cells']} cells)" for d, r in reg.items()
                                  if r["cells"] > 3) or "no dataset")
                     + ", against the linear probe (and one fine-tuned cell) only elsewhere | "
                     f"{'yes' if med <= 1 and worst <= 3 else 'no'} as far as measured (on "
                     f"{sum(r['cells'] > 3 for r in reg.values())} of 8 beyond the linear "
                     "probe; a best-of-grid regret is biased upward by the winner's curse, a "
                     "thin grid biases it downward) |")
    for d, r in reg.items():  # why a regret above the goal's 3 points remains
        if r["regret"] <= 3:
            continue
        rows = [c for c in data.get("grid", []) if c["dataset"] == d and c["cell"] != BEFORE]
        tuned = [c for c in rows if c["cell"] != "linear_probe"
                 and any(p["trainable_from"] < 5 for p in c["phases"])]
        lp = next((c for c in rows if c["cell"] == "linear_probe"), None)
        if lp and tuned and r["best_cell"] == "linear_probe":
            lo, hi = (min(c["test_accuracy"] for c in tuned), max(c["test_accuracy"]
                                                                   for c in tuned))
            lines.append(f"| (why {d} misses) | the linear probe ({lp['test_accuracy']:.1%}) "
                         f"beats every fine-tuned cell of its grid ({lo:.1%}–{hi:.1%}, "
                         f"{len(tuned)} cells): no fine-tuning length closes it; the choice to "
                         "fine-tune at all (FZ04, far data) is what costs here, "
                         + ("significantly" if r["significant"] else "within noise")
                         + f" on {r['n_test']} test images | – |")
    for d, r in reg.items():  # a miss whose best cell fine-tunes: which decisions it changes
        if r["regret"] <= 3 or r["best_cell"] == "linear_probe" or not r.get("centre"):
            continue
        rows = {c["cell"]: c for c in data.get("grid", []) if c["dataset"] == d}
        centre = rows.get(r["centre"])
        axes = "; ".join(f"{name} {v['regret']:+.1f} (best {v['best']})" for name, v in (
            ("depth", r.get("depth")), ("rate", r.get("rate")),
            ("augmentation", r.get("aug"))) if v)
        sched = (f"; the advised schedule against the centre's one 20-epoch phase (same depth, "
                 f"rate and augmentation): {100 * (r['advised'] - centre['test_accuracy']):+.1f}"
                 if centre and r["advised_tunes"] else "")
        lines.append(f"| (why {d} misses) | its best cell {r['best_cell']} "
                     f"({r['best']:.1%}) against the advised {r['advised']:.1%}; along each axis "
                     f"at the centre {r['centre']}: {axes}{sched}; "
                     + ("significantly" if r["significant"] else "within noise")
                     + f" on {r['n_test']} test images | – |")
    refits = []
    for decision, alt, title in (("finetune", "head only", "fine-tune at all"),
                                 ("aug", "none", "augmentation none"),
                                 ("rate", "× 3", "fine-tuning rate × 3")):
        cases = decision_cases(data.get("grid", []), decision)
        if len(cases) >= 3:
            held = one_fact_lodo(cases, alt)
            const = one_fact_lodo(cases, alt, keys=())
            refits.append(f"{title} {sum(h['loss'] for h in held.values()):.1f} "
                          f"(constants {sum(h['loss'] for h in const.values()):.1f}) against "
                          f"{sum(h['loss_current'] for h in held.values()):.1f}, significant on "
                          f"{sum(h['significant'] for h in held.values())} of {len(cases)}")
    summary = [line for line in rate_variant_markdown(data.get("grid", []))
               if line.startswith("Higher on")]
    if summary:
        refits.append("the advised recipe with its fine-tuning rates × 3 (cells advised-x3): "
                      + summary[0].rstrip(".").replace("Higher", "higher"))
    if refits:
        lines.append("| (can a rule change close it?) | refitted on one fact leave one dataset out "
                     "(\"Rules against the grid\"), summed held-out regret, refit against the "
                     "current rules: " + "; ".join(refits) + ". A rule changes only when the "
                     "refit lowers the summed held-out regret and differs from the current choice "
                     "beyond noise on a left-out dataset | – |")
    pending = not_readvised(data.get("grid", []))
    if pending:
        lines.append(f"| (the same goal, what is not measured yet) | {len(pending)} dataset(s) "
                     f"whose advice LR05 lengthens still show the advised cell before it: "
                     f"{', '.join(pending)} — lane 0 had no time left for them this session "
                     "(`tools/bench_advice.py --part grid --readvise lr05` runs them); their "
                     "regret above is the earlier rule base's | not measured |")
    tau = ranking_tau(data.get("ranking", []))
    if tau:
        ranked_by = data.get("ranked_by", "logme")
        v = [row[ranked_by] for row in tau.values() if ranked_by in row]
        mean = sum(v) / len(v)
        ceiling = noise_ceiling(data.get("ranking", []))
        cap = sum(ceiling.values()) / len(ceiling) if ceiling else float("nan")
        lines.append(f"| the ranking's mean τ ≥ 0.6 | {ranked_by}: {mean:+.2f} over {len(v)} "
                     f"dataset(s); a perfect score would get about {cap:+.2f} against these "
                     f"test splits (noise ceiling) | {'yes' if mean >= 0.6 else 'no'} |")
    f = data.get("forecast") or {}
    if f:
        e = f["linear_probe_lodo_errors"]
        k = sum(abs(x) <= 3 for x in e.values())
        a = f.get("advised_lodo_errors") or {}
        ka = sum(abs(x) <= 3 for x in a.values())
        lines.append(f"| forecast within ±3 pts on ≥ 6 of 8 (LODO) | linear probe: {k} of "
                     f"{len(e)}" + (f"; advised recipe: {ka} of {len(a)} measured" if a else "")
                     + f" | {'yes' if k >= 6 else 'no'} (linear probe)"
                     + (f"; {'not yet' if len(a) < 8 else 'yes' if ka >= 6 else 'no'} "
                        "(advised)" if a else "") + " |")
        if a and f.get("advised_cells"):
            lines.append(f"| (the advised forecast's ceiling) | a forecast equal to each advised "
                         f"cell's true accuracy would be within ±3 of the measure on "
                         f"{advised_ceiling(f):.1f} of {len(a)} in expectation (test noise "
                         "alone) | – |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("ranking", "grid", "forecast", "rescore"),
                        default="ranking")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--backbones", nargs="+", default=None,
                        help="default: every backbone with weights on this machine")
    parser.add_argument("--max-train", type=int, default=1000)
    parser.add_argument("--max-test", type=int, default=600)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default="quick", help="the advice the grid is built around")
    parser.add_argument("--cells", nargs="+", default=None,
                        help="grid: run only these cells: ids (advised linear_probe "
                             "d2-x3-advised) or "
                             "roles around the advised depth (centre no_aug rate_up rate_down "
                             "shallower deeper)")
    parser.add_argument("--readvise", default=None, metavar="TAG",
                        help="grid: run only the advised cell, advised by the rule base in force "
                             "(its advice kept under TAG); the dataset's earlier advised cell is "
                             f"kept as '{BEFORE}', and the grid's centre stays the kept advice")
    parser.add_argument("--advised-rate", type=float, default=None, metavar="M",
                        help="grid: run only the advised recipe kept under --advice-tag with "
                             "every fine-tuning rate × M, as cell advised-xM")
    parser.add_argument("--advice-tag", default="lr05",
                        help="the kept re-advice --advised-rate starts from")
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args()
    if args.render_only:
        import fcntl

        WORK.mkdir(parents=True, exist_ok=True)
        with open(WORK / "advice.lock", "w") as lock:  # the grid may be appending meanwhile
            fcntl.flock(lock, fcntl.LOCK_EX)
            save(load())
        return
    use_shared_weights()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    {"ranking": run_ranking, "grid": run_grid, "forecast": run_forecast,
     "rescore": run_rescore}[args.part](args)


if __name__ == "__main__":
    main()
