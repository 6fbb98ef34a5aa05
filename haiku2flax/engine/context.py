"""State shared by every rule during one file's conversion."""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst

from .names import ImportedNames
from .notes import TODO_PREFIX, Notes, todo_comment
from .tables import Tables


@dataclass
class Context:
    target: str  # "linen" or "nnx"
    tables: Tables
    names: ImportedNames
    notes: Notes = field(default_factory=Notes)
    # imports the output needs, as (module, name-or-None, alias-or-None) triples for the import pass
    needed_imports: set[tuple[str, str | None, str | None]] = field(default_factory=set)
    selected: frozenset[str] | None = None  # rule ids to run (None: all)
    ignored: frozenset[str] = frozenset()

    @property
    def ns(self) -> str:
        """The local name the output uses for the target namespace (`nn` or `nnx`)."""
        return "nn" if self.target == "linen" else "nnx"

    def need_target_import(self) -> None:
        if self.target == "linen":
            self.needed_imports.add(("flax.linen", None, "nn"))
        else:
            self.needed_imports.add(("flax", "nnx", None))

    def enabled(self, rule: str) -> bool:
        """`--select` / `--ignore` match rule ids by prefix, as ruff does (`HK00` selects HK001-HK009)."""
        if any(rule.startswith(prefix) for prefix in self.ignored):
            return False
        return self.selected is None or any(rule.startswith(prefix) for prefix in self.selected)


def attr(ns: str, name: str) -> cst.Attribute:
    """`ns.a.b` for name `a.b`."""
    node: cst.BaseExpression = cst.Name(ns)
    for part in name.split("."):
        node = cst.Attribute(value=node, attr=cst.Name(part))
    assert isinstance(node, cst.Attribute)
    return node


def add_todo_lines(statement: cst.CSTNode, todos: list[tuple[str, str]]) -> cst.CSTNode:
    """Put `# TODO(haiku2flax:RULE): reason` comments above a statement, once each.

    A statement that already carries a haiku2flax TODO (from an earlier run) gets no more: a second run
    over partly migrated code must change nothing.
    """
    if not todos or not hasattr(statement, "leading_lines"):
        return statement
    if any(line.comment is not None and line.comment.value.startswith(TODO_PREFIX) for line in statement.leading_lines):
        return statement
    new = [cst.EmptyLine(comment=cst.Comment(text)) for text in dict.fromkeys(todo_comment(rule, reason) for rule, reason in todos)]
    return statement.with_changes(leading_lines=[*statement.leading_lines, *new])
