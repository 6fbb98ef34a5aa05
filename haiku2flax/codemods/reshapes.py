"""`hk.Flatten` and `hk.Reshape`: modules in Haiku, a `reshape` of the array in Flax.

What it converts: `hk.Flatten()(x)` -> `x.reshape(x.shape[0], -1)`; `hk.Reshape((4, 4, 3))(x)` ->
`x.reshape(-1, 4, 4, 3)`; other `preserve_dims` and shapes with -1 -> `x.reshape(x.shape[:p] +
(...))`, Haiku's own formula. A module that is not called at once (inside `hk.Sequential`) becomes
`lambda x: x.reshape(...)`. NNX learns the new feature size for the next layer: the last entry of
the output shape, or the flattened size where the code fixes the input's shape (see
`haiku2flax.codemods.shapes`); elsewhere the next layer's input size is a constructor argument with a TODO.

Why: Flax has no Flatten or Reshape layer (`nnx.flatten` flattens a module graph, not an array); the
reshape keeps the leading axes exactly as Haiku does. Haiku returns an input of rank `preserve_dims`
or less unchanged, which these expressions do not: they assume batched inputs. Haiku's formula reads
the input twice, so an input that is not a variable is a TODO (assign it to one first).

Example::

    x = hk.Flatten()(x)                x = x.reshape(x.shape[0], -1)
    x = hk.Reshape((7, 7, 64))(x)      x = x.reshape(-1, 7, 7, 64)
"""

from __future__ import annotations

import libcst as cst

from ..engine.calls import BoundCall, Unconvertible, as_tuple, code, literal
from ..engine.registry import Status, register
from .interfaces import LINEN_CALLS, NNX_CALLS, CallSite, LinenMethod, MethodRoom, NnxMethod, on_call
from .shapes import FLATTEN_ARGS, RESHAPE_ARGS, is_int

RULE_FLATTEN = register("HK012", "flatten", Status.PARTIAL, "hk.Flatten -> x.reshape(x.shape[0], -1)", __name__, apis=("Flatten",))
RULE_RESHAPE = register("HK013", "reshape", Status.PARTIAL, "hk.Reshape -> x.reshape(...) keeping the leading axes", __name__, apis=("Reshape",))

RULES = {"Flatten": RULE_FLATTEN, "Reshape": RULE_RESHAPE}
MINUS_ONE = cst.UnaryOperation(cst.Minus(), cst.Integer("1"))


def _method(value: cst.BaseExpression, args: list[cst.BaseExpression]) -> cst.Call:
    return cst.Call(cst.Attribute(value, cst.Name("reshape")), [cst.Arg(a) for a in args])


def _leading(value: cst.BaseExpression, preserve_dims: cst.BaseExpression, axes: bool = False) -> cst.Subscript:
    """`x.shape[0]` for one preserved axis, else (or `axes`: a tuple to add one to) `x.shape[:p]`."""
    shape = cst.Attribute(value, cst.Name("shape"))
    if literal(preserve_dims) == 1 and not axes:
        return cst.Subscript(shape, [cst.SubscriptElement(cst.Index(cst.Integer("0")))])
    return cst.Subscript(shape, [cst.SubscriptElement(cst.Slice(lower=None, upper=preserve_dims))])


def reshape_expression(constructor: cst.Call, value: cst.BaseExpression, api: str) -> cst.Call:
    """The Flax expression for `hk.Flatten(...)(value)` / `hk.Reshape(...)(value)`, or Unconvertible."""
    bound = BoundCall.bind(constructor, FLATTEN_ARGS if api == "Flatten" else RESHAPE_ARGS, f"hk.{api}").args
    preserve_dims = bound.get("preserve_dims", cst.Integer("1"))
    shape_node = bound.get("output_shape", cst.Tuple([cst.Element(MINUS_ONE)]))
    if "output_shape" not in bound and api == "Reshape":
        raise Unconvertible("`hk.Reshape` needs `output_shape`")
    elements = shape_node.elements if isinstance(shape_node, cst.Tuple | cst.List) else None
    if literal(preserve_dims) == 1 and elements is not None and not any(literal(e.value) == -1 for e in elements):
        return _method(value, [MINUS_ONE, *(e.value for e in elements)])  # the batch size is what is left
    if not isinstance(value, cst.Name | cst.Attribute):
        raise Unconvertible(f"`hk.{api}` keeps the input's leading axes, so the input is read twice: assign `{code(value)}` to a variable first")
    if literal(preserve_dims) == 1 and elements is not None:
        return _method(value, [_leading(value, preserve_dims), *(e.value for e in elements)])
    tail = as_tuple([e.value for e in elements]) if elements is not None else cst.Call(cst.Name("tuple"), [cst.Arg(shape_node)])
    return _method(value, [cst.BinaryOperation(_leading(value, preserve_dims, axes=True), cst.Add(), tail)])


