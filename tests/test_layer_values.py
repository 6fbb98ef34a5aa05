"""Haiku layer classes handed as values to module classes of the file (`codemods/layer_values.py`), in Linen.

A class value (`projection=hk.Linear`, `super().__init__(hk.Conv1D, ...)`) becomes the Flax class and the
call of the argument takes the Flax arguments, where the layers that flow in agree on them; otherwise the
call keeps Haiku's arguments under a TODO saying why.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from haiku2flax.engine import convert_source
from haiku2flax.harness import verify
from haiku2flax.harness.pytest_helper import report_text

DEFAULT = """\
import haiku as hk
import jax
import jax.numpy as jnp


class Tower(hk.Module):
  def __init__(self, latent_size, projection=hk.Linear, name=None):
    super().__init__(name=name)
    self.project = projection(latent_size, with_bias=False)
    self.readout = hk.Linear(1)

  def __call__(self, x):
    return self.readout(jax.nn.relu(self.project(x)))


def forward(x):
  return Tower(8)(x)


model = hk.transform(forward)
params = model.init(jax.random.key(0), jnp.ones((2, 5)))
"""

SUBCLASS = """\
import haiku as hk
from haiku import Conv1D
import jax
import jax.numpy as jnp


class ValidConv(hk.Module):
  def __init__(self, base_convolution, output_channels, rate=1, name=None):
    super().__init__(name=name)
    self._conv = base_convolution(output_channels=output_channels, kernel_shape=(3,), padding='VALID', rate=rate)

  def __call__(self, inputs):
    return jnp.squeeze(self._conv(inputs[None]), axis=0)


class ValidConv1D(ValidConv):
  def __init__(self, output_channels, rate=1, name='valid_conv_1d'):
    super().__init__(Conv1D, output_channels, rate=rate, name=name)


def forward(x):
  return ValidConv1D(4, rate=2)(x) + ValidConv(base_convolution=hk.Conv1D, output_channels=4, rate=2)(x)


model = hk.transform(forward)
params = model.init(jax.random.key(0), jnp.ones((10, 3)))
"""


def test_a_default_layer_class_becomes_the_flax_class_and_its_call_takes_flax_arguments():
    code = convert_source(DEFAULT, "linen").code
    assert "projection: Any = nn.Dense" in code, code
    assert "self.project = self.projection(self.latent_size, use_bias=False)" in code, code
    assert "TODO" not in code and "hk." not in code, code


def test_layer_classes_passed_by_subclasses_and_callers_convert_where_they_are_passed():
    code = convert_source(SUBCLASS, "linen").code
    assert "return ValidConv(nn.Conv, output_channels, rate=rate, name=name)" in code, code
    assert "ValidConv(base_convolution=nn.Conv, output_channels=4, rate=2)" in code, code
    assert "self._conv = self.base_convolution(self.output_channels, (3,), padding='VALID', kernel_dilation=self.rate)" in code, code
    assert "TODO" not in code, code


@pytest.mark.parametrize("source, sample", [(DEFAULT, "f32[2,5]"), (SUBCLASS, "f32[10,3]")], ids=["default", "subclass"])
def test_converted_layer_values_verify_equivalent(tmp_path: Path, source: str, sample: str):
    path = tmp_path / "model.py"
    path.write_text(source, encoding="utf-8")
    result = verify(path, "linen", "model", [sample], steps=1)
    assert result.ok, report_text(result)


@pytest.mark.parametrize(
    "change, why",
    [
        (("Tower(8)(x)", "Tower(8, projection=make_projection)(x)"), "`projection` may hold `hk.Linear`, a Haiku layer class, and is called here with Haiku's arguments, and other values too"),
        (("projection(latent_size, with_bias=False)", "projection(latent_size, **settings)"), "`hk.Linear` is called with `**settings`, whose keys are not seen in this file"),
        (("Tower(8)(x)", "Tower(8, projection=hk.LayerNorm)(x)"), "`hk.Linear` or `hk.LayerNorm`, Haiku layer classes, and is called here with Haiku's arguments, which are different Flax layers"),
    ],
    ids=["another-value", "unpacked-keywords", "two-flax-layers"],
)
def test_a_layer_class_whose_call_cannot_be_known_keeps_haikus_call_under_a_todo(change: tuple[str, str], why: str):
    source = DEFAULT.replace(*change).replace("def __init__(self, latent_size, projection=hk.Linear, name=None):",
                                              "def __init__(self, latent_size, projection=hk.Linear, name=None, **options):")
    code = convert_source(source, "linen").code
    lines = code.splitlines()
    call = next(i for i, line in enumerate(lines) if "self.project = self.projection(" in line)
    assert why in lines[call - 1], code
    assert "projection: Any = hk.Linear" in code, code  # the values stay Haiku, with the leftover TODO
