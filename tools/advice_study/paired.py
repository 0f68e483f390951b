"""The advised recipe at × 1 and × M rerun side by side with per-image results (``--paired``):
exact McNemar per dataset and pooled, a sign test over datasets, the choice made leave one dataset
out, the decision LR01 takes from them, and why a rerun can land away from its recorded cell."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from advice_study import store
from advice_study.regret import mcnemar_p, paired_counts

#: a change of LR01's ratios needs the pooled paired test below this (and the other conditions of
#: ``decide``); written down before the reruns of session 7 came in
ALPHA = 0.05

#: LR01's ratios under which the recorded advised cells (and their advised-xM variants) were advised
CELL_RATIOS = {"ratio": 0.1, "ratio_far": 0.2}


@dataclass(frozen=True)
class PairedRow:
    """One dataset's two reruns: ``up`` images only × M got right, ``down`` only × 1."""

    dataset: str
    n_test: int
    x1: dict[str, Any]
    xm: dict[str, Any]
    up: int
    down: int

    @property
    def p(self) -> float:
        return mcnemar_p(self.up, self.down)

    @property
    def gain(self) -> float:
        """× M − × 1, points."""
        return 100 * (self.xm["test_accuracy"] - self.x1["test_accuracy"])


@dataclass(frozen=True)
class Fold:
    """The rate chosen on the other datasets (net images, ties to × 1), judged on ``held_out``:
    regret = the better of the two − the chosen one there (points)."""

    held_out: str
    net_on_others: int
    chosen: float
    regret: float
    regret_current: float


@dataclass(frozen=True)
class PairedEvidence:
    multiplier: float
    rows: tuple[PairedRow, ...]
    folds: tuple[Fold, ...]

    @property
    def up(self) -> int:
        return sum(r.up for r in self.rows)

    @property
    def down(self) -> int:
        return sum(r.down for r in self.rows)

    @property
    def n_test(self) -> int:
        return sum(r.n_test for r in self.rows)

    @property
    def p(self) -> float:
        return mcnemar_p(self.up, self.down)

    @property
    def wins(self) -> int:
        return sum(r.up > r.down for r in self.rows)

    @property
    def losses(self) -> int:
        return sum(r.up < r.down for r in self.rows)

    @property
    def sign_p(self) -> float:
        return mcnemar_p(self.wins, self.losses)  # the same two-sided binomial test at 1/2


def paired_rows(paired: list[dict[str, Any]]) -> tuple[float, tuple[PairedRow, ...]] | None:
    """The datasets whose × 1 and × M reruns both kept their per-image results (one multiplier:
    the largest rerun)."""
    by: dict[str, dict[float, dict[str, Any]]] = {}
    for c in paired:
        if c.get("test_correct"):
            by.setdefault(c["dataset"], {})[c["advised_rate"]] = c
    ms = {m for r in by.values() for m in r if m != 1.0 and 1.0 in r}
    if not ms:
        return None
    m = max(ms)
    rows = []
    for d, r in by.items():
        if 1.0 in r and m in r:
            up, down = paired_counts(r[1.0]["test_correct"], r[m]["test_correct"])
            rows.append(PairedRow(d, r[1.0]["n_test"], r[1.0], r[m], up, down))
    return m, tuple(rows)


def paired_evidence(paired: list[dict[str, Any]]) -> PairedEvidence | None:
    """Every test of × M against × 1 on the paired reruns, with the choice left one dataset out."""
    got = paired_rows(paired)
    if got is None:
        return None
    m, rows = got
    folds = []
    for held in rows:
        net = sum(r.up - r.down for r in rows if r is not held)
        chosen = m if net > 0 else 1.0  # ties to the current rule (× 1)
        best = max(held.x1["test_accuracy"], held.xm["test_accuracy"])
        pick = held.xm if chosen == m else held.x1
        folds.append(Fold(held.dataset, net, chosen, 100 * (best - pick["test_accuracy"]),
                          100 * (best - held.x1["test_accuracy"])))
    return PairedEvidence(m, rows, tuple(folds))


