"""`migrate --interactive`: review each change, keep what is accepted, and never write broken code.

A change is offered as a coloured hunk naming the rules whose notes fall in it (and their warnings
and TODOs), and answered as in codemod and Bowler: `y` accept, `n` reject, `a` accept the rest of the
file, `d` reject the rest of the file, `q` quit keeping what was decided (later files stay as they
are). Answers are read a line at a time from stdin, so a script can drive the review; the end of
stdin counts as `q`.

Why changes are offered in groups: a subset of hunks must leave the file valid and meaningful. Hunks
are grouped so that every group can be accepted or rejected alone:
- hunks touching the same top-level statement belong together (a class is converted as a whole:
  its fields, `setup`/`__init__`, decorators and method bodies depend on each other);
- statements linked by a name belong together: a changed statement that defines a top-level name
  (`class Block`, `def forward`, `model = ...`) goes with every changed statement that uses it, so a
  module and the code that builds it (or `hk.transform(forward)` and `forward`) move together;
- import lines are not offered at all: they follow from the other answers. A new import is written
  when an accepted change uses its name, and a Haiku import is removed only when nothing left uses it.
Every group is checked up front by assembling the file with only that group and with all groups but
that one; if either does not parse, the whole file is offered as one change.
"""

from __future__ import annotations

import ast
import difflib
import io
import re
import sys
import tokenize
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import click

from .documents import Document, anchor_output_notes, positioned_in_output
from .engine import Note, Outcome
from .runner import FileResult

IMPORT_LINE = re.compile(r"^(?:import|from)\s")
IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
CONTEXT = 3
Statement = tuple[str, int]  # a top-level statement: its side ("a" original, "b" converted) and index there
ANSWERS = {
    "y": "accept this change",
    "n": "reject this change",
    "a": "accept this and every later change in the file",
    "d": "reject this and every later change in the file",
    "q": "quit: keep what was decided, leave later changes and files as they are",
    "?": "print this help",
}


@dataclass(frozen=True)
class Hunk:
    """One run of changed lines: original lines [a_start, a_end) became converted lines [b_start, b_end)."""

    a_start: int
    a_end: int
    b_start: int
    b_end: int

    def holds(self, note: Note) -> bool:
        start, end = (self.b_start, self.b_end) if positioned_in_output(note) else (self.a_start, self.a_end)
        return start < note.line <= max(end, start + 1)


@dataclass
class Group:
    hunks: list[Hunk]
    notes: list[Note] = field(default_factory=list)


def _names(code: str) -> set[str]:
    """The identifiers a piece of code reads or binds (not inside strings or comments)."""
    try:
        return {t.string for t in tokenize.generate_tokens(io.StringIO(code).readline) if t.type == tokenize.NAME}
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return set(IDENTIFIER.findall(code))


def _statement_spans(code: str) -> list[tuple[int, int]]:
    """Each top-level statement as (first, last) line, 1-based; the blank and comment lines before a
    statement belong to it, those at the end of the file to the last one."""
    try:
        body = ast.parse(code).body
    except SyntaxError:
        return [(1, max(code.count("\n"), 1))]
    spans, previous_end = [], 0
    for node in body:
        end = node.end_lineno or node.lineno
        spans.append((previous_end + 1, end))
        previous_end = end
    if spans:
        spans[-1] = (spans[-1][0], max(spans[-1][1], code.count("\n")))
    return spans


def _defined(code: str) -> set[str]:
    """Top-level names a statement binds."""
    try:
        body = ast.parse(code).body
    except SyntaxError:
        return set()
    names: set[str] = set()
    for node in body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return names


Item = TypeVar("Item", bound=Hashable)


class _Union(Generic[Item]):
    """Union-find: the hunks and statements that must be offered together end up with one root."""

    def __init__(self) -> None:
        self.parent: dict[Item, Item] = {}

    def find(self, item: Item) -> Item:
        self.parent.setdefault(item, item)
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def join(self, first: Item, second: Item) -> None:
        self.parent[self.find(first)] = self.find(second)


