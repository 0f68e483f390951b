"""auto's plan: how the budget is shared, whether a search runs, where the final model trains.

Declared policy in ``recipes/rules.yaml`` (docs/rules.md): PLAN01 (the shares of the budget),
PLAN02 and PLAN03 (no search), PLAN04 (the final training's data). The numbers are the rules'
params and the sentences their text; this module only applies them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autotransfer.advisor.rules import rule_params, rule_text
from autotransfer.recipe.schema import N_GROUPS, Recipe

SHARES, BINDS, BELOW_FLOOR, FINAL_DATA = "PLAN01", "PLAN02", "PLAN03", "PLAN04"
FINAL_MODES = ("auto", "train+val", "train")


@dataclass(frozen=True)
class Shares:
    """Rule PLAN01's params: the search's share, the final training's factor, the wrap-up."""

    search_share: float
    final_factor: float
    wrap_up_s: float

    @classmethod
    def from_rules(cls) -> Shares:
        p = rule_params(SHARES)
        return cls(float(p["search_share"]), float(p["final_factor"]), float(p["wrap_up_s"]))

    def reserve_factor(self, mode: str, n_train: int, n_val: int) -> float:
        """The final training's time over one trial's: on train + validation it sees more."""
        return self.final_factor * final_growth(mode, n_train, n_val)

    def trial_share(self, remaining: float, factor: float) -> float:
        """Seconds one training of the advised recipe gets: trial 0, the final one, a search."""
        return remaining / (1.0 + factor + self.search_share)


@dataclass(frozen=True)
class SearchPlan:
    """The advice to train, and why no search runs (``None``: a search runs)."""

    advice: Any
    skipped: str | None
    rule: str | None


def final_growth(mode: str, n_train: int, n_val: int) -> float:
    """The final training's images over a trial's: (train + validation) / train on train +
    validation, else 1 (the same images, whose frozen features the search's store keeps)."""
    return (n_train + n_val) / max(1, n_train) if mode == "train+val" else 1.0


def final_mode(final: str, has_test: bool) -> str:
    """PLAN04: ``"auto"`` trains the final model on train + validation only with a test split."""
    if final != "auto":
        return final
    return "train+val" if has_test else "train"


def _fine_tuning_epochs(recipe: Recipe) -> int:
    return sum(p.epochs for p in recipe.phases if p.trainable_from < N_GROUPS)


def search_skipped(split: Recipe, whole: Recipe, trials: int,
                   doubled: Callable[[], Recipe] | None = None) -> str | None:
    """Why ``auto`` should not search (rule PLAN02; ``None``: it should).

    ``split`` is the advised recipe sized to one share of the budget (PLAN01), ``whole`` the same
    advice sized to the whole budget, ``doubled()`` (when given) to twice the whole budget. When
    the budget binds a fine-tuning schedule — BUD01 shortened it, or BUD02 dropped fine-tuning,
    to fit a share, and twice the budget would lengthen the whole budget's recipe too — every
    trial of the search comes out of the final model's training, and a search of one or two
    trials beyond trial 0 cannot tell a better recipe from chance. The whole budget then goes to
    the advised recipe. When twice the budget would not lengthen it (BUD04's cap or the
    schedule's own length bounds it), the search takes nothing the final model could use.
    """
    if trials <= 1:
        return None  # the caller asked for trial 0 only: tune() runs it
    fine_tunes = any(p.trainable_from < N_GROUPS for p in whole.phases)
    if not fine_tunes or split.total_epochs >= whole.total_epochs:
        return None
    if doubled is not None and doubled().total_epochs <= whole.total_epochs:
        return None  # the whole budget does not bind the recipe: its spare time would go unused
    return rule_text(BINDS, {"shorter": _fine_tuning_epochs(split),
                             "longer": _fine_tuning_epochs(whole)})


def below_floor(advice: Any, floor_rule: str) -> str | None:
    """Rule PLAN03: why no search when the share fired the budget floor (``floor_rule``)."""
    if any(f.rule == floor_rule for f in advice.firings):
        return rule_text(BELOW_FLOOR, {})
    return None


def plan_search(sized: Callable[[float], Any], remaining: float, factor: float, trials: int,
                shares: Shares, floor_rule: str) -> SearchPlan:
    """The advice sized to its share of ``remaining`` seconds (PLAN01), or to all of it when no
    search should run (PLAN02, PLAN03). ``sized(seconds)`` advises for a budget of one training.
    """
    whole = sized(max(1.0, remaining - shares.wrap_up_s))
    advice = sized(shares.trial_share(remaining, factor))
    why = search_skipped(advice.recipe, whole.recipe, trials,
                         doubled=lambda: sized(2.0 * max(1.0, remaining - shares.wrap_up_s)).recipe)
    rule = BINDS if why else None
    if not why:
        why = below_floor(advice, floor_rule)
        rule = BELOW_FLOOR if why else None
    return SearchPlan(whole, why, rule) if why else SearchPlan(advice, None, None)
