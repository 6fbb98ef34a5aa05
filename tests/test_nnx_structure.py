"""NNX structure: layers under an `if` on constructor state (HK600) and lists of layers (HK601), with the
cases they leave to a TODO."""

import textwrap
from typing import Any

import libcst as cst

from haiku2flax.engine import convert_source


def nnx(body: str, init: str = "self.use_bn = use_bn") -> str:
    source = textwrap.dedent('''\
        import haiku as hk
        import jax
        import jax.numpy as jnp


        class Net(hk.Module):
          def __init__(self, use_bn: bool = True, sizes=(4, 2), name=None):
            super().__init__(name=name)
        {init}

          def __call__(self, x, is_training: bool):
        {body}
        ''').format(init=textwrap.indent(init, "    "), body=textwrap.indent(textwrap.dedent(body), "    "))
    code = convert_source(source, "nnx").code
    cst.parse_module(code)  # the output parses
    return code


def init_of(code: str) -> str:
    return code.split("def __init__", 1)[1].split("def __call__", 1)[0]


# -- HK600: layers under an `if` -----------------------------------------------------------------
def test_an_if_on_a_call_argument_keeps_the_hoisting_todo() -> None:
    code = nnx("""\
        if is_training:
          x = hk.Linear(4)(x)
        return x
        """)
    assert "# TODO(haiku2flax:HK002): hk.Linear is built inside a loop or condition" in code
    assert "self.linear" not in code


def test_a_one_line_if_on_a_call_argument_is_a_condition_too() -> None:
    code = nnx("""\
        if is_training: x = hk.Linear(4)(x)
        return x
        """)
    assert "# TODO(haiku2flax:HK002): hk.Linear is built inside a loop or condition" in code


def test_branches_that_disagree_on_a_size_leave_the_next_input_size_to_a_probe() -> None:
    code = nnx("""\
        if self.use_bn:
          x = hk.Linear(8)(x)
        return hk.Linear(2)(x)
        """)
    init = init_of(code)
    assert "if use_bn:\n      self.linear = nnx.Linear(input_shape[-1], 8, rngs=rngs)" in init
    assert "if use_bn:\n        x = self.linear(x)\n      return x\n" in init  # the probe replays the branch
    assert "nnx.Linear(linear_1_in_features, 2" in init
    assert "TODO" not in code


def test_a_branch_that_returns_does_not_flow_on() -> None:
    code = nnx("""\
        if self.use_bn:
          return hk.Linear(8)(x)
        return hk.Linear(2)(x)
        """)
    assert "self.linear_1 = nnx.Linear(din, 2" in code


def test_elif_and_else_rebuild_the_same_branches_in_init() -> None:
    code = nnx(
        """\
        if self.mode == "a":
          x = hk.Linear(3)(x)
        elif self.mode == "b":
          x = hk.Linear(5)(x)
        else:
          x = jax.nn.relu(x)
        return x
        """,
        init="self.mode = use_bn",
    )
    init = init_of(code)
    assert 'if self.mode == "a":\n      self.linear = nnx.Linear(din, 3, rngs=rngs)\n    elif self.mode == "b":\n      self.linear_1' in init


def test_only_an_else_branch_builds_under_the_negated_test() -> None:
    code = nnx("""\
        if self.use_bn:
          x = jax.nn.relu(x)
        else:
          x = hk.LayerNorm(-1, True, True)(x)
        return x
        """)
    assert "if not use_bn:\n      self.layer_norm = nnx.LayerNorm(din" in init_of(code)


def test_a_test_reading_an_attribute_init_does_not_set_keeps_the_todo() -> None:
    code = nnx("""\
        if self.later:
          x = hk.Linear(4)(x)
        return x
        """)
    assert "# TODO(haiku2flax:HK002): hk.Linear is built inside a loop or condition" in code


def test_a_stored_layer_used_outside_its_branch_is_not_hoisted() -> None:
    code = nnx("""\
        if self.use_bn:
          bn = hk.BatchNorm(True, True, 0.9)
        return bn(x, is_training)
        """)
    assert "self.bn" not in code and "TODO(haiku2flax" in code


