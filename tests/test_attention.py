"""`hk.MultiHeadAttention` (rules/attention.toml, HK500): what the conversion writes, and what it leaves.

The numbers are proved by `fixtures/attention` (both targets, through the harness); these tests pin the
code paths the fixtures do not take.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from haiku2flax.engine import convert_source
from haiku2flax.harness.conversions import converted


def _forward(body: str, params: str = "x") -> str:
    lines = "".join(f"  {line}\n" for line in body.splitlines())
    return f"import haiku as hk\n\n\ndef forward({params}):\n{lines}\n\nmodel = hk.transform(forward)\n"


def _convert(source: str, target: str) -> str:
    return convert_source(source, target).code


ATTENTION = "hk.MultiHeadAttention(4, 8, w_init=hk.initializers.VarianceScaling(){})"


@pytest.mark.parametrize(
    ("arguments", "linen"),
    [
        ("", "nn.MultiHeadDotProductAttention(4, kernel_init=nn.initializers.variance_scaling(1.0, 'fan_in', 'truncated_normal'), qkv_features=32, out_features=32)"),
        # Flax's out_features would default to the query's width: Haiku's H·K is written, also for None
        (", model_size=None", "nn.MultiHeadDotProductAttention(4, kernel_init=nn.initializers.variance_scaling(1.0, 'fan_in', 'truncated_normal'), qkv_features=32, out_features=32)"),
        (", value_size=8, model_size=16", "nn.MultiHeadDotProductAttention(4, kernel_init=nn.initializers.variance_scaling(1.0, 'fan_in', 'truncated_normal'), out_features=16, qkv_features=32)"),
        (", with_bias=False, b_init=hk.initializers.Constant(0.1)", "nn.MultiHeadDotProductAttention(4, kernel_init=nn.initializers.variance_scaling(1.0, 'fan_in', 'truncated_normal'), use_bias=False, bias_init=nn.initializers.constant(0.1), qkv_features=32, out_features=32)"),
    ],
    ids=["defaults", "model_size None", "value_size equal to key_size", "bias"],
)
def test_linen_constructor(arguments: str, linen: str):
    out = _convert(_forward(f"return {ATTENTION.format(arguments)}(x, x, x)"), "linen")
    assert f"return {linen}(x, x, x)" in out


def test_value_size_that_equals_key_size_by_name_is_dropped():
    source = _forward("return hk.MultiHeadAttention(h, k, w_init=hk.initializers.Constant(0.0), value_size=k)(x, x, x)", "x, h, k")
    assert "nn.MultiHeadDotProductAttention(h, kernel_init=nn.initializers.constant(0.0), qkv_features=h * k, out_features=h * k)" in _convert(source, "linen")


def test_mask_is_a_keyword_and_queries_keys_values_stay_positional():
    out = _convert(_forward(f"return {ATTENTION.format('')}(x, m, m, mask)", "x, m, mask"), "linen")
    assert ")(x, m, m, mask=mask)" in out


def test_nnx_self_attention_needs_no_kv_features():
    out = _convert(_forward(f"return {ATTENTION.format('')}(x, x, x)"), "nnx")
    assert "nnx.MultiHeadAttention(4, din, kernel_init=" in out and "decode=False, rngs=rngs)" in out
    assert "in_kv_features" not in out and "self.multi_head_attention(x, x, x)" in out


def test_nnx_cross_attention_reads_the_memory_size():
    body = f"m = hk.Linear(6)(x)\nreturn {ATTENTION.format('')}(x, m, m)"
    out = _convert(_forward(body), "nnx")
    assert "in_kv_features=6, rngs=rngs)" in out and "HK002" not in out


@pytest.mark.parametrize("target", ["linen", "nnx"])
@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        (", value_size=16", "Flax projects values to the key size"),
        (", w_init_scale=2.0", "w_init=hk.initializers.VarianceScaling(w_init_scale)"),
    ],
    ids=["value_size", "w_init_scale"],
)
def test_table_todos(arguments: str, reason: str, target: str):
    out = _convert(_forward(f"return {ATTENTION.format(arguments)}(x, x, x)"), target)
    assert "# TODO(haiku2flax:HK002)" in out and reason in out and "hk.MultiHeadAttention(" in out


@pytest.mark.parametrize(
    ("body", "params", "reason"),
    [
        ("k = hk.Linear(6)(x)\nv = hk.Linear(5)(x)\nreturn {attention}(x, k, v)", "x", "these are of sizes 6 and 5"),
        ("return {attention}(x, m, m)", "x, m", "NNX needs the feature size of the keys and values"),
    ],
    ids=["keys and values of other sizes", "memory of unknown size"],
)
def test_nnx_kv_todos(body: str, params: str, reason: str):
    out = _convert(_forward(body.format(attention=ATTENTION.format("")), params), "nnx")
    assert "# TODO(haiku2flax:HK002)" in out and reason in out and "hk.MultiHeadAttention(" in out
    linen = _convert(_forward(body.format(attention=ATTENTION.format("")), params), "linen")
    assert "nn.MultiHeadDotProductAttention(" in linen and "TODO" not in linen  # Linen infers each size


def test_flax_shape_splits_heads_row_major():
    w = jnp.arange(12.0).reshape(2, 6)  # (D, H·K) with H=3, K=2: head h is columns [2h, 2h+2)
    heads = converted(w, "flax_shape", "linen", (2, 3, 2))[None]
    np.testing.assert_array_equal(heads[:, 1], w[:, 2:4])


def test_flax_shape_refuses_sizes_that_disagree():
    with pytest.raises(ValueError, match="cannot take the Flax leaf's shape"):
        converted(jnp.zeros((2, 6)), "flax_shape", "linen", (2, 4, 2))
