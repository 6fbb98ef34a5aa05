"""NNX input sizes that dataflow loses, probed at construction from the model's input shape (HK006).

The fixtures `nnx_structure/conv_flatten_linear` and `nnx_structure/probed_sizes` verify whole models;
these tests pin where the probe is used, where it is not (a TODO stays), and what the constructor's
callers pass for the input shape.
"""

from __future__ import annotations

import textwrap
from typing import Any

import libcst as cst

from haiku2flax.engine import convert_source

HEADER = """\
import haiku as hk
import jax
import jax.numpy as jnp


"""


def nnx(source: str) -> str:
    code = convert_source(HEADER + textwrap.dedent(source), "nnx").code
    cst.parse_module(code)  # the output parses
    return code


def net(call: str, tail: str = "model = hk.transform(forward)\nparams = model.init(jax.random.key(0), jnp.ones((2, 12, 12, 3)))\n") -> str:
    """A CNN with a flatten whose `__call__` body is `call`, and the transform and `init` given."""
    return nnx(
        "class Net(hk.Module):\n  def __call__(self, x, scale=1.0):\n"
        + textwrap.indent(textwrap.dedent(call), "    ")
        + "\n\ndef forward(x):\n  return Net()(x)\n\n\n"
        + tail
    )


FLATTEN = """\
x = hk.Conv2D(4, kernel_shape=3, stride=2)(x)
x = hk.Flatten()(x)
return hk.Linear(2)(x)
"""


def test_a_flatten_of_convolution_outputs_is_probed_and_the_model_takes_the_input_shape() -> None:
    code = net(FLATTEN)
    assert "def __init__(self, input_shape: tuple[int, ...], *, rngs: nnx.Rngs):" in code
    assert "self.conv2_d = nnx.Conv(input_shape[-1], 4, (3, 3), strides=2, rngs=rngs)" in code
    assert "    def linear_input(self, x):\n      x = self.conv2_d(x)\n      return x.reshape(x.shape[0], -1)\n" in code
    assert "linear_in_features = nnx.eval_shape(linear_input, self, jnp.zeros((1, *input_shape))).shape[-1]" in code
    assert "self.linear = nnx.Linear(linear_in_features, 2, rngs=rngs)" in code
    assert "model = Net((12, 12, 3), rngs=nnx.Rngs(0))" in code  # the shape `init` saw, without the batch axis
    assert "TODO" not in code


def test_the_probed_model_builds_the_sizes_haiku_infers() -> None:
    namespace: dict[str, Any] = {}
    exec(compile(net(FLATTEN), "net.py", "exec"), namespace)  # the converted program, run as a script
    assert namespace["model"].linear.kernel[...].shape == (6 * 6 * 4, 2)


def test_a_model_initialised_by_its_callers_takes_the_sample_shape() -> None:
    code = net(FLATTEN, "model = hk.transform(forward)\n")
    assert "return Net(sample.shape[1:], rngs=rngs)" in code


def test_an_init_input_of_unknown_shape_makes_the_model_built_by_its_callers() -> None:
    code = net(FLATTEN, "model = hk.transform(forward)\n\ndef setup(batch):\n  return model.init(jax.random.key(0), batch)\n")
    assert "def make_model(sample, *, rngs: nnx.Rngs):" in code
    assert "Net(sample.shape[1:], rngs=rngs)" in code


def test_an_input_read_through_another_argument_keeps_the_todo() -> None:
    code = net("""\
        x = hk.Conv2D(4, kernel_shape=3)(x) * scale
        x = hk.Flatten()(x)
        return hk.Linear(2)(x)
        """)
    assert "# TODO(haiku2flax:HK006): pass `linear_in_features`" in code
    assert "eval_shape" not in code and "input_shape" not in code