class Plan:
    """The groups of one file's changes, and how to assemble the file from the accepted ones."""

    def __init__(self, original: str, converted: str, notes: list[Note]) -> None:
        self.original = original
        self.converted = converted
        self.a = original.splitlines(keepends=True)
        self.b = converted.splitlines(keepends=True)
        opcodes = difflib.SequenceMatcher(None, self.a, self.b, autojunk=False).get_opcodes()
        hunks = [Hunk(i1, i2, j1, j2) for tag, i1, i2, j1, j2 in opcodes if tag != "equal"]
        self.imports = [h for h in hunks if self._only_imports(h)]
        self.groups = self._group([h for h in hunks if h not in self.imports])
        for note in notes:
            home = next((g for g in self.groups if any(h.holds(note) for h in g.hunks)), None)
            if home is not None:
                home.notes.append(note)
        if not self._every_group_stands_alone():
            self.groups = [Group([h for g in self.groups for h in g.hunks], [n for g in self.groups for n in g.notes])]

    def _only_imports(self, hunk: Hunk) -> bool:
        lines = [*self.a[hunk.a_start : hunk.a_end], *self.b[hunk.b_start : hunk.b_end]]
        return all(IMPORT_LINE.match(line) or not line.strip() for line in lines)

    def _group(self, hunks: list[Hunk]) -> list[Group]:
        union = _Union[Hunk | Statement]()
        spans = {"a": _statement_spans(self.original), "b": _statement_spans(self.converted)}

        def statements(side: str, start: int, end: int) -> list[Statement]:
            lines = range(start + 1, end + 1) if end > start else range(start + 1, start + 2)
            return [(side, i) for i, (first, last) in enumerate(spans[side]) if any(first <= n <= last for n in lines)]

        touched: dict[Hunk, list[Statement]] = {}
        for hunk in hunks:
            touched[hunk] = [*statements("a", hunk.a_start, hunk.a_end)] if hunk.a_end > hunk.a_start else []
            touched[hunk] += statements("b", hunk.b_start, hunk.b_end) if hunk.b_end > hunk.b_start or not touched[hunk] else []
            union.find(hunk)
            for statement in touched[hunk]:
                union.join(hunk, statement)
        text = {"a": self.a, "b": self.b}

        def statement_text(key: Statement) -> str:
            first, last = spans[key[0]][key[1]]
            return "".join(text[key[0]][first - 1 : last])

        units: dict[Hunk | Statement, set[Statement]] = {}
        for hunk in hunks:
            units.setdefault(union.find(hunk), set()).update(touched[hunk])
        defines = {root: set().union(*(_defined(statement_text(s)) for s in keys)) for root, keys in units.items()}
        uses = {root: set().union(*(_names(statement_text(s)) for s in keys)) for root, keys in units.items()}
        for root, names in defines.items():
            for other, used in uses.items():
                if other != root and names & used:
                    union.join(root, other)
        grouped: dict[Hunk | Statement, Group] = {}
        for hunk in hunks:
            grouped.setdefault(union.find(hunk), Group([])).hunks.append(hunk)
        return list(grouped.values())

    def assemble(self, accepted: list[Group]) -> str:
        """The file with the accepted groups applied, and the imports that this needs."""
        if len(accepted) == len(self.groups):
            return self.converted
        if not accepted:
            return self.original
        chosen = {h for g in accepted for h in g.hunks}
        pieces: list[tuple[str, list[str]]] = []  # ("code" | "removed" | "added", lines)
        position = 0
        for hunk in sorted([*{h for g in self.groups for h in g.hunks}, *self.imports], key=lambda h: h.a_start):
            pieces.append(("code", self.a[position : hunk.a_start]))
            if hunk in self.imports:
                pieces += [("removed", self.a[hunk.a_start : hunk.a_end]), ("added", self.b[hunk.b_start : hunk.b_end])]
            else:
                pieces.append(("code", self.b[hunk.b_start : hunk.b_end] if hunk in chosen else self.a[hunk.a_start : hunk.a_end]))
            position = hunk.a_end
        pieces.append(("code", self.a[position:]))
        used = _names("".join(line for kind, lines in pieces if kind == "code" for line in lines if not IMPORT_LINE.match(line)))
        out = []
        for kind, lines in pieces:
            out += lines if kind == "code" else [line for line in lines if not line.strip() or _binds(line) & used]
        return "".join(out)

    def _every_group_stands_alone(self) -> bool:
        for group in self.groups:
            others = [g for g in self.groups if g is not group]
            for subset in ([group], others):
                try:
                    ast.parse(self.assemble(subset))
                except SyntaxError:
                    return False
        return True


def _binds(import_line: str) -> set[str]:
    """The names an import line binds (`import a.b` binds `a`; `from m import x as y` binds `y`)."""
    try:
        node = ast.parse(import_line.strip()).body[0]
    except (SyntaxError, IndexError):
        return set(IDENTIFIER.findall(import_line))
    if not isinstance(node, ast.Import | ast.ImportFrom):
        return set()
    return {alias.asname or alias.name.split(".")[0] for alias in node.names}


