"""The engine on small inputs: name resolution, TODOs, the import pass, errors, idempotency.

Each case is an (input, expected) pair, as pyupgrade writes its tests; `noop` cases must come back
byte-identical.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from haiku2flax.engine import ConversionError, convert_source
from haiku2flax.engine.notes import TODO_PREFIX


def _convert(source: str, target: str, **kwargs) -> str:
    return convert_source(textwrap.dedent(source), target, **kwargs).code


@pytest.mark.parametrize(
    ("source", "target", "expected"),
    [
        pytest.param(
            """\
            import haiku

            class M(haiku.Module):
              def __call__(self, x):
                return haiku.Linear(3, with_bias=False)(x)
            """,
            "linen",
            """\
            import flax.linen as nn

            class M(nn.Module):
              @nn.compact
              def __call__(self, x):
                return nn.Dense(3, use_bias=False)(x)
            """,
            id="import haiku without alias",
        ),
        pytest.param(
            """\
            from haiku import Linear as Dense, Module

            class M(Module):
              def __call__(self, x):
                return Dense(output_size=3)(x)
            """,
            "nnx",
            """\
            from flax import nnx

            class M(nnx.Module):
              def __init__(self, din: int, *, rngs: nnx.Rngs):
                self.linear = nnx.Linear(din, 3, rngs=rngs)

              def __call__(self, x):
                return self.linear(x)
            """,
            id="from-import aliases, keyword argument, NNX input size",
        ),
    ],
)
def test_conversions(source: str, target: str, expected: str):
    assert _convert(source, target) == textwrap.dedent(expected)


@pytest.mark.parametrize("target", ["linen", "nnx"])
@pytest.mark.parametrize(
    "source",
    [
        pytest.param("import jax\nx = jax.numpy.ones(3)\n", id="no haiku at all"),
        pytest.param("import jax as hk\nclass M(hk.Module):\n  pass\n", id="`hk` that is not haiku"),
        pytest.param("# haiku is mentioned only here\nx = 1\n", id="mentioned in a comment only"),
    ],
)
def test_noop(source: str, target: str):
    assert convert_source(source, target).code == source


def test_unknown_haiku_api_gets_a_todo_and_keeps_its_import():
    code = _convert(
        """\
        import haiku as hk

        def f(x):
          return hk.SomethingNew(3)(x)
        """,
        "nnx",
    )
    assert "import haiku as hk" in code
    assert f"{TODO_PREFIX}:HK000): `hk.SomethingNew` has no conversion rule" in code
    assert code.count(TODO_PREFIX) == 1


def test_imports_the_conversion_left_unused_go_and_the_users_own_stay():
    code = _convert(
        """\
        import os  # imported for its side effects, never read
        import jax.numpy as jnp
        from jax import random
        from typing import Any
        import haiku as hk

        def forward(x):
          return hk.Linear(4)(x)

        net = hk.transform(forward)
        params = net.init(random.PRNGKey(0), jnp.ones((2, 3)))
        """,
        "nnx",
    )
    assert "net = Forward(3, rngs=nnx.Rngs(0))" in code
    assert "jnp" not in code and "random" not in code  # their every use was converted away
    assert "import os  # imported for its side effects" in code  # never read: the user's, kept
    assert "from typing import Any" in code


KEPT_HAIKU_CLASSES = """\
import functools

import haiku as hk
import jax
import jax.numpy as jnp


class Counter(hk.RNNCore):  # a user core: it stays Haiku, with its TODO
  def __call__(self, x, state):
    return x + state, state + 1

  def initial_state(self, batch_size):
    return jnp.zeros([batch_size])


class Tower(hk.Module):
  def __init__(self, core_factory, name=None):
    super().__init__(name=name)
    self.core_factory = core_factory

  def __call__(self, x):
    out, _ = Counter()(x, 0.0)
    core = self.core_factory(1)
    return hk.Linear(3)(out), core


def forward(x):
  return Tower(core_factory=functools.partial(Counter))(x)


