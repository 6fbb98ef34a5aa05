"""`hk.max_pool` / `hk.avg_pool` and the `hk.MaxPool` / `hk.AvgPool` modules: Flax's pooling functions.

What it converts: `hk.max_pool(x, window_shape=(1, 3, 3, 1), strides=(1, 2, 2, 1), padding='SAME')`
-> `nn.max_pool(x, window_shape=(3, 3), strides=(2, 2), padding='SAME')` (NNX: `nnx.max_pool`, the same
function); `hk.MaxPool(...)(x)` likewise, and a pooling module that is not called at once becomes
`lambda x: nn.max_pool(x, ...)` (e.g. inside `hk.Sequential`). A pooling function with its arguments
bound, `functools.partial(hk.max_pool, window_shape=..., strides=..., padding=...)`, becomes
`functools.partial(nn.max_pool, ...)` with the same conversion of its keywords. `hk.avg_pool` gets
`count_include_pad=False` unless its padding is 'VALID'.

Why: Haiku's windows and strides cover every axis of the input, Flax's only the spatial ones (the
first axes are batch, the last is features, which Flax never pools). So the Haiku shapes are made
full rank the way Haiku does it — a tuple is left-padded with 1s (`(3, 3)` on NHWC pools W and C!), an
int covers every axis but the batch and channel axes — and the spatial axes are kept. An int needs
the input's rank: where the code does not fix it (see `haiku2flax.codemods.shapes`), or the window
pools the last axis (`channel_axis=1`, NCHW), or the batch axis, it is a TODO. Haiku's average over a
SAME window counts only the cells inside the input; Flax's default counts the padding too (0.386 off
at the borders). Flax's strides default to 1 and its padding to 'VALID': both are always written.

Example::

    y = hk.avg_pool(x, (1, 3, 3, 1), (1, 2, 2, 1), "SAME")
    y = nn.avg_pool(x, window_shape=(3, 3), strides=(2, 2), padding="SAME", count_include_pad=False)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar, cast

import libcst as cst

from ..engine.calls import NOT_LITERAL, BoundCall, Unconvertible, as_tuple, keyword_arg, literal
from ..engine.context import Context, attr
from ..engine.names import PARTIAL, dotted_name
from ..engine.registry import Status, register
from ..engine.rewriter import Rewriter
from .interfaces import LINEN_CALLS, LINEN_NODES, NNX_CALLS, NNX_FILE_NODES, NNX_NODES, CallSite, FileRoom, LinenMethod, MethodRoom, NnxMethod, on_call
from .shapes import POOL_ARGS, POOL_MODULE_ARGS, haiku_pool_window

RULE_POOL = register("HK010", "pool", Status.PARTIAL, "hk.max_pool / hk.avg_pool -> nn/nnx.max_pool / avg_pool (spatial windows)", __name__, apis=("max_pool", "avg_pool"))
RULE_POOL_MODULE = register("HK011", "pool-module", Status.PARTIAL, "hk.MaxPool / hk.AvgPool -> the Flax pooling functions", __name__, apis=("MaxPool", "AvgPool"))

NodeT = TypeVar("NodeT", bound=cst.CSTNode)
ReadArgs = Callable[[cst.Call, str], dict[str, cst.BaseExpression]]  # a call's arguments by name, for an API

FUNCTIONS = {"max_pool": "max_pool", "avg_pool": "avg_pool", "MaxPool": "max_pool", "AvgPool": "avg_pool"}


def spatial_window(
    window: object, strides: object, rank: int | None, channel_axis: object
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Flax's (window_shape, strides) for Haiku's, or Unconvertible saying why not."""
    if window is NOT_LITERAL or strides is NOT_LITERAL or channel_axis is NOT_LITERAL:
        raise Unconvertible("write `window_shape`, `strides` and `channel_axis` as literals: Flax takes spatial tuples")
    windows = [haiku_pool_window(v, rank, channel_axis) for v in (window, strides)]
    full = [f for f in windows if f is not None]
    if len(full) != len(windows):
        raise Unconvertible(
            "an int window or stride covers every axis but the batch and channel axes, and the input's rank is "
            "not known here: write Haiku's full-rank tuple, e.g. `(1, 3, 3, 1)` for NHWC"
        )
    length = max(len(f) for f in full)
    window_full, strides_full = ((1,) * (length - len(f)) + f for f in full)
    if window_full[-1] != 1 or strides_full[-1] != 1:
        raise Unconvertible(
            f"Haiku pools the last axis here (window {window_full}, strides {strides_full}; a short tuple is "
            "left-padded with 1s, `channel_axis` other than -1 means channels first); Flax never pools the "
            "feature axis: move the channels last with `jnp.moveaxis` around the pool, or fix the window"
        )
    leading = 0  # axes both leave alone at the front are batch axes to Flax too
    while leading < length - 2 and window_full[leading] == 1 and strides_full[leading] == 1:
        leading += 1
    return window_full[leading:-1], strides_full[leading:-1]