# -- HK601: lists of layers ------------------------------------------------------------------------
def test_a_list_applied_as_a_residual_takes_its_input_sizes_by_hand() -> None:
    code = nnx(
        """\
        for layer in self.layers:
          x = x + layer(x)
        return x
        """,
        init="self.layers = [hk.Linear(n) for n in sizes]",
    )
    assert "self.layers = nnx.List([nnx.Linear(..., n, rngs=rngs) for n in sizes])" in code
    assert "# TODO(haiku2flax:HK006): pass each layer's input feature size in place of `...`: how `self.layers` is applied" in code


def test_a_list_never_looped_over_takes_its_input_sizes_by_hand() -> None:
    code = nnx("return self.layers[0](x)", init="self.layers = [hk.Linear(4), hk.Linear(2)]")
    assert "self.layers = nnx.List([nnx.Linear(..., 4, rngs=rngs), nnx.Linear(..., 2, rngs=rngs)])" in code
    assert "# TODO(haiku2flax:HK006): pass each layer's input feature size" in code


def test_lists_applied_in_turn_through_zip_take_their_input_sizes_by_hand() -> None:
    code = nnx(
        """\
        for norm, linear in zip(self.norms, self.layers):
          x = linear(norm(x, is_training))
        return x
        """,
        init="self.layers = [hk.Linear(8), hk.Linear(6)]\nself.norms = [hk.BatchNorm(True, True, 0.9), hk.BatchNorm(True, True, 0.9)]",
    )
    assert "self.norms = nnx.List([nnx.BatchNorm(..., use_scale=True" in code
    assert "self.layers = nnx.List([nnx.Linear(..., 8" in code
    assert "how `self.norms` is applied does not tell" in code
    assert "x = linear(norm(x, use_running_average=not is_training))" in code  # the call arguments still convert


def test_a_chained_list_after_a_known_chain_feeds_the_next_layer() -> None:
    code = nnx(
        """\
        for layer in self.layers:
          x = jax.nn.relu(layer(x))
        return hk.Linear(3)(x)
        """,
        init="self.layers = [hk.Linear(8), hk.Linear(6)]",
    )
    assert "self.layers = nnx.List([nnx.Linear(din, 8, rngs=rngs), nnx.Linear(8, 6, rngs=rngs)])" in code
    assert "self.linear = nnx.Linear(6, 3, rngs=rngs)" in code
    assert "TODO" not in code


def test_a_list_of_anything_but_layers_is_left_alone() -> None:
    code = nnx(
        """\
        for f in self.fns:
          x = f(x)
        return x
        """,
        init="self.fns = [jax.nn.relu, hk.Linear(4)]",
    )
    assert "nnx.List" not in code and "TODO(haiku2flax:HK000)" in code


# -- HK602: layers built in a `for` loop of a method -----------------------------------------------
def test_a_loop_over_a_call_argument_keeps_its_layers_with_a_todo() -> None:
    code = nnx("""\
        for _ in range(x.shape[0]):
          x = hk.Linear(4)(x)
        return x
        """)
    assert "# TODO(haiku2flax:HK602): the loop runs over `range(x.shape[0])`, which reads `x` (a call argument)" in code
    assert "nnx.List" not in code and "hk.Linear(4)(x)" in code


def test_a_break_or_an_earlier_continue_keeps_the_layers_with_a_todo() -> None:
    broken = nnx("""\
        for n in self.sizes:
          x = hk.Linear(n)(x)
          if self.use_bn:
            break
        return x
        """, init="self.use_bn = use_bn\nself.sizes = sizes")
    assert "# TODO(haiku2flax:HK602): a `break` in the loop can end it before every iteration has built its layer" in broken
    skipped = nnx("""\
        for n in self.sizes:
          if n == 2:
            continue
          x = hk.Linear(n)(x)
        return x
        """, init="self.sizes = sizes")
    assert "# TODO(haiku2flax:HK602): a `continue` before it skips building it in some iterations" in skipped


def test_a_layer_in_a_nested_loop_keeps_a_todo() -> None:
    code = nnx("""\
        for n in self.sizes:
          for _ in range(2):
            x = hk.Linear(n)(x)
        return x
        """, init="self.sizes = sizes")
    assert "# TODO(haiku2flax:HK602): it is built in a loop nested in another loop" in code


