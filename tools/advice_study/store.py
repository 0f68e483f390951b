"""The results file (docs/benchmarks/advice.json), the work folder and the rule base read."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


REPO = Path(__file__).resolve().parent.parent.parent

SHARED = Path(os.environ.get("AUTOTRANSFER_SHARED", REPO.parent / "shared"))
WORK = Path(os.environ.get("BENCH_ADVICE_WORK",
                           Path.home() / ".cache" / "autotransfer-bench-advice"))
OUT = REPO / "docs" / "benchmarks" / "advice"
#: cheapest first (images × pixels)
DATASETS = ("brain_mri", "hymenoptera", "clothing_small_lite", "animal_silhouette_28",
            "eurosat_rgb_3k", "chest_xray_224", "omniglot_scripts", "flowers5_small")
HELD_OUT_FRACTION = 0.2  # of a dataset without a split


# ----------------------------------------------------------------------------- results file
def load() -> dict[str, Any]:
    path = OUT.with_suffix(".json")
    data = json.loads(path.read_text()) if path.is_file() else {}
    for part in ("ranking", "grid", "paired", "forecast"):
        data.setdefault(part, [] if part != "forecast" else {})
    return data


def save(data: dict[str, Any]) -> None:
    from advice_study import report
    from autotransfer._io import atomic_write_json, atomic_write_text

    OUT.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(OUT.with_suffix(".json"), data)
    try:  # the JSON is the record; a rendering that fails (e.g. a rule file mid-edit by
        # someone else) must not stop a run: --render-only writes the Markdown again
        text = report.markdown(data)
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
#: the advised cell measured under an earlier rule base, kept beside the advised cell of the rule
#: base in force when that one is re-advised (``--readvise``; issue 18: LR05's floor)
BEFORE = "advised_before"


def rules_sha() -> str:
    """The rule base a re-advised cell used: the first 12 hex digits of recipes/rules.yaml's
    SHA-256 (the file is also in the repository's history)."""
    import hashlib

    return hashlib.sha256((REPO / "recipes" / "rules.yaml").read_bytes()).hexdigest()[:12]


def by_dataset(cells: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    by: dict[str, list[dict[str, Any]]] = {}
    for c in cells:
        by.setdefault(c["dataset"], []).append(c)
    return by
