"""The rule engine: rules are data (``recipes/rules.yaml``), evaluated in order over the facts.

A rule has a stable id, a name, a group, documentation (when it applies and why), thresholds in
``params``, a ``when`` condition and ``set`` expressions over facts, earlier decisions and its
params (a safe expression language: arithmetic, comparisons, ``and``/``or``/``not``,
``x if c else y``, and the functions in :data:`FUNCTIONS`); a rule's ``set`` expressions are
evaluated in order, so a later one reads what an earlier one set. A rule of kind ``warn`` only adds
a warning. Every firing is recorded with the values the rule read (its evidence) and a sentence.
"""

from __future__ import annotations

import ast
import math
import os
from collections.abc import Mapping
import functools
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from simpleeval import EvalWithCompoundTypes, NameNotDefined

from autotransfer.advisor.cost import epoch_estimate, epoch_seconds, forward_seconds
from autotransfer.advisor.decisions import DECISIONS, coerce
from autotransfer.advisor.facts import FACTS
from autotransfer.errors import InvalidConfigError

FUNCTIONS = {
    "min": min, "max": max, "abs": abs, "round": round, "int": int, "float": float,
    "log2": math.log2, "log10": math.log10, "sqrt": math.sqrt, "isnan": math.isnan,
    "clamp": lambda x, lo, hi: max(lo, min(hi, x)),
    "ceil_pow2": lambda x: 2 ** math.ceil(math.log2(max(1.0, x))),
    "floor_pow2": lambda x: 2 ** math.floor(math.log2(max(1.0, x))),
    "forward_seconds": forward_seconds, "epoch_seconds": epoch_seconds,
    "epoch_estimate": epoch_estimate,
}  # fmt: skip


class RuleDoc(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    when: str = Field(min_length=5, description="When the rule applies.")
    why: str = Field(min_length=20, description="The practice and its reference.")


class Rule(BaseModel):
    """One rule of the rule base."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Z]{2,5}\d{2}$")
    name: str = Field(pattern=r"^[a-z][a-z0-9-]+$")
    group: Literal["backbone", "resolution", "freezing", "unfreezing", "learning-rate",
                   "schedule", "augmentation", "domain", "imbalance", "data-quality",
                   "regularization", "batchnorm", "precision", "selection", "plan", "search",
                   "final", "training"]
    #: "select": a decision ``auto`` takes after training; "plan": one ``auto`` or the search
    #: takes (budget shares, search ranges, the final recipe). Their params and text are read
    #: there (:func:`rule_params`, :func:`rule_text`); the advisor does not evaluate them
    kind: Literal["set", "warn", "rank", "select", "plan"] = "set"
    doc: RuleDoc
    params: dict[str, float | int | str | bool] = Field(default_factory=dict)
    when: str = "True"
    set: dict[str, str] = Field(default_factory=dict)
    text: str = Field(min_length=10, description="Explanation; {name} fields are formatted.")

    @model_validator(mode="after")
    def _well_formed(self) -> Rule:
        if self.kind == "set" and not self.set:
            raise ValueError("a rule of kind 'set' needs a 'set' mapping")
        unknown = set(self.set) - set(DECISIONS)
        if unknown:
            raise ValueError(f"sets unknown decision(s) {sorted(unknown)}; known: {sorted(DECISIONS)}")
        allowed = set(FACTS) | set(DECISIONS) | set(self.params) | set(FUNCTIONS) | {"True", "False"}
        for where, expression in [("when", self.when), *((f"set.{k}", v) for k, v in self.set.items())]:
            try:
                names = _names(expression)
            except SyntaxError as exc:
                raise ValueError(f"{where}: invalid expression {expression!r}: {exc.msg}") from None
            missing = names - allowed
            if missing:
                raise ValueError(f"{where}: unknown name(s) {sorted(missing)} in {expression!r}")
        return self

    def explain(self, values: Mapping[str, Any]) -> str:
        """The rule's text with ``{name}`` fields from its params and ``values``."""
        return _format(self, {**self.params, **values})

    @cached_property
    def reads(self) -> list[str]:
        """Facts and decisions the rule reads, in a stable order (its evidence)."""
        names: set[str] = set()
        for expression in [self.when, *self.set.values()]:
            names |= _names(expression)
        return sorted(n for n in names if n in FACTS or n in DECISIONS)


def _names(expression: str) -> set[str]:
    return {node.id for node in ast.walk(ast.parse(expression, mode="eval")) if isinstance(node, ast.Name)}


class Firing(BaseModel):
    """One rule that fired: what it set, on what evidence, and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rule: str
    name: str
    group: str
    kind: str
    set: dict[str, Any]
    evidence: dict[str, Any]
    thresholds: dict[str, Any]
    text: str


class RuleBase(BaseModel):
    """The ordered rules of ``recipes/rules.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1] = 1
    rules: list[Rule]

    @model_validator(mode="after")
    def _unique_ids(self) -> RuleBase:
        ids = [r.id for r in self.rules]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate rule ids: {dupes}")
        return self

    def get(self, rule_id: str) -> Rule:
        from autotransfer.errors import unknown_name

        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise unknown_name("rule", rule_id, [r.id for r in self.rules])

    def evaluate(
        self,
        facts: Mapping[str, Any],
        decisions: dict[str, Any],
        *,
        only: set[str] | None = None,
    ) -> tuple[dict[str, Any], list[Firing]]:
        """Apply the rules in order; returns the final decisions and every firing."""
        decisions = dict(decisions)
        firings: list[Firing] = []
        for rule in self.rules:
            if rule.kind in ("rank", "select", "plan") or (only is not None and rule.id not in only):
                continue
            names = {**facts, **decisions, **rule.params}
            if not _truthy(_eval(rule, rule.when, names)):
                continue
            # in order: an expression may read what the rule's earlier expressions set
            updates: dict[str, Any] = {}
            read: dict[str, Any] = {}
            for key, expr in rule.set.items():
                env = {**names, **updates}
                read.update({n: env[n] for n in _names(expr) if n in env and n not in read})
                updates[key] = coerce(key, _eval(rule, expr, env))
            read.update({n: names[n] for n in _names(rule.when) if n in names and n not in read})
            decisions.update(updates)
            shown = {**names, **updates}
            evidence = {n: _plain(read.get(n, names.get(n))) for n in rule.reads if n in names}
            firings.append(Firing(
                rule=rule.id, name=rule.name, group=rule.group, kind=rule.kind, set=updates,
                evidence=evidence, thresholds=dict(rule.params), text=_format(rule, shown),
            ))  # fmt: skip
        return decisions, firings