def test_constructor_arguments_computed_in_the_method_keep_a_todo() -> None:
    code = nnx("""\
        for n in self.sizes:
          width = 2 * n
          x = hk.Linear(width)(x)
        return x
        """, init="self.sizes = sizes")
    assert "# TODO(haiku2flax:HK602): its arguments use `width`, computed in the method" in code


def test_a_loop_variable_still_read_indexes_the_list_over_a_range() -> None:
    code = nnx("""\
        outs = []
        for i in range(len(self.sizes)):
          x = jax.nn.relu(hk.Linear(self.sizes[i])(x))
          outs.append(x[..., i])
        return jnp.stack(outs)
        """, init="self.sizes = sizes")
    assert "in_features = din\n    for i in range(len(sizes)):\n      self.linears.append(nnx.Linear(in_features, sizes[i], rngs=rngs))" in code
    assert "x = jax.nn.relu(self.linears[i](x))" in code


def test_a_loop_variable_still_read_zips_the_iterable_with_the_list() -> None:
    code = nnx("""\
        for n in self.sizes:
          x = hk.Linear(n)(x) * n
        return x
        """, init="self.sizes = sizes")
    assert "for n, linear in zip(self.sizes, self.linears):\n      x = linear(x) * n" in code


def test_a_layer_built_before_the_loop_is_one_layer_shared_by_every_iteration() -> None:
    code = nnx("""\
        shared = hk.Linear(4)
        for _ in range(2):
          x = shared(x)
        return x
        """)
    assert "self.shared = nnx.Linear(din, 4, rngs=rngs)" in code and "nnx.List" not in code
    assert "x = self.shared(x)" in code


def test_a_size_an_iteration_leaves_unknown_is_left_to_a_todo() -> None:
    code = nnx("""\
        for n in self.sizes:
          x = jnp.tanh(hk.Linear(n)(x)).T
        return x
        """, init="self.sizes = sizes")
    assert "# TODO(haiku2flax:HK006): set `in_features` to the feature size an iteration leaves, in place of `...`" in code
    assert "in_features = ...\n" in code


def test_a_reduction_over_axes_that_keep_the_last_keeps_the_feature_size() -> None:
    kept = nnx("""\
        x = jnp.mean(hk.Linear(8)(x), axis=(-3, -2))
        return hk.Linear(2)(x)
        """)
    assert "self.linear_1 = nnx.Linear(8, 2, rngs=rngs)" in kept
    unknown_rank = nnx("""\
        x = jnp.mean(hk.Linear(8)(x), axis=(1, 2))
        return hk.Linear(2)(x)
        """)
    assert "linear_1_in_features = nnx.eval_shape(linear_1_input" in unknown_rank  # not a size read off a guess
    known_rank = nnx("""\
        x = hk.Reshape((4, 4, 3))(x)
        x = jnp.mean(x, axis=(1, 2))
        return hk.Linear(2)(hk.Flatten()(x))
        """)
    assert "self.linear = nnx.Linear(3, 2, rngs=rngs)" in known_rank


# -- parameter-free layers under a condition on a call argument, and sizes they keep ------------
def test_dropout_under_a_call_argument_is_built_in_init_and_called_under_the_same_if() -> None:
    code = nnx("""\
        x = hk.Linear(8)(x)
        if is_training:
          x = hk.dropout(hk.next_rng_key(), 0.2, x)
        return hk.Linear(2)(x)
        """)
    init = init_of(code)
    assert "    self.dropout = nnx.Dropout(0.2, rngs=rngs)\n" in init  # not under any `if`
    assert "    if is_training:\n      x = self.dropout(x)\n" in code
    assert "nnx.Linear(8, 2, rngs=rngs)" in init  # the size survives the branch
    assert "TODO" not in code and "hk." not in code


def test_dropout_in_a_conditional_expression_keeps_the_size() -> None:
    code = nnx("""\
        x = hk.Linear(8)(x)
        x = hk.dropout(hk.next_rng_key(), 0.5, x) if is_training else x
        return hk.Linear(2)(x)
        """)
    assert "x = self.dropout(x) if is_training else x" in code
    assert "nnx.Linear(8, 2, rngs=rngs)" in init_of(code)


def test_dropout_in_a_nested_function_keeps_its_todo() -> None:
    code = nnx("""\
        def f(v):
          return hk.dropout(hk.next_rng_key(), 0.5, v)
        return f(x)
        """)
    assert "TODO(haiku2flax:HK002): hk.dropout is built inside a loop or condition" in code
    assert "nnx.Dropout" not in code


