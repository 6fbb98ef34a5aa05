"""What a conversion says about each construct it saw, and the one way to leave code unconverted.

Every rule reports through `Notes`: `converted` for a clean rewrite, `warning` for a rewrite the user
should look at, and `todo` for code left as it was with a `# TODO(haiku2flax:RULE): reason` comment
above its statement. Positions are resolved once, after the rewrite, and only when there are notes.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # LibCST is loaded by the first file that mentions Haiku (see `pipeline`)
    import libcst as cst

TODO_PREFIX = "# TODO(haiku2flax"


class Outcome(StrEnum):
    CONVERTED = "converted"
    WARNING = "warning"
    TODO = "todo"


@dataclass(frozen=True)
class Note:
    rule: str
    outcome: Outcome
    message: str
    line: int = 0
    column: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "rule": self.rule,
            "outcome": str(self.outcome),
            "message": self.message,
            "line": self.line,
            "column": self.column,
        }


def one_line(text: str) -> str:
    """A message quoting code that spans lines (`x * 2 +\n y`), on one line: a comment and a report line are one line."""
    return " ".join(text.split())


def todo_comment(rule: str, reason: str) -> str:
    return f"{TODO_PREFIX}:{rule}): {one_line(reason)}"


_TODO_LINE = re.compile(r"^[ \t]*# TODO\(haiku2flax:(?P<rule>[A-Z]+\d+)\): (?P<reason>.*)$", re.MULTILINE)


def earlier_todos(code: str, notes: list[Note]) -> list[Note]:
    """Notes for the TODO comments in `code` that `notes` do not account for: those an earlier run left.

    A second run adds no comment where one is (`add_todo_lines`), yet what it left is still to do: a
    `--check --strict` run or a CI annotation must see it. Counted per rule, so a TODO a rule reports
    again (positioned in the input) is not reported twice.
    """
    reported = Counter(note.rule for note in notes if note.outcome is Outcome.TODO)
    earlier = []
    for match in _TODO_LINE.finditer(code):
        if reported[match["rule"]]:
            reported[match["rule"]] -= 1
            continue
        line = code.count("\n", 0, match.start()) + 1
        indent = len(match[0]) - len(match[0].lstrip())
        earlier.append(Note(match["rule"], Outcome.TODO, f"{match['reason']} (left by an earlier run)", line, indent + 1))
    return earlier


class Notes:
    """Collects notes against original nodes; `resolve` turns them into positioned `Note`s."""

    def __init__(self) -> None:
        self._pending: list[tuple[cst.CSTNode, str, Outcome, str]] = []

    def converted(self, node: cst.CSTNode, rule: str, message: str) -> None:
        self._pending.append((node, rule, Outcome.CONVERTED, one_line(message)))

    def warn(self, node: cst.CSTNode, rule: str, message: str) -> None:
        self._pending.append((node, rule, Outcome.WARNING, one_line(message)))

    def todo(self, node: cst.CSTNode, rule: str, message: str) -> None:
        self._pending.append((node, rule, Outcome.TODO, one_line(message)))

    def resolve(self, module: cst.Module) -> list[Note]:
        if not self._pending:
            return []
        from . import positions

        _, starts = positions.generate(module, [node for node, *_ in self._pending])
        notes = []
        for node, rule, outcome, message in self._pending:
            where = starts.get(id(node))
            line, column = (where[0], where[1] + 1) if where else (0, 0)
            notes.append(Note(rule, outcome, message, line, column))
        notes.sort(key=lambda n: (n.line, n.column))
        return notes
