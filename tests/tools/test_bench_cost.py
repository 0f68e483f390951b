"""tools/bench_cost.py's leave-one-dataset-out check of a constant factor (synthetic rows)."""

from __future__ import annotations

import pytest

from tests.tools.load import load_tool


def _rows(*pairs):
    return {f"d{i}": {"step_ms": 1.0, "estimate_s": e, "measured_s": m}
            for i, (e, m) in enumerate(pairs)}


def test_each_dataset_is_judged_by_a_factor_fitted_on_the_others():
    bench = load_tool("bench_cost")
    results = [{"dataset": "a", "rows": _rows((10.0, 12.0), (10.0, 14.0))},
               {"dataset": "b", "rows": _rows((10.0, 10.0))},
               {"dataset": "c", "rows": _rows((10.0, 20.0))}]
    got = {(r["dataset"], r["depth"]): r for r in bench.leave_one_out(results)}
    assert got[("b", "d0")]["factor"] == pytest.approx(1.4)  # the median of 1.2, 1.4, 2.0
    assert got[("b", "d0")]["calibrated"] == pytest.approx(1.0 / 1.4, abs=1e-3)
    assert got[("a", "d0")]["factor"] == pytest.approx(1.5)  # of 1.0 and 2.0
    lines = bench.leave_one_out_lines(results)
    assert lines[-1] == ("Within ±20 % (0.83–1.20): 2 of 4 rows as estimated, 1 of 4 with the "
                         "held-out factor.")
