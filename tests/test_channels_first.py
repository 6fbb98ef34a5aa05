"""Channels-first convolutions (`data_format="NCHW"`): Linen moves the channel axis around a layer built
and called in one expression, and the harness checks it (Haiku's bias is (C, 1, 1) there); NNX, whose
input sizes are read from the last axis, keeps the table's TODO."""

from __future__ import annotations

import textwrap

import pytest

from haiku2flax.engine import convert_source
from haiku2flax.harness import verify
from haiku2flax.harness.pytest_helper import report_text

SOURCE = textwrap.dedent('''\
    import haiku as hk
    import jax
    import jax.numpy as jnp


    class Net(hk.Module):
      def __call__(self, x):
        x = jax.nn.relu(hk.Conv2D(8, kernel_shape=3, data_format="NCHW")(x))
        return hk.Conv1D(4, kernel_shape=3, stride=2, data_format="NCW")(x.reshape(x.shape[0], 8, -1))


    def forward(x):
      return Net()(x)


    model = hk.without_apply_rng(hk.transform(forward))
    params = model.init(jax.random.key(0), jnp.ones((2, 3, 6, 5)))
''')


def test_linen_moves_the_channel_axis_and_verifies(tmp_path):
    code = convert_source(SOURCE, "linen").code
    assert "jnp.moveaxis(nn.Conv(8, (3, 3))(jnp.moveaxis(x, 1, -1)), -1, 1)" in code
    assert "TODO" not in code
    path = tmp_path / "model.py"
    path.write_text(SOURCE, encoding="utf-8")
    result = verify(path, "linen", "model", ["f32[2,3,6,5]"], steps=1)
    assert result.ok, report_text(result)


@pytest.mark.parametrize(
    ("source", "target"),
    [
        pytest.param(SOURCE, "nnx", id="nnx"),
        pytest.param("import haiku as hk\n\nconv = hk.Conv2D(8, 3, data_format='NCHW')\n", "linen", id="linen-stored"),
    ],
)
def test_elsewhere_the_todo_stays(source: str, target: str):
    assert "Flax convolutions are channels-last: move the channel axis last" in convert_source(source, target).code
