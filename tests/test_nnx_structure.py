"""NNX structure: layers under an `if` on constructor state (HK600) and lists of layers (HK601), with the
cases they leave to a TODO."""

import textwrap

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


def test_branches_that_disagree_on_a_size_leave_the_next_input_size_to_a_todo() -> None:
    code = nnx("""\
        if self.use_bn:
          x = hk.Linear(8)(x)
        return hk.Linear(2)(x)
        """)
    init = init_of(code)
    assert "if use_bn:\n      self.linear = nnx.Linear(din, 8, rngs=rngs)" in init
    assert "nnx.Linear(linear_1_in_features, 2" in init
    assert "# TODO(haiku2flax:HK006): pass `linear_1_in_features`" in code


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
