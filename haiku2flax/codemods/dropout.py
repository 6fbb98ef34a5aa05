"""`hk.dropout(rng, rate, x)`: a function in Haiku, a layer in Flax.

What it converts: `hk.dropout(hk.next_rng_key(), rate, x)` -> Linen `nn.Dropout(rate,
deterministic=...)(x)`; NNX `self.dropout = nnx.Dropout(rate, rngs=rngs)` built in `__init__` and
`self.dropout(x)`. An explicit key (not `hk.next_rng_key()`) is passed to the call (`rng=` / `rngs=`).
Under an `if` (on a call argument too: `if training:`) or in a loop of the method, NNX builds the layer
in `__init__` all the same and calls it where Haiku did: `nnx.Dropout` has no parameters, so building
it when Haiku would not have changes no structure, and each call draws a fresh key as Haiku's did. In a
`def` nested in the method (a body handed to `hk.scan`, say) it keeps a TODO.

Why: `R if training else 0` is Haiku's idiom for "drop only in training"; it reads as rate `R` with
`deterministic=not training`, which NNX then expresses as the module's train/eval mode. The drop
probability and the 1/(1-rate) scaling are the same in all three; masks only agree given the same
explicit key.

Example (Linen)::

    x = hk.dropout(hk.next_rng_key(), 0.5 if training else 0, x)
    x = nn.Dropout(0.5, deterministic=not training)(x)
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from ..engine.calls import BoundCall, Unconvertible, keyword_arg
from ..engine.context import attr
from ..engine.names import ImportedNames
from ..engine.registry import Status, register
from ..engine.walk import Walker
from .interfaces import LINEN_CALLS, NNX_CALLS, CallSite, FileRoom, LinenMethod, NnxMethod

RULE_DROPOUT = register("HK003", "dropout", Status.CONVERTED, "hk.dropout -> nn.Dropout / nnx.Dropout", __name__, apis=("dropout",))

DROPOUT_ARGS = ("rng", "rate", "x", "broadcast_dims")


@dataclass(frozen=True)
class DropoutCall:
    """`hk.dropout(rng, rate, x, broadcast_dims)` read for the Flax `Dropout` layer.

    `R if flag else 0` as the rate is Haiku's idiom for "drop only in training": it reads as rate `R`
    with `deterministic=not flag`, and `flag` is kept so callers can see where the mode came from.
    """

    rate: cst.BaseExpression
    x: cst.BaseExpression
    deterministic: cst.BaseExpression | None  # None: always drops, as Haiku does
    flag: str | None  # the mode flag of the `R if flag else 0` idiom
    explicit_rng: cst.BaseExpression | None  # a key that is not `hk.next_rng_key()`
    broadcast_dims: cst.BaseExpression | None


def _is_zero(node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.Integer | cst.Float) and float(node.value) == 0.0


def read_dropout(call: cst.Call, names: ImportedNames) -> DropoutCall:
    bound = BoundCall.bind(call, DROPOUT_ARGS, "hk.dropout").args
    if not {"rng", "rate", "x"} <= bound.keys():
        raise Unconvertible("`hk.dropout` needs rng, rate and x")
    rng = bound["rng"]
    explicit = None
    if not (isinstance(rng, cst.Call) and names.haiku_api(rng.func) == "next_rng_key" and not rng.args):
        explicit = rng
    rate = bound["rate"]
    deterministic, flag = None, None
    if isinstance(rate, cst.IfExp) and _is_zero(rate.orelse):
        deterministic = cst.UnaryOperation(operator=cst.Not(), expression=rate.test)
        flag = rate.test.value if isinstance(rate.test, cst.Name) else None
        rate = rate.body
    return DropoutCall(rate, bound["x"], deterministic, flag, explicit, bound.get("broadcast_dims"))


def _read(room: FileRoom, call: CallSite) -> DropoutCall | None:
    """The dropout call to convert, or None (a TODO was left)."""
    try:
        return read_dropout(call.updated, room.ctx.names)
    except Unconvertible as reason:
        room.todo(call.original, RULE_DROPOUT, str(reason))
        return None


@LINEN_CALLS.on("dropout", rule=RULE_DROPOUT)
def linen_dropout(room: LinenMethod, call: CallSite) -> cst.BaseExpression:
    """`hk.dropout(...)` -> `nn.Dropout(rate, deterministic=...)(x)` inside a compact method."""
    dropout = _read(room, call)
    if dropout is None:
        return call.updated
    room.ctx.need_target_import()
    room.mark_builds_layer()
    layer_args = [cst.Arg(dropout.rate), keyword_arg("deterministic", dropout.deterministic or cst.Name("False"))]
    if dropout.broadcast_dims is not None:
        layer_args.append(keyword_arg("broadcast_dims", dropout.broadcast_dims))
    call_args = [cst.Arg(dropout.x)]
    if dropout.explicit_rng is not None:
        call_args.append(keyword_arg("rng", dropout.explicit_rng))
    room.converted(call.original, RULE_DROPOUT, "hk.dropout -> nn.Dropout")
    return cst.Call(func=cst.Call(func=attr(room.ctx.ns, "Dropout"), args=layer_args), args=call_args)


@NNX_CALLS.on("dropout", rule=RULE_DROPOUT)
def nnx_dropout(room: NnxMethod, call: CallSite) -> cst.BaseExpression:
    """`hk.dropout(...)` -> `self.dropout = nnx.Dropout(rate, rngs=rngs)` in `__init__`, `self.dropout(x)`.

    `deterministic=not training` is kept on the call until the converter sees that `training` serves
    nothing else; then the flag becomes the module's train/eval mode.
    """
    dropout = _read(room, call)
    if dropout is None:
        return call.updated
    original = call.original
    if original in room.family(_InNestedFunctions).of(room.function):
        room.in_nested_block(original, "hk.dropout")  # maybe traced apart (a scan body): its TODO
        return call.updated
    if not room.can_hoist([dropout.rate], original):
        return call.updated
    attribute = room.new_attribute("dropout")
    layer_args = [cst.Arg(dropout.rate)]
    if dropout.broadcast_dims is not None:
        layer_args.append(keyword_arg("broadcast_dims", dropout.broadcast_dims))
    layer_args.append(keyword_arg("rngs", cst.Name("rngs")))
    room.add_to_init(attribute, cst.Call(attr(room.ctx.ns, "Dropout"), layer_args), original, needs_rngs=True)
    call_args = [cst.Arg(dropout.x)]
    if dropout.deterministic is not None:
        call_args.append(keyword_arg("deterministic", dropout.deterministic))
        if dropout.flag is not None:
            room.mode_flags.add(dropout.flag)
    if dropout.explicit_rng is not None:
        call_args.append(keyword_arg("rngs", dropout.explicit_rng))
    room.converted(original, RULE_DROPOUT, f"hk.dropout -> nnx.Dropout ({attribute})")
    return room.set_size(cst.Call(attr("self", attribute), call_args), room.size_of(dropout.x))


class _InNestedFunctions(Walker):
    """The calls of a method that sit in a `def` nested in it (a body for `hk.scan`, say), found once per method."""

    def __init__(self) -> None:
        self.calls: set[cst.Call] | None = None
        self._depth = 0

    def of(self, method: cst.FunctionDef) -> set[cst.Call]:
        if self.calls is None:
            self.calls = set()
            self.walk(method.body)
        return self.calls

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self._depth += 1

    def leave_FunctionDef(self, node: cst.FunctionDef) -> None:
        self._depth -= 1

    def visit_Call(self, node: cst.Call) -> None:
        if self._depth:
            assert self.calls is not None  # set by `of` before walking
            self.calls.add(node)
