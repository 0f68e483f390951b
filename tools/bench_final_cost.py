#!/usr/bin/env python3
"""Is the reserve right? ``auto``'s final-training estimate (PLAN01) against a final training.

For each dataset, in one process, as ``auto`` runs them: the advisor's recipe (preset ``quick``,
mobilenet_v2; each phase cut to ``--epochs`` epochs, no early stop) runs as a search trial
(:func:`autotransfer.tuning.trials.run_trial`, sharing an
:class:`~autotransfer.tuning.activations.ActivationStore`), then as the final training on
train + validation (:func:`autotransfer.train.train` with the same store, as ``auto`` trains
it). The trial's record gives the estimate (:class:`~autotransfer.tuning.final_cost.MeasuredTrial`,
by part), and the old frozen-features term (the trial's feature seconds × the growth of the
training set) is shown beside the current one; the final training's record gives what each part
took. The passes of the frozen features are timed one by one (each view, the validation set).
Writes ``--out``.{json,md}; ``docs/benchmarks/cost_model.md`` discusses them.

    python tools/bench_final_cost.py [--datasets hymenoptera clothing_small_lite] [--epochs 2]
                                     [--cap N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tools"))
from _shared_weights import use_shared_weights  # noqa: E402
from bench_auto import held_out_layout  # noqa: E402
from bench_cost import capped  # noqa: E402


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _recipe(recipe: Any, epochs: int) -> Any:
    """``recipe`` with each phase cut to ``epochs`` epochs, and, where it trains the head alone,
    a fine-tuning phase from group 3 added (a trial of the search fine-tunes)."""
    from autotransfer.recipe.schema import Recipe

    d = recipe.to_dict()
    if all(p["trainable_from"] >= 5 for p in d["phases"]):
        d["phases"].append({**d["phases"][-1], "name": "finetune", "trainable_from": 3,
                            "learning_rate": 1e-4})
    for p in d["phases"]:
        p["epochs"] = min(int(p["epochs"]), epochs)
        p["warmup_epochs"] = 0.0
    d["early_stopping"] = {"patience": 1000, "restore_best_weights": False}
    d["domain_adaptation"] = {"method": "none"}
    return Recipe.model_validate(d)


def _parts(metrics: dict[str, Any]) -> dict[str, float]:
    """What the final training's record says each part took."""
    phases = metrics.get("phases") or []
    features = sum(float((p.get("feature_cache") or {}).get("build_seconds") or 0.0) for p in phases)
    epochs = sum(float(sum(p.get("epoch_seconds") or ())) for p in phases)
    return {"features": features, "epochs": epochs}


def run_dataset(name: str, epochs: int, cap: int | None, work: Path) -> dict[str, Any]:
    import keras

    from autotransfer.advisor.advise import Advisor
    from autotransfer.data.profile import profile_dataset
    from autotransfer.data.splits import make_splits
    from autotransfer.oneshot.final import merge_train_val
    from autotransfer.train.run import train
    from autotransfer.tuning.activations import ActivationStore
    from autotransfer.tuning.final_cost import read_measured
    from autotransfer.tuning.trials import run_trial

    root = held_out_layout(name, work)
    profile = profile_dataset(root)
    advice = Advisor(backbones=["mobilenet_v2"], preset="quick", verbose=0).fit(profile).advice_
    recipe = _recipe(advice.recipe, epochs)
    splits = capped(make_splits(profile, val_fraction=recipe.data.val_fraction, seed=recipe.seed,
                                exclude_leaks=recipe.data.exclude_leaks), cap,
                    ("train", "val", "test"))
    n_train, n_val, n_test = len(splits.train), len(splits.val), len(splits.test)
    growth = (n_train + n_val) / n_train
    store = ActivationStore(splits)
    load_before = _load()
    started = time.time()
    trial = run_trial(recipe, store, work / "trial" / name)
    trial_s = time.time() - started
    keras.backend.clear_session()
    measured, kept = read_measured(work / "trial" / name, n_val, store)
    if measured is None:
        raise SystemExit(f"{name}: the trial's record could not be read")
    estimate = measured.final_seconds(growth=growth, eval_images=n_val + n_test,
                                      features_kept=kept)
    old_features = measured.features_s * growth
    started = time.time()
    run = train(merge_train_val(splits), recipe, work / "final" / name, feature_source=store)
    final_s = time.time() - started
    got = _parts(run.metrics)
    keras.backend.clear_session()
    passes = [{k: (p.get("feature_cache") or {}).get(k) for k in ("views", "view_seconds",
                                                            "val_seconds", "build_seconds",
                                                            "reused_seconds")}
              for p in trial.metrics["phases"]]
    final_passes = [{k: (p.get("feature_cache") or {}).get(k) for k in ("views", "view_seconds",
                                                                  "val_seconds", "build_seconds",
                                                                  "reused_seconds")}
                    for p in run.metrics["phases"]]
    row = {"dataset": name, "n_train": n_train, "n_val": n_val, "n_test": n_test,
           "growth": round(growth, 3), "input_size": recipe.backbone.input_size,
           "phases": [(p.name, p.trainable_from, p.epochs) for p in recipe.phases],
           "trial_s": round(trial_s, 1), "final_s": round(final_s, 1),
           "estimate": {k: round(v, 2) for k, v in estimate.items()},
           "old_features_s": round(old_features, 2),
           "old_total_s": round(estimate["total"] - estimate["features"] + old_features, 2),
           "measured": {k: round(v, 2) for k, v in got.items()},
           "trial_passes": passes, "final_passes": final_passes, "kept": kept,
           "trial_epoch_seconds": [p.get("epoch_seconds") for p in trial.metrics["phases"]],
           "final_epoch_seconds": [p.get("epoch_seconds") for p in run.metrics["phases"]],
           "trial_wall_s": trial.metrics.get("seconds_total"),
           "trial_checkpoint_s": trial.metrics.get("checkpoint_seconds"),
           "load_before": load_before, "load_after": _load()}
    print(json.dumps(row), flush=True)
    return row


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| dataset | images train / val / test | features: old est. | features: est. | "
             "features: measured | total: old est. | total: est. | final training measured | "
             "load before → after |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        e, m = r["estimate"], r["measured"]
        lines.append(
            f"| {r['dataset']} | {r['n_train']} / {r['n_val']} / {r['n_test']} | "
            f"{r['old_features_s']:.1f} s ({m['features'] / max(r['old_features_s'], 1e-9):.2f}) | "
            f"{e['features']:.1f} s ({m['features'] / max(e['features'], 1e-9):.2f}) | "
            f"{m['features']:.1f} s | {r['old_total_s']:.1f} s "
            f"({r['final_s'] / max(r['old_total_s'], 1e-9):.2f}) | {e['total']:.1f} s "
            f"({r['final_s'] / max(e['total'], 1e-9):.2f}) | {r['final_s']:.1f} s | "
            f"{r['load_before']} → {r['load_after']} |")
    return "\n".join(lines) + "\n\n(ratio = measured / estimate in brackets)\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["hymenoptera", "clothing_small_lite"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--cap", type=int, default=None)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks"
                        / "final_cost_runs")
    args = parser.parse_args()
    use_shared_weights()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-final-cost-") as tmp:
        for name in args.datasets:
            rows.append(run_dataset(name, args.epochs, args.cap, Path(tmp)))
    from autotransfer._io import atomic_write_json, atomic_write_text

    atomic_write_json(args.out.with_suffix(".json"), {"rows": rows})
    atomic_write_text(args.out.with_suffix(".md"), markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
