"""A less noisy ranking truth: the exact linear probe cross-validated over the capped split."""

from __future__ import annotations

import argparse
import io
import math
import os
import time
from typing import Any

from advice_study import store
from advice_study.layouts import layout
from advice_study.store import load, machine, save


# ----------------------------------------------------------------------------- a less noisy truth
#: cross-validated truths of the ranking (``--part truth``): folds over the labelled images
TRUTH_FOLDS = 5
TRUTH_VARIANTS = ("all_images", "outside_sample")


def cv_truth(sample_x: Any, sample_y: Any, rest_x: Any, rest_y: Any, n_classes: int, *,
             seed: int = 0, outside_sample_only: bool = False) -> dict[str, Any]:
    """Out-of-fold accuracy of the exact linear probe (``fit_linear_head``, its L2 strength
    chosen by cross-validation inside each fold's training images) over the labelled images of
    the capped split. ``outside_sample_only``: only the images the probe did not sample are
    scored, the sample is always trained on (so the truth's noise is independent of the probe's
    scores); else every image (sample, rest of the training split and held-out) is scored once."""
    import numpy as np
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold

    from autotransfer.train.linear_head import fit_linear_head

    x = rest_x if outside_sample_only else np.concatenate([sample_x, rest_x])
    y = rest_y if outside_sample_only else np.concatenate([sample_y, rest_y])
    k = min(TRUTH_FOLDS, int(np.bincount(y, minlength=n_classes)[np.bincount(
        y, minlength=n_classes) > 0].min()))
    predicted = np.full(len(y), -1)
    for train_idx, held_idx in StratifiedKFold(k, shuffle=True, random_state=seed).split(x, y):
        tx, ty = x[train_idx], y[train_idx]
        if outside_sample_only:
            tx, ty = np.concatenate([sample_x, tx]), np.concatenate([sample_y, ty])
        fit = fit_linear_head([tx], ty, n_classes, seed=seed, workers=1)
        predicted[held_idx] = fit.predict_proba(x[held_idx]).argmax(axis=1)
    return {"accuracy": float((predicted == y).mean()),
            "balanced_accuracy": float(balanced_accuracy_score(y, predicted)),
            "n_scored": int(len(y)), "folds": k}


def cached_sample_features(cell: dict[str, Any], labels: Any) -> Any:
    """The probe's cached features of the cell's sample, found by content: the entry of the
    sample's shape whose LogME on ``labels`` is the cell's (the cache's keys carry the library
    versions, which moved since the cells ran); None when no entry matches."""
    import zipfile

    import numpy as np

    from autotransfer.probes import transferability as tr

    want = cell["probe"]["logme"]
    for path in sorted((store.WORK / "cache" / "features").glob("*.npz")):
        try:
            with zipfile.ZipFile(path) as z:
                if "features.npy" not in z.namelist():
                    continue
            with np.load(path, allow_pickle=False) as z:
                f = z["features"]
        except (OSError, ValueError, zipfile.BadZipFile):
            continue
        if f.ndim == 2 and f.shape[0] == len(labels) and math.isclose(
                float(tr.logme(f, labels).score), want, rel_tol=1e-6, abs_tol=1e-9):
            return f
    return None


