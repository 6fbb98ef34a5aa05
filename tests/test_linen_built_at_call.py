"""Linen: a stored layer that needs its input size is built at its one call (`engine.called_once`).

`dw = hk.DepthwiseConv2D(...)` cannot become a Flax conv where it is stored (the conv's feature count
and groups are the input's channel count); called once, later, it is built at the call instead, where
`x.shape[-1]` can be read. Anywhere that would not run the same code, the TODO stays.
"""

from __future__ import annotations

import textwrap

import pytest

from haiku2flax.engine import convert_source
from haiku2flax.engine.notes import TODO_PREFIX

BLOCK = """\
import haiku as hk
import jax


class Block(hk.Module):
  def __init__(self, stride: int, name=None):
    super().__init__(name=name)
    self.stride = stride

  def __call__(self, x):
{body}"""


def _linen(body: str) -> str:
    source = BLOCK.format(body=textwrap.indent(textwrap.dedent(body), "    "))
    return convert_source(source, "linen").code


def test_called_once_is_built_at_its_call():
    code = _linen(
        """\
        depthwise = hk.DepthwiseConv2D(channel_multiplier=2, kernel_shape=3, stride=self.stride, name="dw")

        pointwise = hk.Conv2D(8, kernel_shape=1)
        out = depthwise(x)
        return pointwise(jax.nn.relu(out))
        """
    )
    assert code == textwrap.dedent(
        """\
        import flax.linen as nn
        import jax


        class Block(nn.Module):
          stride: int

          @nn.compact
          def __call__(self, x):
            pointwise = nn.Conv(8, (1, 1))
            out = nn.Conv(x.shape[-1] * 2, (3, 3), strides=self.stride, name="dw", feature_group_count=x.shape[-1])(x)
            return pointwise(jax.nn.relu(out))
        """
    )
    assert convert_source(code, "linen").code == code


def test_built_in_a_loop_and_called_there():
    code = _linen(
        """\
        for _ in range(2):
          depthwise = hk.DepthwiseConv2D(1, 3)
          x = depthwise(x)
        return x
        """
    )
    assert TODO_PREFIX not in code
    assert "x = nn.Conv(x.shape[-1], (3, 3), feature_group_count=x.shape[-1])(x)" in code
    assert "depthwise" not in code


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("dw = hk.DepthwiseConv2D(1, 3)\nreturn dw(dw(x))\n", id="called twice: one layer, shared weights"),
        pytest.param("dw = hk.DepthwiseConv2D(1, 3)\nfor _ in range(2):\n  x = dw(x)\nreturn x\n", id="called in a loop it is built outside"),
        pytest.param("dw = hk.DepthwiseConv2D(1, 3)\nf = lambda y: dw(y)\nreturn f(x)\n", id="called in a lambda"),
        pytest.param("if x.ndim == 4:\n  dw = hk.DepthwiseConv2D(1, 3)\nreturn dw(x)\n", id="called outside the block it is built in"),
        pytest.param("m = 1\ndw = hk.DepthwiseConv2D(m, 3)\nm = 2\nreturn dw(x)\n", id="an argument rebound before the call"),
        pytest.param("dw = hk.DepthwiseConv2D(1, 3)\nreturn dw(jax.nn.relu(x))\n", id="input size not readable without evaluating twice"),
        pytest.param("dw = hk.DepthwiseConv2D(1, 3)\nreturn jax.vmap(dw)(x)\n", id="passed on, not called"),
        pytest.param("# the depthwise half\ndw = hk.DepthwiseConv2D(1, 3)\nreturn dw(x)\n", id="a comment that would have nowhere to go"),
    ],
)
def test_left_with_a_todo_where_building_at_the_call_changes_the_program(body: str):
    code = _linen(body)
    assert f"{TODO_PREFIX}:HK002): `hk.DepthwiseConv2D` needs its input feature size" in code
    assert "dw = hk.DepthwiseConv2D(" in code