model = hk.transform(forward)
params = model.init(jax.random.key(0), jnp.ones((2, 5)))
"""


@pytest.mark.parametrize("target", ["linen", "nnx"])
def test_a_flax_module_building_a_class_still_haiku_gets_a_todo_there(target: str):
    """A class the rewrite leaves Haiku (with its TODO) cannot be built by a Flax module: the statements
    building it, or calling the argument it was passed as, and the call passing it say so."""
    lines = _convert(KEPT_HAIKU_CLASSES, target).splitlines()
    reason = f"{TODO_PREFIX}:HK000): `Counter` is still a Haiku module (its class says why), which a Flax module cannot build"
    marked = [lines[i + 1].strip() for i, line in enumerate(lines) if reason in line]
    assert "out, _ = Counter()(x, 0.0)" in marked, marked  # (NNX: also where the input-size probe replays it)
    assert any("core_factory(1)" in line for line in marked), marked
    assert any("functools.partial(Counter)" in line for line in marked), marked
    assert len(set(marked)) == 3


def test_an_import_read_only_by_statements_the_splice_hid_stays():
    code = _convert(
        """\
        import haiku as hk
        import jax.numpy as jnp

        def forward(x):
          return hk.Linear(4)(x)

        net = hk.transform(forward)
        params = net.init(None, jnp.ones((2, 3)))

        def zeros():
          return jnp.zeros(3)
        """,
        "nnx",
    )
    assert "net = Forward(3, rngs=nnx.Rngs(0))" in code  # the shown `jnp.ones` is gone
    assert "import jax.numpy as jnp" in code and "return jnp.zeros(3)" in code


def test_second_run_adds_no_todo():
    once = _convert("import haiku as hk\ny = hk.SomethingNew(3)\nz = hk.next_rng_key()\n", "linen")
    assert convert_source(once, "linen").code == once


@pytest.mark.parametrize("target", ["linen", "nnx"])
def test_second_run_reports_each_todo_the_first_left_once(target: str):
    """What a first run left to do stays to do: `--check --strict` and CI annotations must see it."""
    source = "import haiku as hk\ny = hk.SomethingNew(3)\nz = hk.next_rng_key()\n"
    first = convert_source(source, target)
    second = convert_source(first.code, target)
    assert second.code == first.code
    todos = [[n for n in c.notes if n.outcome == "todo"] for c in (first, second)]
    assert sorted(n.rule for n in todos[1]) == sorted(n.rule for n in todos[0]) and todos[0]
    comment_lines = [i for i, line in enumerate(first.code.splitlines(), 1) if line.startswith(TODO_PREFIX)]
    assert {n.line for n in todos[1]} <= set(comment_lines) | {line + 1 for line in comment_lines}


def test_todo_left_in_a_file_without_haiku_is_still_reported():
    code = "from flax import nnx\n\n# TODO(haiku2flax:HK006): pass the input size in place of `...`\nm = M(..., rngs=nnx.Rngs(0))\n"
    conversion = convert_source(code, "nnx")
    assert conversion.code == code
    assert [(n.rule, n.outcome, n.line) for n in conversion.notes] == [("HK006", "todo", 3)]


def test_partly_migrated_file_is_stable():
    source = textwrap.dedent(
        """\
        import flax.linen as nn
        import haiku as hk

        class Done(nn.Module):
          @nn.compact
          def __call__(self, x):
            return nn.Dense(3)(x)

        class Todo(hk.Module):
          def __call__(self, x):
            return hk.Linear(3)(x)
        """
    )
    once = convert_source(source, "linen").code
    assert "import haiku" not in once and "class Todo(nn.Module)" in once
    assert convert_source(once, "linen").code == once


def test_syntax_error_names_the_line():
    with pytest.raises(ConversionError) as error:
        convert_source("import haiku as hk\n\ndef f(:\n  pass\n", "nnx")
    assert error.value.message.startswith("syntax error:") and error.value.line >= 3


def test_select_and_ignore_by_rule_prefix():
    source = "import haiku as hk\n\nclass M(hk.Module):\n  def __call__(self, x):\n    return hk.Linear(3)(x)\n"
    ignored = convert_source(source, "linen", ignore=frozenset({"HK002"})).code
    assert "hk.Linear(3)" in ignored and "nn.Dense" not in ignored
    selected = convert_source(source, "linen", select=frozenset({"HK00"})).code
    assert "nn.Dense(3)" in selected


def test_comments_outside_rewritten_spans_are_kept():
    source = textwrap.dedent(
        """\
        import haiku as hk  # the model library

        # A block.
        class Block(hk.Module):
          # inline comment before the call
          def __call__(self, x):  # trailing comment
            y = hk.Linear(4)(x)  # project
            return y  # done
        """
    )
    code = convert_source(source, "linen").code
    for comment in ["# A block.", "# inline comment before the call", "# trailing comment", "# project", "# done"]:
        assert comment in code


def test_rewriting_imports_no_jax_flax_or_haiku():
    program = (
        "import sys; from haiku2flax.engine import convert_source; "
        "convert_source(open(sys.argv[1]).read(), 'nnx'); convert_source(open(sys.argv[1]).read(), 'linen'); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'jax', 'flax', 'haiku', 'optax'}))"
    )
    fixture = "fixtures/guide/basic_example/haiku.py"
    result = subprocess.run([sys.executable, "-c", program, fixture], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_linen_layer_stored_then_called_gets_flax_call_arguments():
    """`bn(x, is_training)` on a stored BatchNorm would pass `use_running_average=is_training`: inverted."""
    source = """\
    import haiku as hk


    class Block(hk.Module):
      def __init__(self, name=None):
        super().__init__(name=name)
        self.norm = hk.BatchNorm(True, True, 0.9)

      def __call__(self, x, is_training):
        bn = hk.BatchNorm(True, True, 0.9)
        y = bn(x, is_training)
        return self.norm(y, is_training=is_training)
    """
    code = _convert(source, "linen")
    assert "y = bn(x, use_running_average=not is_training)" in code
    assert "return self.norm(y, use_running_average=not is_training)" in code
    assert _convert(code, "linen") == code


@pytest.mark.parametrize("target", ["linen", "nnx"])
def test_conditional_kernel_shape_becomes_conditional_tuples(target: str):
    source = """\
    import haiku as hk


    class Block(hk.Module):
      def __init__(self, bottleneck: bool, name=None):
        super().__init__(name=name)
        self.bottleneck = bottleneck

      def __call__(self, x):
        return hk.Conv2D(8, kernel_shape=1 if self.bottleneck else 3)(x)
    """
    assert "bottleneck else (3, 3)" in _convert(source, target)
    assert "TODO" not in _convert(source, target)


def test_nnx_residual_keeps_the_size_both_sides_agree_on():
    source = """\
    import haiku as hk


    class Block(hk.Module):
      def __call__(self, x):
        h = hk.Linear(8)(x)
        h = h + hk.Linear(8)(h)
        return hk.Linear(2)(h)
    """
    code = _convert(source, "nnx")
    assert "self.linear_2 = nnx.Linear(8, 2, rngs=rngs)" in code
    assert "..." not in code


def test_linen_namespace_avoids_a_name_the_file_already_uses():
    """`from jax import nn` stays what it was; Flax Linen is imported as `linen` instead of shadowing it."""
    source = """\
    import haiku as hk
    from jax import nn


    class Block(hk.Module):
      def __call__(self, x):
        return nn.gelu(hk.Linear(4)(x))
    """
    expected = """\
    from flax import linen
    from jax import nn


    class Block(linen.Module):
      @linen.compact
      def __call__(self, x):
        return nn.gelu(linen.Dense(4)(x))
    """
    assert _convert(source, "linen") == textwrap.dedent(expected)


def test_nnx_module_class_built_in_a_loop_is_one_per_iteration_or_gets_a_todo():
    source = """\
    import haiku as hk


    class Block(hk.Module):
      def __call__(self, x):
        return hk.Linear(4)(x)


    class Tower(hk.Module):
      def __call__(self, x):
        for _ in range(3):
          block = Block()
          x = block(x)
        return x


    class Stack(hk.Module):
      def __call__(self, x):
        blocks = []
        for _ in range(3):
          blocks.append(Block())
        return blocks[0](x)
    """
    code = _convert(source, "nnx")
    assert "self.blocks.append(Block(in_features, rngs=rngs))" in code and "for block in self.blocks:" in code
    assert "# TODO(haiku2flax:HK001): `Block` is built in a loop or condition; build it in `__init__` by hand" in code


def test_transform_inside_a_function_converts_in_linen_and_is_flagged_in_nnx():
    """Linen rewrites `init`/`apply` call by call; NNX follows params by module-level dataflow only."""
    source = """\
    import haiku as hk
    import jax
    import jax.numpy as jnp


    def net_fn(x):
      return hk.Linear(10)(x)


    def main():
      net = hk.without_apply_rng(hk.transform(net_fn))
      params = net.init(jax.random.key(0), jnp.ones((2, 8)))
      return net.apply(params, jnp.ones((2, 8)))
    """
    linen = _convert(source, "linen")
    assert "  net = nn.Dense(10)\n  params = net.init(jax.random.key(0), jnp.ones((2, 8)))['params']" in linen
    assert "return net.apply({'params': params}, jnp.ones((2, 8)))" in linen
    nnx = _convert(source, "nnx")
    assert "is used in a way HK004 (transform) cannot convert here" in nnx


def test_linen_stateless_transform_with_state_runs():
    """Haiku's state is an empty dict; Linen then has no `batch_stats` collection to subscript."""
    source = """\
    import haiku as hk
    import jax
    import jax.numpy as jnp

    model = hk.transform_with_state(lambda x: hk.Linear(3)(x))
    params, state = model.init(jax.random.key(0), jnp.ones((2, 4)))
    out, state = model.apply(params, state, None, jnp.ones((2, 4)))
    """
    code = _convert(source, "linen")
    assert "params, state = variables['params'], variables.get('batch_stats', {})" in code
    assert "state = updates.get('batch_stats', {})" in code
    namespace: dict = {}
    exec(compile(code, "<converted>", "exec"), namespace)  # runs: no KeyError on the missing collection
    assert namespace["out"].shape == (2, 3)


