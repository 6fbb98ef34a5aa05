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
from .interfaces import CallSite, MethodRoom, on_call

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


@on_call("next_rng_key", rule=RULE_RNG)
@on_call("maybe_next_rng_key", rule=RULE_MAYBE_RNG)
@on_call("with_rng", rule=RULE_WITH_RNG)
def key_todo(room: MethodRoom, call: CallSite) -> None:
    """A TODO saying how the target draws keys; the call stays, and other rules may still take it."""
    rule, advice = TODOS[call.api]
    if not _consumed_by_dropout(room, call.original):
        room.todo(call.original, rule, advice[room.ctx.target])


def _consumed_by_dropout(room: MethodRoom, key: cst.Call) -> bool:
    """`hk.dropout(hk.next_rng_key(), ...)`: the Flax Dropout layer draws its own key."""
    around = room.enclosing_call()
    return around is not None and bool(around.args) and around.args[0].value is key and room.ctx.names.haiku_api(around.func) == "dropout"
