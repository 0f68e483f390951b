#!/usr/bin/env python3
"""Write docs/rules.md from the rule base (recipes/rules.yaml) and the presets.

    python tools/make_rules_doc.py            # rewrite docs/rules.md
    python tools/make_rules_doc.py --check    # exit 1 if docs/rules.md is out of date
"""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from autotransfer.advisor.decisions import DECISIONS  # noqa: E402
from autotransfer.advisor.facts import FACTS  # noqa: E402
from autotransfer.advisor.presets import load_preset, preset_names  # noqa: E402
from autotransfer.advisor.rules import Rule, load_rules  # noqa: E402

TARGET = REPO / "docs" / "rules.md"
#: what a rule of a kind without ``set`` decides, and when (for the table)
KIND_SETS = {"rank": "ranking", "select": "the final model"}
KIND_WHEN = {"rank": "ranking", "select": "after training (auto)", "plan": "see *When*"}
#: where a rule of kind *plan* applies, from its group (the advisor does not evaluate it)
PLAN_PLACES = {"plan": "auto's plan", "search": "the search", "final": "auto's final training",
               "training": "the trainer (train, auto's final training)",
               "domain": "auto's adaptation to a target, or the search"}
#: the place of a *plan* rule whose group is not in PLAN_PLACES
PLAN_ELSEWHERE = "auto or the search"


def place(rule: Rule) -> str:
    """What a rule without ``set`` decides, or where it applies (the table's *sets* column)."""
    if rule.kind == "plan":
        return PLAN_PLACES.get(rule.group, PLAN_ELSEWHERE)
    return KIND_SETS.get(rule.kind, "warning")


def readers(rules: list[Rule]) -> str:
    """Where the rules the advisor does not evaluate apply, with their ids, in the rule base's
    order: "the final model: SEL02, ES01; …; auto's plan: PLAN01–PLAN04; …"."""
    places: dict[str, list[str]] = {}
    for r in rules:
        if r.kind in ("select", "plan") and not r.set:
            places.setdefault(place(r), []).append(r.id)
    return "; ".join(f"{where}: {id_ranges(ids)}" for where, ids in places.items())


def id_ranges(ids: list[str]) -> str:
    """``PLAN01, PLAN02, PLAN03`` as ``PLAN01–PLAN03``; ids of other series apart."""
    runs: list[list[str]] = []
    for rule_id in ids:
        series, number = re.fullmatch(r"(\D+)(\d+)", rule_id).groups()
        last = runs[-1][-1] if runs else ""
        match = re.fullmatch(r"(\D+)(\d+)", last) if last else None
        if match and match.group(1) == series and int(match.group(2)) + 1 == int(number):
            runs[-1].append(rule_id)
        else:
            runs.append([rule_id])
    return ", ".join(r[0] if len(r) == 1 else f"{r[0]}–{r[-1]}" for r in runs)


def render() -> str:
    rules = load_rules().rules
    lines = [
        "# The advisor's rule base",
        "",
        "Generated from `recipes/rules.yaml` by `python tools/make_rules_doc.py`; do not edit by hand.",
        "",
        "The advisor starts from a preset's decisions, ranks the probed backbones (BB01), then runs",
        "the rules below in order. Each rule reads facts measured on the data and earlier decisions;",
        "its thresholds are its parameters. The recipe records, for every field, the last rule that",
        *textwrap.wrap(
            "set it, the values it read and its thresholds. Rules of kind *select* and *plan* are "
            "not evaluated by the advisor: the code where they apply (the *sets* column) reads "
            f"their parameters and text ({readers(rules)}), and the recipes, `tuning.json` and "
            "`summary.json` it writes name them.", width=95),
        "",
        "| id | name | group | when | sets | thresholds |",
        "|---|---|---|---|---|---|",
    ]
    for r in rules:
        sets = ", ".join(f"`{k}`" for k in r.set) or place(r)
        params = ", ".join(f"{k}={v}" for k, v in r.params.items()) or "-"
        condition = KIND_WHEN.get(r.kind, f"`{r.when}`")
        lines.append(f"| {r.id} | {r.name} | {r.group} | {condition} | {sets} | {params} |")
    lines += ["", "## Rules", ""]
    for r in rules:
        lines += [f"### {r.id} {r.name}", "", f"*When:* {r.doc.when}", "", f"*Why:* {r.doc.why}", ""]
        if r.kind in ("select", "plan"):
            lines += [f"*Says:* {' '.join(r.text.split())}", ""]
        for key, expression in r.set.items():
            lines.append(f"- `{key}` ← `{' '.join(expression.split())}`")
        if r.set:
            lines.append("")
    lines += ["## Facts rules can read", "", "| fact | meaning |", "|---|---|"]
    lines += [f"| `{k}` | {v} |" for k, v in FACTS.items()]
    lines += ["", "## Decisions rules can set", "", "| decision | meaning | recipe fields |", "|---|---|---|"]
    lines += [f"| `{k}` | {meaning} | {', '.join(f'`{p}`' for p in paths) or '-'} |"
              for k, (_, paths, meaning) in DECISIONS.items()]
    lines += ["", "## Presets", ""]
    for name in preset_names():
        preset = load_preset(name)
        lines += [f"- **{name}**: {' '.join(preset.description.split())}"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = render()
    if args.check:
        sys.exit(0 if TARGET.exists() and TARGET.read_text() == text else 1)
    TARGET.write_text(text)
    print(f"Wrote {TARGET}")


if __name__ == "__main__":
    main()
