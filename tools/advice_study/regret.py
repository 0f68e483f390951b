"""Regret of the advised recipe against the grid, and the tests that tell a difference from noise."""

from __future__ import annotations

import math
from typing import Any

from advice_study.store import BEFORE


def paired_counts(a: str, b: str) -> tuple[int, int]:
    """(images only ``b`` got right, images only ``a`` got right) of two cells' ``test_correct``."""
    if len(a) != len(b):
        raise ValueError(f"the cells scored different images ({len(a)} against {len(b)})")
    return (sum(x == "0" and y == "1" for x, y in zip(a, b)),
            sum(x == "1" and y == "0" for x, y in zip(a, b)))


def mcnemar_p(b: int, c: int) -> float:
    """Exact two-sided McNemar p-value of ``b`` against ``c`` discordant images."""
    from scipy.stats import binomtest

    return 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5).pvalue)


def stratified_p(pairs: list[tuple[float, float, int]]) -> float:
    """Two-sided p of the pooled difference of two accuracies over datasets ((a, b, n) each),
    treating each dataset's two accuracies as independent (unpaired): conservative when both are
    scored on the same images."""
    from scipy.stats import norm

    num = sum(n * (b - a) for a, b, n in pairs)
    var = sum(n * (a * (1 - a) + b * (1 - b)) for a, b, n in pairs)
    return 1.0 if var <= 0 else float(2 * norm.sf(abs(num) / math.sqrt(var)))


def centre_of(rows: dict[str, dict[str, Any]]) -> str | None:
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
        centre_id = centre_of(rows)
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


def wilson(accuracy: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of an accuracy measured on ``n`` images."""
    centre = (accuracy + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((accuracy * (1 - accuracy) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
