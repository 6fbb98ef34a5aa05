"""Forwards built by factories of the file, and the Linen idioms RL code writes inside them.

`hk.transform(make_forward(...))` transforms a function nested in `make_forward` that closes over its
arguments: it becomes a module class inside the factory (coax, bsuite). The forward may read the
factory's own `self` (`outer_self`, in both targets), bind a stored BatchNorm's call keywords with
`partial`, and reshape to a computed shape; a Linen forward that calls a helper of the file building
layers gets the compact scope; a module class handed Haiku layer classes its call cannot serve alike
carries a TODO where it calls them.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from haiku2flax.engine import convert_source
from haiku2flax.harness import verify
from haiku2flax.harness.pytest_helper import report_text

COAX_STYLE = """\
import types
from functools import partial

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as onp

case = types.SimpleNamespace(action_space=types.SimpleNamespace(shape=(3, 1)))


def func_pi(self):
    def func(S, is_training):
        batch_norm = hk.BatchNorm(create_scale=True, create_offset=True, decay_rate=0.95)
        batch_norm = partial(batch_norm, is_training=is_training)
        mu = hk.Sequential((
            hk.Linear(7), batch_norm, jnp.tanh,
            hk.Linear(onp.prod(self.action_space.shape)),
            hk.Reshape(self.action_space.shape),
        ))
        return {'mu': mu(hk.Flatten()(S))}
    return func


model = hk.transform_with_state(func_pi(case))
params, state = model.init(jax.random.key(0), jnp.ones((2, 4)), is_training=True)
"""


def test_linen_factory_reading_its_self_verifies(tmp_path: Path):
    code = convert_source(COAX_STYLE, "linen").code
    assert "TODO" not in code
    assert "    outer_self = self\n    class Func(nn.Module):" in code
    assert "nn.Dense(onp.prod(outer_self.action_space.shape))" in code
    assert "partial(batch_norm, use_running_average=not is_training)" in code
    assert "x.reshape(x.shape[:1] + tuple(outer_self.action_space.shape))" in code
    assert "\nmodel = func_pi(case)\n" in code
    _assert_verifies(tmp_path, COAX_STYLE, "linen")


def test_nnx_factory_reading_its_self_reads_it_in_init_and_verifies(tmp_path: Path):
    """The stored BatchNorm, bound to the mode with `partial`, is built in the Sequential; `outer_self` is a
    closure of `__init__` as of `__call__` (the input here is not flattened: NNX cannot size a flatten yet)."""
    source = COAX_STYLE.replace("mu(hk.Flatten()(S))", "mu(S)")
    code = convert_source(source, "nnx").code
    assert "TODO" not in code
    assert "    outer_self = self\n    class Func(nnx.Module):\n        def __init__(self, din: int, *, rngs: nnx.Rngs):" in code
    assert "nnx.Linear(7, onp.prod(outer_self.action_space.shape), rngs=rngs)" in code
    assert "def __call__(self, S):\n            return {'mu': self.mu(S)}" in code
    _assert_verifies(tmp_path, source, "nnx")


def _assert_verifies(tmp_path: Path, source: str, target: str) -> None:
    """The coax-style `source` verifies in `target` (training mode, one step)."""
    path = tmp_path / "model.py"
    path.write_text(source, encoding="utf-8")
    result = verify(path, target, "model", ["f32[2,4]"], {"is_training": True}, steps=1)
    assert result.ok, report_text(result)


@pytest.mark.parametrize("target", ["linen", "nnx"])
def test_factory_whose_forward_passes_self_whole_is_not_converted(target: str):
    source = COAX_STYLE.replace("return {'mu': mu(hk.Flatten()(S))}", "return {'mu': mu(hk.Flatten()(S)), 'case': id(self)}")
    code = convert_source(source, target).code
    assert "class Func" not in code
    assert "# TODO(haiku2flax:HK000): `hk.transform_with_state`" in code


def test_factory_with_two_returned_functions_is_not_read():
    source = textwrap.dedent(
        """\
        import haiku as hk

        def make(n):
          def f(x):
            return hk.Linear(n)(x)
          def g(x):
            return hk.Linear(n)(x)
          return f, g

        model = hk.transform(make(3))
        """
    )
    code = convert_source(source, "linen").code
    assert "class F" not in code and "TODO(haiku2flax:HK000): `hk.transform`" in code


RETURNS_TRANSFORM = """\
import haiku as hk
import jax
import jax.numpy as jnp


def make_model(n):
  def forward(x):
    return hk.Linear(n)(x)

  {tail}
