"""Parse once, run the target's rules, fix imports, mark what is left, check the result parses."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import libcst as cst

from . import positions, splice
from .context import Context, linen_namespace
from .imports import fix_imports, used_names
from .leftovers import mark_leftovers
from .names import ImportedNames
from .notes import Note, Outcome, earlier_todos
from .pipeline import Conversion, ConversionError
from .rewriter import Rewriter
from .tables import Tables, load_tables
from .tree import FileView


def _converter(target: str) -> Callable[[Context, cst.Module], Rewriter]:
    """The target's converter class (imported only when a file needs it)."""
    if target == "linen":
        from ..targets.linen import LinenConverter

        return LinenConverter
    if target == "nnx":
        from ..targets.nnx import NnxConverter

        return NnxConverter
    raise AssertionError(target)


def rewrite(
    source: str, target: str, tables: Tables | None, select: frozenset[str] | None, ignore: frozenset[str], tree: FileView
) -> Conversion:
    """`convert_source` for a file that mentions Haiku.

    The rules see the file with the statements they cannot touch hidden (`splice`), unless the result
    cannot be put back together; then, or when nothing is hidden, they see the whole file. A file that
    uses models or classes of other files of the tree is always seen whole: what it imports from them
    is not a Haiku name the splice could follow.
    """
    tables = tables or load_tables()
    spliced = splice.hide(source, tables.house_apis) if not (tree.imported or tree.class_imports) else None
    converted = None
    if spliced is not None:
        try:
            reduced = _convert(spliced.source, target, tables, select, ignore, tree, spliced.hidden_words())
        except ConversionError:  # positioned in the reduced text: the whole file says where
            reduced = None
        if reduced is not None:
            restored = spliced.restore(reduced.code, reduced.output_notes)
            if restored is not None:
                converted = _Converted(restored[0], spliced.input_notes(reduced.input_notes), restored[1], reduced.module_classes)
    if converted is None:
        converted = _convert(source, target, tables, select, ignore, tree)
    notes = converted.input_notes + converted.output_notes
    notes = sorted(notes + earlier_todos(converted.code, notes), key=lambda n: (n.line, n.column))
    return Conversion(source, converted.code, notes, converted.module_classes)


@dataclass
class _Converted:
    code: str
    input_notes: list[Note]  # positioned in the source
    output_notes: list[Note]  # positioned in the code
    module_classes: dict[str, Any] = field(default_factory=dict)


def _convert(
    source: str, target: str, tables: Tables, select: frozenset[str] | None, ignore: frozenset[str], tree: FileView,
    hidden_words: frozenset[str] = frozenset(),
) -> _Converted:
    """The converted code, the notes positioned in `source` and those positioned in the code; `hidden_words`,
    the words of the statements the splice hid from `source` (their imports stay)."""
    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError as error:
        message = re.sub(r"^.*?error at \d+:\d+: ", "", error.message.splitlines()[0])
        raise ConversionError(f"syntax error: {message}", error.raw_line, error.raw_column + 1) from None
    names = ImportedNames.from_module(module, tables.house_apis)
    if names.is_empty and not tree.imported:  # nothing of Haiku is left, but what an earlier run left to do still is
        return _Converted(source, [], [])
    ctx = Context(
        target=target, tables=tables, names=names, selected=select, ignored=ignore, linen_ns=linen_namespace(module), source=source, module=module,
        tree=tree,
    )
    converter = _converter(target)(ctx, module)
    rewritten = _with_definitions(module.visit(converter), ctx.needed_definitions)
    reads = {id(statement): used_names(statement) for statement in rewritten.body}
    converted = fix_imports(rewritten, ctx.needed_imports, set().union(*reads.values(), hidden_words), names, module)
    haiku_users = [
        s for s in converted.body if not names.aliases.keys().isdisjoint(reads[id(s)] if id(s) in reads else used_names(s))
    ]
    converted, leftovers = mark_leftovers(converted, names, haiku_users, ctx.tables, target)
    code, starts = positions.generate(converted, [statement for statement, _ in leftovers])
    if code != source:
        _check_parses(code)
    leftover_notes = [
        Note(rule, Outcome.TODO, reason, starts[id(statement)][0], starts[id(statement)][1] + 1)
        for statement, todos in leftovers
        for rule, reason in todos
    ]
    return _Converted(code, ctx.notes.resolve(module), leftover_notes, ctx.module_classes)


def _with_definitions(module: cst.Module, definitions: dict[str, cst.ClassDef]) -> cst.Module:
    """The classes the rules need (`Context.need_definition`), each before the first class or function
    that follows the file's last import (where the imports they use are added)."""
    body = list(module.body)
    imports = [i for i, s in enumerate(body) if isinstance(s, cst.SimpleStatementLine) and isinstance(s.body[0], cst.Import | cst.ImportFrom)]
    after = imports[-1] + 1 if imports else 0  # definitions go after it: the imports stay where they are
    for name, definition in definitions.items():
        if any(isinstance(s, cst.ClassDef) and s.name.value == name for s in body):
            continue
        at = next((i for i, s in enumerate(body) if i >= after and isinstance(s, cst.ClassDef | cst.FunctionDef)), len(body))
        body.insert(at, definition.with_changes(leading_lines=[cst.EmptyLine(), cst.EmptyLine()] if at else []))
    return module.with_changes(body=body) if definitions else module


def _check_parses(code: str) -> None:
    """Never write code that does not parse (that is a rule bug).

    CPython's compiler checks in a fraction of LibCST's time; LibCST has the last word, since it reads
    syntax newer than the running interpreter's (and leaves a misplaced `return` to the interpreter).
    """
    try:
        with warnings.catch_warnings():  # `"\d"` and the like: the user's own code, not ours to report
            warnings.simplefilter("ignore")
            compile(code, "<converted>", "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError):
        try:
            cst.parse_module(code)
        except cst.ParserSyntaxError as error:
            raise ConversionError(f"internal error: the converted code does not parse ({error.message})") from None
