"""One file's conversion: the entry point, its result and its errors.

A file that never says `haiku` (nor a house library the tables convert) comes back as it is. Any other is parsed and rewritten by
`engine.rewrite`, imported on the first such file: a run over files without Haiku never loads LibCST,
which is most of the command's start-up.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from .notes import Note
from .tables import Tables
from .tree import EMPTY_VIEW, FileView

TARGETS = ("linen", "nnx")
HAIKU = "haiku"
# Deeply nested valid code (a `+` chain of hundreds of terms, a long implicit string concatenation) is
# converted again in a thread with room for this much recursion.
DEEP_RECURSION_LIMIT = 200_000
DEEP_STACK_BYTES = 1024 * 1024 * 1024  # address space reserved, not memory used
T = TypeVar("T")


class ConversionError(Exception):
    """The file could not be converted; `line`/`column` point at the cause when known."""

    def __init__(self, message: str, line: int = 0, column: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


@dataclass
class Conversion:
    source: str
    code: str
    notes: list[Note] = field(default_factory=list)
    classes: dict[str, Any] = field(default_factory=dict)  # NNX: what callers need of each module class (`ClassInfo`)

    @property
    def changed(self) -> bool:
        return self.code != self.source

    def todos(self) -> dict[str, list[str]]:
        """The TODO reasons, by rule id."""
        todos: dict[str, list[str]] = {}
        for note in self.notes:
            if note.outcome == "todo":
                todos.setdefault(note.rule, []).append(note.message)
        return todos


def mentions_haiku(source: str, tables: Tables | None = None) -> bool:
    """The cheap pre-filter: a file that never says `haiku` (nor a house library the tables convert) has
    nothing to convert."""
    return HAIKU in source or (tables is not None and any(api.split(".")[0] in source for api in tables.house_apis))


def convert_source(
    source: str,
    target: str = "nnx",
    *,
    tables: Tables | None = None,
    select: frozenset[str] | None = None,
    ignore: frozenset[str] = frozenset(),
    tree: FileView = EMPTY_VIEW,
) -> Conversion:
    """Convert one file's text (`tree`: what it imports from other files of the tree being migrated).
    Raises ConversionError for input that does not parse."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r} (choose from {', '.join(TARGETS)})")
    if not mentions_haiku(source, tables) and not tree.imported:
        return Conversion(source, source)
    if tree.qualified:
        from .qualified import requalify, unqualify

        reached = convert_source(unqualify(source, tree.qualified), target, tables=tables, select=select, ignore=ignore, tree=replace(tree, qualified={}))
        return replace(reached, source=source, code=requalify(reached.code, tree.qualified))
    from .rewrite import rewrite

    try:
        return rewrite(source, target, tables, select, ignore, tree)
    except RecursionError:  # the rewrite is pure: run it again with a deeper stack
        return with_deep_stack(lambda: rewrite(source, target, tables, select, ignore, tree))


def with_deep_stack(function: Callable[[], T]) -> T:
    """`function()` in a thread with a large stack and a high recursion limit, for deeply nested code
    that LibCST's recursive visitors and code generation walk one Python frame per level."""
    values: list[T] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            values.append(function())
        except BaseException as error:  # re-raised in the calling thread
            errors.append(error)

    limit = sys.getrecursionlimit()
    stack_size = threading.stack_size(DEEP_STACK_BYTES)
    sys.setrecursionlimit(max(limit, DEEP_RECURSION_LIMIT))
    try:
        thread = threading.Thread(target=run, name="haiku2flax-deep-stack")
        thread.start()
        thread.join()
    finally:
        threading.stack_size(stack_size)
        sys.setrecursionlimit(limit)
    if errors:
        raise errors[0]
    return values[0]