"""


@pytest.mark.parametrize("target", ["linen", "nnx"])
def test_a_factory_returning_its_transform_returns_the_model(target: str):
    tail = "return hk.transform(forward)\n\n\nmodel = make_model(3)\nparams = model.init(jax.random.key(0), jnp.ones((1, 2)))"
    code = convert_source(RETURNS_TRANSFORM.format(tail=tail), target).code
    assert "  return forward\n" in code and "hk." not in code and "TODO" not in code


def test_a_factory_returning_its_transform_from_a_branch_is_not_read():
    tail = "if n:\n    return hk.transform(forward)\n  return None\n\n\nmodel = make_model(3)"
    code = convert_source(RETURNS_TRANSFORM.format(tail=tail), "linen").code
    assert "class Forward" not in code and "TODO(haiku2flax:HK000): `hk.transform`" in code


def test_nnx_callers_factory_named_like_a_function_of_the_file_keeps_a_todo():
    """Built by its callers (nothing here initialises it), `model` would get the factory `make_model`,
    which the file defines already."""
    code = convert_source(RETURNS_TRANSFORM.format(tail="return hk.transform(forward)\n\n\nmodel = make_model(3)"), "nnx").code
    assert code.count("def make_model(") == 1
    assert "# TODO(haiku2flax:HK004): the model's factory would be `make_model`, a name this file binds already" in code


HELPER = """\
import haiku as hk
import jax
import jax.numpy as jnp


def network_fn(x):
    torso = hk.Sequential([hk.Linear(8), jax.nn.relu, hk.Linear(3)])
    return torso(x)


def forward(x):
    return network_fn(x) * 2.0


model = hk.without_apply_rng(hk.transform(forward))
params = model.init(jax.random.key(0), jnp.ones((2, 5)))
"""


def test_linen_forward_calling_a_helper_that_builds_layers_is_compact(tmp_path: Path):
    code = convert_source(HELPER, "linen").code
    assert "class Forward(nn.Module):\n    @nn.compact\n    def __call__(self, x):\n        return network_fn(x) * 2.0" in code
    path = tmp_path / "model.py"
    path.write_text(HELPER, encoding="utf-8")
    result = verify(path, "linen", "model", ["f32[2,5]"], steps=1)
    assert result.ok, report_text(result)


LAYER_CLASS_VALUE = """\
import haiku as hk


class PeriodicConv(hk.Module):
  def __init__(self, base_convolution, output_channels, head=hk.Linear, name=None):
    super().__init__(name=name)
    self._conv = base_convolution(output_channels=output_channels, kernel_shape=3, padding='VALID')
    self._head = head(output_size=2)

  def __call__(self, x):
    return self._head(self._conv(x))


class PeriodicConv1D(PeriodicConv):
  def __init__(self, output_channels, name=None):
    super().__init__(hk.Conv1D, output_channels, name=name)


def forward(x):
  return PeriodicConv(base_convolution=hk.Conv2D, output_channels=4)(x) + PeriodicConv1D(4)(x)
"""


def test_linen_class_handed_haiku_layer_classes_of_different_flax_calls_has_a_todo_where_it_calls_them():
    code = convert_source(LAYER_CLASS_VALUE, "linen").code
    todo = "# TODO(haiku2flax:HK002): `base_convolution` may hold `hk.Conv"
    lines = code.splitlines()
    call = next(i for i, line in enumerate(lines) if "self.base_convolution(output_channels=" in line)
    assert lines[call - 1].strip().startswith(todo), code
    assert "head: Any = nn.Dense" in code and "self._head = self.head(2)" in code, code  # one layer's class: converted



def test_linen_model_of_a_factory_with_only_dropout_reads_no_params_collection():
    """Dropout and reshapes create no parameter: Linen's variables have no 'params', Haiku's params are `{}`."""
    forward = "def forward(x):\n    return hk.dropout(hk.next_rng_key(), 0.5, hk.Flatten()(x))"
    source = RETURNS_TRANSFORM.replace("def forward(x):\n    return hk.Linear(n)(x)", forward)
    tail = "return hk.transform(forward)\n\n\nmodel = make_model(3)\nparams = model.init(jax.random.key(0), jnp.ones((1, 2)))"
    code = convert_source(source.format(tail=tail), "linen").code
    assert "params = model.init(jax.random.key(0), jnp.ones((1, 2))).get('params', {})" in code
    with_layer = convert_source(RETURNS_TRANSFORM.format(tail=tail), "linen").code
    assert "params = model.init(jax.random.key(0), jnp.ones((1, 2)))['params']" in with_layer


def test_nnx_callers_factory_may_take_the_name_of_the_forward_it_replaces():
    source = "import haiku as hk\n\n\ndef make_model(x):\n  return hk.Linear(3)(x)\n\n\nmodel = hk.transform(make_model)\n"
    code = convert_source(source, "nnx").code
    assert "def make_model(sample, *, rngs: nnx.Rngs):" in code and "TODO" not in code
