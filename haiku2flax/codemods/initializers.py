"""Initializers bound to a name and passed on: `init = hk.initializers.VarianceScaling(2.0)`, `w_init=init`.

What it converts: a name (or `self.<attribute>`) bound once, in the whole file, to an `hk.initializers.*`
call the initializer tables know, and read only where an initializer goes: a table layer's initializer
argument (`w_init=`, `b_init=`, `scale_init=`...), `hk.nets.MLP(w_init=, b_init=)`, or the `init` of
`hk.get_parameter`. The binding becomes the Flax initializer, and the layers take the name as it is.
An initializer that reads fans (VarianceScaling, Orthogonal...) still goes only where its table allows
it (not to a 1-D parameter: jax reads no fans there); anything else keeps the layer's TODO.

Why: Haiku code often builds one initializer and hands it to several layers; converting the binding
once keeps that structure, where converting each use would have to inline the call.

Example::

    init = hk.initializers.VarianceScaling(2.0)           init = nn.initializers.variance_scaling(2.0, 'fan_in', 'truncated_normal')
    x = hk.Linear(8, w_init=init)(x)                      x = nn.Dense(8, kernel_init=init)(x)
"""

from __future__ import annotations

from collections import Counter
from typing import TypeVar, cast

import libcst as cst

from ..engine.calls import Unconvertible, convert_initializer
from ..engine.context import Context
from ..engine.names import ImportedNames, dotted_name
from ..engine.registry import Status, register
from ..engine.rewriter import Rewriter
from ..engine.tables import Tables
from ..engine.walk import Walker
from .interfaces import NNX_FILE_CALLS, CallSite, FileRoom, on_call

RULE_INITIALIZER_BINDING = register(
    "HK202", "initializer-binding", Status.CONVERTED,
    "a name bound to an hk.initializers call and passed to layers -> the Flax initializer, passed on as it is", __name__,
)

INITIALIZER_CONVERSIONS = ("initializer", "elementwise_initializer")
COMPOSITE_INITIALIZERS = {"nets.MLP": ("w_init", "b_init")}  # rules that hand these to their inner Linear
GET_PARAMETER_INIT = ("init", 3)  # keyword, position of `hk.get_parameter`'s initializer

Node = TypeVar("Node", bound=cst.CSTNode)


def _key(node: cst.BaseExpression) -> str | None:
    """`init` or `self.init`: the expressions a binding can be read back through."""
    name = dotted_name(node)
    if name is None or name.count(".") > 1 or ("." in name and not name.startswith("self.")):
        return None
    return name


class _Bindings(Walker):
    """Candidate bindings, every read of them, and the reads in initializer positions."""

    def __init__(self, names: ImportedNames, tables: Tables) -> None:
        self.names = names
        self.tables = tables
        self.bound: dict[str, list[cst.Call | None]] = {}  # key -> values bound to it (None: not an initializer call)
        self.reads: Counter[str] = Counter()
        self.initializer_reads: Counter[str] = Counter()

    def visit_Assign(self, node: cst.Assign) -> None:
        for target in node.targets:
            key = _key(target.target)
            if key is not None:
                value = node.value
                known = isinstance(value, cst.Call) and (self.names.haiku_api(value.func) or "") in self.tables.initializers
                self.bound.setdefault(key, []).append(value if known and isinstance(value, cst.Call) else None)
                self.reads[key] -= 1  # the target itself is walked as a read below

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        key = _key(node.target)
        if key is not None:
            self.bound.setdefault(key, []).append(None)

    def visit_Name(self, node: cst.Name) -> None:
        self.reads[node.value] += 1

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        key = _key(node)
        if key is not None and "." in key:
            self.reads[key] += 1
        else:
            self.walk(node.value)  # `x.init` does not read `init`
        return False

    def visit_Arg(self, node: cst.Arg) -> bool:
        self.walk(node.value)  # nor does the keyword of `init=...`
        return False

    def visit_Call(self, node: cst.Call) -> None:
        for arg in self._initializer_args(node):
            key = _key(arg.value)
            if key is not None:
                self.initializer_reads[key] += 1

    def _initializer_args(self, call: cst.Call) -> list[cst.Arg]:
        api = self.names.haiku_api(call.func)
        if api is None:
            return []
        if api == "get_parameter":
            keyword, position = GET_PARAMETER_INIT
            positional = [a for a in call.args if a.keyword is None]
            return [a for a in call.args if a.keyword is not None and a.keyword.value == keyword] + positional[position : position + 1]
        construct = self.tables.get(api)
        wanted: tuple[str, ...] = COMPOSITE_INITIALIZERS.get(api, ())
        if construct is not None:
            wanted = tuple(name for name, how in construct.convert.items() if how in INITIALIZER_CONVERSIONS)
        return [a for a in call.args if a.keyword is not None and a.keyword.value in wanted]


def initializer_bindings(module: cst.Module, names: ImportedNames, tables: Tables) -> dict[str, cst.Call]:
    """Key (`init`, `self.init`) -> the `hk.initializers.*` call bound to it, for bindings read only as initializers."""
    found = _Bindings(names, tables)
    found.walk(module)
    return {
        key: values[0]
        for key, values in found.bound.items()
        if len(values) == 1 and values[0] is not None and found.initializer_reads[key] >= 1 and found.reads[key] == found.initializer_reads[key]
    }


@on_call("initializers.*", rule=RULE_INITIALIZER_BINDING)
def convert_binding(room: FileRoom, call: CallSite) -> cst.BaseExpression | None:
    """The bound `hk.initializers.*` call becomes the Flax initializer (the reads are passed on by
    `convert_initializer`)."""
    ctx = room.ctx
    if not any(bound is call.original for bound in ctx.initializer_bindings.values()):
        return None
    try:
        converted = convert_initializer(call.updated, ctx, ctx.ns)
    except Unconvertible as reason:
        room.todo(call.original, RULE_INITIALIZER_BINDING, str(reason))
        return call.updated
    room.converted(call.original, RULE_INITIALIZER_BINDING, "an initializer bound to a name -> the Flax initializer")
    return converted


NNX_FILE_CALLS.on("initializers.*", rule=RULE_INITIALIZER_BINDING)(convert_binding)  # not a decorator: `_BindingRule` calls the function on a plain file room


class _BindingRule(Rewriter):
    """The binding rule alone, for statements a target moves rather than visits."""

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        if not self.ctx.enabled(RULE_INITIALIZER_BINDING):
            return updated
        converted = convert_binding(self, CallSite(original, updated, self.ctx.names.haiku_api(original.func) or ""))
        return converted if converted is not None else updated


def convert_bindings(node: Node, ctx: Context) -> Node:
    """`node` with its initializer bindings converted: for statements a target moves rather than visits."""
    return cast(Node, node.visit(_BindingRule(ctx))) if ctx.initializer_bindings else node  # calls become calls
