"""Functions of the file that build layers at each call (`helper_layers`, HK017): which become NNX
modules their callers build, and which keep the generic TODO at their layers."""

from __future__ import annotations

import textwrap

import pytest

from haiku2flax.engine import convert_source

HEADER = """\
import haiku as hk
import jax
import jax.numpy as jnp

"""

MODULE = """
class Net(hk.Module):
  def __call__(self, x):
    return {call}


def forward(x):
  return Net()(x)


model = hk.without_apply_rng(hk.transform(forward))
params = model.init(jax.random.key(0), jnp.ones((2, 5)))
"""


def _source(helper: str, call: str = "messages(x, 4)", extra: str = "") -> str:
    return HEADER + textwrap.dedent(helper) + MODULE.format(call=call) + extra


GATED = """\
def messages(z, size):
  return jax.nn.relu(hk.Linear(size)(z))
"""


def test_nnx_builds_the_function_as_a_module_in_its_callers_init():
    result = convert_source(_source(GATED), "nnx")
    assert "class Messages(nnx.Module):\n  def __init__(self, din: int, size, *, rngs: nnx.Rngs):\n    self.linear = nnx.Linear(din, size, rngs=rngs)" in result.code
    assert "    self.messages = Messages(din, 4, rngs=rngs)" in result.code
    assert "return self.messages(x)" in result.code
    assert "TODO" not in result.code
    assert any(note.rule == "HK017" for note in result.notes)


def test_linen_keeps_the_function_its_layers_belong_to_the_calling_module():
    code = convert_source(_source(GATED), "linen").code
    assert "def messages(z, size):\n  return jax.nn.relu(nn.Dense(size)(z))" in code
    assert "TODO" not in code


@pytest.mark.parametrize(
    ("helper", "extra", "why"),
    [
        ("def messages(z, size):\n  return hk.Linear(size)(z) * size\n", "", "a layer size also read by the computation"),
        ("def messages(z, size):\n  size = size * 2\n  return hk.Linear(size)(z)\n", "", "a layer size rebound"),
        (GATED, "\nhandlers = [messages]\n", "used as a value"),
        (GATED, "\ndef plain(x):\n  return messages(x, 4)\n", "called from code that is no module"),
        ("def messages(z, size, *rest):\n  return hk.Linear(size)(z)\n", "", "a star parameter"),
    ],
)
def test_nnx_keeps_the_todo_where_the_function_is_not_only_a_module(helper: str, extra: str, why: str):
    code = convert_source(_source(helper, extra=extra), "nnx").code
    assert "class Messages" not in code, why
    assert "def messages(" in code and "# TODO(haiku2flax:HK000): `hk.Linear`" in code, why


@pytest.mark.parametrize("call", ["sum(messages(x, 4) for _ in range(2))", "sum(hk.Linear(4)(x) for _ in range(2))"])
def test_nnx_layers_built_in_a_comprehension_are_not_shared(call: str):
    """Haiku builds a set of weights per item: one layer built in `__init__` would share them."""
    code = convert_source(_source(GATED, call=call), "nnx").code
    method = code.split("class Net")[1]
    assert "    # TODO(haiku2flax:HK002): " in method and "is built inside a loop or condition" in method
    assert f"    return {call}\n" in method


def test_nnx_function_calling_another_such_function_is_left_alone():
    helpers = GATED + "\n\ndef twice(z, size):\n  return messages(messages(z, size), size)\n"
    code = convert_source(_source(helpers, call="twice(x, 4)"), "nnx").code
    assert "def messages(" in code and "# TODO(haiku2flax:HK000)" in code


def test_nnx_private_function_defined_after_its_caller_becomes_a_private_class():
    source = HEADER + MODULE.format(call="_messages(x, 4)") + "\n\n" + GATED.replace("def messages", "def _messages")
    code = convert_source(source, "nnx").code
    assert "    self._messages = _Messages(din, 4, rngs=rngs)" in code
    assert "\nclass _Messages(nnx.Module):\n" in code and "def _messages" not in code
    assert "TODO" not in code


@pytest.mark.parametrize(("calls", "kept"), [("messages(x, 4) + messages(x, 4)", False), ("messages(x, 4)", True)])
def test_linen_drops_a_literal_name_in_a_function_called_more_than_once(calls: str, kept: bool):
    """Haiku numbers the second `fc` (`fc_1`); Linen refuses a name twice in one module."""
    helper = 'def messages(z, size):\n  return hk.Linear(size, name="fc")(z)\n'
    result = convert_source(_source(helper, call=calls), "linen")
    assert ('nn.Dense(size, name="fc")(z)' in result.code) is kept
    assert any("`name=` dropped in `messages`" in note.message for note in result.notes) is not kept
