"""Rank the probed backbones under the user's constraints (rule BB01)."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict

from autotransfer.backbones.catalog import get_backbone
from autotransfer.errors import InvalidParameterError
from autotransfer.probes.models import BackboneProbe


class Candidate(BaseModel):
    """A probed backbone, its scores, and whether the constraints allow it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backbone: str
    rank: int
    logme: float
    linear_acc: float
    knn_acc: float
    params_m: float
    allowed: bool
    excluded_because: str = ""


def rank_candidates(
    probes: Sequence[BackboneProbe],
    *,
    max_params_m: float | None = None,
    allow: Sequence[str] | None = None,
    tie_margin: float = 0.02,
) -> list[Candidate]:
    """Candidates by decreasing LogME (within ``tie_margin``: by linear-probe accuracy); those the
    constraints exclude come last, with the reason."""
    by_logme = sorted(probes, key=lambda p: p.transferability.logme, reverse=True)
    rows = []
    for probe in by_logme:
        params_m = get_backbone(probe.backbone).params / 1e6
        reason = ""
        if allow is not None and probe.backbone not in allow:
            reason = f"not in the allowed list ({', '.join(allow)})"
        elif max_params_m is not None and params_m > max_params_m:
            reason = f"{params_m:.1f}M parameters > the limit of {max_params_m:g}M"
        rows.append((probe, params_m, reason))
    rows.sort(key=lambda r: bool(r[2]))  # stable: allowed first, each part still by LogME
    allowed = [r for r in rows if not r[2]]
    if allowed:  # a near-tie on LogME goes to the better linear probe
        best = allowed[0][0].transferability.logme
        tied = [r for r in allowed if r[0].transferability.logme >= best - tie_margin]
        winner = max(tied, key=lambda r: r[0].transferability.linear_probe_accuracy)
        rows.remove(winner)
        rows.insert(0, winner)
    candidates = [
        Candidate(backbone=p.backbone, rank=i + 1, logme=p.transferability.logme,
                  linear_acc=p.transferability.linear_probe_accuracy,
                  knn_acc=p.transferability.knn_accuracy, params_m=round(m, 3),
                  allowed=not reason, excluded_because=reason)
        for i, (p, m, reason) in enumerate(rows)
    ]  # fmt: skip
    if not any(c.allowed for c in candidates):
        listing = "; ".join(f"{c.backbone}: {c.excluded_because}" for c in candidates)
        raise InvalidParameterError(
            f"No probed backbone satisfies the constraints ({listing}). Relax --max-params or "
            "--backbones, or probe more backbones."
        )
    return candidates