def run_truth(args: argparse.Namespace) -> None:
    """Add cross-validated truths (:func:`cv_truth`, both variants) to the ranking cells from the
    cached sample features and the stored features of the rest (no extraction); resumable: each
    dataset's cells are written as they finish."""
    import fcntl

    import numpy as np

    from autotransfer.backbones.catalog import get_backbone
    from autotransfer.data.profile import profile_dataset
    from autotransfer.probes.extract import plan_extraction
    from autotransfer.probes.sample import sample_records
    from autotransfer.train.linear_head import fit_linear_head

    os.environ["AUTOTRANSFER_CACHE"] = str(store.WORK / "cache")
    deadline = time.monotonic() + (args.truth_seconds or math.inf)
    for name in args.datasets:
        rows = [c for c in load()["ranking"] if c["dataset"] == name and "truth_cv" not in c]
        if not rows:
            continue
        caps = rows[0]["caps"]
        profile = profile_dataset(layout(name, caps["max_train"], caps["max_test"]))
        classes = profile.classes
        sample = sample_records(profile, seed=args.seed)
        in_sample = {r.path for r in sample}
        rest = [r for r in profile.records if r.path not in in_sample]
        sample_y = np.asarray([classes.index(r.label) for r in sample])
        rest_y = np.asarray([classes.index(r.label) for r in rest])
        for c in rows:
            if time.monotonic() > deadline:
                print("time limit reached; rerun to continue", flush=True)
                return
            plan = plan_extraction(get_backbone(c["backbone"]), c["input_size"])
            sample_x = cached_sample_features(c, sample_y)
            rest_file = store.WORK / "features" / name / f"{c['backbone']}-{c['input_size']}.npz"
            if sample_x is None:
                print(f"{name} / {c['backbone']}: the sample's features are not cached; skipped",
                      flush=True)
                continue
            if not rest_file.is_file():  # cells of session 2 kept no features of the rest
                from autotransfer._io import atomic_write_bytes
                from autotransfer.probes.extract import decode_sample, extract
                from autotransfer.probes.precision import policy_scope

                t0 = time.perf_counter()
                images = decode_sample(rest, profile.root, c["input_size"])
                with policy_scope("float32"):
                    packed = io.BytesIO()  # written whole or not at all: a rerun reads it
                    np.savez(packed, features=extract(plan, images)["features"])
                atomic_write_bytes(rest_file, packed.getvalue())
                print(f"{name} / {c['backbone']}: the rest extracted in "
                      f"{time.perf_counter() - t0:.0f} s", flush=True)
            rest_x = np.load(rest_file)["features"]
            t0 = time.perf_counter()
            # the check that the features line up with the cell: its held-out truth again
            train = np.asarray([r.split == "train" for r in rest])
            fit = fit_linear_head([np.concatenate([sample_x, rest_x[train]])],
                                  np.concatenate([sample_y, rest_y[train]]), len(classes),
                                  seed=args.seed, workers=1)
            again = float((fit.predict_proba(rest_x[~train]).argmax(axis=1)
                           == rest_y[~train]).mean())
            if abs(again - c["truth"]["test_accuracy"]) > 1e-9:
                print(f"{name} / {c['backbone']}: the stored features give {again:.4f} held out "
                      f"against {c['truth']['test_accuracy']:.4f} recorded; skipped", flush=True)
                continue
            truth = {v: cv_truth(sample_x, sample_y, rest_x, rest_y, len(classes),
                                 seed=args.seed, outside_sample_only=v == "outside_sample")
                     for v in TRUTH_VARIANTS}
            truth |= {"seconds": round(time.perf_counter() - t0, 1), "machine": machine(),
                      "lane": os.environ.get("BENCH_ADVICE_LANE", "")}
            # the grid may be appending meanwhile
            with open(store.WORK / "advice.lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                data = load()
                for cell in data["ranking"]:
                    if cell["dataset"] == name and cell["backbone"] == c["backbone"]:
                        cell["truth_cv"] = truth
                save(data)
            print(f"{name} / {c['backbone']}: "
                  + ", ".join(f"{v} {truth[v]['accuracy']:.4f} ({truth[v]['n_scored']})"
                              for v in TRUTH_VARIANTS)
                  + f" against {c['truth']['test_accuracy']:.4f} held out, "
                  f"{truth['seconds']} s", flush=True)


#: the truths the ranking can be judged against: the issue's (held out) and the cross-validated
TRUTHS = ("held_out", *TRUTH_VARIANTS)


def truth_of(cell: dict[str, Any], truth: str = "held_out") -> tuple[float, int]:
    """(accuracy, images scored) of a ranking cell under one of :data:`TRUTHS`."""
    if truth == "held_out":
        return cell["truth"]["test_accuracy"], cell.get("n_test", 0)
    t = cell["truth_cv"][truth]
    return t["accuracy"], t["n_scored"]