def test_a_layer_in_a_loop_of_the_call_is_not_probed() -> None:
    code = net("""\
        x = hk.Flatten()(hk.Conv2D(4, kernel_shape=3)(x))
        for _ in range(2):
          x = jax.nn.relu(x)
        x = jnp.concatenate([x, x[:, :1]], axis=-1)
        if x.shape[0] > 1:
          x = hk.Linear(3)(x)
        return x
        """)
    assert "eval_shape" not in code
    assert "TODO(haiku2flax:HK002): hk.Linear is built inside a loop or condition" in code


def test_state_changed_before_the_layer_is_not_replayed() -> None:
    code = net("""\
        x = hk.Flatten()(hk.Conv2D(4, kernel_shape=3)(x))
        hk.set_state("seen", x.shape[0])
        return hk.Linear(2)(x)
        """)
    assert "eval_shape" not in code
    assert "# TODO(haiku2flax:HK006): pass `linear_in_features`" in code


def test_a_submodule_that_probes_gets_its_input_shape_from_its_parent() -> None:
    code = nnx("""\
        class Trunk(hk.Module):
          def __call__(self, x):
            x = hk.Conv2D(4, kernel_shape=3, stride=2)(x)
            x = hk.Flatten()(x)
            return hk.Linear(2)(x)


        class Head(hk.Module):
          def __call__(self, x):
            return Trunk()(x) + Trunk()(x[:, ::2] / 255.0)


        def forward(x):
          return Head()(x)


        model = hk.transform(forward)
        params = model.init(jax.random.key(0), jnp.ones((2, 12, 12, 3)))
        """)
    assert "self.trunk = Trunk(input_shape, rngs=rngs)" in code  # called on the model's own input
    assert "trunk_1_input_shape = nnx.eval_shape(trunk_1_input, self, jnp.zeros((1, *input_shape))).shape[1:]" in code
    assert "self.trunk_1 = Trunk(trunk_1_input_shape, rngs=rngs)" in code
    assert "TODO" not in code
    namespace: dict[str, Any] = {}
    exec(compile(code, "head.py", "exec"), namespace)  # the converted program, run as a script
    model = namespace["model"]
    assert model.trunk.linear.kernel[...].shape == (6 * 6 * 4, 2)
    assert model.trunk_1.linear.kernel[...].shape == (3 * 6 * 4, 2)


def test_a_submodule_that_probes_called_where_nothing_leads_to_its_input_keeps_the_todo() -> None:
    code = nnx("""\
        class Trunk(hk.Module):
          def __call__(self, x):
            x = hk.Conv2D(4, kernel_shape=3)(x)
            x = hk.Flatten()(x)
            return hk.Linear(2)(x)


        class Head(hk.Module):
          def __call__(self, x, y):
            return Trunk()(y)
        """)
    todo = "# TODO(haiku2flax:HK006): pass the input shape of `trunk` (without the batch axis) in place of `...`"
    assert f"    {todo}\n    self.trunk = Trunk(..., rngs=rngs)\n" in code  # where the `...` fails
    assert f"    {todo}\n    return self.trunk(y)\n" in code  # and where the input comes from


def test_ignoring_the_probe_rule_keeps_the_todo() -> None:
    source = HEADER + "class Net(hk.Module):\n  def __call__(self, x):\n" + textwrap.indent(FLATTEN, "    ")
    code = convert_source(source, "nnx", ignore=frozenset({"HK610"})).code
    assert "eval_shape" not in code
    assert "# TODO(haiku2flax:HK006): pass `linear_in_features`" in code


def test_a_class_with_its_own_input_shape_argument_keeps_the_todo() -> None:
    source = HEADER + textwrap.dedent("""\
        class Net(hk.Module):
          def __init__(self, input_shape, name=None):
            super().__init__(name=name)
            self.input_shape = input_shape

          def __call__(self, x):
        """) + textwrap.indent(FLATTEN, "    ")
    code = convert_source(source, "nnx").code
    assert "eval_shape" not in code
    assert "# TODO(haiku2flax:HK006): pass `linear_in_features`" in code