def decide(ev: PairedEvidence) -> tuple[str, str]:
    """(decision, why): ``adopt`` × M only when the pooled paired test favours it at ``ALPHA``,
    the choice made leave one dataset out lowers the summed held-out regret below always × 1's,
    and × M is significantly worse on no dataset; ``keep (supported)`` when the pooled test
    favours × 1 at ``ALPHA``; else ``keep (within noise)``."""
    lodo = sum(f.regret for f in ev.folds)
    current = sum(f.regret_current for f in ev.folds)
    harmed = [r.dataset for r in ev.rows if r.down > r.up and r.p < ALPHA]
    if ev.up > ev.down and ev.p < ALPHA and lodo < current and not harmed:
        return "adopt", (f"pooled paired p = {ev.p:.3g} < {ALPHA:g} for × {ev.multiplier:g}; "
                         f"held-out regret {lodo:.1f} against {current:.1f} points; "
                         "significantly worse on no dataset")
    if ev.down > ev.up and ev.p < ALPHA:
        return "keep (supported)", f"pooled paired p = {ev.p:.3g} < {ALPHA:g} for × 1"
    unmet = ([f"pooled paired p = {ev.p:.3g} (needs < {ALPHA:g})"] if ev.p >= ALPHA else [])
    unmet += ([f"held-out regret {lodo:.1f} against {current:.1f} points"]
              if lodo >= current else [])
    unmet += [f"significantly worse on {', '.join(harmed)}"] if harmed else []
    return "keep (within noise)", "; ".join(unmet)


def _in_force(m: float) -> str:
    """What recipes/rules.yaml's LR01 advises now, against the reruns' rates."""
    now = rate_in_force()
    if now is None:
        return ""
    return (f" LR01 in force advises × {now:g} of the rates the cells were advised under"
            + (" (the rule followed this decision)." if math.isclose(now, m) else "."))


def restored_epoch(phase: dict[str, Any]) -> dict[str, int] | None:
    """Which epoch (0-based) the earliest-tie rule and ES01's tie-break (the lowest validation
    loss among epochs tied on the best accuracy) would restore from a phase's recorded curves."""
    acc, loss = phase.get("val_accuracy"), phase.get("val_loss")
    if not acc or not loss or len(acc) != len(loss):
        return None
    best = max(acc)
    tied = [i for i, a in enumerate(acc) if abs(a - best) <= 1e-6]
    return {"earliest": tied[0], "lowest_loss": min(tied, key=lambda i: loss[i])}


def reproduction_notes(rows: tuple[PairedRow, ...], grid: list[dict[str, Any]],
                       m: float) -> list[str]:
    """Why a rerun lands away from the recorded cell of the same recipe: the first phase whose
    validation curve or restored epoch differs, and which tie rule each restored epoch matches."""
    recorded = {(c["dataset"], c["cell"]): c for c in grid}
    notes = []
    for r in rows:
        for rerun, cell_id in ((r.x1, "advised"), (r.xm, f"advised-x{m:g}")):
            was = recorded.get((r.dataset, cell_id))
            if was is None:
                continue
            for i, (a, b) in enumerate(zip(was.get("phases", []), rerun.get("phases", []))):
                if a.get("val_accuracy") != b.get("val_accuracy"):
                    notes.append(f"{r.dataset} × {rerun['advised_rate']:g}: phase {i + 1}'s "
                                 "validation curve differs from the recorded cell's")
                    break
                if a.get("best_epoch") != b.get("best_epoch"):
                    rule = restored_epoch(a) or {}
                    how = {v: k for k, v in rule.items()}
                    notes.append(
                        f"{r.dataset} × {rerun['advised_rate']:g}: phase {i + 1}'s validation "
                        f"curve is identical, but it restored epoch {a['best_epoch']} in the "
                        f"recorded cell ({_tie(how.get(a['best_epoch']))}) and "
                        f"{b['best_epoch']} in the rerun ({_tie(how.get(b['best_epoch']))}); "
                        "every later phase starts from other weights")
                    break
            else:
                notes.append(f"{r.dataset} × {rerun['advised_rate']:g}: every phase as recorded")
    return notes


def _tie(rule: str | None) -> str:
    return {"earliest": "the earliest tied epoch, the rule before ES01",
            "lowest_loss": "ES01's tie-break, the lowest validation loss"}.get(
        rule or "", "neither tie rule")


