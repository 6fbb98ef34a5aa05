"""State shared by every rule during one file's conversion."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

import libcst as cst

from .names import ImportedNames, dotted_name
from .notes import TODO_PREFIX, Notes, todo_comment
from .tables import Tables
from .tree import EMPTY_VIEW, FileView
from .walk import Transformer

NodeT = TypeVar("NodeT", bound=cst.CSTNode)
FactT = TypeVar("FactT")
LINEN_NS = "nn"  # `import flax.linen as nn`
LINEN_FALLBACK_NS = "linen"  # `from flax import linen`, where `nn` is taken


def linen_namespace(module: cst.Module) -> str:
    """`nn`, unless a module-level import binds `nn` to something other than `flax.linen`."""
    for statement in module.body:
        for small in statement.body if isinstance(statement, cst.SimpleStatementLine) else ():
            if not isinstance(small, cst.Import | cst.ImportFrom) or isinstance(small.names, cst.ImportStar):
                continue
            for alias in small.names:
                bound = alias.asname.name if alias.asname is not None else alias.name
                if isinstance(bound, cst.Name) and bound.value == LINEN_NS:
                    module_name = dotted_name(small.module) if isinstance(small, cst.ImportFrom) and small.module else None
                    full = f"{module_name}.{dotted_name(alias.name)}" if module_name else dotted_name(alias.name)
                    if full != "flax.linen":
                        return LINEN_FALLBACK_NS
    return LINEN_NS


def rename_namespace(node: NodeT, ns: str) -> NodeT:
    """`node` (code written for `nn`) with `nn.…` spelled `ns.…`; `jax.nn.…` is left alone."""
    return node if ns == LINEN_NS else cast(NodeT, node.visit(_NamespaceRename(ns)))  # a rename keeps the node's type


class _NamespaceRename(Transformer):
    def __init__(self, ns: str) -> None:
        super().__init__()
        self.ns = ns

    def leave_Attribute(self, original: cst.Attribute, updated: cst.Attribute) -> cst.Attribute:
        if isinstance(original.value, cst.Name) and original.value.value == LINEN_NS:
            return updated.with_changes(value=cst.Name(self.ns))
        return updated


@dataclass(frozen=True, eq=False)
class FileFact(Generic[FactT]):
    """What rules read about the whole original file (`read(module, ctx)`), worked out once, when a rule
    first asks `ctx.fact(...)` for it: a file whose rules never ask pays nothing."""

    read: Callable[[cst.Module, Context], FactT]


@dataclass
class Context:
    target: str  # "linen" or "nnx"
    tables: Tables
    names: ImportedNames
    notes: Notes = field(default_factory=Notes)
    # imports the output needs, as (module, name-or-None, alias-or-None) triples for the import pass
    needed_imports: set[tuple[str, str | None, str | None]] = field(default_factory=set)
    # classes the output calls that the rules define in the file (`HaikuGRUCell`), by name (`need_definition`)
    needed_definitions: dict[str, cst.ClassDef] = field(default_factory=dict)
    selected: frozenset[str] | None = None  # rule ids to run (None: all)
    ignored: frozenset[str] = frozenset()
    linen_ns: str = LINEN_NS  # `linen` where the file already binds `nn` to something else (`from jax import nn`)
    # `init` / `self.init` / `make_init()` -> the `hk.initializers.*` calls it may hold, read only as initializers (HK202)
    initializer_bindings: dict[str, tuple[cst.Call, ...]] = field(default_factory=dict)
    # keys holding only None or a caller's value for a parameter defaulting to None (Linen: the layer's default stands in for None)
    passed_on_initializers: frozenset[str] = frozenset()
    source: str = ""  # the file's text, for `mentions`
    _mentioned: dict[str, bool] = field(default_factory=dict)  # each word searched once per file, not per method
    module: cst.Module = field(default_factory=lambda: cst.Module([]))  # the file as parsed, for `fact`
    _facts: dict[FileFact[Any], Any] = field(default_factory=dict)
    tree: FileView = EMPTY_VIEW  # what the file imports from other files of the tree being migrated
    module_classes: dict[str, Any] = field(default_factory=dict)  # NNX: what other files need of the classes converted here
    _providers: dict[str, Context] = field(default_factory=dict)

    def provider(self, module: str) -> Context:
        """The context of the tree's file `module`, which this file imports a transform from: its facts (the
        model's submodules, a multi_transform's methods) are what this file's uses of the model need."""
        if module not in self._providers:
            parsed = cst.parse_module(self.tree.sources[module])
            self._providers[module] = Context(
                target=self.target, tables=self.tables, names=ImportedNames.from_module(parsed, self.tables.house_apis),
                linen_ns=linen_namespace(parsed), source=self.tree.sources[module], module=parsed,
            )
        return self._providers[module]

    def fact(self, fact: FileFact[FactT]) -> FactT:
        """`fact` about this file, worked out on first use."""
        if fact not in self._facts:
            self._facts[fact] = fact.read(self.module, self)
        value: FactT = self._facts[fact]
        return value

    def mentions(self, *words: str) -> bool:
        """Whether the file's text contains one of `words`: a cheap test before a rule walks the whole file
        for a construct (a false positive only costs that walk)."""
        return any(self._mentions(word) for word in words)

    def _mentions(self, word: str) -> bool:
        found = self._mentioned.get(word)
        if found is None:
            found = self._mentioned[word] = word in self.source
        return found

    @property
    def ns(self) -> str:
        """The local name the output uses for the target namespace (`nn` or `nnx`)."""
        return self.linen_ns if self.target == "linen" else "nnx"

    def need_target_import(self) -> None:
        if self.target == "nnx":
            self.needed_imports.add(("flax", "nnx", None))
        elif self.linen_ns == LINEN_NS:
            self.needed_imports.add(("flax.linen", None, LINEN_NS))
        else:
            self.needed_imports.add(("flax", "linen", None))

    def need_definition(self, definition: cst.ClassDef) -> None:
        """The output calls this class: it goes before the file's first class or function, unless the file
        defines a class of that name already (converted before)."""
        self.needed_definitions.setdefault(definition.name.value, definition)

    def enabled(self, rule: str) -> bool:
        """`--select` / `--ignore` match rule ids by prefix, as ruff does (`HK00` selects HK001-HK009)."""
        if any(rule.startswith(prefix) for prefix in self.ignored):
            return False
        return self.selected is None or any(rule.startswith(prefix) for prefix in self.selected)


def attr(ns: str, name: str) -> cst.Attribute:
    """`ns.a.b` for name `a.b`."""
    node: cst.BaseExpression = cst.Name(ns)
    for part in name.split("."):
        node = cst.Attribute(value=node, attr=cst.Name(part))
    assert isinstance(node, cst.Attribute)
    return node


def add_todo_lines(statement: NodeT, todos: list[tuple[str, str]]) -> NodeT:
    """Put `# TODO(haiku2flax:RULE): reason` comments above a statement, once each.

    A statement that already carries a haiku2flax TODO (from an earlier run) gets no more: a second run
    over partly migrated code must change nothing.
    """
    if not todos or not hasattr(statement, "leading_lines"):
        return statement
    if any(line.comment is not None and line.comment.value.startswith(TODO_PREFIX) for line in statement.leading_lines):
        return statement
    new = [cst.EmptyLine(comment=cst.Comment(text)) for text in dict.fromkeys(todo_comment(rule, reason) for rule, reason in todos)]
    return statement.with_changes(leading_lines=[*statement.leading_lines, *new])
