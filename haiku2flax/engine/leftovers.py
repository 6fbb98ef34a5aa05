"""The last safety net: every Haiku reference the rules left behind carries a TODO.

A construct no rule converts (yet) must never pass silently: after the rules ran, any statement that
still refers to a Haiku name and has no `# TODO(haiku2flax…)` comment above it gets
`# TODO(haiku2flax:HK000): <name> has no conversion rule; convert it by hand`, and a report note
(positioned in the output, where the TODO is). Import statements are left alone: the import pass
keeps an import exactly while something uses it.

A class of the file the rules left Haiku (a user `hk.RNNCore`, a layer subclass no table reads) counts
as a Haiku name where a Flax module would build it: a call of it in a Flax class, a call passing it to
one (`Tower(factory=functools.partial(Core))`), and the call of that argument in the class
(`self.factory(...)`) get HK000's TODO saying so; Haiku raises there, outside a transform.

HK800: where Flax has no faithful equivalent, the `[[guidance]]` tables (`rules/guidance.toml`) say so,
and the TODO gives their reason and what to write instead, per target::

    # TODO(haiku2flax:HK800): Flax cannot intercept parameter creation; pass the initializer or
    # `param_dtype=` to each layer, or wrap the module in `nn.map_variables` (applied at init)
    with hk.custom_creator(to_bf16):
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import libcst as cst

from .context import add_todo_lines
from .names import ImportedNames
from .notes import TODO_PREFIX
from .registry import RULES, Status, register
from .rewriter import STATEMENTS
from .tables import Tables
from .walk import descendants

RULE_UNSUPPORTED = register(
    "HK000", "unsupported", Status.NOT_CONVERTED, "a Haiku API no rule converts: left as it was, with a TODO", __name__
)
RULE_NO_EQUIVALENT = register(
    "HK800", "no-flax-equivalent", Status.NOT_CONVERTED,
    "custom_creator/getter/setter, mixed_precision, eval_shape, data_structures, EMAs, lift, ... (rules/guidance.toml): TODO saying why and what to write",
    __name__,
)


class _Leftovers(cst.CSTTransformer):
    def __init__(
        self, names: ImportedNames, clean: set[int], tables: Tables, target: str, kept: Collection[str],
        flax_classes: list[cst.ClassDef], factories: Mapping[str, Mapping[str, str]],
    ) -> None:
        super().__init__()
        self.names = names
        self.tables = tables
        self.target = target
        self.clean = clean  # ids of top-level statements that use no Haiku name: not visited
        self.kept = kept  # the file's classes that are still Haiku modules
        self.flax_classes = {id(c) for c in flax_classes}  # the module-level Flax classes: they cannot build the kept ones
        self.flax_names = {c.name.value for c in flax_classes}
        self.factories = factories  # Flax class -> its argument given a kept class (`column_net_factory`) -> that class
        self._in_flax_class: cst.ClassDef | None = None
        self.marked: list[tuple[cst.CSTNode, list[tuple[str, str]]]] = []  # (statement in the output, (rule, reason)s)
        self._found: list[list[str]] = []  # per open statement: Haiku names it refers to

    def visit_Import(self, node: cst.Import) -> bool:
        return False

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        return False

    def on_visit(self, node: cst.CSTNode) -> bool:
        if id(node) in self.clean:
            return False
        if id(node) in self.flax_classes:
            assert isinstance(node, cst.ClassDef)  # (only classes are collected)
            self._in_flax_class = node
        if isinstance(node, STATEMENTS):
            self._found.append([])
        if isinstance(node, cst.Call) and self._found:
            self._found[-1] += self._kept_built(node)
        if isinstance(node, cst.Attribute | cst.Name) and self._found:
            api = self.names.haiku_api(node)
            if api is not None or (isinstance(node, cst.Name) and self.names.qualify(node) is not None):
                self._found[-1].append(self.names.display(api) if api else node.value if isinstance(node, cst.Name) else "")
                return False
            if isinstance(node, cst.Attribute):  # `nnx.Module` does not refer to a name `Module`
                node.value.visit(self)
                return False
        return super().on_visit(node)

    def _kept_built(self, call: cst.Call) -> list[str]:
        """The kept Haiku classes a call builds in a Flax module, or passes to one to build."""
        called = _called_name(call)
        if called is None:
            return []
        if called in self.flax_names:  # `Tower(factory=functools.partial(ConvLevel, ...))`
            return _kept_names(call.args, self.kept)
        if self._in_flax_class is None:
            return []
        if called in self.kept:  # `ConvLevel(...)`
            return [called]
        given = self.factories.get(self._in_flax_class.name.value, {})
        return [given[called]] if called in given and _reads_argument(call) else []  # `self.column_net_factory(...)`

    def on_leave(
        self, original_node: cst.CSTNodeT, updated_node: cst.CSTNodeT
    ) -> cst.CSTNodeT | cst.RemovalSentinel | cst.FlattenSentinel[cst.CSTNodeT]:
        if id(original_node) in self.clean:
            return original_node
        if original_node is self._in_flax_class:
            self._in_flax_class = None
        result = super().on_leave(original_node, updated_node)
        if isinstance(original_node, STATEMENTS):
            found = self._found.pop()
            comments = [line.comment.value for line in original_node.leading_lines if line.comment]
            if found and not any(c.startswith(TODO_PREFIX) for c in comments) and isinstance(result, cst.CSTNode):
                todos = self._todos(list(dict.fromkeys(found)))
                result = add_todo_lines(result, todos)
                self.marked.append((result, todos))
        return result

    def _todos(self, found: list[str]) -> list[tuple[str, str]]:
        """(rule, reason) pairs: the guidance tables' advice, else HK000's."""
        kept = [name for name in found if name in self.kept]
        found = [name for name in found if name not in self.kept]
        guided = {name: self.tables.guidance_for(name.removeprefix("hk.")) for name in found}
        todos = [(RULE_NO_EQUIVALENT, f"`{name}`: {g.reason(self.target)}") for name, g in guided.items() if g is not None]
        rest = [name for name, g in guided.items() if g is None]
        if kept:
            todos.append((RULE_UNSUPPORTED, (
                f"{', '.join(f'`{n}`' for n in kept)} is still a Haiku module (its class says why), which a Flax "
                "module cannot build; convert that class first"
            )))
        return todos + ([(RULE_UNSUPPORTED, self._reason(rest))] if rest else [])

    def _tabled(self, api: str) -> bool:
        return self.tables.get(api) is not None or api in self.tables.initializers

    def _reason(self, found: list[str]) -> str:
        """Say whether the API has a rule that could not apply here, or no rule at all."""
        tabled = [n for n in found if self._tabled(n.removeprefix("hk."))]
        claimed = {api: rule for rule in RULES.values() for api in rule.apis}  # APIs rules (not tables) convert
        by_rule = [n for n in found if n not in tabled and n.removeprefix("hk.") in claimed]
        unknown = [n for n in found if n not in tabled and n not in by_rule]
        parts = []
        if unknown:
            parts.append(f"{', '.join(f'`{n}`' for n in unknown)} has no conversion rule")
        if tabled:
            parts.append(
                f"{', '.join(f'`{n}`' for n in tabled)} is used in a way its rule cannot convert"
                " (stored and called later, built in a loop, `**kwargs`)"
            )
        for rule in dict.fromkeys(claimed[n.removeprefix("hk.")] for n in by_rule):
            mine = ", ".join(f"`{n}`" for n in by_rule if claimed[n.removeprefix("hk.")] == rule)
            parts.append(f"{mine} is used in a way {rule.id} ({rule.name}) cannot convert here")
        return "; ".join(parts) + "; convert it by hand"


def mark_leftovers(
    module: cst.Module, names: ImportedNames, users: Collection[cst.BaseStatement], tables: Tables, target: str
) -> tuple[cst.Module, list[tuple[cst.CSTNode, list[tuple[str, str]]]]]:
    """`module` with a TODO above every statement that still uses Haiku without one, and the (rule, reason)s per statement.

    `users`: the top-level statements that read a name bound by a Haiku import; the others are left alone.
    """
    kept = _haiku_classes(module, names)
    flax_classes = [s for s in module.body if isinstance(s, cst.ClassDef) and s.name.value not in kept and _is_flax_class(s)]
    factories = _factories(module, kept, {c.name.value for c in flax_classes})
    if kept:  # and the statements that may build a kept class in a Flax module
        users = [
            *users,
            *(s for s in module.body if all(s is not u for u in users) and (_kept_names([s], kept) or getattr(s, "name", None) in factories)),
        ]
    if not users:
        return module, []
    clean = {id(statement) for statement in module.body} - {id(statement) for statement in users}
    leftovers = _Leftovers(names, clean, tables, target, kept, flax_classes, factories)
    marked = module.visit(leftovers)
    if not leftovers.marked:
        return module, []
    return marked, leftovers.marked


def _haiku_classes(module: cst.Module, names: ImportedNames) -> set[str]:
    """The module-level classes still subclassing a Haiku class (`hk.Module`, `hk.Conv1D`), or one of those."""
    kept: set[str] = set()
    for statement in module.body:
        if isinstance(statement, cst.ClassDef) and any(
            names.haiku_api(base.value) is not None or (isinstance(base.value, cst.Name) and base.value.value in kept)
            for base in statement.bases
        ):
            kept.add(statement.name.value)
    return kept


def _is_flax_class(node: cst.ClassDef) -> bool:
    """A class the rewrite made a Flax module: a base `nn.Module` / `nnx.Module` (not Haiku's: those are kept)."""
    return any(isinstance(base.value, cst.Attribute) and base.value.attr.value == "Module" for base in node.bases)


def _called_name(call: cst.Call) -> str | None:
    """`X` for a call of `X(...)` or `a.X(...)`."""
    func = call.func
    return func.attr.value if isinstance(func, cst.Attribute) else func.value if isinstance(func, cst.Name) else None


def _kept_names(nodes: Sequence[cst.CSTNode], kept: Collection[str]) -> list[str]:
    """The names (`X`, or the attribute of `a.X`) from `kept` that `nodes` hold."""
    return [n.value for node in nodes for n in descendants(node) if isinstance(n, cst.Name) and n.value in kept]


def _factories(module: cst.Module, kept: Collection[str], flax_names: Collection[str]) -> dict[str, dict[str, str]]:
    """Per Flax class, its keyword arguments that some call gives a kept class (`Tower(net_factory=partial(Mlp, ...))`)."""
    found: dict[str, dict[str, str]] = {}
    if not kept:
        return found
    for node in descendants(module):
        if isinstance(node, cst.Call) and (called := _called_name(node)) in flax_names and called is not None:
            for arg in node.args:
                names = _kept_names([arg.value], kept)
                if arg.keyword is not None and names:
                    found.setdefault(called, {})[arg.keyword.value] = names[0]
    return found


def _reads_argument(call: cst.Call) -> bool:
    """`call` calls an argument as a Flax module holds it: `self.name(...)` (a Linen field) or `name(...)` (NNX)."""
    func = call.func
    return isinstance(func, cst.Name) or (isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.value.value == "self")
