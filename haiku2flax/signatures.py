"""Module classes whose constructor the migration changed, and their callers outside the migrated files.

Every call site inside the migrated files follows the new signatures (`engine.tree`); code outside them
cannot be rewritten, since the tool does not migrate it. Each class whose constructor changed (`name`
dropped, `din` / `rngs` added) has its conversion note say old -> new signature, and a warning lists the
call sites that a cheap `ast` scan finds in the project's other Python files (the git work tree holding
the migrated files, else their common folder), where the class is imported by name or reached through
its module. Only files that mention the class are parsed.
"""

from __future__ import annotations

import ast
import os
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from .engine.notes import Note, Outcome
from .engine.tree import ast_dotted_name, importable_names
from .files import display_path, repository_root, walk
from .targets import RULE_MODULE

HAIKU_MODULE_CONSTRUCTOR = ("name=None", ("name",))  # what `hk.Module` subclasses without `__init__` take
CLASS = re.compile(r"^class\s+(\w+)", re.MULTILINE)  # a module-level class statement
MODULE_LEVEL = re.compile(r"^[^\s#]", re.MULTILINE)  # a line of the module's own body
LISTED_CALL_SITES = 10  # per class; the note says how many more there are


@dataclass(frozen=True)
class ChangedClass:
    """A module class of a migrated file, with its constructor before and after."""

    name: str
    modules: tuple[str, ...]  # the dotted names its file may be imported by (`pkg.model`, `model`)
    line: int  # of its definition, in the original
    before: str
    after: str


def changed_classes(original: str, converted: str, notes: Collection[Note], modules: tuple[str, ...]) -> list[ChangedClass]:
    """The module classes of `original` (module level, as the notes of their conversion place them) whose
    constructor parameters differ in `converted`. Only their `__init__` headers are parsed, not the files."""
    starts = [0, *(m.end() for m in re.finditer("\n", original))]  # line -> offset
    defined = {m[1]: m.start() for m in CLASS.finditer(converted)}
    found = []
    for line in (note.line for note in notes if note.rule == RULE_MODULE and note.outcome == Outcome.CONVERTED):
        name = CLASS.match(original, starts[line - 1]) if 0 < line <= len(starts) else None
        if name is None or name[1] not in defined:
            continue
        before = _constructor(original, name.start(), HAIKU_MODULE_CONSTRUCTOR)
        after = _constructor(converted, defined[name[1]], ("", ()))
        if before is not None and after is not None and before[1] != after[1]:
            found.append(ChangedClass(name[1], modules, line, before[0], after[0]))
    return found


def _constructor(code: str, start: int, inherited: tuple[str, tuple[str, ...]]) -> tuple[str, tuple[str, ...]] | None:
    """(parameters as written, their names) of `__init__` in the class whose `class` statement is at
    `start`; `inherited` when the class defines none. None where the code does not read."""
    end = MODULE_LEVEL.search(code, start + 1)
    block = code[start : end.start() if end is not None else len(code)]
    body = re.search(r"\n([ \t]+)\S", block)
    init = re.search(rf"^{body[1]}def\s+__init__\s*\(", block, re.MULTILINE) if body is not None else None
    if init is None:
        return inherited
    for closing in re.finditer(r"\)", block[init.end() :]):  # the first `)` that closes a parameter list
        try:
            function = ast.parse(f"def f({block[init.end() : init.end() + closing.start()]}): pass").body[0]
        except SyntaxError:
            continue
        assert isinstance(function, ast.FunctionDef)
        args = function.args
        names = [a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]][1:]
        names += [f"{stars}{a.arg}" for stars, a in (("*", args.vararg), ("**", args.kwarg)) if a is not None]
        return re.sub(r"^self\b,?\s*", "", ast.unparse(args)), tuple(names)
    return None


class OutsideCode:
    """The project's Python files that are not migrated, read once, when a class first needs them."""

    def __init__(self, migrated: Collection[Path], exclude: Collection[Path] = ()) -> None:
        """`migrated`: the files and folders given to migrate (their files are not read); `exclude`: folders
        not to read either (`--out-dir`)."""
        absolute = {os.path.abspath(path) for path in migrated}
        self.root = repository_root(Path(os.path.commonpath([path if os.path.isdir(path) else os.path.dirname(path) for path in absolute]))) if absolute else None
        self.migrated, self.exclude = absolute, [*exclude, *(Path(path) for path in absolute if os.path.isdir(path))]
        self._texts: list[tuple[Path, str]] | None = None

    def modules(self, path: Path) -> tuple[str, ...]:
        """The dotted names the file at `path` may be imported by from the project (`pkg.model`, `model`)."""
        return tuple(importable_names(path, str(self.root))) if self.root is not None else ()

    def call_sites(self, changed: ChangedClass) -> list[str]:
        """`path:line` of each call of `changed` in these files."""
        found = []
        for path, text in self._read():
            if changed.name not in text:
                continue
            try:
                tree = ast.parse(text)
            except (SyntaxError, ValueError):
                continue
            found += [f"{display_path(path)}:{line}" for line in _calls_of(tree, changed)]
        return found

    def _read(self) -> list[tuple[Path, str]]:
        if self._texts is None:
            self._texts = []
            if self.root is None or str(self.root) in self.migrated:
                return self._texts  # the whole project is migrated
            for path in walk(self.root, self.exclude):
                if path.suffix != ".py" or os.path.abspath(path) in self.migrated:
                    continue
                try:
                    self._texts.append((path, path.read_text(encoding="utf-8")))
                except (OSError, UnicodeDecodeError):
                    continue
        return self._texts


def _calls_of(tree: ast.Module, changed: ChangedClass) -> Iterator[int]:
    """The lines calling `changed` in a file: by the name it imports it as, or through its module."""
    reached = set()  # `Block`, `m.Block`, `pkg.model.Block`
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in changed.modules and not node.level:
            reached |= {alias.asname or alias.name for alias in node.names if alias.name == changed.name}
        elif isinstance(node, ast.Import):
            reached |= {f"{alias.asname or alias.name}.{changed.name}" for alias in node.names if alias.name in changed.modules}
    if reached:
        yield from (node.lineno for node in ast.walk(tree) if isinstance(node, ast.Call) and ast_dotted_name(node.func) in reached)


def with_signature_notes(notes: list[Note], changed: ChangedClass, call_sites: list[str]) -> list[Note]:
    """`notes` with the class's own conversion note saying its constructor before and after, and a
    warning listing its calls outside the migrated files when there are some."""
    signature = f"`{changed.name}({changed.before})` is now `{changed.name}({changed.after})`"
    converted = [n for n in notes if n.rule == RULE_MODULE and n.outcome == Outcome.CONVERTED and n.line == changed.line]
    if converted:
        notes = [replace(n, message=f"{n.message}; {signature}") if n is converted[0] else n for n in notes]
    else:
        notes = [*notes, Note(RULE_MODULE, Outcome.CONVERTED, signature, changed.line, 1)]
    if not call_sites:
        return notes
    more = len(call_sites) - LISTED_CALL_SITES
    listed = ", ".join(call_sites[:LISTED_CALL_SITES]) + (f" and {more} more" if more > 0 else "")
    warning = Note(RULE_MODULE, Outcome.WARNING, f"{signature}: update its calls outside the migrated files: {listed}", changed.line, 1)
    return sorted([*notes, warning], key=lambda note: (note.line, note.column))
