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
  leave-one-dataset-out error, every choice among models nested inside (made without the dataset
  judged), which sets the stated intervals (see ``autotransfer/advisor/forecast.py``).
- **rescore**: adds scores to the ranking cells from the probe's cached sample features (no
  extraction, no training; SFDA so far).
- **truth**: adds a less noisy truth to the ranking cells — the exact linear probe's
  cross-validated accuracy over the capped split's labelled images (all of them, or those the
  probe did not sample) — from the stored features (no extraction); reported beside the
  held-out truth, which stays the issue's figure.

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
    python tools/bench_advice.py --part grid --max-train 800 --max-test 400
        --datasets brain_mri --advised-rate 3 --paired --cells paired-x3   # per-image results
    python tools/bench_advice.py --part rescore      # new scores from cached sample features
    python tools/bench_advice.py --part truth        # cross-validated truths, stored features
    python tools/bench_advice.py --part forecast     # refit recipes/forecast.yaml
    python tools/bench_advice.py --render-only

The study's code is the package ``tools/advice_study/`` (one concept per module: results file,
layouts, ranking, truth, cells, grid, regret, length, refits, forecast, report); this script is
its command line.

The grid's advice is computed once per dataset and kept under the work folder (advice/), so a
chunk stopped by a time limit resumes around the same centre: its interrupted cell continues from
its last epoch's checkpoint and its seconds so far are added.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _shared_weights import use_shared_weights  # noqa: E402

from advice_study import (  # noqa: E402, F401 (every module: what scripts and tests reach)
    cells, forecast, grid, layouts, length, paired, ranking, refits, regret, report, store,
    truth)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("ranking", "grid", "forecast", "rescore", "truth"),
                        default="ranking")
    parser.add_argument("--datasets", nargs="+", default=list(store.DATASETS))
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
                             "shallower deeper); with --paired: paired-x1 or paired-xM, one "
                             "rerun per process")
    parser.add_argument("--readvise", default=None, metavar="TAG",
                        help="grid: run only the advised cell, advised by the rule base in force "
                             "(its advice kept under TAG); the dataset's earlier advised cell is "
                             f"kept as '{store.BEFORE}', and the grid's centre stays the kept "
                             "advice")
    parser.add_argument("--advised-rate", type=float, default=None, metavar="M",
                        help="grid: run only the advised recipe kept under --advice-tag with "
                             "every fine-tuning rate × M, as cell advised-xM")
    parser.add_argument("--paired", action="store_true",
                        help="grid, with --advised-rate: run the kept advised recipe at × 1 and "
                             "× M again (cells paired-x1, paired-xM, kept apart from the grid "
                             "under 'paired'), each with its per-image results, for a paired test")
    parser.add_argument("--advice-tag", default="lr05",
                        help="the kept re-advice --advised-rate starts from")
    parser.add_argument("--truth-seconds", type=float, default=None,
                        help="truth: start no new cell after this many seconds (resumable)")
    parser.add_argument("--render-only", action="store_true")
    args = parser.parse_args()
    if args.render_only:
        import fcntl

        store.WORK.mkdir(parents=True, exist_ok=True)
        with open(store.WORK / "advice.lock", "w") as lock:  # the grid may be appending meanwhile
            fcntl.flock(lock, fcntl.LOCK_EX)
            store.save(store.load())
        return
    use_shared_weights()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    {"ranking": ranking.run_ranking, "grid": grid.run_grid, "forecast": forecast.run_forecast,
     "rescore": ranking.run_rescore, "truth": truth.run_truth}[args.part](args)


if __name__ == "__main__":
    main()
