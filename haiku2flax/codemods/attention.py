"""`hk.MultiHeadAttention`: what its table entry (`rules/attention.toml`, rule HK002) cannot say.

What it converts: `hk.MultiHeadAttention(H, K, w_init=…, model_size=D)(q, k, v, mask=m)` becomes
Linen `nn.MultiHeadDotProductAttention(H, out_features=D, kernel_init=…, qkv_features=H * K)(q, k, v,
mask=m)` and NNX `nnx.MultiHeadAttention(H, Dq, out_features=D, kernel_init=…, qkv_features=H * K,
decode=False, rngs=rngs)` by the table. This rule adds NNX's `in_kv_features`: NNX builds the key and
value projections at construction, so it needs their input size, which is the query's unless said
otherwise. It is read by the same dataflow that gives `Dq` (cross-attention over an embedding: the
embedding's size), and written only where it differs from the query's.

Not converted (TODO with the reason): keys and values of sizes that cannot be shown equal (NNX projects
both from inputs of one size, `in_kv_features`; Linen infers each and converts), keys whose size is not
known where the layer is built, and, from the table, `value_size` other than `key_size` (Flax projects
values to the key size: it needs a custom attention module) and the deprecated `w_init_scale`.

Weights: Haiku's fused projections (D, H·K) and (H·V, D') are Flax's (D, H, K) and (H, V, D'), a
row-major reshape (`reshape = "flax_shape"`). Masks keep their meaning (True attends) and Haiku's full
rank [B, H|1, T, S] broadcasts in Flax.

Example (NNX, cross-attention from queries of size `din` over a memory of size 6)::

    hk.MultiHeadAttention(2, 5, w_init=hk.initializers.TruncatedNormal(0.2))(x, memory, memory, padding)

    self.multi_head_attention = nnx.MultiHeadAttention(2, din, kernel_init=nnx.initializers.truncated_normal(0.2),
        qkv_features=10, out_features=10, decode=False, in_kv_features=6, rngs=rngs)   # in __init__
    self.multi_head_attention(x, memory, memory, mask=padding)                        # in __call__
"""

from __future__ import annotations

import libcst as cst

from ..engine.calls import BoundCall, Unconvertible, code
from ..engine.registry import Status, register
from ..engine.tables import Construct
from .interfaces import NnxMethod

RULE_ATTENTION = register(
    "HK500", "attention-kv-features", Status.CONVERTED, "hk.MultiHeadAttention keys and values: NNX in_kv_features", __name__
)

ATTENTION = "MultiHeadAttention"


def constructor_args_from_call(room: NnxMethod, construct: Construct, call_args: list[cst.Arg]) -> dict[str, cst.BaseExpression]:
    """NNX constructor arguments that only the layer's call tells: `in_kv_features` for attention over
    keys and values of another size than the queries."""
    if construct.haiku != ATTENTION:
        return {}
    bound = BoundCall.bind(cst.Call(cst.Name("_"), call_args), construct.haiku_call_args, f"hk.{ATTENTION}(...)").args
    query, key, value = (bound.get(name) for name in ("query", "key", "value"))
    if query is None or key is None or value is None:
        raise Unconvertible(f"`hk.{ATTENTION}` is called without its key and value")
    sizes = [room.size_of(node) for node in (query, key, value)]
    query_size, key_size, value_size = (code(s) if s is not None else None for s in sizes)
    if code(key) == code(value) == code(query) or key_size == value_size == query_size is not None:
        return {}
    if key_size is None or value_size is None:
        raise Unconvertible(
            f"NNX needs the feature size of the keys and values of `hk.{ATTENTION}`, which is not known where it "
            "is built: build it in `__init__` by hand with `in_kv_features=`"
        )
    if key_size != value_size:
        raise Unconvertible(
            f"NNX projects keys and values from inputs of one size (`in_kv_features`), and these are of sizes "
            f"{key_size} and {value_size}: project them to one size first"
        )
    room.converted(key, RULE_ATTENTION, f"hk.{ATTENTION} keys of size {key_size} -> in_kv_features")
    assert sizes[1] is not None
    return {"in_kv_features": sizes[1]}
