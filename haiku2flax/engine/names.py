"""Resolve Haiku names from a module's import statements.

LibCST's QualifiedNameProvider builds full scope analysis and costs several times a bare parse; Haiku
code imports haiku at module level in a handful of well-known shapes, so reading the import statements
is enough to know that `hk.nets.MLP`, `nets.MLP` or a `Dense` imported `from haiku import Linear as
Dense` all mean `haiku.nets.MLP` / `haiku.Linear`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import libcst as cst

from .pipeline import HAIKU

PARTIAL = ("partial", "functools.partial")  # how code spells `functools.partial`


def dotted_name(node: cst.BaseExpression) -> str | None:
    """`a.b.c` as a string, or None when the expression is not a plain dotted name."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        base = dotted_name(node.value)
        return None if base is None else f"{base}.{node.attr.value}"
    return None


def _module_name(node: cst.BaseExpression) -> str:
    name = dotted_name(node)
    assert name is not None, "import targets are always dotted names"
    return name


def import_statements(statements: Sequence[cst.BaseStatement]) -> Iterator[cst.Import | cst.ImportFrom]:
    """Every import statement in `statements` and in the blocks nested in them, in source order.

    Only statement blocks are entered, never expressions: an import cannot hide in one.
    """
    for statement in statements:
        if isinstance(statement, cst.SimpleStatementLine):
            yield from (small for small in statement.body if isinstance(small, cst.Import | cst.ImportFrom))
        elif isinstance(statement, cst.BaseCompoundStatement):
            for suite in _suites(statement):
                if isinstance(suite, cst.IndentedBlock):
                    yield from import_statements(suite.body)
                else:  # `def main(): import haiku as hk` on one line
                    yield from (small for small in suite.body if isinstance(small, cst.Import | cst.ImportFrom))


def _suites(statement: cst.CSTNode) -> Iterator[cst.BaseSuite]:
    """The suites of a compound statement: its body and its `elif`, `else`, `except`, `finally` and `case` arms."""
    body = getattr(statement, "body", None)
    if isinstance(body, cst.BaseSuite):
        yield body
    arms = [getattr(statement, "orelse", None), getattr(statement, "finalbody", None)]
    arms += [*getattr(statement, "handlers", ()), *getattr(statement, "cases", ())]
    for arm in arms:
        if arm is not None:
            yield from _suites(arm)


@dataclass
class ImportedNames:
    """Local name -> fully qualified name, for every name bound by an import of `haiku` (or of a house
    library whose modules the rule tables convert: `house` holds their full paths, `mylib.nn.Dense`)."""

    aliases: dict[str, str] = field(default_factory=dict)
    house: frozenset[str] = frozenset()

    @classmethod
    def from_module(cls, module: cst.Module, house: frozenset[str] = frozenset()) -> ImportedNames:
        """Imports at module level and inside functions, classes and blocks (`def main(): import haiku as
        hk`, `try: import haiku`): a file that uses Haiku anywhere is converted or reported, never skipped."""
        names = cls(house=house)
        for small in import_statements(module.body):
            names.add_import(small)
        return names

    def _tracked(self, full: str) -> bool:
        """Haiku itself, or a house module or package holding an API the tables convert."""
        if full == HAIKU or full.startswith(HAIKU + "."):
            return True
        return any(api == full or api.startswith(full + ".") for api in self.house)

    def add_import(self, node: cst.Import | cst.ImportFrom) -> None:
        if isinstance(node, cst.Import):
            for alias in node.names:
                full = _module_name(alias.name)
                if not self._tracked(full):
                    continue
                if alias.asname is not None:
                    self.aliases[_module_name(alias.asname.name)] = full
                else:  # `import haiku.nets` binds `haiku`
                    root = full.split(".")[0]
                    self.aliases[root] = root
            return
        if node.relative or node.module is None:
            return
        module = _module_name(node.module)
        if not self._tracked(module) or isinstance(node.names, cst.ImportStar):
            return
        for alias in node.names:
            imported = _module_name(alias.name)
            local = _module_name(alias.asname.name) if alias.asname is not None else imported
            if self._tracked(f"{module}.{imported}"):
                self.aliases[local] = f"{module}.{imported}"

    def qualify(self, node: cst.BaseExpression) -> str | None:
        """The `haiku.…` name (or house API) an expression refers to, or None if it is not one."""
        name = dotted_name(node)
        if name is None:
            return None
        head, _, rest = name.partition(".")
        full = self.aliases.get(head)
        if full is None:
            return None
        full = f"{full}.{rest}" if rest else full
        if full.split(".")[0] != HAIKU and full not in self.house:  # other names of a house library
            return None
        return full

    def haiku_api(self, node: cst.BaseExpression) -> str | None:
        """The Haiku API path without the package (`Linear`, `nets.MLP`, `experimental.layer_stack`), or a
        house API's full path (`mylib.nn.Dense`)."""
        full = self.qualify(node)
        if full is None or full == HAIKU:
            return None
        return full if full in self.house else full[len(HAIKU) + 1 :]

    def display(self, api: str) -> str:
        """How messages spell an API `haiku_api` returned: `hk.Linear`, or `mylib.nn.Dense`."""
        return api if api in self.house else f"hk.{api}"

    @property
    def is_empty(self) -> bool:
        return not self.aliases