def paired_markdown(paired: list[dict[str, Any]], grid: list[dict[str, Any]]) -> list[str]:
    """The paired reruns' table, their pooled tests, the choice left one dataset out and the
    decision, and how far each rerun landed from the recorded cell of the same recipe."""
    ev = paired_evidence(paired)
    if ev is None:
        return []
    m, recorded = ev.multiplier, {(c["dataset"], c["cell"]): c for c in grid}
    rows = []
    for r in ev.rows:
        was = [recorded.get((r.dataset, k)) for k in ("advised", f"advised-x{m:g}")]
        rows.append(f"| {r.dataset} | {r.n_test} | {r.x1['test_accuracy']:.4f}"
                    + (f" ({was[0]['test_accuracy']:.4f})" if was[0] else "")
                    + f" | {r.xm['test_accuracy']:.4f}"
                    + (f" ({was[1]['test_accuracy']:.4f})" if was[1] else "")
                    + f" | {r.gain:+.1f} | +{r.up} −{r.down} | {r.p:.2g} | "
                    f"{r.x1['seconds']:.0f} + {r.xm['seconds']:.0f} s | "
                    f"{r.xm['machine']['load']} |")
    lodo = sum(f.regret for f in ev.folds)
    current = sum(f.regret_current for f in ev.folds)
    decision, why = decide(ev)
    lane = all(x.get("lane") for r in ev.rows for x in (r.x1, r.xm))
    lines = ["The advised recipe at × 1 and × M run again side by side (`--advised-rate M "
             "--paired`; cells `paired-x1`, `paired-xM`, kept apart from the grid, each in a "
             "process of its own since session 7), each with its per-image results (test "
             "accuracy, the recorded cell of the same recipe in brackets: how far a rerun lands; "
             "only × M right / only × 1 right; exact McNemar):", "",
             "| dataset | test images | × 1 (recorded) | × M (recorded) | × M − × 1 (pts) "
             "| discordant | p | seconds | load |", "|---|---|---|---|---|---|---|---|---|",
             *rows, "",
             f"Pooled over {len(ev.rows)} dataset(s), {ev.n_test} test images: +{ev.up} "
             f"−{ev.down}, exact McNemar p = {ev.p:.3g}; the two rates disagree on "
             f"{ev.up + ev.down} images ({100 * (ev.up + ev.down) / ev.n_test:.1f}%). Sign test "
             f"over datasets: × {m:g} higher on {ev.wins}, lower on {ev.losses}, p = "
             f"{ev.sign_p:.2g}"
             + ("; every rerun ran in lane 0, pinned to one core at nice −10, development work "
                "beside it at low priority" if lane else "") + ".", "",
             f"Chosen leave one dataset out (× {m:g} when it got more images right than × 1 on "
             "the other datasets' paired reruns, ties to × 1), judged on the one left out "
             "(regret = the better of the two there − the chosen one, points):", "",
             "| left out | net images on the others | chosen | held-out regret | always × 1 |",
             "|---|---|---|---|---|"]
    lines += [f"| {f.held_out} | {f.net_on_others:+d} | × {f.chosen:g} | {f.regret:.1f} | "
              f"{f.regret_current:.1f} |" for f in ev.folds]
    lines += ["", f"Summed held-out regret {lodo:.1f} points chosen leave one dataset out, "
              f"{current:.1f} with always × 1. **Decision: {decision}** ({why}). The criterion "
              f"(written before session 7's reruns): × {m:g} replaces × 1 only when the pooled "
              f"paired test favours it at p < {ALPHA:g}, the leave-one-dataset-out choice lowers "
              "the summed held-out regret, and × M is significantly worse on no dataset."
              + _in_force(m), ""]
    notes = reproduction_notes(ev.rows, grid, m)
    if notes:
        lines += ["Reruns against their recorded cells (the same recipe, splits and seeds): "
                  + "; ".join(notes) + ".", ""]
    return lines


def rate_in_force(params: dict[str, Any] | None = None) -> float | None:
    """LR01's ratios in force (``params``, else read from recipes/rules.yaml) as a multiple of
    those the advised cells were advised under; None when the two ratios moved apart."""
    p = params if params is not None else store.rule_params("LR01")
    if "ratio" not in p or "ratio_far" not in p:
        return None
    m = p["ratio"] / CELL_RATIOS["ratio"]
    return round(m, 6) if math.isclose(m, p["ratio_far"] / CELL_RATIOS["ratio_far"],
                                       rel_tol=1e-6) else None


def rate_view(grid: list[dict[str, Any]], m: float | None) -> list[dict[str, Any]]:
    """The grid as the rule base in force advises it: where LR01's rates are × ``m`` of the
    cells' and a dataset has its ``advised-xm`` cell (the advised recipe, rates × m, same splits
    and schedule), that cell is the advised one and the recorded advised cell is kept as
    ``advised-x1``, a measured recipe that could have been chosen. Datasets whose advice does not
    fine-tune (no variant) are unchanged."""
    if m is None or math.isclose(m, 1.0):
        return grid
    variant = f"advised-x{m:g}"
    have = {c["dataset"] for c in grid if c["cell"] == variant}
    out = []
    for c in grid:
        if c["dataset"] in have and c["cell"] == "advised":
            out.append({**c, "cell": "advised-x1"})
        elif c["cell"] == variant:
            out.append({**c, "cell": "advised", "rate_in_force": m,
                        "advice_tag": f"{c.get('advice_of') or 'before'} with LR01 × {m:g}"})
        else:
            out.append(c)
    return out
