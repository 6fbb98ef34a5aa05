"""NNX: layers stored in locals only to be elements of an `hk.Sequential` (`sequential_elements`): which
are built in the Sequential, and which keep the generic TODO."""

from __future__ import annotations

import pytest

from haiku2flax.engine import convert_source

SOURCE = """\
from functools import partial

import haiku as hk
import jax
import jax.numpy as jnp


def forward(x, is_training):
{body}


model = hk.transform_with_state(forward)
params, state = model.init(jax.random.key(0), jnp.ones((2, 5)), is_training=True)
"""

TWO_NORMS = """\
  bn_a = hk.BatchNorm(create_scale=True, create_offset=True, decay_rate=0.9)
  bn_b = hk.BatchNorm(create_scale=True, create_offset=True, decay_rate=0.9)
  bn_a = partial(bn_a, is_training=is_training)
  bn_b = partial(bn_b, is_training=is_training)
  a = hk.Sequential([hk.Linear(4), bn_a])
  b = hk.Sequential([hk.Linear(4), bn_b])
  return a(x) + b(x)"""


def _nnx(body: str) -> str:
    return convert_source(SOURCE.format(body=body), "nnx").code


def test_two_layers_bound_to_one_flag_are_built_in_their_sequentials_and_the_flag_is_the_mode():
    code = _nnx(TWO_NORMS)
    assert "self.a = nnx.Sequential(nnx.Linear(din, 4, rngs=rngs), nnx.BatchNorm(4, " in code
    assert "self.b = nnx.Sequential(nnx.Linear(din, 4, rngs=rngs), nnx.BatchNorm(4, " in code
    assert "  def __call__(self, x):\n    return self.a(x) + self.b(x)\n" in code
    assert "TODO" not in code and "hk." not in code


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (("  return a(x) + b(x)", "  return a(x) + b(x) * is_training"), "the flag is read elsewhere too"),
        (("  return a(x) + b(x)", "  return a(x) + b(x) + bn_b(x)"), "the layer is called outside the Sequential too"),
        (("is_training=is_training)\n  a", "is_training=is_training, test_local_stats=False)\n  a"), "its partial binds more than its mode"),
        (("bn_b = partial(bn_b, is_training=is_training)", "bn_b = partial(bn_b, True)"), "its partial binds by position"),
    ],
)
def test_a_layer_used_otherwise_keeps_its_todo(change: tuple[str, str], why: str):
    code = _nnx(TWO_NORMS.replace(*change))
    assert "bn_b = hk.BatchNorm(" in code and "# TODO(haiku2flax:HK000): `hk.BatchNorm`" in code, why


def test_linen_keeps_the_stored_layer_and_its_partial():
    code = convert_source(SOURCE.format(body=TWO_NORMS), "linen").code
    assert "bn_a = partial(bn_a, use_running_average=not is_training)" in code
    assert "a = nn.Sequential([nn.Dense(4), bn_a])" in code


def test_a_sequential_init_cannot_build_keeps_its_layers_and_partials_as_they_were():
    """`__init__` has no `width`: `b` stays under its TODO with `bn_b` and its `partial`; `bn_a`'s partial
    binds the flag `bn_b`'s still reads, so it stays too (the flag cannot become the mode)."""
    code = _nnx("  width = x.shape[-1]\n" + TWO_NORMS.replace("hk.Linear(4), bn_b", "hk.Linear(width), bn_b"))
    assert "    bn_a = partial(bn_a, is_training=is_training)\n    bn_b = partial(bn_b, is_training=is_training)\n" in code
    assert "    b = hk.Sequential([hk.Linear(width), bn_b])\n" in code
    assert "  def __call__(self, x, is_training):" in code
