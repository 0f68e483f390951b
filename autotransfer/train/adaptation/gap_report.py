"""The source-target gap before and after adaptation, as one Markdown table (issue 19).

``train``'s report (:mod:`autotransfer.train.report`) and ``auto``'s
(:func:`autotransfer.oneshot.adapt.markdown`) render the gap here, so both read alike. A gap is a
mapping with ``a_distance`` (``None``: not measurable) and ``class_tv``, as
:class:`~.trained_gap.TrainedGap` writes it and the advisor's probe measures it. Pure: no
TensorFlow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

#: the row of the advisor's gap (frozen backbone features), in both reports
BEFORE = "before (advisor, frozen backbone)"
#: the recipe field whose reason carries the advisor's gap (rules DA05-DA08 read it)
METHOD_KEY = "domain_adaptation.method"

NOTE = ("Proxy A-distance 2(1 − 2ε) of a cross-validated domain classifier (0: the domains look "
        "alike, 2: disjoint); TV: total variation between the predicted-class histograms on "
        "source and target. The trained models are measured on their penultimate features, "
        "source validation split against the target images.")


def gap_table(rows: Sequence[tuple[str, Mapping[str, Any] | None]]) -> list[str]:
    """The table of the gaps in ``rows`` (label, gap), those that are ``None`` left out, and what
    the two measures mean; ``[]`` when no gap is known."""
    known = [(name, gap) for name, gap in rows if gap is not None]
    if not known:
        return []
    out = ["| gap | proxy A-distance | predicted classes move (TV) |", "|---|---|---|"]
    for name, gap in known:
        a = gap.get("a_distance")
        out.append(f"| {name} | {'–' if a is None else f'{a:.3f}'} | {gap['class_tv']:.3f} |")
    return out + ["", NOTE]


def advised_gap(recipe: Any) -> dict[str, Any] | None:
    """The gap the advisor measured for ``recipe`` (frozen backbone, probe samples), from the
    evidence of the rule that chose its adaptation method; ``None`` when the recipe does not carry
    it (written by hand, advised without a target, or DA04 declined to adapt)."""
    reason = recipe.reasons.get(METHOD_KEY)
    evidence = reason.evidence if reason is not None else {}
    a, tv = evidence.get("gap_a"), evidence.get("class_shift")
    if not isinstance(tv, (int, float)) or tv != tv:  # NaN: not measured
        return None
    return {"a_distance": a if isinstance(a, (int, float)) and a == a else None,
            "class_tv": float(tv), "rule": reason.rule,
            "measured_on": "frozen backbone features, the advisor's source probe sample against "
                           "a target sample (the evidence of the recipe's "
                           f"'{METHOD_KEY}' reason)"}
