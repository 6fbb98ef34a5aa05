"""`hk.dropout(rng, rate, x)`: a function in Haiku, a layer in Flax.

What it converts: `hk.dropout(hk.next_rng_key(), rate, x)` -> Linen `nn.Dropout(rate,
deterministic=...)(x)`; NNX `self.dropout = nnx.Dropout(rate, rngs=rngs)` built in `__init__` and
`self.dropout(x)`. An explicit key (not `hk.next_rng_key()`) is passed to the call (`rng=` / `rngs=`).

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
from ..engine.rewriter import Rewriter

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




class _Dropout(Rewriter):
    def read_dropout(self, original: cst.Call, updated: cst.Call) -> DropoutCall | None:
        """The dropout call to convert, or None (another call, the rule is off, or a TODO was left)."""
        if self.ctx.names.haiku_api(original.func) != "dropout" or not self.ctx.enabled(RULE_DROPOUT):
            return None
        try:
            return read_dropout(updated, self.ctx.names)
        except Unconvertible as reason:
            self.todo(original, RULE_DROPOUT, str(reason))
            return None


class LinenDropout(_Dropout):
    """`hk.dropout(...)` -> `nn.Dropout(rate, deterministic=...)(x)` inside a compact method."""

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        dropout = self.read_dropout(original, updated)
        if dropout is None:
            return super().leave_Call(original, updated)
        self.ctx.need_target_import()
        self.mark_builds_layer()  # type: ignore[attr-defined]
        layer_args = [cst.Arg(dropout.rate), keyword_arg("deterministic", dropout.deterministic or cst.Name("False"))]
        if dropout.broadcast_dims is not None:
            layer_args.append(keyword_arg("broadcast_dims", dropout.broadcast_dims))
        call_args = [cst.Arg(dropout.x)]
        if dropout.explicit_rng is not None:
            call_args.append(keyword_arg("rng", dropout.explicit_rng))
        self.converted(original, RULE_DROPOUT, "hk.dropout -> nn.Dropout")
        return cst.Call(func=cst.Call(func=attr(self.ctx.ns, "Dropout"), args=layer_args), args=call_args)


class NnxDropout(_Dropout):
    """`hk.dropout(...)` -> `self.dropout = nnx.Dropout(rate, rngs=rngs)` in `__init__`, `self.dropout(x)`.

    A mixin of the NNX method rewriter (`haiku2flax.targets.nnx.NnxMethodRewriter`), whose hoisting API
    it uses. `deterministic=not training` is kept on the call until the converter sees that `training`
    serves nothing else; then the flag becomes the module's train/eval mode.
    """

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        dropout = self.read_dropout(original, updated)
        if dropout is None:
            return super().leave_Call(original, updated)
        if self.in_nested_block(original, "hk.dropout") or not self.can_hoist([dropout.rate], original):  # type: ignore[attr-defined]
            return updated
        attribute = self.new_attribute("dropout")  # type: ignore[attr-defined]
        layer_args = [cst.Arg(dropout.rate)]
        if dropout.broadcast_dims is not None:
            layer_args.append(keyword_arg("broadcast_dims", dropout.broadcast_dims))
        layer_args.append(keyword_arg("rngs", cst.Name("rngs")))
        self.add_to_init(attribute, cst.Call(attr(self.ctx.ns, "Dropout"), layer_args), original, needs_rngs=True)  # type: ignore[attr-defined]
        call_args = [cst.Arg(dropout.x)]
        if dropout.deterministic is not None:
            call_args.append(keyword_arg("deterministic", dropout.deterministic))
            if dropout.flag is not None:
                self.mode_flags.add(dropout.flag)  # type: ignore[attr-defined]
        if dropout.explicit_rng is not None:
            call_args.append(keyword_arg("rngs", dropout.explicit_rng))
        self.converted(original, RULE_DROPOUT, f"hk.dropout -> nnx.Dropout ({attribute})")
        return self.set_size(cst.Call(attr("self", attribute), call_args), self.size_of(dropout.x))  # type: ignore[attr-defined]
