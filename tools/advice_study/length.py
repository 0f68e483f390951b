"""How long fine-tuning needs (LR05): the grid's best epochs, fitted leave one dataset out."""

from __future__ import annotations

import math
from typing import Any

from advice_study import store
from advice_study.cells import MAX_EPOCHS
from advice_study.regret import regrets
from advice_study.store import BEFORE, load


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
    floor = store.rule_params("LR05").get("min_epochs")
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


def not_readvised(cells: list[dict[str, Any]]) -> list[str]:
    """Datasets whose advised cell predates LR05 and fine-tunes its deepest phase for fewer
    epochs than LR05's floor: re-advising would change them (``--readvise``)."""
    floor = store.rule_params("LR05").get("min_epochs") or 0
    out = []
    for c in cells:
        if c["cell"] != "advised" or c.get("advice_tag"):
            continue
        tuned = [p for p in c["phases"] if p["trainable_from"] < 5]
        if tuned and c["n_train"] + c["n_val"] < store.rule_params("LR05").get("small", 0) and (
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