def test_linen_named_layer_built_in_a_loop_loses_its_name():
    """Haiku numbers repeats of a name (`res`, `res_1`); Linen raises NameInUseError on them."""
    source = """\
    import haiku as hk


    class Tower(hk.Module):
      def __call__(self, x):
        for _ in range(3):
          x = x + hk.Linear(4, name="res")(x)
        return hk.Linear(2, name="head")(x)
    """
    code = _convert(source, "linen")
    assert "x = x + nn.Dense(4)(x)" in code
    assert 'nn.Dense(2, name="head")(x)' in code


def test_nnx_optimizer_update_without_a_converted_optimizer_gets_a_todo():
    """`optimizer.update(grads, opt_state)` becomes `opt_state.update(model, grads)` only where `opt_state`
    is the nnx.Optimizer the rule made from a module-level `optimizer.init(params)`."""
    source = """\
    import haiku as hk
    import jax
    import jax.numpy as jnp
    import optax


    def forward(x):
      return hk.Linear(2)(x)


    model = hk.without_apply_rng(hk.transform(forward))
    params = model.init(jax.random.key(0), jnp.ones((1, 3)))
    optimizer = optax.adam(1e-3)


    def loss(params, x):
      return jnp.mean(model.apply(params, x) ** 2)


    @jax.jit
    def update(params, opt_state, x):
      grads = jax.grad(loss)(params, x)
      updates, new_opt_state = optimizer.update(grads, opt_state)
      return optax.apply_updates(params, updates), new_opt_state


    def main():
      opt_state = optimizer.init(params)
      return update(params, opt_state, jnp.ones((1, 3)))
    """
    code = _convert(source, "nnx")
    assert "the optimizer state does not come from a module-level `optimizer.init(params)`" in code
    assert "opt_state.update(" not in code


