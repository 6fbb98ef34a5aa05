"""Control flow, lifted function transforms and name scopes (`haiku2flax.codemods.control_flow`, `.scopes`):
what is left as a TODO, and why, and the small conversions no fixture shows.

The conversions themselves are verified by the fixtures under `fixtures/control_flow/` and `fixtures/scopes/`.
"""

from __future__ import annotations

import textwrap

import libcst as cst
import pytest

from haiku2flax.codemods.control_flow import (
    RULE_COND,
    RULE_FORI_LOOP,
    RULE_REMAT,
    RULE_RUNNING_INIT,
    RULE_SWITCH,
    RULE_VMAP,
    RULE_WHILE_LOOP,
)
from haiku2flax.codemods.scopes import RULE_NAME_SCOPE
from haiku2flax.engine import convert_source
from haiku2flax.engine.pipeline import TARGETS

HEADER = '''
import haiku as hk
import jax
import jax.numpy as jnp


def helper(v):
  return hk.Linear(3)(v)


class Model(hk.Module):
  def project(self, v):
    return hk.Linear(3)(v)

  def __call__(self, x, fns):
'''


def _convert(body: str, target: str):
    return convert_source(HEADER + textwrap.indent(textwrap.dedent(body), "    "), target)


def _todos(body: str, target: str) -> dict[str, list[str]]:
    return _convert(body, target).todos()


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize(
    ("body", "rule", "reason"),
    [
        # branches and loop bodies that touch modules: Flax needs the lifted forms, written by hand
        ("return hk.cond(x.sum() > 0, lambda v: hk.Linear(3)(v), jnp.tanh, x)\n", RULE_COND, "uses hk.Linear"),
        ("return hk.cond(x.sum() > 0, helper, jnp.tanh, x)\n", RULE_COND, "nn.cond"),
        ("return hk.switch(0, fns, x)\n", RULE_SWITCH, "not a list written in the call"),
        ("return hk.switch(0, [jnp.sin, fns[0]], x)\n", RULE_SWITCH, "cannot follow"),
        ("return hk.fori_loop(0, 3, lambda i, v: self.project(v), x)\n", RULE_FORI_LOOP, "`self.project`"),
        ("linear = hk.Linear(3)\nreturn hk.while_loop(lambda v: v.sum() < 1, linear, x)\n", RULE_WHILE_LOOP, "`linear`, which this tool cannot see into"),
        # lifted transforms
        ("@hk.remat\ndef f(v):\n  return hk.Linear(3)(v)\nreturn f(x)\n", RULE_REMAT, "applied and called at once"),
        ("f = hk.remat(lambda v: hk.Linear(3)(v))\nreturn f(x)\n", RULE_REMAT, "applied and called at once"),
        ("a = hk.Linear(3)\nb = hk.Linear(3)\nreturn hk.remat(lambda v: b(a(v)))(x)\n", RULE_REMAT, "only layers built inside it convert"),
        ("linear = hk.Linear(3)\ndef f(v):\n  return linear(v)\nreturn hk.vmap(f, split_rng=False)(x)\n", RULE_VMAP, "pass a lambda"),
        ("linear = hk.Linear(3)\nreturn hk.cond(x.sum() > 0, true_fun=lambda v: linear(v), false_fun=jnp.tanh, operand=x)\n", RULE_COND, "positional"),
        ("return hk.remat(lambda v: hk.dropout(hk.next_rng_key(), 0.1, hk.Linear(3)(v)))(x)\n", RULE_REMAT, "hk.dropout"),
        ("def f(v):\n  return hk.Linear(3)(v)\ny = f(x)\nreturn hk.remat(f)(y)\n", RULE_REMAT, "used only here"),
        ("return hk.vmap(lambda v: hk.Linear(3)(v), split_rng=True)(x)\n", RULE_VMAP, "one set per element"),
        ("return hk.vmap(lambda v: hk.Linear(3)(v), split_rng=False)(x=x)\n", RULE_VMAP, "keyword or `*` arguments"),
        # name scopes Flax cannot drop without a decision
        ("with hk.experimental.name_scope('a') as scope:\n  y = hk.Linear(3)(x)\nreturn y\n", RULE_NAME_SCOPE, "without `as`"),
    ],
)
def test_left_as_todo(body: str, rule: str, reason: str, target: str):
    messages = _todos(body, target).get(rule, [])
    assert any(reason in message for message in messages), messages


