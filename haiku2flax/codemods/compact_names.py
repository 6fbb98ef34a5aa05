"""Linen: explicit names for the layers of a class with several `@nn.compact` methods.

Why: Haiku names a layer within the method that builds it (`m/~encode/linear`, `m/~decode/linear`),
while Linen numbers a module's automatic names afresh at each outermost call of a compact method: the
first `nn.Dense` of `encode` and the first of `decode` are both `Dense_0`, and share (or clash over) their
parameters. So where a converted class has two compact methods or more, every layer they build inline
gets Haiku's name, prefixed by its method outside `__call__`::

    @nn.compact                                      @nn.compact
    def encode(self, x):                             def encode(self, x):
      return nn.Dense(8)(x)                    ->      return nn.Dense(8, name="encode_linear")(x)

Left to automatic names (a literal name would be taken twice): layers built in a loop or comprehension,
in a lambda, or in a nested function the method calls more than once.
"""

from __future__ import annotations

from collections import Counter

import libcst as cst

from ..engine import analysis
from ..engine.calls import keyword_arg
from ..engine.context import Context, FileFact
from ..engine.names import dotted_name
from ..engine.tables import Tables
from ..engine.walk import descendants
from ..targets import RULE_MODULE
from .interfaces import LINEN_NODES, LeaveResult, LinenMethod

REPEATING = (cst.For, cst.While, cst.ListComp, cst.SetComp, cst.DictComp, cst.GeneratorExp, cst.Lambda)


def _haiku_classes(module: cst.Module, ctx: Context) -> frozenset[str]:
    """The file's Haiku classes that stay classes in Linen (not those that become a function building
    their parent, which takes no `name`: `targets.linen`'s parent factories)."""
    classes = analysis.haiku_module_classes(module, ctx.names)
    return frozenset(
        name
        for name, classdef in classes.items()
        if not (
            len(classdef.bases) == 1
            and isinstance(parent := classdef.bases[0].value, cst.Name)
            and parent.value in classes
            and analysis.super_init_args(analysis.read_init(analysis.find_method(classdef, "__init__")))
        )
    )


HAIKU_CLASSES = FileFact(_haiku_classes)


def _layer_names(tables: Tables) -> dict[str, str]:
    """Linen layer API -> Haiku's default name for it (`Dense` -> `linear`); an API several Haiku layers
    become (`Conv`) keeps its own name in snake_case."""
    haiku: dict[str, set[str]] = {}
    for construct in tables.constructs.values():
        target = construct.targets.get("linen")
        if target is not None and "name" in construct.haiku_args:
            haiku.setdefault(target.api, set()).add(construct.haiku.rsplit(".", 1)[-1])
    return {api: analysis.snake_case(next(iter(names)) if len(names) == 1 else api) for api, names in haiku.items()}


@LINEN_NODES.on_leave(cst.ClassDef, rule=RULE_MODULE, after=True)
def linen_name_compact_layers(room: LinenMethod, original: cst.ClassDef, result: LeaveResult) -> cst.ClassDef | None:
    """Name the inline layers of each compact method, when the class has more than one."""
    if not isinstance(result, cst.ClassDef) or not isinstance(result.body, cst.IndentedBlock) or original.name.value not in room.ctx.fact(HAIKU_CLASSES):
        return None
    compact = f"{room.ctx.ns}.compact"
    methods = [
        s for s in result.body.body if isinstance(s, cst.FunctionDef) and any(dotted_name(d.decorator) == compact for d in s.decorators)
    ]
    if len(methods) < 2:
        return None
    taken = {name for method in methods for call in descendants(method) if isinstance(call, cst.Call) and (name := analysis.explicit_name(call))}
    namer = _LayerNamer(room, taken)
    body = [namer.named(s) if isinstance(s, cst.FunctionDef) and any(s is m for m in methods) else s for s in result.body.body]
    return result.with_changes(body=result.body.with_changes(body=body))


class _LayerNamer:
    """Haiku's names (`linear`, `linear_1`), per method, never one the class already uses."""

    def __init__(self, room: LinenMethod, taken: set[str]) -> None:
        self.layers = _layer_names(room.ctx.tables)
        self.classes = room.ctx.fact(HAIKU_CLASSES)
        self.ns = room.ctx.ns
        self.taken = taken

    def default_name(self, call: cst.Call) -> str | None:
        """Haiku's name for the layer `call` builds, or None when it builds none."""
        func = dotted_name(call.func)
        if func is None:
            return None
        if func in self.classes:
            return analysis.snake_case(func)
        prefix = f"{self.ns}."
        return self.layers.get(func[len(prefix) :]) if func.startswith(prefix) else None

    def unique(self, name: str) -> str:
        count = 0
        candidate = name
        while candidate in self.taken:
            count += 1
            candidate = f"{name}_{count}"
        self.taken.add(candidate)
        return candidate

    def named(self, method: cst.FunctionDef) -> cst.FunctionDef:
        """`method` with its layers named, after Haiku's `~method` scope outside `__call__`."""
        prefix = "" if method.name.value == "__call__" else f"{method.name.value}_"
        return method.with_changes(body=method.body.visit(_NameLayers(self, prefix, _built_repeatedly(method))))


class _NameLayers(cst.CSTTransformer):
    def __init__(self, namer: _LayerNamer, prefix: str, unnamed: set[cst.Call]) -> None:
        super().__init__()
        self.namer = namer
        self.prefix = prefix
        self.unnamed = unnamed  # built more than once per call of the method: automatic names

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        if original in self.unnamed or any(a.keyword is not None and a.keyword.value == "name" for a in updated.args):
            return updated
        default = self.namer.default_name(updated)
        if default is None:
            return updated
        name = self.namer.unique(self.prefix + default)
        return updated.with_changes(args=[*updated.args, keyword_arg("name", cst.SimpleString(f'"{name}"'))])


def _built_repeatedly(method: cst.FunctionDef) -> set[cst.Call]:
    """The calls in a loop, comprehension or lambda of `method`, or in a function nested in it that it
    names at more than one place (calls, or passes on)."""
    nested = {n.name.value for n in descendants(method.body) if isinstance(n, cst.FunctionDef)}
    uses = Counter(n.value for n in descendants(method.body) if isinstance(n, cst.Name) and n.value in nested)
    repeated = {name for name, count in uses.items() if count > 2}  # its definition's name is one
    return {
        call
        for node in descendants(method.body)
        if isinstance(node, REPEATING) or (isinstance(node, cst.FunctionDef) and node.name.value in repeated)
        for call in descendants(node)
        if isinstance(call, cst.Call)
    }
