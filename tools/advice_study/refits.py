"""The rules refitted against the grid, leave one dataset out (FZ04, FZ01/FZ02, AUG, LR)."""

from __future__ import annotations

import math
from typing import Any

from advice_study import store
from advice_study.regret import mcnemar_p, paired_counts, regrets, significant, stratified_p
from advice_study.store import BEFORE


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
        lines += rate_evidence(cells)
    return lines


def rate_evidence(cells: list[dict[str, Any]]) -> list[str]:
    """The pooled tests of the advised recipe × M against × 1 (LR01/TUNE03's decision): a sign
    test over datasets, the pooled difference unpaired (conservative), and the pooled paired
    (McNemar) test where both cells kept per-image results, else the range it can take."""
    from scipy.stats import binomtest

    adv = {c["dataset"]: c for c in cells if c["cell"] == "advised"}
    rows = [(adv[v["dataset"]], v) for v in cells
            if v.get("advised_rate") is not None and v["dataset"] in adv]
    if not rows:
        return []
    nets = [round(v["n_test"] * (v["test_accuracy"] - a["test_accuracy"])) for a, v in rows]
    wins, losses = sum(n > 0 for n in nets), sum(n < 0 for n in nets)
    sign = float(binomtest(wins, wins + losses).pvalue) if wins + losses else 1.0
    unpaired = stratified_p([(a["test_accuracy"], v["test_accuracy"], v["n_test"])
                             for a, v in rows])
    paired = [(a, v) for a, v in rows if a.get("test_correct") and v.get("test_correct")]
    text = (f"Pooled evidence, × M against × 1 on {len(rows)} datasets: sign test over datasets "
            f"p = {sign:.2f} ({wins} higher, {losses} lower); pooled difference "
            f"{sum(nets):+d} images, unpaired (stratified by dataset, conservative) p = "
            f"{unpaired:.2f}. ")
    if len(paired) == len(rows):
        b = c = 0
        for a, v in paired:
            up, down = paired_counts(a["test_correct"], v["test_correct"])
            b, c = b + up, c + down
        text += f"Paired (exact McNemar, pooled): +{b} −{c}, p = {mcnemar_p(b, c):.3g}."
    else:
        least = sum(max(n, 0) for n in nets), sum(max(-n, 0) for n in nets)
        most_d = next((m for m in range(abs(sum(nets)), 2 * sum(v["n_test"] for _, v in rows))
                       if (m - abs(sum(nets))) % 2 == 0
                       and mcnemar_p((m + abs(sum(nets))) // 2,
                                     (m - abs(sum(nets))) // 2) > 0.05), None)
        text += ("The paired (McNemar) test needs per-image results, which "
                 f"{len(rows) - len(paired)} of these cell pairs did not keep (grid cells keep "
                 "them since session 6): it would give p = "
                 f"{mcnemar_p(*least):.2g} if the two recipes disagreed only on the net images "
                 f"(+{least[0]} −{least[1]}), and p > 0.05 once they disagree on "
                 f"{most_d} images or more"
                 + (f" ({100 * most_d / sum(v['n_test'] for _, v in rows):.1f}% of them)"
                    if most_d else "") + ".")
    return [text, ""]


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
    params = store.rule_params("FZ04")
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
