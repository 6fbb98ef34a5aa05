"""Static array shapes of Haiku expressions, where literal arguments fix them (a helper, not a rule family).

Two conversions need more than the feature size NNX tracks: a flattened array's size (the next
`nnx.Linear`'s input size) and an array's rank (Haiku expands an int pooling window over every
non-batch, non-channel axis). Both are known where the code fixes the shape: after `hk.Reshape((4, 4,
3))` the shape is `(B, 4, 4, 3)`, and convolutions, pools, `hk.Linear` and element-wise functions carry
it on. Shapes are read from the original Haiku code, statement by statement, like NNX feature sizes.
"""

from __future__ import annotations

import math
from typing import TypeGuard

import libcst as cst

from ..engine.calls import NOT_LITERAL, BoundCall, Unconvertible, literal
from ..engine.names import dotted_name
from ..engine.context import Context
from .interfaces import Shape


POOL_ARGS = ("value", "window_shape", "strides", "padding", "channel_axis")
POOL_MODULE_ARGS = ("window_shape", "strides", "padding", "channel_axis", "name")
RESHAPE_ARGS = ("output_shape", "preserve_dims", "name")
FLATTEN_ARGS = ("preserve_dims", "name")


def is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def haiku_pool_window(size: object, rank: int | None, channel_axis: object) -> tuple[int, ...] | None:
    """Haiku's `_infer_shape`: an int covers every axis but the first and the channel axis (this needs
    the rank); a tuple is left-padded with 1s to the rank (to nothing when the rank is unknown)."""
    if is_int(size):
        if rank is None or not (channel_axis is None or is_int(channel_axis)):
            return None
        channel = None if channel_axis is None else channel_axis % rank
        return (1,) + tuple(size if axis != channel else 1 for axis in range(1, rank))
    if isinstance(size, tuple | list) and size and all(is_int(v) for v in size):
        return (1,) * max(0, (rank or 0) - len(size)) + tuple(size)
    return None


