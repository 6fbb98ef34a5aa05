"""HK202: an `hk.initializers.*` call bound to a name converts once, where it is bound, when every read
of the name is an initializer argument; any other read keeps the Haiku call (and the layers' TODOs)."""

from __future__ import annotations

import textwrap

import pytest

from haiku2flax.engine import convert_source

TARGETS = ("linen", "nnx")


def _convert(source: str, target: str) -> str:
    return convert_source(textwrap.dedent(source), target).code


@pytest.mark.parametrize("target", TARGETS)
def test_binding_read_only_as_initializers_converts(target: str):
    source = """\
    import haiku as hk

    init = hk.initializers.RandomNormal(0.5)


    class Net(hk.Module):
      def __call__(self, x):
        return hk.Linear(4, w_init=init, b_init=init)(x)
    """
    code = _convert(source, target)
    ns = "nn" if target == "linen" else "nnx"
    assert f"init = {ns}.initializers.normal(0.5)" in code
    assert "kernel_init=init, bias_init=init" in code
    assert "TODO" not in code


@pytest.mark.parametrize("target", TARGETS)
def test_binding_called_haiku_style_is_left_alone(target: str):
    source = """\
    import haiku as hk
    import jax.numpy as jnp

    init = hk.initializers.RandomNormal(0.5)
    table = init([3], jnp.float32)


    class Net(hk.Module):
      def __call__(self, x):
        return hk.Linear(4, w_init=init)(x)
    """
    code = _convert(source, target)
    assert "init = hk.initializers.RandomNormal(0.5)" in code
    assert "is not an `hk.initializers` call the tables know" in code


@pytest.mark.parametrize("target", TARGETS)
def test_fan_based_binding_still_refused_for_a_bias(target: str):
    source = """\
    import haiku as hk

    init = hk.initializers.VarianceScaling(2.0)


    class Net(hk.Module):
      def __call__(self, x):
        return hk.Linear(4, w_init=init, b_init=init)(x)
    """
    assert "reads the parameter's fans" in _convert(source, target)


@pytest.mark.parametrize("target", TARGETS)
def test_name_bound_twice_is_left_alone(target: str):
    source = """\
    import haiku as hk

    init = hk.initializers.RandomNormal(0.5)
    init = hk.initializers.RandomNormal(0.1)


    class Net(hk.Module):
      def __call__(self, x):
        return hk.Linear(4, w_init=init)(x)
    """
    assert "is not an `hk.initializers` call the tables know" in _convert(source, target)


@pytest.mark.parametrize("target", TARGETS)
def test_array_constructor_as_initializer(target: str):
    source = """\
    import haiku as hk
    import jax.numpy as jnp


    class Net(hk.Module):
      def __call__(self, x):
        return hk.Linear(4, w_init=jnp.zeros, b_init=jnp.ones)(x)
    """
    ns = "nn" if target == "linen" else "nnx"
    assert f"kernel_init={ns}.initializers.zeros, bias_init={ns}.initializers.ones" in _convert(source, target)