def test_rewriter_hooks_run_on_the_leaves_it_does_not_copy():
    """A `Name` or `Integer` holds only punctuation: its hooks run, and unless a hook replaces it the
    node comes out as it went in (LibCST would copy it and its parentheses)."""
    import libcst as cst

    from haiku2flax.engine.context import Context
    from haiku2flax.engine.names import ImportedNames
    from haiku2flax.engine.rewriter import Rewriter
    from haiku2flax.engine.tables import load_tables

    class Renamer(Rewriter):
        integers: list[str] = []

        def visit_Integer(self, node: cst.Integer) -> None:
            self.integers.append(node.value)

        def leave_Name(self, original: cst.Name, updated: cst.Name) -> cst.Name:
            return updated.with_changes(value="b") if original.value == "a" else updated

    module = cst.parse_module("x = f((a), 1, [(2)])\n")
    renamer = Renamer(Context(target="nnx", tables=load_tables(), names=ImportedNames.from_module(module)))
    converted = module.visit(renamer)
    assert converted.code == "x = f((b), 1, [(2)])\n"
    assert renamer.integers == ["1", "2"]
    call = converted.body[0].body[0].value
    assert call.func is module.body[0].body[0].value.func  # `f`: not rebuilt


def test_nnx_apply_updates_returned_from_a_step_reads_the_model():
    """`return optax.apply_updates(params, updates), opt_state` after a converted `optimizer.update`: there
    is no `updates` any more (the nnx.Optimizer wrote the model); the step returns the model's parameters."""
    source = """\
    import haiku as hk
    import jax
    import jax.numpy as jnp
    import optax


    def forward(x):
      return hk.Linear(2)(x)


    model = hk.without_apply_rng(hk.transform(forward))
    params = model.init(jax.random.key(0), jnp.ones((1, 3)))
    optimizer = optax.adam(1e-3)
    opt_state = optimizer.init(params)


    def loss(params, x):
      return jnp.mean(model.apply(params, x) ** 2)


    def update(params, opt_state, x):
      grads = jax.grad(loss)(params, x)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state


    params, opt_state = update(params, opt_state, jnp.ones((1, 3)))
    """
    code = _convert(source, "nnx")
    assert "  opt_state.update(model, grads)\n  return nnx.state(model, nnx.Param), opt_state\n" in code
    assert "updates" not in code