def flax_window(bound: dict[str, cst.BaseExpression], api: str, rank: int | None) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Flax's spatial (window_shape, strides) for a pooling call's Haiku arguments, or Unconvertible."""
    missing = [k for k in ("value", "window_shape", "strides", "padding") if k not in bound]
    if missing:
        raise Unconvertible(f"`hk.{api}` needs {', '.join(missing)}")
    channel_axis = literal(bound["channel_axis"]) if "channel_axis" in bound else -1
    return spatial_window(literal(bound["window_shape"]), literal(bound["strides"]), rank, channel_axis)


def pool_call(ns: str, api: str, bound: dict[str, cst.BaseExpression], window: tuple[int, ...], strides: tuple[int, ...]) -> cst.Call:
    """`nn.max_pool(x, window_shape=..., strides=..., padding=...)`; Haiku's SAME average excludes the padding."""
    function = FUNCTIONS[api]
    args = [
        cst.Arg(bound["value"]),
        keyword_arg("window_shape", as_tuple([cst.Integer(str(v)) for v in window])),
        keyword_arg("strides", as_tuple([cst.Integer(str(v)) for v in strides])),
        keyword_arg("padding", bound["padding"]),
    ]
    if function == "avg_pool" and literal(bound["padding"]) != "VALID":
        args.append(keyword_arg("count_include_pad", cst.Name("False")))
    return cst.Call(attr(ns, function), args)


def pool_function(ns: str, constructor: cst.Call, api: str) -> cst.Lambda:
    """`hk.MaxPool(...)` not called at once -> `lambda x: nn.max_pool(x, ...)`, or Unconvertible (the rank is unknown)."""
    value = cst.Name("x")
    bound = _module_args(cst.Call(constructor, [cst.Arg(value)]), api)
    window, strides = flax_window(bound, api, None)
    return cst.Lambda(cst.Parameters([cst.Param(value)]), pool_call(ns, api, bound, window, strides))


def _module_args(call: cst.Call, api: str) -> dict[str, cst.BaseExpression]:
    """`hk.MaxPool(window, strides, padding)(x)` read as the pooling function's arguments."""
    assert isinstance(call.func, cst.Call)
    bound = BoundCall.bind(call.func, POOL_MODULE_ARGS, f"hk.{api}").args
    value = BoundCall.bind(call, ("value",), f"hk.{api}(...)").args
    return {**value, **{k: v for k, v in bound.items() if k != "name"}}


def _function_args(call: cst.Call, api: str) -> dict[str, cst.BaseExpression]:
    return BoundCall.bind(call, POOL_ARGS, f"hk.{api}").args


def _convert_pool(room: MethodRoom, call: CallSite, rule: str, read: ReadArgs) -> tuple[cst.Call, cst.BaseExpression] | None:
    """(the Flax pooling call, its input), or None with a TODO; `read(call, api)` binds a call's arguments
    by the function's names. The input's rank, which int windows need, is read from the original Haiku code."""
    api = call.api
    try:
        bound = read(call.updated, api)
        shape = room.static_shape(read(call.original, api)["value"])
        window, strides = flax_window(bound, api, len(shape) if shape is not None else None)
    except Unconvertible as reason:
        room.todo(call.original, rule, str(reason))
        return None
    pooled = pool_call(room.ctx.ns, api, bound, window, strides)
    room.ctx.need_target_import()
    room.converted(call.original, rule, f"hk.{api} -> {room.ctx.ns}.{FUNCTIONS[api]} (window {window})")
    return pooled, bound["value"]


