"""Lifted transforms (`haiku2flax.codemods.lifted`): what is left as a TODO, and why.

The conversions themselves are covered by the fixtures under `fixtures/guide/lifted_transforms`,
`fixtures/guide/scan_over_layers` and `fixtures/lifted/`.
"""

from __future__ import annotations

import textwrap

import pytest

from haiku2flax.codemods.lifted import RULE_LAYER_STACK, RULE_SCAN
from haiku2flax.engine import convert_source
from haiku2flax.engine.pipeline import TARGETS

HEADER = '''
import haiku as hk
import jax.numpy as jnp


class Cell(hk.Module):
  def __call__(self, c, x):
    c = hk.Linear(4)(jnp.concatenate([c, x], axis=-1))
    return c, c

  def initial_state(self, batch_size):
    return jnp.zeros((batch_size, 4))


class NoisyCell(hk.Module):
  def __call__(self, c, x):
    c = hk.dropout(hk.next_rng_key(), 0.1, hk.Linear(4)(jnp.concatenate([c, x], axis=-1)))
    return c, c


class Block(hk.Module):
  def __call__(self, x):
    return hk.Linear(4)(x)


class Uses(hk.Module):
  def __call__(self, xs):
'''


def _todos(body: str, target: str) -> dict[str, list[str]]:
    source = HEADER + textwrap.indent(textwrap.dedent(body), "    ")
    return convert_source(source, target).todos()


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize(
    ("body", "rule", "reason"),
    [
        ("return hk.scan(lambda c, x: (c + x, c), xs[0], xs)\n", RULE_SCAN, "other than a module"),
        ("cell = Cell()\nc, _ = cell(xs[0], xs[0])\nreturn hk.scan(cell, c, xs)\n", RULE_SCAN, "used other than by scanning"),
        (
            "@hk.layer_stack(3, pass_reverse_to_layer_fn=True)\ndef f(x, reverse=False):\n  return Block()(x)\nreturn f(xs)\n",
            RULE_LAYER_STACK,
            "pass_reverse_to_layer_fn",
        ),
        ("@hk.layer_stack(2)\ndef f(x):\n  return Block()(Block()(x))\nreturn f(xs)\n", RULE_LAYER_STACK, "exactly one module"),
        ("@hk.layer_stack(2)\ndef f(x):\n  return Block()(x)\nif xs.shape[0]:\n  xs = f(xs)\nreturn xs\n", RULE_LAYER_STACK, "top level"),
        ("def f(x):\n  return Block()(x)\nys = f(xs)\nreturn hk.layer_stack(2)(f)(ys)\n", RULE_LAYER_STACK, "used other than"),
        ("def f(x):\n  return Block()(x)\nstack = hk.layer_stack(2)\nreturn stack(f)(xs)\n", RULE_LAYER_STACK, "as the decorator"),
        (
            "@hk.layer_stack(2)\ndef f(x):\n  return hk.BatchNorm(True, True, 0.9)(x, True)\nreturn f(xs)\n",
            RULE_LAYER_STACK,
            "keeps state",
        ),
    ],
)
def test_left_as_todo(body: str, rule: str, reason: str, target: str):
    assert any(reason in message for message in _todos(body, target).get(rule, []))


def test_random_cell_splits_the_dropout_stream_in_linen_and_is_a_todo_in_nnx():
    body = "return hk.scan(NoisyCell(), jnp.zeros((xs.shape[1], 4)), xs)\n"
    linen = convert_source(HEADER + textwrap.indent(body, "    "), "linen").code
    assert "split_rngs={'params': False, 'dropout': True}" in linen
    assert any("draws random numbers" in message for message in _todos(body, "nnx")[RULE_SCAN])


def test_cell_built_in_init_from_a_local_and_its_other_methods_follow():
    body = "cell = Cell()\nc = cell.initial_state(xs.shape[1])\nreturn hk.scan(cell, c, xs)\n"
    nnx = convert_source(HEADER + textwrap.indent(body, "    "), "nnx").code
    assert "self.cell = Cell(din, rngs=rngs)" in nnx
    assert "c = self.cell.initial_state(xs.shape[1])" in nnx
    assert "cell = Cell()" not in nnx


@pytest.mark.parametrize(("target", "expected"), [("linen", "return f(Block(), xs)[0]"), ("nnx", "return f(self.f, xs)")])
def test_layer_stack_applied_to_a_function_converts_like_the_decorator(target: str, expected: str):
    body = "def f(x):\n  return Block()(x)\nreturn hk.layer_stack(2)(f)(xs)\n"
    result = convert_source(HEADER + textwrap.indent(body, "    "), target)
    assert expected in result.code
    assert "layer_stack" not in result.code and RULE_LAYER_STACK not in result.todos()
