"""NNX input sizes that dataflow cannot follow, probed at construction from the model's input shape.

What it converts: a layer of `__call__` whose input size the symbolic sizes lose (after a flatten or
reshape of convolution outputs, whose size depends on the spatial shape, or after computation they do
not follow) is built in `__init__` after a shape probe of the statements before it, run on the layers
already built: `nnx.eval_shape` on a zero input of the model's input shape (integers where the code
looks the input up in an `hk.Embed`), which the constructor then takes (`input_shape`, without the
batch axis) in place of the input's last axis (`din`).

Why: Haiku read those sizes off the input of `init`; a Flax expert who does not want to hard-code
them lets JAX trace the layers before. `nnx.eval_shape` (not `jax.eval_shape`) takes the module as an
argument, so layers that draw random numbers (dropout) or update state may be probed too, and nothing
is computed or changed. Only statements at the top level of `__call__` that read nothing but its input
and what they assign are probed; elsewhere the size stays a constructor argument with a TODO (HK006).
A layer called inside a function lifted by `hk.vmap` (over the leading axis) or `hk.remat` on a variable
is probed on what the function's parameter receives: one row of it (`x[0]`), or the variable itself.
A module class that probes is built by its parent with the parent's own `input_shape` where it is
called on the parent's input, else with that input's shape probed the same way (`.shape[1:]`).
`--ignore HK610` keeps those TODOs everywhere.

Example::

    x = hk.Conv2D(32, 3)(x)                 self.conv2_d = nnx.Conv(input_shape[-1], 32, (3, 3), rngs=rngs)
    x = hk.Flatten()(x)
    x = hk.Linear(10)(x)                    def linear_input(self, x):
                                              x = self.conv2_d(x)
                                              return x.reshape(x.shape[0], -1)

                                            linear_in_features = nnx.eval_shape(linear_input, self, jnp.zeros((1, *input_shape))).shape[-1]
                                            self.linear = nnx.Linear(linear_in_features, 10, rngs=rngs)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst

from ..engine import analysis
from ..engine.calls import parsed
from ..engine.context import attr
from ..engine.names import dotted_name
from ..engine.registry import Status, register
from ..engine.walk import Walker
from .interfaces import NNX_NODES, NnxMethod

RULE_SHAPE_PROBE = register(
    "HK610", "shape-probe", Status.CONVERTED, "NNX input sizes dataflow loses: probed at construction from the input shape", __name__
)
INPUT_SHAPE = "input_shape"  # the constructor argument: the model's input shape without the batch axis
# What code reads of an array; reading anything else of the input (`observation.colors`) says it is no array.
ARRAY_ATTRIBUTES = {
    "shape", "dtype", "ndim", "size", "T", "at", "reshape", "astype", "transpose", "swapaxes", "squeeze", "flatten",
    "ravel", "sum", "mean", "std", "var", "max", "min", "prod", "argmax", "argmin", "cumsum", "clip", "round", "take",
}


@dataclass(frozen=True)
class _Step:
    """A converted top-level statement of `__call__`, and the variables it assigns and reads."""

    statement: cst.BaseStatement
    assigned: frozenset[str]
    reads: frozenset[str]
    always: bool  # a simple statement: it runs, and its assignments replace what came before


@dataclass
class _Prefix:
    """The converted top-level statements of `__call__` so far; `broken` once one cannot be replayed."""

    steps: list[_Step] = field(default_factory=list)
    entered: int = 0  # top-level statements visited: one more than those kept while in one, unless one was lost
    current: cst.CSTNode | None = None  # the top-level statement being converted
    broken: bool = False


class _Unreplayable(Walker):
    """Finds what a probe cannot run again (a return, a change of state such as `self.count = ...` or
    `x[0] = ...`, a layer built there, any Haiku call left as it was), and the variables assigned."""

    def __init__(self, room: NnxMethod) -> None:
        self.room = room
        self.found = False
        self.assigned: set[str] = set()

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.found = True  # a function defined in `__call__` is not replayed

    def visit_Return(self, node: cst.Return) -> None:
        self.found = True

    def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
        self._assigns(node.target)

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self._assigns(node.target)

    def visit_For(self, node: cst.For) -> None:
        self._assigns(node.target)

    def _assigns(self, target: cst.BaseExpression) -> None:
        if isinstance(target, cst.Tuple):
            for element in target.elements:
                self._assigns(element.value)
        elif isinstance(target, cst.Name):
            self.assigned.add(target.value)
        else:
            self.found = True

    def visit_Call(self, node: cst.Call) -> None:
        self.found |= self.room.ctx.names.haiku_api(node.func) is not None or self.room.conversion.is_module_constructor(node)


class _StructuredUse(Walker):
    """Whether a variable is read as something else than an array: a field (`x.colors`) or a key (`x["image"]`)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.found = False

    def visit_Attribute(self, node: cst.Attribute) -> None:
        self.found |= isinstance(node.value, cst.Name) and node.value.value == self.name and node.attr.value not in ARRAY_ATTRIBUTES

    def visit_Subscript(self, node: cst.Subscript) -> None:
        keys = [e.slice.value for e in node.slice if isinstance(e.slice, cst.Index)]
        self.found |= isinstance(node.value, cst.Name) and node.value.value == self.name and any(isinstance(k, cst.SimpleString) for k in keys)


