"""The gap to the target in the probe/advise report."""

from __future__ import annotations

from rich.console import Console

from autotransfer.probes.domain_gap import TargetEvaluation
from autotransfer.report.probe import render_probe
from tests.advisor.synthetic import probe, report
from tests.advisor.test_rules_target import _gap


def _text(probes) -> str:
    console = Console(record=True, width=160)
    render_probe(probes, console)
    return console.export_text()


def test_the_gap_is_shown_with_the_evaluation_marked_as_such():
    base = report(probe("mobilenet_v2", 0.5))
    assert "Gap to the target" not in _text(base)
    evaluation = TargetEvaluation(n_images=80, classes=["a", "b"], source_only_linear_accuracy=0.6)
    text = _text(base.model_copy(update={"domain_gap": _gap(1.2, 0.9, 0.15, evaluation)}))
    assert "Gap to the target /t (300 images" in text
    assert "proxy A-distance" in text and "1.20" in text and "stem 0.90" in text
    assert "evaluation only, no decision reads them" in text and "60.0% of 80" in text