def test_nnx_train_state_applied_inside_an_expression_gets_a_todo():
    """`return state.apply_gradients(grads=grads), loss`: an nnx.Optimizer has no `apply_gradients`, and
    its in-place `update` cannot stand inside the tuple; the statement says what to write."""
    source = """\
    import haiku as hk
    import jax
    import jax.numpy as jnp
    import optax
    from flax.training import train_state


    def forward(x):
      return hk.Linear(2)(x)


    model = hk.without_apply_rng(hk.transform(forward))
    params = model.init(jax.random.key(0), jnp.ones((1, 3)))
    state = train_state.TrainState.create(apply_fn=model.apply, params=params, tx=optax.sgd(0.1))


    def train_step(state, x):
      def loss_fn(params):
        return jnp.mean(state.apply_fn(params, x) ** 2)

      loss, grads = jax.value_and_grad(loss_fn)(state.params)
      return state.apply_gradients(grads=grads), loss


    state, loss = train_step(state, jnp.ones((1, 3)))
    """
    code = _convert(source, "nnx")
    todo = "# TODO(haiku2flax:HK007): an nnx.Optimizer has no `apply_gradients`: call `state.update(model, grads)`"
    assert todo in code
    assert code.index(todo) < code.index("return state.apply_gradients(grads=grads), loss")