def pooled_size(size: int | None, window: int, stride: int, padding: object) -> int | None:
    if size is None or padding not in ("SAME", "VALID"):
        return None
    return -(-size // stride) if padding == "SAME" else -(-(size - window + 1) // stride)


def pooled_shape(shape: Shape, window: tuple[int, ...] | None, strides: tuple[int, ...] | None, padding: object) -> Shape:
    if shape is None or window is None or strides is None or len(window) != len(shape) or len(strides) != len(shape):
        return None
    return tuple(pooled_size(n, w, s, padding) if (w, s) != (1, 1) else n for n, w, s in zip(shape, window, strides))


# `jnp.mean(x, axis=...)` and its kind: they drop (or, with keepdims, keep as 1) the axes they reduce.
REDUCTIONS = {"mean", "sum", "max", "min", "prod", "var", "std", "amax", "amin", "median", "logsumexp"}


def reduced_axes(call: cst.Call, rank: int | None) -> tuple[int, ...] | None:
    """The axes a reduction's literal `axis` names, made non-negative where the rank is known (None: not
    known, or every axis)."""
    axis = next((a.value for a in call.args[1:2] if a.keyword is None), None)
    axis = next((a.value for a in call.args if a.keyword is not None and a.keyword.value == "axis"), axis)
    value = literal(axis) if axis is not None else None
    axes = (value,) if is_int(value) else tuple(value) if isinstance(value, tuple | list) and all(is_int(v) for v in value) else None
    if axes is None:
        return None
    if rank is not None:
        return tuple(a % rank for a in axes) if all(-rank <= a < rank for a in axes) else None
    return axes


def keeps_last_axis(call: cst.Call, shape: Shape) -> bool:
    """Does a reduction leave the last axis as it was? Negative axes other than -1 do; others only where
    the rank is known and they are not the last."""
    rank = len(shape) if shape is not None else None
    axes = reduced_axes(call, rank)
    if axes is None:
        return False
    return all(a < rank - 1 for a in axes) if rank is not None else all(a < -1 for a in axes)


def reshaped(shape: Shape, output_shape: object, preserve_dims: object) -> Shape:
    """Haiku's Reshape: the first `preserve_dims` axes kept (a negative count: all but the last n), then
    `output_shape` with one -1 inferred. The rank is assumed to exceed `preserve_dims` (else Haiku
    returns the input unchanged)."""
    if not (isinstance(output_shape, tuple | list) and is_int(preserve_dims)):
        return None
    sizes = [v for v in output_shape if is_int(v)]
    if len(sizes) != len(output_shape):
        return None
    kept: tuple[int | None, ...]
    if preserve_dims < 0:
        if shape is None:
            return None
        kept = shape[:preserve_dims]
    else:
        kept = shape[:preserve_dims] if shape is not None else (None,) * preserve_dims
    if -1 not in sizes:
        return (*kept, *sizes)
    moved = shape[len(kept) :] if shape is not None else (None,)
    known = math.prod(sizes) * -1
    known_moved = [n for n in moved if n is not None]
    total = math.prod(known_moved) if len(known_moved) == len(moved) else None
    inferred = total // known if total is not None and known and total % known == 0 else None
    return (*kept, *(inferred if v == -1 else v for v in sizes))


class ShapeTracker:
    """The static shapes of a function's variables, statement by statement (a component the targets own).

    The target calls `reset()` where a function starts and `track(statement)` after each simple
    statement of the original code; rules read `static_shape(node)` through their room.
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.static_shapes: dict[str, Shape] = {}

    def reset(self) -> None:
        self.static_shapes = {}

    def track(self, original: cst.SimpleStatementLine) -> None:
        for small in original.body:
            if isinstance(small, cst.Assign) and len(small.targets) == 1 and isinstance(small.targets[0].target, cst.Name):
                self.static_shapes[small.targets[0].target.value] = self.static_shape(small.value)
            elif isinstance(small, cst.Assign | cst.AugAssign | cst.AnnAssign):
                targets = [t.target for t in small.targets] if isinstance(small, cst.Assign) else [small.target]
                for target in targets:
                    self.static_shapes.pop(target.value if isinstance(target, cst.Name) else "", None)

    def static_shape(self, node: cst.BaseExpression) -> Shape:
        """The shape of an (original, Haiku) expression, where literal arguments fix it."""
        if isinstance(node, cst.Name):
            return self.static_shapes.get(node.value)
        if isinstance(node, cst.BinaryOperation):
            shapes = [self.static_shape(side) for side in (node.left, node.right) if literal(side) is NOT_LITERAL]
            return shapes[0] if len(shapes) == 1 else None
        if not isinstance(node, cst.Call) or not node.args or node.args[0].keyword is not None:
            return None
        names = self.ctx.names
        if isinstance(node.func, cst.Call):  # a layer built and called
            return self._layer_shape(node.func, names.haiku_api(node.func.func), self.static_shape(node.args[0].value))
        api = names.haiku_api(node.func)
        if api in ("max_pool", "avg_pool"):
            try:
                bound = BoundCall.bind(node, POOL_ARGS, f"hk.{api}").args
            except Unconvertible:
                return None
            return self._pool_shape(self.static_shape(bound["value"]), bound)
        from ..targets.nnx import ELEMENTWISE  # the targets import the codemods

        function = (dotted_name(node.func) or "").rsplit(".", 1)[-1]
        if function in ELEMENTWISE:
            return self.static_shape(node.args[0].value)
        if function in REDUCTIONS:
            return self._reduced_shape(node, self.static_shape(node.args[0].value))
        return None

    def _reduced_shape(self, call: cst.Call, shape: Shape) -> Shape:
        axes = reduced_axes(call, len(shape)) if shape is not None else None
        if shape is None or axes is None:
            return None
        keepdims = next((literal(a.value) for a in call.args if a.keyword is not None and a.keyword.value == "keepdims"), False)
        if keepdims is not True and keepdims is not False:
            return None
        return tuple(1 if i in axes else n for i, n in enumerate(shape) if keepdims or i not in axes)

    def _pool_shape(self, shape: Shape, bound: dict[str, cst.BaseExpression]) -> Shape:
        rank = len(shape) if shape is not None else None
        channel = literal(bound["channel_axis"]) if "channel_axis" in bound else -1
        window, strides = (haiku_pool_window(literal(bound[k]), rank, channel) if k in bound else None for k in ("window_shape", "strides"))
        return pooled_shape(shape, window, strides, literal(bound["padding"]) if "padding" in bound else None)

    def _layer_shape(self, constructor: cst.Call, api: str | None, shape: Shape) -> Shape:
        if api is None:
            return None
        arg_names = {"Reshape": RESHAPE_ARGS, "Flatten": FLATTEN_ARGS, "MaxPool": POOL_MODULE_ARGS, "AvgPool": POOL_MODULE_ARGS}
        construct = self.ctx.tables.get(api)
        names = arg_names.get(api) or (construct.haiku_args if construct is not None else None)
        if names is None:
            return None
        try:
            bound = BoundCall.bind(constructor, names, f"hk.{api}").args
        except Unconvertible:
            return None
        preserve = literal(bound["preserve_dims"]) if "preserve_dims" in bound else 1
        if api == "Reshape":
            return reshaped(shape, literal(bound["output_shape"]) if "output_shape" in bound else None, preserve)
        if api == "Flatten":
            return reshaped(shape, (-1,), preserve)
        if api in ("MaxPool", "AvgPool"):
            return self._pool_shape(shape, bound)
        if shape is None or construct is None or construct.output_size is None or construct.output_size not in bound:
            return None
        value = literal(bound[construct.output_size])
        features = value if is_int(value) else None
        if api == "Linear":
            return (*shape[:-1], features)
        if construct.ndim is None or len(shape) != construct.ndim + 2:
            return None
        rank = construct.ndim
        kernel, stride, rate = (literal(bound[k]) if k in bound else default for k, default in (("kernel_shape", None), ("stride", 1), ("rate", 1)))
        padding = literal(bound["padding"]) if "padding" in bound else "SAME"
        if not (is_int(kernel) and is_int(stride) and is_int(rate)):
            return (shape[0], *(None,) * rank, features)
        window = (kernel - 1) * rate + 1
        return (shape[0], *(pooled_size(n, window, stride, padding) for n in shape[1:-1]), features)