class _SelfCalls(Walker):
    """The attributes called as `self.<attribute>(...)`."""

    def __init__(self) -> None:
        self.attributes: set[str] = set()

    def visit_Call(self, node: cst.Call) -> None:
        attribute = analysis.self_attribute(node.func)
        if attribute is not None:
            self.attributes.add(attribute)


def _applies_an_embedding(room: NnxMethod, body: list[cst.BaseStatement]) -> bool:
    """The replayed code looks something up in an `hk.Embed`: the input `init` saw held integer indices."""
    embeddings = {a for a, source in room.conversion.built_in_init() if isinstance(source, cst.Call) and room.ctx.names.haiku_api(source.func) == "Embed"}
    embeddings |= {
        a for a, layer in room.conversion.init_layers.items() if isinstance(layer.resolved, cst.Call) and (dotted_name(layer.resolved.func) or "").endswith(".Embed")
    }
    calls = _SelfCalls()
    calls.walk(cst.IndentedBlock(body))
    return bool(calls.attributes & embeddings)


@dataclass
class _StandIns:
    """The parameters of the lifted function being converted (`hk.vmap(lambda row: ...)(x)`), and what a
    probe replays for each (`x[0]`); None where nothing can stand for it."""

    by_name: dict[str, cst.BaseExpression | None] = field(default_factory=dict)


def stand_in(room: NnxMethod, name: str, expression: cst.BaseExpression | None) -> None:
    """Until `forget_stand_in`, a probe of a layer's input that reads the variable `name` replays `expression`."""
    room.family(_StandIns).by_name[name] = expression


def forget_stand_in(room: NnxMethod, name: str) -> None:
    room.family(_StandIns).by_name.pop(name, None)


def _stores_layer(room: NnxMethod, statement: object) -> bool:
    assign = analysis.simple_assign(statement) if isinstance(statement, cst.SimpleStatementLine) else None
    return assign is not None and isinstance(assign[0], cst.Name) and isinstance(assign[1], cst.Call) and room.conversion.is_module_constructor(assign[1])


def _top_level(room: NnxMethod, statement: cst.CSTNode) -> bool:
    return any(statement is s for s in room.method.body.body)


def _record(room: NnxMethod, updated: object) -> None:
    """Keep a converted top-level statement of `__call__`: the layers after it may need it probed."""
    prefix = room.family(_Prefix)
    if prefix.broken:
        return
    if _stores_layer(room, updated):  # `bn = hk.BatchNorm(...)`: dropped, the layer is built in `__init__`
        prefix.entered -= 1
        return
    check = _Unreplayable(room)
    if isinstance(updated, cst.BaseStatement):
        check.walk(updated)
    if not isinstance(updated, cst.BaseStatement) or check.found:
        prefix.broken = True
        return
    always = isinstance(updated, cst.SimpleStatementLine)
    reads = set().union(*(_reads(small) for small in updated.body)) if isinstance(updated, cst.SimpleStatementLine) else analysis.Names.of(updated).used
    statement = updated.with_changes(leading_lines=[])  # its comments (TODOs) stay in `__call__`
    prefix.steps.append(_Step(statement, frozenset(check.assigned), frozenset(reads), always))


def _reads(small: cst.BaseSmallStatement) -> set[str]:
    """The variables a simple statement reads: for an assignment, those of its value (and of an augmented target)."""
    if isinstance(small, cst.Assign | cst.AnnAssign) and small.value is not None:
        return analysis.Names.of(small.value).used
    return analysis.Names.of(small).used


def _slice(steps: list[_Step], value: cst.BaseExpression) -> list[_Step]:
    """The steps `value` depends on, in order: walking back, a step is kept when it assigns a variable
    still needed, and then what it reads is needed (a step that may not run leaves the old value needed too)."""
    needed = analysis.Names.of(value).used
    kept = []
    for step in reversed(steps):
        if step.assigned & needed:
            kept.append(step)
            needed = (needed - step.assigned if step.always else needed) | step.reads
    return kept[::-1]


STATEMENTS = (cst.SimpleStatementLine, cst.If, cst.For, cst.While, cst.With, cst.Try, cst.TryStar, cst.Match, cst.FunctionDef, cst.ClassDef)


def _count(room: NnxMethod, node: cst.CSTNode) -> None:
    """A statement starts; one at the top level that leaves as several, or none, is not kept (see `_record`)."""
    if _top_level(room, node):
        prefix = room.family(_Prefix)
        prefix.entered += 1
        prefix.current = node


