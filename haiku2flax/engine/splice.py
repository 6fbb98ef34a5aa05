"""Top-level statements with nothing to convert are hidden from LibCST and put back as they were.

LibCST's parse, the rules' pass and code generation cost in proportion to the text they see, and in a
Haiku file much of the text (data pipelines, helpers, `main`) has nothing to convert. CPython's own
parser (a fraction of LibCST's time) finds the top-level statements; those a conversion cannot touch
are each replaced by a one-line stand-in of the same kind (`def _haiku2flax_hidden_3(): ...`), so the
module the rules see has the same statements, functions and classes in the same places, and their
text is put back, unchanged, in the output.

A statement is shown to the rules when it may matter to them: imports, a leading docstring, compound
statements other than `def`/`class`, a block followed by an indented comment (LibCST may count it
in), and, to a fixpoint, every statement that mentions a name bound by a Haiku import (or a word rules
match without one, `apply`, `init`) or by a shown statement, and every simple statement that binds a
name a shown statement reads (`HIDDEN = 32` for `hk.Linear(HIDDEN)`). "Mentions" is any identifier of
its text, strings and comments included: a false match only shows a statement that could be hidden.
When a stand-in does not come back where it was, the whole file is converted instead (`rewrite`).
"""

from __future__ import annotations

import ast
import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from .notes import Note
from .pipeline import HAIKU

WORD = re.compile(r"[^\W\d]\w*")  # an identifier, `α` included
LINE = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$")  # a line with its end, as CPython counts lines
STAND_IN = "_haiku2flax_hidden_"
# Words rules match without a Haiku name: `model.apply(params, ...)` of a transform passed in, a
# `TrainState`'s `apply_fn`, `opt_state = optimizer.init(params)`.
RULE_WORDS = frozenset({"apply", "apply_fn", "init", "params", "TrainState"})
SIMPLE = (
    ast.Expr, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Delete, ast.Pass, ast.Assert, ast.Raise,
    ast.Return, ast.Break, ast.Continue, ast.Global, ast.Nonlocal,
)


@dataclass
class _Unit:
    """One top-level statement as LibCST sees it: a `def`, a `class`, or a line of simple statements."""

    statements: list[ast.stmt]
    first: int  # 1-based line of its first token (a decorator's)
    last: int
    words: set[str] = field(default_factory=set)
    binds: set[str] = field(default_factory=set)
    shown: bool = False

    @property
    def kind(self) -> str | None:
        """`def`, `class` or `simple` for a statement that may be hidden, else None."""
        if len(self.statements) == 1 and type(self.statements[0]) is ast.FunctionDef:
            return "def"
        if len(self.statements) == 1 and type(self.statements[0]) is ast.ClassDef:
            return "class"
        return "simple" if all(isinstance(s, SIMPLE) for s in self.statements) else None


@dataclass
class _Hidden:
    stand_in: str  # its line, without the line end
    text: str  # the statement's lines, line ends included
    reduced_line: int  # where the stand-in is in the reduced source


@dataclass
class Spliced:
    """The source with hidden statements replaced by stand-ins, and how to undo that."""

    source: str
    hidden: list[_Hidden]

    def input_notes(self, notes: Iterable[Note]) -> list[Note]:
        """Notes positioned in the reduced source, positioned in the original."""
        return _moved(notes, [h.reduced_line for h in self.hidden], [_line_count(h.text) for h in self.hidden])

    def hidden_words(self) -> frozenset[str]:
        """Every word of the hidden text: the names it may read, which the converted code must still bind."""
        return frozenset(word for hidden in self.hidden for word in re.findall(r"\w+", hidden.text))

    def restore(self, code: str, notes: Iterable[Note]) -> tuple[str, list[Note]] | None:
        """The converted reduced source with the hidden text back, and `notes` (positioned in `code`)
        positioned in it; None when a stand-in is not where it should be (a rule moved or dropped it)."""
        if code.count(STAND_IN) != len(self.hidden):
            return None
        lines = LINE.findall(code)
        at: list[int] = []
        index = 0
        for number, line in enumerate(lines, 1):
            if index < len(self.hidden) and line.rstrip("\r\n") == self.hidden[index].stand_in:
                lines[number - 1] = self.hidden[index].text
                at.append(number)
                index += 1
        if index != len(self.hidden):
            return None
        return "".join(lines), _moved(notes, at, [_line_count(h.text) for h in self.hidden])


def _line_count(text: str) -> int:
    return len(LINE.findall(text))


def _moved(notes: Iterable[Note], stand_ins: list[int], sizes: list[int]) -> list[Note]:
    """`notes` with each line below a stand-in (at line `stand_ins[i]`) moved down by `sizes[i] - 1`."""
    shifts = [0]
    for size in sizes:
        shifts.append(shifts[-1] + size - 1)
    return [note if note.line <= 0 else replace(note, line=note.line + shifts[bisect.bisect_left(stand_ins, note.line)]) for note in notes]


