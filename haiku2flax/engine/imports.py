"""The final import pass: add the Flax imports the rules asked for, drop Haiku imports left unused.

Rules only say what they need (`Context.needed_imports`); this pass runs once, at the end, so a rule
never edits imports and an import is never added twice.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import libcst as cst

from .analysis import is_docstring
from .names import ImportedNames, dotted_name, import_statements
from .pipeline import HAIKU
from .walk import Walker


class _UsedNames(Walker):
    """Names read outside import statements."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def visit_Import(self, node: cst.Import) -> bool:
        return False

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        return False

    def visit_Name(self, node: cst.Name) -> None:
        self.used.add(node.value)

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        self.walk(node.value)  # `nnx.Module` does not use a name `Module`
        return False


def used_names(node: cst.CSTNode) -> set[str]:
    """Every name read in `node`, import statements aside (keywords included, attribute names not)."""
    collector = _UsedNames()
    collector.walk(node)
    return collector.used


def _bound_name(alias: cst.ImportAlias) -> str:
    if alias.asname is not None:
        return dotted_name(alias.asname.name) or ""
    return (dotted_name(alias.name) or "").split(".")[0]


def _is_haiku_import(node: cst.BaseSmallStatement, names: ImportedNames) -> bool:
    """An import of Haiku, or of a house API the tables convert (`from mylib.nn import Dense`)."""
    if isinstance(node, cst.Import):
        return any((dotted_name(a.name) or "").split(".")[0] == HAIKU for a in node.names)
    if isinstance(node, cst.ImportFrom) and node.module is not None and not node.relative:
        module = dotted_name(node.module) or ""
        house = not isinstance(node.names, cst.ImportStar) and all(f"{module}.{dotted_name(a.name)}" in names.house for a in node.names)
        return module.split(".")[0] == HAIKU or house
    return False


def _existing(statements: list[cst.BaseStatement]) -> set[tuple[str, str | None, str | None]]:
    have: set[tuple[str, str | None, str | None]] = set()
    for statement in statements:
        if not isinstance(statement, cst.SimpleStatementLine):
            continue
        for small in statement.body:
            if isinstance(small, cst.Import):
                for alias in small.names:
                    asname = dotted_name(alias.asname.name) if alias.asname else None
                    have.add((dotted_name(alias.name) or "", None, asname))
            elif isinstance(small, cst.ImportFrom) and small.module is not None and not isinstance(small.names, cst.ImportStar):
                for alias in small.names:
                    asname = dotted_name(alias.asname.name) if alias.asname else None
                    have.add((dotted_name(small.module) or "", dotted_name(alias.name), asname))
    return have


def _import_line(module: str, name: str | None, alias: str | None) -> cst.SimpleStatementLine:
    if name is None:
        text = f"import {module}" + (f" as {alias}" if alias else "")
    else:
        text = f"from {module} import {name}" + (f" as {alias}" if alias else "")
    line = cst.parse_statement(text)
    assert isinstance(line, cst.SimpleStatementLine)  # an import is a simple statement
    return line