def test_a_chained_list_hands_its_output_size_to_the_layers_after_it() -> None:
    code = nnx(
        """\
        for layer in self.layers:
          x = layer(x)
          if is_training:
            x = hk.dropout(hk.next_rng_key(), 0.1, x)
        return self.head(x)
        """,
        init="self.layers = [hk.Linear(n) for n in sizes]\nself.head = hk.Linear(3)",
    )
    init = init_of(code)
    assert "self.layers.append(nnx.Linear(in_features, n, rngs=rngs))" in init
    assert "self.head = nnx.Linear(in_features, 3, rngs=rngs)" in init
    assert "..." not in code and "TODO" not in code


def test_a_list_output_size_is_not_read_before_its_variable_is_set() -> None:
    # `self.head` is built before the list in `__init__`: it cannot read the list's `in_features`
    code = nnx(
        """\
        for layer in self.layers:
          x = layer(x)
        return self.head(x)
        """,
        init="self.head = hk.Linear(3)\nself.layers = [hk.Linear(n) for n in sizes]",
    )
    init = init_of(code)
    assert "self.head = nnx.Linear(head_in_features, 3, rngs=rngs)" in init
    assert "TODO(haiku2flax:HK006): pass `head_in_features`" in code


def test_two_chained_lists_carry_their_sizes_in_variables_of_their_own() -> None:
    code = nnx(
        """\
        for layer in self.layers:
          x = layer(x)
        for layer in self.more:
          x = layer(x)
        return x
        """,
        init="self.layers = [hk.Linear(n) for n in sizes]\nself.more = [hk.Linear(n) for n in sizes]",
    )
    init = init_of(code)
    assert "in_features = din\n" in init and "in_features_ = in_features\n" in init


def test_a_one_line_if_in_a_list_loop_keeps_the_chain() -> None:
    code = nnx(
        """\
        for layer in self.layers:
          x = layer(x)
          if is_training: x = hk.dropout(hk.next_rng_key(), 0.1, x)
          else: x = jax.nn.relu(x)
        return self.head(x)
        """,
        init="self.layers = [hk.Linear(n) for n in sizes]\nself.head = hk.Linear(3)",
    )
    assert "self.head = nnx.Linear(in_features, 3, rngs=rngs)" in init_of(code)


def test_a_layer_init_builds_under_an_if_is_built_under_it_with_the_size_its_first_call_sees() -> None:
    code = nnx(
        """\
        for layer in self.layers:
          x = layer(x)
        if self.use_bn:
          x = self.out(x)
        return x
        """,
        init="self.use_bn = use_bn\nself.layers = [hk.Linear(n) for n in sizes]\nif use_bn:\n  self.out = hk.Linear(5)\nelse:\n  self.out = None",
    )
    init = init_of(code)
    assert "    if use_bn:\n      self.out = nnx.Linear(in_features, 5, rngs=rngs)\n    else:\n      self.out = None\n" in init
    assert "TODO" not in code and "hk." not in code


def test_a_list_size_is_not_read_by_a_layer_built_under_an_if_before_it() -> None:
    code = nnx(
        """\
        for layer in self.layers:
          x = layer(x)
        return self.out(x)
        """,
        init="if use_bn:\n  self.out = hk.Linear(5)\nself.layers = [hk.Linear(n) for n in sizes]",
    )
    assert "self.out = nnx.Linear(out_in_features, 5, rngs=rngs)" in init_of(code)


def test_an_enumerate_index_that_only_named_the_haiku_modules_leaves_the_init_loop() -> None:
    code = nnx(
        """\
        for layer in self.layers:
          x = layer(x)
        for layer in self.heads:
          x = layer(x) + x
        return x
        """,
        init='self.layers = [hk.Linear(n, name=f"l{i}") for i, n in enumerate(sizes)]\n'
        'self.heads = [hk.Linear(n, name=f"h{i}") for i, n in enumerate(sizes)]',
    )
    init = init_of(code)
    assert "    for n in sizes:\n      self.layers.append(nnx.Linear(in_features, n, rngs=rngs))\n" in init
    assert "for n in sizes])" in init and "enumerate" not in init