# -- asking -------------------------------------------------------------------------------------------


class Quit(Exception):
    """`q`, or the end of stdin: stop asking."""


def _ask(prompt: str, read: Callable[[], str]) -> str:
    while True:
        click.echo(click.style(prompt, fg="blue", bold=True), nl=False)
        line = read()
        if not line:  # end of input
            click.echo("")
            raise Quit
        answer = line.strip().lower()
        if not sys.stdin.isatty():  # a script's answer: show it, as a terminal would have
            click.echo(answer)
        if answer in ANSWERS and answer != "?":
            return answer
        for key, meaning in ANSWERS.items():
            click.echo(f"  {key} - {meaning}")


def _blocks(hunks: list[Hunk]) -> list[list[Hunk]]:
    """Hunks whose context would overlap, shown as one block (as a unified diff does)."""
    blocks: list[list[Hunk]] = []
    for hunk in sorted(hunks, key=lambda h: h.a_start):
        if blocks and hunk.a_start - blocks[-1][-1].a_end <= 2 * CONTEXT:
            blocks[-1].append(hunk)
        else:
            blocks.append([hunk])
    return blocks


def _show(result: FileResult, document: Document, plan: Plan, index: int, group: Group) -> None:
    def line(prefix: str, text: str, colour: str | None = None) -> None:
        click.echo(click.style(prefix + document.show(text.rstrip("\n")), fg=colour))

    click.echo(click.style(f"── {result.path} [{index + 1}/{len(plan.groups)}] " + "─" * 40, bold=True))
    if len(group.hunks) > 1:
        click.echo(click.style(f"these {len(group.hunks)} hunks depend on each other and are offered together", dim=True))
    for block in _blocks(group.hunks):
        rules = sorted({note.rule for note in group.notes if any(hunk.holds(note) for hunk in block)})
        click.echo(click.style(f"@@ {result.path}:{document.locate(block[0].a_start + 1)} @@ " + ", ".join(rules), fg="cyan"))
        position = max(block[0].a_start - CONTEXT, 0)
        for hunk in block:
            for text in plan.a[position : hunk.a_start]:
                line(" ", text)
            for text in plan.a[hunk.a_start : hunk.a_end]:
                line("-", text, "red")
            for text in plan.b[hunk.b_start : hunk.b_end]:
                line("+", text, "green")
            position = hunk.a_end
        for text in plan.a[position : min(position + CONTEXT, len(plan.a))]:
            line(" ", text)
    for note in group.notes:
        if note.outcome is not Outcome.CONVERTED:
            colour = "yellow" if note.outcome is Outcome.WARNING else "magenta"
            click.echo(click.style(f"  {note.outcome} [{note.rule}]: {note.message}", fg=colour))


def review_file(result: FileResult, read: Callable[[], str]) -> None:
    """Ask about each group of `result`'s changes, then keep the accepted ones in `result`.

    Raises Quit (after keeping what was decided) when the user quits or stdin ends.
    """
    document = result.document
    assert document is not None
    plan = Plan(document.text, result.code, result.notes)
    accepted: list[Group] = []
    rest: str | None = None
    try:
        for index, group in enumerate(plan.groups):
            if rest is None:
                _show(result, document, plan, index, group)
                answer = _ask("Apply this change [y,n,a,d,q,?]? ", read)
                rest = {"a": "y", "d": "n"}.get(answer)
                accepted += [group] if answer in ("y", "a") else []
            elif rest == "y":
                accepted.append(group)
    finally:
        rejected = [g for g in plan.groups if g not in accepted]
        result.code = plan.assemble(accepted)
        result.converted = document.render(result.code)
        dropped = {id(note) for g in rejected for note in g.notes}
        result.notes = anchor_output_notes([note for note in result.notes if id(note) not in dropped], result.code)


def review_results(results: list[FileResult], read: Callable[[], str] | None = None) -> None:
    """Review every changed file in order; after `q` the remaining files are left unchanged."""
    read = read or sys.stdin.readline
    quitting = False
    for result in results:
        if not result.changed:
            continue
        if quitting:
            assert result.document is not None  # a changed file was read and decoded
            result.converted, result.code, result.notes = result.original, result.document.text, []
            continue
        try:
            review_file(result, read)
        except Quit:
            quitting = True