def test_nnx_running_init_needs_an_if_and_a_module_free_init_branch():
    value = _todos("initializing = hk.running_init()\nreturn x\n", "nnx")
    assert any("no init phase" in message for message in value[RULE_RUNNING_INIT])
    runs_modules = _todos("if hk.running_init():\n  helper(x)\nreturn jnp.tanh(x)\n", "nnx")
    assert any("init-only block uses hk.Linear" in message for message in runs_modules[RULE_RUNNING_INIT])


def test_linen_running_init_outside_a_module_has_no_self():
    source = "import haiku as hk\n\n\ndef step(x):\n  return x if hk.running_init() else -x\n"
    todos = [n.message for n in convert_source(source, "linen").notes if n.outcome == "todo"]
    assert any("no `self` to ask" in message for message in todos)


def test_nnx_running_init_guard_keeps_the_apply_branch_and_its_layers():
    body = "if not hk.running_init():\n  y = hk.Linear(3)(x)\nelse:\n  y = x\nreturn y\n"
    code = _convert(body, "nnx").code
    assert "self.linear = nnx.Linear" in code and "    y = self.linear(x)\n    return y" in code
    call = code.split("class Model")[1].split("def __call__")[1]
    assert "running_init" not in call and "TODO" not in call


@pytest.mark.parametrize("target", TARGETS)
def test_module_free_lifted_functions_become_jax_transforms(target: str):
    body = "y = hk.remat(jnp.tanh, prevent_cse=False)(x)\nreturn hk.vmap(lambda v: v / v.sum(), 1, split_rng=False)(y)\n"
    code = _convert(body, target).code
    assert "y = jax.checkpoint(jnp.tanh, prevent_cse=False)(x)" in code
    assert "jax.vmap(lambda v: v / v.sum(), in_axes=1)(y)" in code
    cst.parse_module(code)


def test_linen_static_argnums_count_the_module():
    body = "return hk.remat(lambda v, n: hk.Linear(3)(v) * n, static_argnums=(1,))(x, 2)\n"
    code = _convert(body, "linen").code
    assert "nn.remat(lambda mdl, v, n: nn.Dense(3)(v) * n, static_argnums=(2,))(self, x, 2)" in code


def test_nnx_running_init_guard_written_on_one_line_keeps_the_apply_statement():
    body = "if hk.running_init(): y = x + 1\nelse: y = x * 2\nreturn y\n"
    code = _convert(body, "nnx").code
    assert "    y = x * 2\n    return y" in code and "running_init" not in code
    cst.parse_module(code)


@pytest.mark.parametrize("target", TARGETS)
def test_ignoring_a_control_flow_rule_leaves_its_call_to_the_safety_net(target: str):
    body = "return hk.cond(x.sum() > 0, jax.nn.relu, jnp.tanh, x)\n"
    assert "jax.lax.cond" in _convert(body, target).code
    ignored = convert_source(HEADER + textwrap.indent(body, "    "), target, ignore=frozenset({RULE_COND}))
    assert "hk.cond" in ignored.code and "jax.lax.cond" not in ignored.code


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("linen", "nn.cond(x.sum() > 0, lambda mdl, v: mdl(v), lambda mdl, *operands: jnp.tanh(*operands), linear, x)"),
        ("nnx", "nnx.cond(x.sum() > 0, lambda v: self.linear(v), jnp.tanh, x)"),
    ],
)
def test_cond_over_a_layer_built_in_the_method(target: str, expected: str):
    body = "linear = hk.Linear(3)\nx = linear(x)\nreturn hk.cond(x.sum() > 0, lambda v: linear(v), jnp.tanh, x)\n"
    result = _convert(body, target)
    assert expected in result.code and RULE_COND not in result.todos()


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("linen", "nn.vmap(lambda mdl, row: mdl(row), variable_axes={'params': None}, split_rngs={'params': False})(linear, x)"),
        ("nnx", "nnx.vmap(lambda row: self.linear(row))(x)"),
    ],
)
def test_vmap_over_a_layer_built_in_the_method(target: str, expected: str):
    body = "linear = hk.Linear(3)\nreturn hk.vmap(lambda row: linear(row), split_rng=False)(x)\n"
    result = _convert(body, target)
    assert expected in result.code and RULE_VMAP not in result.todos()