def hide(source: str, house_apis: frozenset[str]) -> Spliced | None:
    """`source` with the top-level statements nothing converts replaced by stand-ins; None when it has
    none to hide, or CPython cannot read it (LibCST reads syntax newer than the running interpreter's)."""
    if STAND_IN in source:
        return None
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    lines = LINE.findall(source)
    units = _units(tree, lines)
    roots = {HAIKU, *(api.split(".")[0] for api in house_apis)}
    _show(units, roots)
    hidden_units = [u for u in units if not u.shown]
    if not hidden_units:
        return None
    pieces: list[str] = []
    hidden: list[_Hidden] = []
    start = 0  # 0-based index of the next line not yet copied
    removed = 0  # lines taken out so far, less the stand-ins
    for unit in hidden_units:
        pieces.extend(lines[start : unit.first - 1])
        text = "".join(lines[unit.first - 1 : unit.last])
        stand_in = _stand_in(unit, len(hidden))
        ending = text[len(text.rstrip("\r\n")) :]
        pieces.append(stand_in + ending)
        hidden.append(_Hidden(stand_in, text, unit.first - removed))
        removed += unit.last - unit.first
        start = unit.last
    pieces.extend(lines[start:])
    return Spliced("".join(pieces), hidden)


def _stand_in(unit: _Unit, number: int) -> str:
    name = f"{STAND_IN}{number}"
    return {"def": f"def {name}(): ...", "class": f"class {name}: ..."}.get(unit.kind or "", name)


def _units(tree: ast.Module, lines: list[str]) -> list[_Unit]:
    """The module's top-level statements, statements sharing a line grouped, with the words they
    mention and the module-level names they bind."""
    units: list[_Unit] = []
    for statement in tree.body:
        first = min([statement.lineno, *(d.lineno for d in getattr(statement, "decorator_list", ()))])
        last = statement.end_lineno or statement.lineno
        if units and first <= units[-1].last:
            units[-1].statements.append(statement)
            units[-1].last = max(units[-1].last, last)
        else:
            units.append(_Unit([statement], first, last))
    for index, unit in enumerate(units):
        unit.words = set(WORD.findall("".join(lines[unit.first - 1 : unit.last])))
        unit.binds = _binds(unit)
        following = units[index + 1].first - 1 if index + 1 < len(units) else len(lines)
        # An indented comment after a block may belong to the block in LibCST's tree: keep the block.
        trailing_indented = any(line[:1] in (" ", "\t") and line.strip() for line in lines[unit.last : following])
        docstring = index == 0 and _is_docstring(unit.statements[0])
        unit.shown = unit.kind is None or trailing_indented or docstring
    return units


def _is_docstring(statement: ast.stmt) -> bool:
    return isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant) and isinstance(statement.value.value, str)


def _binds(unit: _Unit) -> set[str]:
    """Module-level names the unit may bind or change: a `def`'s or `class`'s name and the names it
    declares `global`, every word of another compound statement; in simple statements, the names in assignment targets (`config.size = 3`
    changes `config`), walrus targets, and the object a bare call is made on (`parser.add_argument(...)`)."""
    statement = unit.statements[0]
    if isinstance(statement, ast.FunctionDef | ast.ClassDef):
        declared = (n.names for n in ast.walk(statement) if isinstance(n, ast.Global)) if "global" in unit.words else ()
        return {statement.name, *(name for names in declared for name in names)}
    if unit.kind is None:  # `if`, `for`, `with`, `try`: shown anyway; what they bind is hard to tell
        return unit.words
    names: set[str] = set()
    for node in unit.statements:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign | ast.Delete):
            targets = list(node.targets)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            targets = [node.value.func]
        targets += [n.target for n in ast.walk(node) if isinstance(n, ast.NamedExpr)]
        names.update(n.id for target in targets for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def _show(units: list[_Unit], roots: set[str]) -> None:
    """Mark the units the conversion may need, to a fixpoint (see the module's docstring).

    Imports are always shown; only a Haiku import's names make other statements related.
    """
    related = set(roots | RULE_WORDS)
    needed: set[str] = set()
    for unit in units:
        if any(isinstance(s, ast.Import | ast.ImportFrom) for s in unit.statements):
            unit.shown = True
            related |= _haiku_bindings(unit.statements, roots)
        elif unit.shown and not _is_docstring(unit.statements[0]):
            needed |= unit.words
            related |= unit.binds
    changed = True
    while changed:
        changed = False
        for unit in units:
            needs_it = unit.kind == "simple" and not unit.binds.isdisjoint(needed)
            if not unit.shown and (needs_it or not unit.words.isdisjoint(related)):
                unit.shown = changed = True
                related |= unit.binds
                needed |= unit.words


def _haiku_bindings(statements: list[ast.stmt], roots: set[str]) -> set[str]:
    """The names that imports of Haiku (or of a house library) among `statements` bind."""
    names: set[str] = set()
    for statement in statements:
        if isinstance(statement, ast.Import):
            names.update(a.asname or a.name.split(".")[0] for a in statement.names if a.name.split(".")[0] in roots)
        elif isinstance(statement, ast.ImportFrom) and not statement.level and (statement.module or "").split(".")[0] in roots:
            names.update(a.asname or a.name for a in statement.names)
    return names
