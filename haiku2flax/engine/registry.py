"""Every rule id, what it converts and how far: the source of `haiku2flax rules` and docs/rules.md.

A rule family registers its ids where it defines them (`RULE_DROPOUT = register(...)`), and its module
docstring is its documentation (what it converts, why, an example), so the docs cannot drift from code.
Table-driven constructs (`rules/*.toml`) are listed by `haiku2flax rules` from the tables themselves.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from enum import StrEnum


class Status(StrEnum):
    CONVERTED = "converted"
    PARTIAL = "partial"
    NOT_CONVERTED = "not converted"  # a TODO rule: says why, and what to do by hand


@dataclass(frozen=True)
class Rule:
    id: str
    name: str
    status: Status
    summary: str
    module: str  # the module documenting it
    apis: tuple[str, ...] = ()  # the Haiku APIs it handles (`haiku2flax rules`, the coverage test)

    @property
    def doc(self) -> str:
        module = sys.modules.get(self.module)
        return (module.__doc__ or "").strip() if module is not None else ""


RULES: dict[str, Rule] = {}


def register(rule_id: str, name: str, status: Status, summary: str, module: str, apis: tuple[str, ...] = ()) -> str:
    """Record a rule and return its id (so modules write `RULE_X = register(...)`).

    `apis`: the Haiku API paths the rule handles ("dropout", "nets.MLP"), for APIs no table lists.
    """
    existing = RULES.get(rule_id)
    if existing is not None and existing.module != module:
        raise ValueError(f"rule id {rule_id} is used by both {existing.module} and {module}")
    RULES[rule_id] = Rule(rule_id, name, status, summary, module, apis)
    return rule_id


def all_rules() -> list[Rule]:
    """Every registered rule, importing the rule families first so all have registered."""
    from ..codemods import load_all
    from ..engine import leftovers  # noqa: F401  (registers HK000)
    from ..targets import linen, nnx  # noqa: F401  (they register the module and layer rules)

    load_all()
    return sorted(RULES.values(), key=lambda r: r.id)