def _truthy(value: Any) -> bool:
    return bool(value) and not (isinstance(value, float) and math.isnan(value))


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 6)
    return value


def _eval(rule: Rule, expression: str, names: Mapping[str, Any]) -> Any:
    evaluator = EvalWithCompoundTypes(names=dict(names), functions=FUNCTIONS)
    try:
        return evaluator.eval(expression)
    except NameNotDefined as exc:
        raise InvalidConfigError(f"Rule {rule.id} ({rule.name}) reads '{exc.name}', which has no value.") from None
    except Exception as exc:
        raise InvalidConfigError(
            f"Rule {rule.id} ({rule.name}) failed on {expression!r}: {type(exc).__name__}: {exc}"
        ) from None


class _Format(dict):  # type: ignore[type-arg]
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _format(rule: Rule, names: Mapping[str, Any]) -> str:
    shown = {k: ("unknown" if isinstance(v, float) and math.isnan(v) else v) for k, v in names.items()}
    try:
        return rule.text.format_map(_Format(shown))
    except (ValueError, TypeError):  # a numeric format on 'unknown'
        return rule.text.format_map(_Format({k: v for k, v in names.items()}))


def rule_params(rule_id: str) -> dict[str, Any]:
    """The parameters of rule ``rule_id``, for a decision taken outside the advisor."""
    return dict(_current_rules().get(rule_id).params)


def rule_text(rule_id: str, values: Mapping[str, Any]) -> str:
    """Rule ``rule_id``'s sentence with ``{name}`` fields from its params and ``values``."""
    return _current_rules().get(rule_id).explain(values)


def _current_rules() -> RuleBase:
    """The default rule base, parsed once per version of the file (not at every decision)."""
    file = recipes_dir() / "rules.yaml"
    try:
        stat = file.stat()
    except OSError:
        return load_rules(file)  # load_rules names the missing file
    return _parsed_rules(str(file), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _parsed_rules(file: str, mtime_ns: int, size: int) -> RuleBase:
    return load_rules(file)


def recipes_dir() -> Path:
    """``$AUTOTRANSFER_RECIPES`` or the ``recipes/`` folder shipped with the package."""
    explicit = os.environ.get("AUTOTRANSFER_RECIPES")
    if explicit:
        return Path(explicit)
    packaged = Path(__file__).resolve().parent.parent / "recipes_data"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "recipes"


def load_rules(path: str | os.PathLike[str] | None = None) -> RuleBase:
    """Load and validate the rule base; errors name the file, the rule and the key."""
    from autotransfer.recipe.io import read_data_file, validate

    file = Path(path) if path is not None else recipes_dir() / "rules.yaml"
    data = read_data_file(file)
    if isinstance(data, dict) and isinstance(data.get("rules"), list):
        # validate rule by rule so that errors name the rule, not only its position
        data = {**data, "rules": [
            validate(Rule, raw, f"{file}: rule {raw.get('id', f'#{i}') if isinstance(raw, dict) else f'#{i}'}")
            for i, raw in enumerate(data["rules"])
        ]}  # fmt: skip
    return validate(RuleBase, data, str(file))