def _register_pool(rule: str, read: ReadArgs, *apis: str, constructor: bool = False) -> None:
    """The pooling rule for both targets: a plain function in Linen; NNX also carries the feature size."""

    def linen(room: LinenMethod, call: CallSite) -> cst.BaseExpression:
        converted = _convert_pool(room, call, rule, read)
        return converted[0] if converted is not None else call.updated

    def nnx(room: NnxMethod, call: CallSite) -> cst.BaseExpression:
        converted = _convert_pool(room, call, rule, read)
        return room.set_size(converted[0], room.size_of(converted[1])) if converted is not None else call.updated

    LINEN_CALLS.on(*apis, rule=rule, constructor=constructor)(linen)
    NNX_CALLS.on(*apis, rule=rule, constructor=constructor)(nnx)


_register_pool(RULE_POOL, _function_args, "max_pool", "avg_pool")
_register_pool(RULE_POOL_MODULE, _module_args, "MaxPool", "AvgPool", constructor=True)


@on_call("MaxPool", "AvgPool", rule=RULE_POOL_MODULE)
def pool_module_function(room: MethodRoom, call: CallSite) -> cst.BaseExpression | None:
    """`hk.MaxPool(...)` not called at once (in `hk.Sequential`, stored) -> a lambda of the pooling function."""
    if room.called_at_once(call.original):
        return None
    try:
        function = pool_function(room.ctx.ns, call.updated, call.api)
    except Unconvertible as reason:
        room.todo(call.original, RULE_POOL_MODULE, str(reason))
        return call.updated
    room.ctx.need_target_import()
    room.converted(call.original, RULE_POOL_MODULE, f"hk.{call.api} -> a {room.ctx.ns}.{FUNCTIONS[call.api]} lambda")
    return function


def partial_pool(room: FileRoom, original: cst.Call, updated: cst.Call) -> cst.BaseExpression | None:
    """`functools.partial(hk.max_pool, window_shape=..., ...)` -> `functools.partial(nn.max_pool, ...)`:
    a pure function with its window fixed, applied later to an input of a rank not known here."""
    if dotted_name(original.func) not in PARTIAL or not original.args:
        return None
    api = room.ctx.names.haiku_api(original.args[0].value)
    if api not in ("max_pool", "avg_pool"):
        return None
    try:
        if any(arg.keyword is None for arg in updated.args[1:]):
            raise Unconvertible(f"`{dotted_name(original.func)}` binds `hk.{api}`'s input by position: bind its window, strides and padding by keyword")
        bound = {"value": cst.Name("x"), **_function_args(cst.Call(updated.args[0].value, list(updated.args[1:])), api)}
        window, strides = flax_window(bound, api, None)
    except Unconvertible as reason:
        room.todo(original, RULE_POOL, str(reason))
        return None
    _, *keywords = pool_call(room.ctx.ns, api, bound, window, strides).args
    room.ctx.need_target_import()
    room.converted(original, RULE_POOL, f"partial(hk.{api}) -> partial({room.ctx.ns}.{FUNCTIONS[api]}) (window {window})")
    return updated.with_changes(args=[cst.Arg(attr(room.ctx.ns, FUNCTIONS[api])), *keywords])


# not decorators: `_PartialPoolRule` calls the function on a plain file room
LINEN_NODES.on_leave(cst.Call, rule=RULE_POOL)(partial_pool)
NNX_NODES.on_leave(cst.Call, rule=RULE_POOL)(partial_pool)
NNX_FILE_NODES.on_leave(cst.Call, rule=RULE_POOL)(partial_pool)


class _PartialPoolRule(Rewriter):
    """The pooling-partial rule alone, for statements a target moves rather than visits (NNX `__init__`)."""

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        converted = partial_pool(self, original, updated) if self.ctx.enabled(RULE_POOL) else None
        return converted if converted is not None else updated


def convert_partial_pools(node: NodeT, ctx: Context) -> NodeT:
    """`node` with its `functools.partial(hk.max_pool, ...)` converted: for statements a target moves."""
    return cast(NodeT, node.visit(_PartialPoolRule(ctx))) if ctx.mentions("partial") else node  # calls become calls
