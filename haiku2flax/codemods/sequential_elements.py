"""NNX: a layer a method stores in a local only to hand it to `hk.Sequential` is built in the Sequential.

What it converts: a layer stored in a local (`bn = hk.BatchNorm(...)`), maybe bound to its mode
argument (`bn = partial(bn, is_training=is_training)`), and then used once, as an element of an
`hk.Sequential` literal, is built in that Sequential: NNX builds the Sequential in `__init__`, where
the method's local does not exist, and sizes the layer from the one before it. The `partial` goes:
the flag it bound, read nowhere else, becomes the module's train/eval mode (`model.train()` /
`model.eval()`), as for a layer called with it.

Why: in Haiku the stored layer and the Sequential's own layers are created when the Sequential runs,
in its order, so building it inside the Sequential keeps its weights and their order. A layer the
method also calls or passes on, one bound to other arguments than its mode, or a flag the method
reads elsewhere too, keeps the generic TODO.

Example (NNX)::

    bn = hk.BatchNorm(True, True, 0.9)                   # in __init__:
    bn = partial(bn, is_training=is_training)           self.mlp = nnx.Sequential(
    mlp = hk.Sequential([hk.Linear(7), bn, jnp.tanh])       nnx.Linear(din, 7, rngs=rngs),
    return mlp(x)                                           nnx.BatchNorm(7, use_scale=True, ..., rngs=rngs), jnp.tanh)
                                                        # in __call__: return self.mlp(x)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import libcst as cst

from ..engine import analysis
from ..engine.calls import Unconvertible, code, convert_layer_call_args
from ..engine.context import Context
from ..engine.walk import descendants
from .composites import composite_api

PARTIALS = ("partial", "functools.partial")


@dataclass
class _Stored:
    constructor: cst.Call
    statements: list[cst.BaseStatement] = field(default_factory=list)  # the lines binding it: built, then bound with `partial`
    flags: set[str] = field(default_factory=set)  # the flags its `partial` binds as its mode


class _Reads(analysis.VariableWalker):
    """How often each name is written or read in a function, and where a Sequential literal holds it."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.counts: dict[str, int] = {}
        self.elements: dict[str, list[tuple[cst.Call, int]]] = {}  # name -> (Sequential call, index in its literal)

    def visit_Call(self, node: cst.Call) -> None:
        layers = node.args[0].value if node.args and composite_api(self.ctx, node) == "Sequential" else None
        if isinstance(layers, cst.List | cst.Tuple):
            for index, element in enumerate(layers.elements):
                if isinstance(element.value, cst.Name):
                    self.elements.setdefault(element.value.value, []).append((node, index))

    def visit_Name(self, node: cst.Name) -> None:
        self.counts[node.value] = self.counts.get(node.value, 0) + 1


def _partial_flags(
    value: cst.BaseExpression, stored: _Stored, name: str, ctx: Context, mode_flag: Callable[[cst.Arg], str | None]
) -> set[str] | None:
    """The flags `partial(name, kw=flag)` binds as the layer's mode, or None where it binds anything else."""
    if not (isinstance(value, cst.Call) and code(value.func) in PARTIALS and value.args and code(value.args[0].value) == name):
        return None
    keywords = value.args[1:]
    api = ctx.names.haiku_api(stored.constructor.func)
    construct = ctx.tables.get(api) if api is not None else None
    if construct is None or not keywords or any(a.keyword is None for a in keywords):
        return None
    try:
        args = convert_layer_call_args(cst.Call(cst.Name("_"), [cst.Arg(cst.Name("x")), *keywords]), construct, "nnx")
    except Unconvertible:
        return None
    flags = [mode_flag(a) for a in args[1:]]
    return {f for f in flags if f is not None} if None not in flags else None


def inline_sequential_elements(
    function: cst.FunctionDef, ctx: Context, mode_flag: Callable[[cst.Arg], str | None], method_locals: set[str]
) -> cst.FunctionDef:
    """`function` with each layer it stores only for a Sequential literal built in that literal (see the
    module); only where `__init__` can build that Sequential (`method_locals`: the names the method binds),
    so that a Sequential left as it was keeps its layers as they were."""
    if not isinstance(function.body, cst.IndentedBlock) or not ctx.mentions("Sequential"):
        return function
    stored: dict[str, _Stored] = {}
    for statement in function.body.body:
        assign = analysis.simple_assign(statement)
        if assign is None or not isinstance(assign[0], cst.Name) or any(line.comment for line in analysis.leading_lines(statement)):
            continue
        name, value = assign[0].value, assign[1]
        if name not in stored and isinstance(value, cst.Call) and (api := ctx.names.haiku_api(value.func)) is not None and ctx.tables.get(api):
            stored[name] = _Stored(value, [statement])
        elif name in stored and len(stored[name].statements) == 1 and (flags := _partial_flags(value, stored[name], name, ctx, mode_flag)):
            stored[name].statements.append(statement)
            stored[name].flags = flags
    if not stored:
        return function
    reads = _Reads(ctx)
    reads.walk(function.body)
    written_and_read = {name: 1 + 2 * (len(layer.statements) - 1) + 1 for name, layer in stored.items()}  # built, bound, in the literal
    top_level = {id(n) for s in function.body.body if isinstance(s, cst.SimpleStatementLine) for n in descendants(s)}

    def buildable(call: cst.Call) -> bool:  # at the top level, reading nothing of the method's but its stored layers
        return id(call) in top_level and not (analysis.Names.of(call).used - stored.keys()) & method_locals

    kept = {
        n: layer
        for n, layer in stored.items()
        if len(reads.elements.get(n, [])) == 1 and reads.counts.get(n) == written_and_read[n] and buildable(reads.elements[n][0][0])
    }
    bound = Counter(flag for layer in kept.values() for flag in layer.flags)
    moved: dict[tuple[cst.Call, int], cst.Call] = {}
    dropped: set[cst.BaseStatement] = set()
    for name, layer in kept.items():
        if all(reads.counts.get(flag) == bound[flag] for flag in layer.flags):  # read only by the `partial`s that go
            moved[reads.elements[name][0]] = layer.constructor
            dropped.update(layer.statements)
    if not moved:
        return function
    body = [s for s in function.body.body if s not in dropped]
    return function.with_changes(body=function.body.with_changes(body=[_visited(s, _BuildElements(moved)) for s in body]))


class _BuildElements(cst.CSTTransformer):
    """Each Sequential literal element that stood for a stored layer replaced by the layer's constructor."""

    def __init__(self, moved: dict[tuple[cst.Call, int], cst.Call]) -> None:
        super().__init__()
        self.moved = moved

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.Call:
        indices = {index: constructor for (call, index), constructor in self.moved.items() if call is original}
        if not indices:
            return updated
        layers = updated.args[0].value
        assert isinstance(layers, cst.List | cst.Tuple)  # `_Reads` found the element in such a literal
        elements = [e.with_changes(value=indices[i]) if i in indices else e for i, e in enumerate(layers.elements)]
        return updated.with_changes(args=[updated.args[0].with_changes(value=layers.with_changes(elements=elements)), *updated.args[1:]])


def _visited(statement: cst.BaseStatement, transformer: cst.CSTTransformer) -> cst.BaseStatement:
    result = statement.visit(transformer)
    assert isinstance(result, cst.BaseStatement)  # the transformer replaces calls by calls
    return result
