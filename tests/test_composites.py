"""MLP, Sequential, BatchApply (HK014-HK016) and Flatten/Reshape (HK012/HK013): TODOs and their reasons."""

import pytest

from haiku2flax.engine import convert_source

MODULE = '''import haiku as hk
import jax


class Net(hk.Module):
  def __init__(self, sizes, name=None):
    super().__init__(name=name)
    self.sizes = sizes

  def __call__(self, x, key):
    return {expression}
'''


def convert(expression: str, target: str) -> str:
    return convert_source(MODULE.format(expression=expression), target).code


@pytest.mark.parametrize("target", ["linen", "nnx"])
@pytest.mark.parametrize(
    ("expression", "rule", "reason"),
    [
        ("hk.nets.MLP([8, 4])(x, dropout_rate=0.1, rng=key)", "HK014", "drops out after each activation"),
        ("hk.nets.MLP(self.sizes)(x, dropout_rate=0.1, rng=key)", "HK014", "drops out after each activation"),
        ("hk.Sequential([hk.Linear(4)])(x, key)", "HK015", "passes extra arguments to its first layer only"),
        ("hk.BatchApply(jax.nn.relu)(x)", "HK016", "write the merge/apply/split out"),
        ("hk.Flatten(preserve_dims=2)(x + 1)", "HK012", "assign `x + 1` to a variable first"),
    ],
)
def test_unconvertible_composites_keep_a_todo_with_the_reason(expression: str, rule: str, reason: str, target: str) -> None:
    code = convert(expression, target)
    assert f"# TODO(haiku2flax:{rule})" in code and reason in code


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("linen", "HaikuMLP(self.sizes, activate_final=True, use_bias=False)(x) + HaikuMLP((*self.sizes, 3), name='head')(x)"),
        ("nnx", "self.mlp = HaikuMLP(din, sizes, activate_final=True, use_bias=False, rngs=rngs)"),
    ],
)
def test_mlp_over_computed_sizes_becomes_one_helper_module(target: str, expected: str) -> None:
    code = convert("hk.nets.MLP(self.sizes, with_bias=False, activate_final=True)(x) + hk.nets.MLP((*self.sizes, 3), name='head')(x)", target)
    assert expected in code
    assert code.count("class HaikuMLP(") == 1 and "TODO" not in code


def test_nnx_mlp_over_computed_sizes_gives_its_last_size_to_the_next_layer() -> None:
    code = convert("hk.Linear(2)(hk.nets.MLP([*self.sizes, 5])(x)) + hk.Linear(2)(hk.nets.MLP(self.sizes)(x))", "nnx")
    assert "self.mlp = HaikuMLP(din, [*sizes, 5], rngs=rngs)\n    self.linear = nnx.Linear(5, 2, rngs=rngs)" in code
    assert "self.linear_1 = nnx.Linear(sizes[-1], 2, rngs=rngs)" in code


def test_nnx_sequential_over_a_comprehension_chains_each_layers_input_size() -> None:
    code = convert("hk.Sequential([*[hk.Linear(s, with_bias=False) for s in self.sizes], jax.nn.relu, hk.Linear(3)])(x)", "nnx")
    assert (
        "nnx.Sequential(*[nnx.Linear(in_features, s, use_bias=False, rngs=rngs) for in_features, s in zip((din, *sizes[:-1]), sizes)], "
        "jax.nn.relu, nnx.Linear(sizes[-1], 3, rngs=rngs))"
    ) in code


@pytest.mark.parametrize(
    ("layers", "reason"),
    [
        ("[hk.Linear(4) for s in self.sizes]", "only layers whose output size is the loop variable (`s`)"),
        ("[hk.Linear(s) for s in self.sizes if s]", "nor one layer per size"),
        ("self.layers", "nor one layer per size"),
    ],
)
def test_nnx_sequential_over_other_computed_lists_keeps_a_todo(layers: str, reason: str) -> None:
    code = convert(f"hk.Sequential({layers})(x)", "nnx")
    assert "# TODO(haiku2flax:HK015)" in code and reason in code and "din" not in code


def test_nnx_sequential_needs_table_layers_or_functions() -> None:
    code = convert("hk.Sequential([Net([2]), jax.nn.relu])(x)", "nnx")
    assert "# TODO(haiku2flax:HK015)" in code and "only table layers and functions convert" in code


@pytest.mark.parametrize("target", ["linen", "nnx"])
@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("hk.Flatten()(x)", "x.reshape(x.shape[0], -1)"),
        ("hk.Reshape((4, 4, 3))(x)", "x.reshape(-1, 4, 4, 3)"),
        ("hk.Reshape((-1, 2))(x)", "x.reshape(x.shape[0], -1, 2)"),
        ("hk.Reshape((-1, 2), preserve_dims=-3)(x)", "x.reshape(x.shape[:-3] + (-1, 2))"),
        ("hk.Flatten(preserve_dims=2)(x)", "x.reshape(x.shape[:2] + (-1,))"),
    ],
)
def test_reshapes_follow_haikus_formula(expression: str, expected: str, target: str) -> None:
    assert f"return {expected}" in convert(expression, target)


def test_nnx_learns_the_reshaped_feature_size() -> None:
    code = convert("hk.Linear(3)(hk.Reshape((-1, 7))(x))", "nnx")
    assert "nnx.Linear(7, 3, rngs=rngs)" in code


@pytest.mark.parametrize("target", ["linen", "nnx"])
def test_the_helper_module_comes_after_the_imports_it_needs(target: str) -> None:
    """A class above the file's last import (a stub, a shim) does not pull the helper above its imports."""
    code = convert_source("class Shim:\n  pass\n" + MODULE.format(expression="hk.nets.MLP(self.sizes)(x)"), target).code
    namespace = "import flax.linen as nn" if target == "linen" else "from flax import nnx"
    assert code.index("class Shim:") < code.index(namespace) < code.index("class HaikuMLP(")