def output_feature_size(constructor: cst.Call, api: str) -> cst.BaseExpression | None:
    """The last entry of a Reshape's literal output shape, when it is not -1."""
    if api != "Reshape":
        return None
    try:
        shape = BoundCall.bind(constructor, RESHAPE_ARGS, "hk.Reshape").args.get("output_shape")
    except Unconvertible:
        return None
    if isinstance(shape, cst.Tuple | cst.List) and shape.elements and literal(shape.elements[-1].value) != -1:
        return shape.elements[-1].value
    return None


def reshape_function(constructor: cst.Call, api: str) -> cst.Lambda:
    """`hk.Flatten()` not called at once -> `lambda x: x.reshape(x.shape[0], -1)`, or Unconvertible."""
    value = cst.Name("x")
    return cst.Lambda(cst.Parameters([cst.Param(value)]), reshape_expression(constructor, value, api))


def _convert_reshape(room: MethodRoom, call: CallSite) -> tuple[cst.Call, cst.BaseExpression | None] | None:
    """`hk.Flatten()(x)` -> (the reshape, its feature size where known), or None with a TODO."""
    original, updated, api = call.original, call.updated, call.api
    rule = RULES[api]
    if len(updated.args) != 1 or updated.args[0].keyword is not None or updated.args[0].star:
        room.todo(original, rule, f"`hk.{api}` is called with one array")
        return None
    assert isinstance(updated.func, cst.Call) and isinstance(original.func, cst.Call)  # keyed by the constructor
    try:
        converted = reshape_expression(updated.func, updated.args[0].value, api)
    except Unconvertible as reason:
        room.todo(original, rule, str(reason))
        return None
    room.converted(original, rule, f"hk.{api} -> {code(converted)}")
    shape = room.static_shape(original)
    last = shape[-1] if shape else None
    return converted, cst.Integer(str(last)) if is_int(last) else output_feature_size(original.func, api)


@LINEN_CALLS.on("Flatten", rule=RULE_FLATTEN, constructor=True)
@LINEN_CALLS.on("Reshape", rule=RULE_RESHAPE, constructor=True)
def linen_reshape(room: LinenMethod, call: CallSite) -> cst.BaseExpression:
    """Reshapes in Linen: expressions, nothing to build."""
    converted = _convert_reshape(room, call)
    return converted[0] if converted is not None else call.updated


@NNX_CALLS.on("Flatten", rule=RULE_FLATTEN, constructor=True)
@NNX_CALLS.on("Reshape", rule=RULE_RESHAPE, constructor=True)
def nnx_reshape(room: NnxMethod, call: CallSite) -> cst.BaseExpression:
    """Reshapes in NNX record the new feature size."""
    converted = _convert_reshape(room, call)
    return room.set_size(*converted) if converted is not None else call.updated


@on_call("Flatten", rule=RULE_FLATTEN)
@on_call("Reshape", rule=RULE_RESHAPE)
def reshape_module_function(room: MethodRoom, call: CallSite) -> cst.BaseExpression | None:
    """`hk.Flatten()` not called at once (in `hk.Sequential`) -> `lambda x: x.reshape(...)`."""
    if room.called_at_once(call.original):
        return None
    try:
        function = reshape_function(call.updated, call.api)
    except Unconvertible as reason:
        room.todo(call.original, RULES[call.api], str(reason))
        return call.updated
    room.converted(call.original, RULES[call.api], f"hk.{call.api} -> {code(function)}")
    return function