def _kept_imports(
    smalls: Sequence[cst.BaseSmallStatement], used: set[str], imported: ImportedNames, read_before: Callable[[], set[str]]
) -> list[cst.BaseSmallStatement]:
    """`smalls` without the names that `used` lacks of Haiku imports, and of other imports whose every use
    the conversion removed (`partial` once the `partial(hk.BatchNorm, ...)` it bound is gone); an import
    left with none is dropped. An import the source never read (`read_before`) is the user's and stays."""
    kept: list[cst.BaseSmallStatement] = []
    for small in smalls:
        if isinstance(small, cst.Import | cst.ImportFrom) and not isinstance(small.names, cst.ImportStar):
            haiku = _is_haiku_import(small, imported)
            names = [a for a in small.names if _bound_name(a) in used or not (haiku or _bound_name(a) in read_before())]
            if not names:
                continue
            if len(names) != len(small.names):
                names[-1] = names[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
                small = small.with_changes(names=names)
        kept.append(small)
    return kept


def _has_haiku_import(statement: cst.BaseCompoundStatement, imported: ImportedNames) -> bool:
    return any(_is_haiku_import(small, imported) for small in import_statements([statement]))


class _NestedImports(cst.CSTTransformer):
    """Haiku imports inside functions and blocks (`def main(): import haiku as hk`), dropped once unused.

    `used` is what the whole module reads: a name still read anywhere keeps its import.
    """

    def __init__(self, used: set[str], imported: ImportedNames) -> None:
        super().__init__()
        self.used, self.imported = used, imported

    def leave_SimpleStatementLine(
        self, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine
    ) -> cst.SimpleStatementLine | cst.RemovalSentinel:
        if not any(isinstance(small, cst.Import | cst.ImportFrom) for small in updated.body):
            return updated
        kept = _kept_imports(updated.body, self.used, self.imported, set)  # Haiku's names only
        if not kept:  # LibCST writes `pass` for a block left empty
            return cst.RemovalSentinel.REMOVE
        return updated.with_changes(body=kept) if len(kept) != len(updated.body) else updated

    def leave_SimpleStatementSuite(
        self, original: cst.SimpleStatementSuite, updated: cst.SimpleStatementSuite
    ) -> cst.SimpleStatementSuite:
        """`def main(): import haiku as hk; ...` on one line."""
        kept = _kept_imports(updated.body, self.used, self.imported, set) or [cst.Pass()]
        return updated.with_changes(body=kept) if len(kept) != len(updated.body) else updated

    def on_visit(self, node: cst.CSTNode) -> bool:
        return not isinstance(node, cst.BaseExpression) and super().on_visit(node)  # imports are statements


def fix_imports(
    module: cst.Module, needed: set[tuple[str, str | None, str | None]], used: set[str], imported: ImportedNames, original: cst.Module
) -> cst.Module:
    """Add the `needed` imports; drop the names of Haiku imports that `used` (the module's `used_names`)
    lacks, and of other imports that the `original` module read and `used` no longer does."""
    read_before = functools.cache(lambda: used_names(original))  # read only where an import lost its uses
    body: list[cst.BaseStatement] = []
    insert_at: int | None = None
    last_import: int | None = None
    for statement in module.body:
        if isinstance(statement, cst.SimpleStatementLine) and any(isinstance(s, cst.Import | cst.ImportFrom) for s in statement.body):
            kept_smalls = _kept_imports(statement.body, used, imported, read_before)
            if not kept_smalls:
                if insert_at is None:
                    insert_at = len(body)
                    leading = statement.leading_lines
                    body.append(cst.SimpleStatementLine([cst.Pass()], leading_lines=leading))  # placeholder
                continue
            body.append(statement.with_changes(body=kept_smalls) if len(kept_smalls) != len(statement.body) else statement)
            last_import = len(body) - 1
            continue
        elif isinstance(statement, cst.BaseCompoundStatement) and _has_haiku_import(statement, imported):
            nested = statement.visit(_NestedImports(used, imported))
            assert isinstance(nested, cst.BaseCompoundStatement)  # the transformer only edits simple statements
            statement = nested
        body.append(statement)
    missing = sorted(needed - _existing(body), key=lambda t: (t[0], t[1] or ""))
    new_lines = [_import_line(*spec) for spec in missing]
    if insert_at is not None:
        placeholder = body.pop(insert_at)
        assert isinstance(placeholder, cst.SimpleStatementLine)
        if new_lines:
            new_lines[0] = new_lines[0].with_changes(leading_lines=placeholder.leading_lines)
        elif insert_at < len(body):
            after = body[insert_at]
            assert isinstance(after, cst.SimpleStatementLine | cst.BaseCompoundStatement)  # every statement is one
            body[insert_at] = after.with_changes(leading_lines=[*placeholder.leading_lines, *after.leading_lines])
        body[insert_at:insert_at] = new_lines
    elif new_lines:
        at = last_import + 1 if last_import is not None else (1 if body and is_docstring(body[0]) else 0)
        body[at:at] = new_lines
    return module.with_changes(body=body)