def test_a_method_loop_of_blocks_drops_the_index_that_only_named_them() -> None:
    code = nnx("""\
        for i, n in enumerate(self.sizes):
          x = hk.Linear(n, name=f"layer_{i}")(x)
        return hk.Linear(2)(x)
        """, init="self.sizes = sizes")
    init = init_of(code)
    assert "    for n in sizes:\n      self.linears.append(nnx.Linear(in_features, n, rngs=rngs))\n      in_features = n\n" in init
    assert "self.linear = nnx.Linear(in_features, 2, rngs=rngs)" in init


def test_an_attribute_init_builds_in_both_branches_is_left_to_its_todo() -> None:
    code = nnx("return self.out(x)\n", init="if use_bn:\n  self.out = hk.Linear(5)\nelse:\n  self.out = hk.Linear(3)")
    assert "self.out = hk.Linear(5)" in code and "self.out = hk.Linear(3)" in code
    assert code.count("TODO(haiku2flax:HK000)") == 2


# -- constructor fields read by the layers built in `__init__` --------------------------------------
def test_a_field_read_deep_inside_a_layer_argument_becomes_the_parameter() -> None:
    code = nnx("""\
        y = hk.Linear(max([self.use_bn * 2, 1]))(x)
        return hk.Linear(2)(jax.nn.relu(y))
        """)
    init = init_of(code)
    assert "nnx.Linear(din, max([use_bn * 2, 1]), rngs=rngs)" in init
    assert "self.use_bn" not in code


# -- HK006: a submodule built with `...` for an input size --------------------------------------------
_OPAQUE_STAGE = '''\
import haiku as hk


class Policy(hk.Module):
    def __init__(self, hidden, name=None):
        super().__init__(name=name)
        self.linear = hk.Linear(hidden)

    def __call__(self, x):
        def block(y):
            return self.linear(y)
        return hk.remat(block)(x)
'''


def line_above(code: str, statement: str) -> str:
    """The line just above the one that starts with `statement` (indentation aside)."""
    lines = [line.strip() for line in code.splitlines()]
    return lines[next(i for i, line in enumerate(lines) if line.startswith(statement)) - 1]


def test_a_submodule_built_with_a_placeholder_size_has_its_todo_on_the_line_building_it() -> None:
    # the placeholder fails where `Policy(...)` runs: a TODO above `def __init__` is not on that chain
    code = convert_source(_OPAQUE_STAGE + '''

def forward(x):
    net = Policy(hidden=8)
    return net(x)


network = hk.transform(forward)
''', "nnx").code
    assert "self.net = Policy(..., hidden=8, rngs=rngs)" in code
    assert line_above(code, "self.net = Policy(") == (
        "# TODO(haiku2flax:HK006): `net` is built with `...` for `linear_in_features`: pass that input feature size"
    )
    assert "TODO" not in line_above(code, "def __init__(self, *, rngs")
    assert convert_source(code, "nnx").code == code  # a second run adds nothing


def test_a_parent_built_with_a_placeholder_size_has_its_todo_on_the_super_call() -> None:
    code = convert_source(_OPAQUE_STAGE + '''

class Small(Policy):
    def __init__(self, name=None):
        super().__init__(8, name=name)
''', "nnx").code
    assert "super().__init__(..., 8, rngs=rngs)" in code
    assert line_above(code, "super().__init__(...").startswith("# TODO(haiku2flax:HK006): `super().__init__` is built with `...`")


def test_a_submodule_returning_its_input_passes_the_input_size_on() -> None:
    code = convert_source('''\
import haiku as hk
import jax
import jax.numpy as jnp


class Stage(hk.Module):
    def __call__(self, x):
        return x


class Policy(hk.Module):
    def __call__(self, x):
        return hk.Linear(8)(Stage()(x))


def forward(x):
    return Policy()(x)


model = hk.transform(forward)
params = model.init(jax.random.key(0), jnp.ones((2, 3)))
''', "nnx").code
    assert "self.linear = nnx.Linear(din, 8, rngs=rngs)" in code
    assert "model = Policy(3, rngs=nnx.Rngs(0))" in code
    assert "TODO" not in code
    namespace: dict[str, Any] = {}
    exec(compile(code, "policy.py", "exec"), namespace)  # the converted program, run as a script
    assert namespace["model"].linear.kernel[...].shape == (3, 8)


