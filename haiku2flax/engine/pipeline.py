"""One file's conversion: parse once, run the target's rules, fix imports, check the result parses."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import libcst as cst

from .context import Context
from .imports import fix_imports
from .leftovers import mark_leftovers
from .names import HAIKU, ImportedNames
from .notes import Note
from .tables import Tables, load_tables

TARGETS = ("linen", "nnx")


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

    @property
    def changed(self) -> bool:
        return self.code != self.source


def mentions_haiku(source: str) -> bool:
    """The cheap pre-filter: a file that never says `haiku` has nothing to convert."""
    return HAIKU in source


def _converter(target: str):
    if target == "linen":
        from ..targets.linen import LinenConverter

        return LinenConverter
    if target == "nnx":
        from ..targets.nnx import NnxConverter

        return NnxConverter
    raise AssertionError(target)


def convert_source(
    source: str,
    target: str = "nnx",
    *,
    tables: Tables | None = None,
    select: frozenset[str] | None = None,
    ignore: frozenset[str] = frozenset(),
) -> Conversion:
    """Convert one file's text. Raises ConversionError for input that does not parse."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r} (choose from {', '.join(TARGETS)})")
    if not mentions_haiku(source):
        return Conversion(source, source)
    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError as error:
        message = re.sub(r"^.*?error at \d+:\d+: ", "", error.message.splitlines()[0])
        raise ConversionError(f"syntax error: {message}", error.raw_line, error.raw_column + 1) from None
    names = ImportedNames.from_module(module)
    if names.is_empty:
        return Conversion(source, source)
    ctx = Context(target=target, tables=tables or load_tables(), names=names, selected=select, ignored=ignore)
    converter = _converter(target)(ctx, module)
    converted = module.visit(converter)
    converted = fix_imports(converted, ctx.needed_imports)
    converted, leftover_notes = mark_leftovers(converted, names)
    code = converted.code
    try:
        cst.parse_module(code)
    except cst.ParserSyntaxError as error:  # a rule bug: never write code that does not parse
        raise ConversionError(f"internal error: the converted code does not parse ({error.message})") from None
    notes = sorted(ctx.notes.resolve(module) + leftover_notes, key=lambda n: (n.line, n.column))
    return Conversion(source, code, notes)
