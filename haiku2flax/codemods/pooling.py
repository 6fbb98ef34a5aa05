"""`hk.max_pool` / `hk.avg_pool` and the `hk.MaxPool` / `hk.AvgPool` modules: Flax's pooling functions.

What it converts: `hk.max_pool(x, window_shape=(1, 3, 3, 1), strides=(1, 2, 2, 1), padding='SAME')`
-> `nn.max_pool(x, window_shape=(3, 3), strides=(2, 2), padding='SAME')` (NNX: `nnx.max_pool`, the same
function); `hk.MaxPool(...)(x)` likewise, and a pooling module that is not called at once becomes
`lambda x: nn.max_pool(x, ...)` (e.g. inside `hk.Sequential`). `hk.avg_pool` gets
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

import libcst as cst

from ..engine.calls import NOT_LITERAL, BoundCall, Unconvertible, as_tuple, keyword_arg, literal
from ..engine.context import attr
from ..engine.registry import Status, register
from .shapes import POOL_ARGS, POOL_MODULE_ARGS, StaticShapes, haiku_pool_window

RULE_POOL = register("HK010", "pool", Status.PARTIAL, "hk.max_pool / hk.avg_pool -> nn/nnx.max_pool / avg_pool (spatial windows)", __name__, apis=("max_pool", "avg_pool"))
RULE_POOL_MODULE = register("HK011", "pool-module", Status.PARTIAL, "hk.MaxPool / hk.AvgPool -> the Flax pooling functions", __name__, apis=("MaxPool", "AvgPool"))

FUNCTIONS = {"max_pool": "max_pool", "avg_pool": "avg_pool", "MaxPool": "max_pool", "AvgPool": "avg_pool"}


def spatial_window(
    window: object, strides: object, rank: int | None, channel_axis: object
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Flax's (window_shape, strides) for Haiku's, or Unconvertible saying why not."""
    if window is NOT_LITERAL or strides is NOT_LITERAL or channel_axis is NOT_LITERAL:
        raise Unconvertible("write `window_shape`, `strides` and `channel_axis` as literals: Flax takes spatial tuples")
    full = [haiku_pool_window(v, rank, channel_axis) for v in (window, strides)]
    if None in full:
        raise Unconvertible(
            "an int window or stride covers every axis but the batch and channel axes, and the input's rank is "
            "not known here: write Haiku's full-rank tuple, e.g. `(1, 3, 3, 1)` for NHWC"
        )
    length = max(len(f) for f in full)  # type: ignore[arg-type]
    window_full, strides_full = ((1,) * (length - len(f)) + f for f in full)  # type: ignore[operator,arg-type]
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
    bound = BoundCall.bind(call.func, POOL_MODULE_ARGS, f"hk.{api}").args  # type: ignore[arg-type]
    value = BoundCall.bind(call, ("value",), f"hk.{api}(...)").args
    return {**value, **{k: v for k, v in bound.items() if k != "name"}}


class _Pooling(StaticShapes):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._called_pools: set[int] = set()  # `hk.MaxPool(...)` nodes that are called at once

    def visit_Call(self, node: cst.Call) -> bool | None:
        if isinstance(node.func, cst.Call) and self.ctx.names.haiku_api(node.func.func) in ("MaxPool", "AvgPool"):
            self._called_pools.add(id(node.func))
        return super().visit_Call(node)

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        api = self.ctx.names.haiku_api(original.func)
        inner = self.ctx.names.haiku_api(original.func.func) if isinstance(original.func, cst.Call) else None
        if api in ("max_pool", "avg_pool") and self.ctx.enabled(RULE_POOL):
            read = lambda call: BoundCall.bind(call, POOL_ARGS, f"hk.{api}").args  # noqa: E731
            return self._convert_pool(original, updated, api, RULE_POOL, read)
        if inner in ("MaxPool", "AvgPool") and self.ctx.enabled(RULE_POOL_MODULE):
            return self._convert_pool(original, updated, inner, RULE_POOL_MODULE, lambda call: _module_args(call, inner))
        if api in ("MaxPool", "AvgPool") and id(original) not in self._called_pools and self.ctx.enabled(RULE_POOL_MODULE):
            try:
                function = pool_function(self.ctx.ns, updated, api)
            except Unconvertible as reason:
                self.todo(original, RULE_POOL_MODULE, str(reason))
                return updated
            self.ctx.need_target_import()
            self.converted(original, RULE_POOL_MODULE, f"hk.{api} -> a {self.ctx.ns}.{FUNCTIONS[api]} lambda")
            return function
        return super().leave_Call(original, updated)

    def _convert_pool(self, original: cst.Call, updated: cst.Call, api: str, rule: str, read) -> cst.BaseExpression:
        """`updated` as a Flax pooling call; `read(call)` binds a call's arguments by the function's names.
        The input's rank, which int windows need, is read from the original Haiku code."""
        try:
            bound = read(updated)
            shape = self.static_shape(read(original)["value"])
            window, strides = flax_window(bound, api, len(shape) if shape is not None else None)
        except Unconvertible as reason:
            self.todo(original, rule, str(reason))
            return updated
        pooled = pool_call(self.ctx.ns, api, bound, window, strides)
        self.ctx.need_target_import()
        self.converted(original, rule, f"hk.{api} -> {self.ctx.ns}.{FUNCTIONS[api]} (window {window})")
        return self.pooled(pooled, bound["value"])

    def pooled(self, result: cst.Call, value: cst.BaseExpression) -> cst.BaseExpression:
        return result


class LinenPooling(_Pooling):
    """Pooling functions in Linen: plain functions, nothing to build."""


class NnxPooling(_Pooling):
    """Pooling in NNX keeps the feature size (a mixin of `NnxMethodRewriter`)."""

    def pooled(self, result: cst.Call, value: cst.BaseExpression) -> cst.BaseExpression:
        return self.set_size(result, self.size_of(value))  # type: ignore[attr-defined]
