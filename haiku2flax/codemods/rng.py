"""Keys drawn inside transforms: flagged, since Flax draws keys from streams the user names.

What it does: leaves each construct as it is, with a TODO saying how the target draws keys:
- `hk.next_rng_key()` outside `hk.dropout` (HK005): Linen `self.make_rng('<stream>')` plus
  `rngs={'<stream>': key}` at apply; NNX an `nnx.Rngs` kept on the module. The key `hk.dropout`
  consumes is not flagged: the Flax Dropout layer draws its own.
- `hk.maybe_next_rng_key()` (HK022), a key only when apply was given one: Linen
  `self.make_rng('<stream>') if self.has_rng('<stream>') else None`; NNX an optional `rngs`.
- `with hk.with_rng(key):` (HK023), which makes the block draw from `key`: Flax has no scoped key
  override, so the key goes explicitly to what draws inside the block.

Why not convert: a Haiku key sequence and a Flax stream never produce the same keys, and the stream
name is a choice the user should make; silently picking one would hide where randomness comes from.
(Key sequences outside transforms do convert: see `hk.PRNGSequence`, HK020.)
"""
from __future__ import annotations

import libcst as cst

from ..engine.registry import Status, register
from ..engine.rewriter import Rewriter

RULE_RNG = register(
    "HK005", "next-rng-key", Status.NOT_CONVERTED, "hk.next_rng_key() outside dropout: TODO with how the target draws keys", __name__,
    apis=("next_rng_key",),
)

RULE_MAYBE_RNG = register(
    "HK022", "maybe-next-rng-key", Status.NOT_CONVERTED, "hk.maybe_next_rng_key(): TODO with the target's optional stream", __name__,
    apis=("maybe_next_rng_key",),
)
RULE_WITH_RNG = register("HK023", "with-rng", Status.NOT_CONVERTED, "hk.with_rng(key): TODO, pass the key explicitly", __name__, apis=("with_rng",))

ADVICE = {
    "linen": "draw keys with `self.make_rng('<stream>')` and pass `rngs={'<stream>': key}` to apply",
    "nnx": "keep an `nnx.Rngs` on the module and draw keys with `self.rngs.<stream>()`",
}
# Haiku API -> (rule, advice per target)
TODOS = {
    "next_rng_key": (RULE_RNG, ADVICE),
    "maybe_next_rng_key": (
        RULE_MAYBE_RNG,
        {
            "linen": "Flax names its streams: write `self.make_rng('<stream>') if self.has_rng('<stream>') else None` "
            "and pass `rngs={'<stream>': key}` to apply when keys are wanted",
            "nnx": "Flax names its streams: take an optional `rngs: nnx.Rngs | None = None` and draw "
            "`rngs.<stream>()` when it is given, None otherwise",
        },
    ),
    "with_rng": (
        RULE_WITH_RNG,
        {
            "linen": "Flax has no scoped key override: pass the key to what draws inside the block (`nn.Dropout(...)(x, "
            "rng=key)`), or apply that submodule with `rngs={'<stream>': key}`",
            "nnx": "Flax has no scoped key override: pass the key to what draws inside the block (`self.dropout(x, "
            "rngs=key)`), or draw from an `nnx.Rngs(key)` there",
        },
    ),
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
        todo = TODOS.get(self.ctx.names.haiku_api(original.func) or "")
        if todo is not None and id(original) not in self._rng_consumed:
            rule, advice = todo
            self.todo(original, rule, advice[self.ctx.target])
        return super().leave_Call(original, updated)
