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
from .engine.tree import ast_dotted_name, importable_names, module_classes
from .files import display_path, repository_root, walk
from .targets import RULE_MODULE

LISTED_CALL_SITES = 10  # per class; the note says how many more there are
LINEN_MODULE_KEYWORDS = ("parent", "name")  # every Linen module takes them


@dataclass(frozen=True)
class ChangedClass:
    """A module class of a migrated file, with its constructor before and after."""

    name: str
    modules: tuple[str, ...]  # the dotted names its file may be imported by (`pkg.model`, `model`)
    line: int  # of its definition, in the original
    before: str
    after: str


def changed_classes(original: str, converted: str, target: str, modules: tuple[str, ...]) -> list[ChangedClass]:
    """The module classes of a file whose constructor parameters differ once converted (in Linen, where
    every module takes `parent` and `name`, whatever else they differ by)."""
    linen = target == "linen"
    before, after = _constructors(original, linen=False, modules=True), _constructors(converted, linen=linen)

    def compared(names: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(n for n in names if not (linen and n in LINEN_MODULE_KEYWORDS))

    return [
        ChangedClass(name, modules, line, old, after[name][1])
        for name, (line, old, names) in before.items()
        if name in after and compared(after[name][2]) != compared(names)
    ]


def _constructors(code: str, linen: bool, modules: bool = False) -> dict[str, tuple[int, str, tuple[str, ...]]]:
    """Module-level class -> (line, its constructor's parameters as written, their names): `__init__`'s,
    else a Linen dataclass's fields and the keywords every Linen module takes. `modules`: only the
    Haiku module classes, which take `name=None` when they define no `__init__`."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return {}
    haiku_modules = module_classes(tree) if modules else set()
    found = {}
    for statement in tree.body:
        if not isinstance(statement, ast.ClassDef) or not statement.bases or (modules and statement.name not in haiku_modules):
            continue
        init = next((s for s in statement.body if isinstance(s, ast.FunctionDef) and s.name == "__init__"), None)
        if init is not None:
            arguments = init.args
            names = [a.arg for a in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]][1:]
            names += [f"*{a.arg}" for a in (arguments.vararg, arguments.kwarg) if a is not None]
            written = re.sub(r"^self\b,?\s*", "", ast.unparse(arguments))
        elif modules:
            names, written = ["name"], "name=None"
        elif linen:
            fields = [s for s in statement.body if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name)]
            names = [s.target.id for s in fields if isinstance(s.target, ast.Name)] + list(LINEN_MODULE_KEYWORDS)
            written = ", ".join(f"{ast.unparse(s.target)}={ast.unparse(s.value)}" if s.value else ast.unparse(s.target) for s in fields)
            written += ", *, parent=None, name=None" if written else "*, parent=None, name=None"
        else:
            continue
        found[statement.name] = (statement.lineno, written, tuple(names))
    return found


class OutsideCode:
    """The project's Python files that are not migrated, read once, when a class first needs them."""

    def __init__(self, migrated: Collection[Path], exclude: Collection[Path] = ()) -> None:
        absolute = {os.path.abspath(path) for path in migrated}
        self.root = repository_root(Path(os.path.commonpath([os.path.dirname(path) for path in absolute]))) if absolute else None
        self.migrated, self.exclude = absolute, exclude
        self._texts: list[tuple[Path, str]] | None = None

    def modules(self, path: Path) -> tuple[str, ...]:
        """The dotted names the file at `path` may be imported by from the project (`pkg.model`, `model`)."""
        return tuple(importable_names(path, str(self.root))) if self.root is not None else ()

    def call_sites(self, changed: ChangedClass) -> list[str]:
        """`path:line` of each call of `changed` in these files."""
        mention = re.compile(rf"\b{re.escape(changed.name)}\b")
        found = []
        for path, text in self._read():
            if not mention.search(text):
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
            for path in walk(self.root, self.exclude) if self.root is not None else ():
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