def test_only_the_statements_the_input_depends_on_are_replayed() -> None:
    code = net("""\
        h = hk.Conv2D(4, kernel_shape=3)(x)
        side = jnp.mean(x) * scale
        h = hk.Flatten()(h)
        return hk.Linear(2)(h) + side
        """)
    assert "    def linear_input(self, x):\n      h = self.conv2_d(x)\n      return h.reshape(h.shape[0], -1)\n" in code
    assert "TODO" not in code


def test_a_probe_through_an_embedding_runs_on_integer_indices() -> None:
    code = nnx("""\
        class LM(hk.Module):
          def __call__(self, tokens):
            h = hk.Embed(100, 16)(tokens)
            h = h.reshape(h.shape[0], -1)
            return hk.Linear(100)(h)


        def forward(tokens):
          return LM()(tokens)


        model = hk.transform(forward)
        params = model.init(jax.random.key(0), jnp.zeros((2, 8), jnp.int32))
        """)
    assert "nnx.eval_shape(linear_input, self, jnp.zeros((1, *input_shape), jnp.int32))" in code
    namespace: dict[str, Any] = {}
    exec(compile(code, "lm.py", "exec"), namespace)  # the converted program, run as a script
    assert namespace["model"].linear.kernel[...].shape == (8 * 16, 100)


def test_an_input_read_as_a_structure_is_not_probed() -> None:
    code = net("""\
        x = hk.Conv2D(4, kernel_shape=3)(x.image)
        x = hk.Flatten()(x)
        return hk.Linear(2)(x)
        """)
    assert "eval_shape" not in code
    assert "# TODO(haiku2flax:HK006): pass `linear_in_features`" in code


def test_a_submodule_that_probes_built_in_the_haiku_init_is_not_probed_before_its_probe_runs() -> None:
    # the probes are hoisted to the end of `__init__`; the line building `self.trunk` keeps its place
    code = nnx("""\
        class Trunk(hk.Module):
          def __call__(self, x):
            x = hk.Conv2D(4, kernel_shape=3)(x)
            x = hk.Flatten()(x)
            return hk.Linear(2)(x)


        class Head(hk.Module):
          def __init__(self, name=None):
            super().__init__(name=name)
            self.trunk = Trunk()

          def __call__(self, x):
            return self.trunk(hk.Conv2D(3, kernel_shape=1)(x))


        def forward(x):
          return Head()(x)


        model = hk.transform(forward)
        params = model.init(jax.random.key(0), jnp.ones((2, 12, 12, 3)))
        """)
    assert "trunk_input_shape" not in code
    todo = "# TODO(haiku2flax:HK006): pass the input shape of `trunk` (without the batch axis) in place of `...`"
    assert f"    {todo}\n    self.trunk = Trunk(..., rngs=rngs)\n" in code


def test_a_layer_in_a_vmapped_lambda_is_probed_on_one_row_of_the_mapped_input() -> None:
    code = net("""\
        x = hk.Conv2D(4, kernel_shape=3)(x)
        x = hk.Flatten()(x)
        row_proj = hk.Linear(2)
        return hk.vmap(lambda row: row_proj(row), split_rng=False)(x)
        """)
    assert "return x[0]" in code and "return row" not in code
    assert "row_proj_in_features = nnx.eval_shape(row_proj_input, self" in code


def test_a_layer_in_a_lambda_vmapped_over_other_axes_keeps_the_todo() -> None:
    code = net("""\
        x = hk.Conv2D(4, kernel_shape=3)(x)
        x = hk.Flatten()(x)
        row_proj = hk.Linear(2)
        return hk.vmap(lambda row: row_proj(row), in_axes=1, split_rng=False)(x)
        """)
    assert "eval_shape" not in code and "return row" not in code
    assert "# TODO(haiku2flax:HK006): pass `row_proj_in_features`" in code