def _keep(room: NnxMethod, original: cst.CSTNode, updated: cst.CSTNode) -> None:
    if _top_level(room, original):  # a nested statement is kept with its block
        _record(room, updated)


for _statement in STATEMENTS:
    NNX_NODES.on_visit(_statement, rule=RULE_SHAPE_PROBE)(_count)
    NNX_NODES.on_leave(_statement, rule=RULE_SHAPE_PROBE, after=True)(_keep)


def probed_input_size(
    room: NnxMethod, attribute: str, value: cst.BaseExpression, node: cst.CSTNode, whole_shape: bool = False
) -> cst.Name | None:
    """`<attribute>_in_features`, computed in `__init__` by a shape probe of the statements of `__call__`
    before `value` (the layer's input) on the model's input shape; None where they cannot be replayed.
    With `whole_shape`: `<attribute>_input_shape`, the shape without the batch axis (for a submodule that
    probes its own sizes), or the model's `input_shape` itself where `value` is the input."""
    prefix = room.family(_Prefix)
    params = room.method.params.params
    if not room.ctx.enabled(RULE_SHAPE_PROBE) or room.method.name.value != "__call__" or len(params) < 2 or prefix.broken:
        return None
    if INPUT_SHAPE in room.conversion.locals_in_init:
        return None  # the class has an argument of that name already
    if len(prefix.steps) != prefix.entered - 1 or not isinstance(prefix.current, cst.SimpleStatementLine):
        return None  # a statement before was removed or split, or the layer is in a block: no straight line leads to it
    stand_ins = room.family(_StandIns).by_name
    standing = {name: stand_ins[name] for name in analysis.Names.of(value).used & stand_ins.keys()}
    replayed = {name: expression for name, expression in standing.items() if expression is not None}
    if len(replayed) != len(standing) or (replayed and whole_shape):
        return None  # the input is a parameter of a function lifted over the method's variables: no straight line leads to it
    value = analysis.substitute(value, replayed)
    data = params[1].name.value
    steps = _slice(prefix.steps, value)
    if whole_shape and not steps and value.deep_equals(cst.Name(data)):
        return cst.Name(INPUT_SHAPE)
    statements = [room.without_mode_args(step.statement) for step in steps]  # the probe runs in the mode NNX layers start in
    body = [*statements, cst.SimpleStatementLine([cst.Return(value)])]
    last = statements[-1].body if statements and isinstance(statements[-1], cst.SimpleStatementLine) else ()
    if len(last) == 1 and isinstance(last[0], cst.Assign) and len(last[0].targets) == 1 and last[0].targets[0].target.deep_equals(value):
        body[-2:] = [cst.SimpleStatementLine([cst.Return(last[0].value)])]  # `x = f(x); return x` -> `return f(x)`
    structured = _StructuredUse(data)
    structured.walk(cst.IndentedBlock(body))
    if structured.found:
        return None  # the input is a structure: no zero array stands for it
    assigned = set().union(*(step.assigned for step in steps))
    if analysis.Names.of(cst.IndentedBlock(body)).used & room.method_locals - assigned - {"self", data}:
        return None  # another argument of `__call__`, or a layer stored in a variable and left as it was
    function = f"{attribute}_input"
    size = cst.Name(f"{attribute}_input_shape" if whole_shape else f"{attribute}_in_features")
    probe = cst.FunctionDef(
        cst.Name(function), cst.Parameters([cst.Param(cst.Name("self")), cst.Param(cst.Name(data))]), cst.IndentedBlock(body),
        leading_lines=[cst.EmptyLine(indent=False)],
    )
    room.ctx.needed_imports.add(("jax.numpy", None, "jnp"))
    dtype = ", jnp.int32" if _applies_an_embedding(room, body) else ""
    sample = parsed(f"jnp.zeros((1, *{INPUT_SHAPE}){dtype})")
    shape = cst.Call(attr(room.ctx.ns, "eval_shape"), [cst.Arg(cst.Name(function)), cst.Arg(cst.Name("self")), cst.Arg(sample)])
    axes = cst.Slice(cst.Integer("1"), None) if whole_shape else cst.Index(parsed("-1"))
    features = cst.Subscript(cst.Attribute(shape, cst.Name("shape")), [cst.SubscriptElement(axes)])
    measured = cst.SimpleStatementLine([cst.Assign([cst.AssignTarget(size)], features)], leading_lines=[cst.EmptyLine(indent=False)])
    room.add_to_init(function, features, node, lines=[probe, measured])
    room.conversion.init_locals |= {function, size.value}
    room.converted(node, RULE_SHAPE_PROBE, f"input {'shape' if whole_shape else 'size'} of `{attribute}` probed at construction from `{INPUT_SHAPE}`")
    return size
