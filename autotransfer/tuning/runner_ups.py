"""The runner-up backbones a search may try (rule TUNE10): the probed backbones rule BB01 ranked
below the advised one and did not exclude, read from the recipe's BB01 reason (pure: no
TensorFlow)."""

from __future__ import annotations

import re

from autotransfer.recipe.schema import Reason, Recipe

__all__ = ["excluded_backbones", "runner_up_backbones"]


def runner_up_backbones(recipe: Recipe, limit: int = 2) -> list[str]:
    """Runner-up backbones in the recipe's ``BB01`` evidence (``logme[<name>]``), best first,
    without those it excluded (:func:`excluded_backbones`); none where that cannot be known."""
    reason = recipe.reasons.get("backbone.name")
    if reason is None:
        return []
    excluded = excluded_backbones(reason)
    if excluded is None:
        return []
    ranked = sorted(_logme(reason).items(), key=lambda item: -item[1])
    others = [n for n, _ in ranked if n != recipe.backbone.name and n not in excluded]
    return others[:limit]


def _logme(reason: Reason) -> dict[str, float]:
    return {k[len("logme["):-1]: float(v) for k, v in reason.evidence.items()
            if k.startswith("logme[") and k.endswith("]") and isinstance(v, (int, float))}


#: where the text of an older BB01 reason lists what the constraints excluded
_EXCLUDED_TEXT = "excluded:"


def excluded_backbones(reason: Reason) -> set[str] | None:
    """The probed backbones that rule BB01 excluded (the user's ``--backbones`` /
    ``--max-params``), read from its reason; ``None`` where the reason cannot tell.

    A reason written since BB01's text comes from the rule base (it records the rule's
    ``thresholds``) names each one in its evidence, ``excluded[<name>]``. An older recipe's
    reason has no such evidence, but its text has always listed them, ``...; excluded: <name>
    (<why>), <name> (<why>).``, and said nothing of exclusions when there were none: the names
    are read from that list, matched exactly against the probed ones (``logme[<name>]``; a name
    inside a why, such as an allowed list, does not count). A list that names no probed backbone
    (the text was edited) cannot tell: the tuner then offers no runner-up (a backbone the user
    ruled out is never trained behind their back)."""
    keys = {k[len("excluded["):-1] for k in reason.evidence
            if k.startswith("excluded[") and k.endswith("]")}
    if keys or reason.thresholds:
        return keys
    at = reason.text.rfind(_EXCLUDED_TEXT)
    if at < 0:
        return set()
    listed = reason.text[at + len(_EXCLUDED_TEXT):].strip()
    if listed.rstrip(".").strip() == "none":
        return set()
    names = {n for n in _logme(reason)
             if re.search(rf"(?:^|,\s*){re.escape(n)} \(", listed)}
    return names or None
