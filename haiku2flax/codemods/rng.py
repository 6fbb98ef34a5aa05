"""`hk.next_rng_key()` outside `hk.dropout`: flagged, since Flax draws keys from named streams.

What it does: leaves `hk.next_rng_key()` as it is, with a TODO saying how the target draws keys
(Linen: `self.make_rng('<stream>')` plus `rngs={'<stream>': key}` at apply; NNX: an `nnx.Rngs` kept
on the module). The key `hk.dropout` consumes is not flagged: the Flax Dropout layer draws its own.

Why not convert: a Haiku key sequence and a Flax stream never produce the same keys, and the stream
name is a choice the user should make; silently picking one would hide where randomness comes from.
"""

from __future__ import annotations

import libcst as cst

from ..engine.registry import Status, register
from ..engine.rewriter import Rewriter

RULE_RNG = register("HK005", "next-rng-key", Status.NOT_CONVERTED, "hk.next_rng_key() outside dropout: TODO with how the target draws keys", __name__)

ADVICE = {
    "linen": "draw keys with `self.make_rng('<stream>')` and pass `rngs={'<stream>': key}` to apply",
    "nnx": "keep an `nnx.Rngs` on the module and draw keys with `self.rngs.<stream>()`",
}


class RngKeys(Rewriter):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._rng_consumed: set[int] = set()  # keys that hk.dropout consumes

    def visit_Call(self, node: cst.Call) -> None:
        if self.ctx.names.haiku_api(node.func) == "dropout" and node.args:
            self._rng_consumed.add(id(node.args[0].value))
        super().visit_Call(node)

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        if self.ctx.names.haiku_api(original.func) == "next_rng_key" and id(original) not in self._rng_consumed:
            self.todo(original, RULE_RNG, ADVICE[self.ctx.target])
        return super().leave_Call(original, updated)