# -- Haiku dataclass modules ------------------------------------------------------------------------
DATACLASS_MODULE = """\
import dataclasses

import haiku as hk
import jax
import jax.numpy as jnp


@dataclasses.dataclass
class Net(hk.Module):
  \"\"\"Configuration as dataclass fields, no `__init__`.\"\"\"

  size: int
  rate: float = 0.1
  name: str | None = None

  def __call__(self, x):
    x = hk.Linear(self.size)(x)
    return hk.dropout(hk.next_rng_key(), self.rate, x)


def forward(x):
  return Net(4, rate=0.2)(x)


model = hk.transform(forward)
params = model.init(jax.random.key(0), jnp.ones((2, 3)))
"""


def test_a_dataclass_module_takes_its_fields_as_init_arguments(tmp_path):
    """NNX configuration is `__init__` arguments: the fields of a Haiku dataclass module become those the
    dataclass would generate (its layers read them in `__init__`), and the model is equivalent."""
    from haiku2flax.harness import verify

    code = convert_source(DATACLASS_MODULE, "nnx").code
    assert "@dataclasses.dataclass" not in code and "  size: int\n" not in code
    assert "def __init__(self, din: int, size: int, rate: float = 0.1, *, rngs: nnx.Rngs):" in code
    assert "nnx.Linear(din, size, rngs=rngs)" in code and "nnx.Dropout(rate, rngs=rngs)" in code
    path = tmp_path / "model.py"
    path.write_text(DATACLASS_MODULE)
    result = verify(path, "nnx", "model", ["f32[2,3]"])
    assert result.ok, result


def test_a_module_built_and_passed_to_another_constructor_is_a_todo_where_it_is_built() -> None:
    """`encoder = Encoder(4)` handed to `Model(encoder=encoder)`: nothing builds it in `__init__` with its
    input size and `rngs`, so its line says so (it failed there, with no TODO)."""
    source = textwrap.dedent('''\
        import haiku as hk


        class Encoder(hk.Module):
          def __init__(self, size, name=None):
            super().__init__(name=name)
            self.size = size

          def __call__(self, x):
            return hk.Linear(self.size)(x)


        class Model(hk.Module):
          def __init__(self, encoder, name=None):
            super().__init__(name=name)
            self.encoder = encoder

          def __call__(self, x):
            return hk.Linear(2)(self.encoder(x))


        def forward(x):
          encoder = Encoder(4)
          return Model(encoder=encoder)(x)
        ''')
    lines = convert_source(source, "nnx").code.splitlines()
    at = next(i for i, line in enumerate(lines) if "encoder = Encoder(4)" in line)
    assert "TODO(haiku2flax:HK001): `Encoder` is built here and passed on, not called" in lines[at - 1]


# -- a mode flag a submodule takes as its train/eval mode, while its caller still takes it -------
MODE_SOURCE = '''\
import haiku as hk


class Unit(hk.Module):
  def __call__(self, x, is_training):
    return hk.BatchNorm(True, True, 0.9)(hk.Linear(4)(x), is_training)


class Tower(hk.Module):
  def __call__(self, x, is_training):
    x = Unit()(x, is_training)
{tail}
'''


def test_a_caller_keeping_the_flag_its_submodule_takes_as_its_mode_has_a_todo() -> None:
    """The tower still takes `is_training` (for its own `if`): passing it no longer sets the unit's
    BatchNorm mode, which only `model.train()` / `model.eval()` do now."""
    tail = "    if is_training:\n      x = x * 2\n    return x"
    code = convert_source(MODE_SOURCE.format(tail=tail), "nnx").code
    tower = code.split("class Tower", 1)[1]
    assert "  # TODO(haiku2flax:HK002): `Unit` takes `is_training` as its train/eval mode now" in tower
    assert "def __call__(self, x, is_training):\n    x = self.unit(x)\n" in tower
    assert convert_source(code, "nnx").code == code


def test_a_caller_passing_the_flag_on_only_takes_it_as_its_mode_too() -> None:
    code = convert_source(MODE_SOURCE.format(tail="    return x"), "nnx").code
    assert "def __call__(self, x):\n    x = self.unit(x)\n" in code
    assert "TODO" not in code
