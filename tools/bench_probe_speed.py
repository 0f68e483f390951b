#!/usr/bin/env python3
"""Wall time of ``autotransfer probe`` (or ``advise``) as a user runs it: cold and warm cache.

    python tools/bench_probe_speed.py [--command probe|advise] [--dataset eurosat_rgb_3k]
                                      [--backbones a,b,c] [--repeats 2]
                                      [--precisions float32 auto]

``--precisions`` (``advise`` only: ``probe`` extracts float32 features whatever the precision):
one row per ``--precision`` value; ``auto`` times float32 and mixed_bfloat16 and keeps the faster
(rules PREC01/PREC02), so its row includes that measurement. Every row records the load average
(1 minute) before and after its runs: rerun a row whose load changed a lot.

Each run is a fresh process (Python start, TensorFlow import, profiling, decoding, extraction,
measurements), so the figures are what a user waits for. Appends to docs/benchmarks/probe_speed.md.
For ``probe``, each cold run also prints where its time went (its JSON report's own timings).
A warm run reads the features and the figures measured on them from the cache
(``AUTOTRANSFER_CACHE``, a fresh temporary folder per repeat) and imports no TensorFlow.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("AUTOTRANSFER_SHARED", REPO.parent / "shared"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--command", choices=["probe", "advise"], default="probe")
    parser.add_argument("--dataset", default="eurosat_rgb_3k")
    parser.add_argument("--backbones", default="mobilenet_v2,efficientnet_lite0,mobilenet_v3_small")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--precisions", nargs="+", default=[None],
                        choices=["float32", "bfloat16", "auto"],
                        help="advise only: one row per --precision value")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "probe_speed.md")
    args = parser.parse_args()

    env = dict(os.environ)
    if "KERAS_HOME" not in env and (SHARED / "weights").is_dir():
        home = Path(tempfile.mkdtemp(prefix="bench-keras-home-"))
        (home / "models").mkdir()
        for f in (SHARED / "weights").iterdir():
            (home / "models" / f.name).symlink_to(f.resolve())
        env["KERAS_HOME"] = str(home)
    exe = Path(sys.executable).parent / "autotransfer"
    base = [str(exe), args.command, str(SHARED / "datasets" / args.dataset), "--backbones",
            args.backbones, "--json"]
    if args.command == "advise":
        base += ["--out", str(Path(tempfile.mkdtemp()) / "recipe.yaml")]
    lines = []
    for precision in args.precisions:
        command = base + (["--precision", precision] if precision and args.command == "advise"
                          else [])
        load_before = os.getloadavg()[0]
        cold, warm = [], []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as cache:
                env["AUTOTRANSFER_CACHE"] = cache
                for bucket in (cold, warm):
                    started = time.perf_counter()
                    done = subprocess.run(command, env=env, capture_output=True, text=True)
                    if done.returncode != 0:
                        sys.exit(f"{' '.join(command)} exited {done.returncode}:\n"
                                 + done.stderr[-4000:])
                    bucket.append(time.perf_counter() - started)
                    if bucket is cold:
                        print(f"  cold run: {breakdown(done.stdout)}", flush=True)
        machine = (f"{platform.machine()}, {os.cpu_count()} cores, Python "
                   f"{platform.python_version()}, load {load_before:.1f} → "
                   f"{os.getloadavg()[0]:.1f}")
        what = args.command + (f" --precision {precision}" if precision else "")
        lines.append(f"| {time.strftime('%Y-%m-%d %H:%M')} | {what} | {args.dataset} | "
                     f"{args.backbones} | {statistics.median(cold):.1f} | "
                     f"{statistics.median(warm):.1f} | {machine} |")
        print(f"{what}: cold {[round(c, 1) for c in cold]} s, warm {[round(w, 1) for w in warm]} s")
    if not args.out.exists():
        header = ("# `autotransfer probe` / `advise` wall time (fresh process each run, default sample)\n\n"
                  "`python tools/bench_probe_speed.py --command probe|advise`; median of the repeats; "
                  "cold = empty feature cache.\n\n"
                  "| when (UTC) | command | dataset | backbones | cold s | warm s | machine |\n"
                  "|---|---|---|---|---:|---:|---|\n")
        args.out.write_text(header)
    with args.out.open("a") as handle:
        handle.write("".join(line + "\n" for line in lines))
    print("\n".join(lines))


def breakdown(stdout: str) -> str:
    """Where a cold ``probe --json`` run's time went (its report's own timings), or ``""``."""
    import json

    try:
        report = json.loads(stdout)
    except ValueError:
        return ""
    if not isinstance(report, dict) or "probes" not in report or "elapsed_s" not in report:
        return ""  # advise's JSON: the wall time alone
    parts = [f"{p['backbone']} extract {p['extract_s']:.1f} s + figures {p['measure_s']:.1f} s"
             for p in report["probes"]]
    return (f"probe_dataset {report['elapsed_s']:.1f} s (decoding {report['decode_s']:.1f} s, in "
            "the background): " + ", ".join(parts))


if __name__ == "__main__":
    main()
