"""Which recipe a search keeps: the best trial, when it beats the advised recipe by more than chance.

The advised recipe (trial 0) is the prior. The best of many trials on a validation split of a
few dozen images is biased upwards (the maximum of noisy estimates), and a gain of one or two
images is what chance alone gives. So the best trial replaces the recipe only when, on the same
validation images, it is right on significantly more of those where the two disagree: a one-sided
exact McNemar test (a binomial test on the discordant images, McNemar 1947; Dietterich 1998 for
comparing classifiers) at rule TUNE01's ``alpha``. Without per-image results (a trial from an
older version, or another machine's folder) the best trial is kept, as the record says.

The same test says when a search cannot pay (:func:`futile`, rule TUNE02): a trial can gain at
most the validation images that trial 0 gets wrong, so when trial 0 misses so few that even
gaining all of them and losing none would not be significant, no trial can replace the recipe,
and ``auto`` stops the search after trial 0.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: the rules: the best trial kept only beyond chance, and the search stopped when it cannot be
KEEP, FUTILITY = "TUNE01", "TUNE02"


def keep_alpha() -> float:
    """One-sided significance level the best trial's gain over trial 0 must reach (TUNE01)."""
    from autotransfer.advisor.rules import rule_params

    return float(rule_params(KEEP)["alpha"])


def mcnemar(base_correct: Sequence[int], best_correct: Sequence[int]) -> dict[str, Any]:
    """Exact one-sided McNemar test that ``best`` is right more often than ``base``.

    ``gained``: images the best trial gets right and the base wrong; ``lost``: the reverse;
    ``p``: the probability of ``gained`` or more of the ``gained + lost`` discordant images under
    equal accuracy (1 when they never disagree).
    """
    from scipy.stats import binomtest

    if len(base_correct) != len(best_correct):
        raise ValueError(f"paired results need the same images: {len(base_correct)} and "
                         f"{len(best_correct)} results")
    gained = sum(1 for a, b in zip(base_correct, best_correct, strict=True) if b and not a)
    lost = sum(1 for a, b in zip(base_correct, best_correct, strict=True) if a and not b)
    n = gained + lost
    p = 1.0 if n == 0 else float(binomtest(gained, n, 0.5, alternative="greater").pvalue)
    return {"gained": gained, "lost": lost, "n_images": len(best_correct), "p": p}


def val_correct(trial_dir: Path) -> list[int] | None:
    """The per-image validation results a trial recorded (``trial_result.json``), if any."""
    path = trial_dir / "trial_result.json"
    if not path.is_file():
        return None
    value = json.loads(path.read_text(encoding="utf-8")).get("val_correct")
    return None if value is None else [int(v) for v in value]


def decide(base_correct: Sequence[int] | None, best_correct: Sequence[int] | None, *,
           alpha: float | None = None) -> dict[str, Any]:
    """Whether the best trial replaces trial 0: ``{"replace", "test", "why"}`` (rule TUNE01)."""
    alpha = keep_alpha() if alpha is None else alpha
    if base_correct is None or best_correct is None or len(base_correct) != len(best_correct):
        return {"rule": KEEP, "replace": True, "test": None, "alpha": alpha,
                "why": "no per-image validation results to test the gain: the best trial is kept"}
    test = mcnemar(base_correct, best_correct)
    replace = test["p"] <= alpha
    why = (f"on the {test['n_images']} validation images the best trial gets {test['gained']} "
           f"right that trial 0 gets wrong and {test['lost']} the reverse: exact McNemar p = "
           f"{test['p']:.3g} {'≤' if replace else '>'} {alpha:g}, "
           + ("a significant gain" if replace else
              "within chance, so the advised recipe is kept"))
    return {"rule": KEEP, "replace": replace, "test": test, "alpha": alpha, "why": why}


def futile(base_correct: Sequence[int] | None, *,
           alpha: float | None = None) -> dict[str, Any] | None:
    """Why no trial can replace trial 0, from its per-image validation results (``None``: one can).

    The most favourable outcome for a challenger is to be right on every image that trial 0 gets
    wrong and wrong on none that it gets right; with ``m`` such images its exact one-sided
    McNemar p-value is ``0.5 ** m``. When that exceeds ``alpha`` (``m`` ≤ 4 at 0.05), every
    trial's gain is within chance by construction.
    """
    if not base_correct:
        return None
    from autotransfer.advisor.rules import rule_text

    alpha = keep_alpha() if alpha is None else alpha
    best_case = mcnemar(base_correct, [1] * len(base_correct))
    if best_case["p"] <= alpha:
        return None
    evidence = {"misses": best_case["gained"], "n_images": best_case["n_images"],
                "p_best": best_case["p"], "alpha": alpha}
    return evidence | {"rule": FUTILITY, "why": rule_text(FUTILITY, evidence)}
