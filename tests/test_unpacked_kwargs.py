"""Table layers called with a constructor's `**kwargs` (`engine/unpacked.py`), and kernel shapes held in variables.

The keys `**kwargs` may hold are the keywords the file's constructions pass into it (through subclasses'
`super().__init__(..., **kwargs)` too). Linen renames them to the layer's Flax names where the class is
built (`codemods/unpacked_kwargs.py`) and the layer's call forwards them; NNX forwards them where none
needs renaming. Otherwise, or where some construction cannot be seen, the call gets a TODO naming the keys.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from haiku2flax.engine import convert_source
from haiku2flax.harness import verify
from haiku2flax.harness.pytest_helper import report_text

FORWARDED = """\
import haiku as hk
import jax
import jax.numpy as jnp


class Block(hk.Module):
  def __init__(self, size, name=None, **linear_kwargs):
    super().__init__(name=name)
    self.hidden = hk.Linear(size, **linear_kwargs)

  def __call__(self, x):
    return jax.nn.relu(self.hidden(x))


class Wide(Block):
  def __init__(self, name=None, **linear_kwargs):
    super().__init__(8, name=name, **linear_kwargs)


def forward(x):
  return Block(4, name="first")(Wide()(x))


model = hk.transform(forward)
params = model.init(jax.random.key(0), jnp.ones((2, 5)))
"""

# A convolution class handed its layer's class, with a kernel shape held in a variable (Haiku reads an
# int as one size per spatial dimension, Flax as a 1-D kernel) and extra keywords for the layer.
CONV_CLASS = """\
import haiku as hk
import jax
import jax.numpy as jnp


class PaddedConv(hk.Module):
  def __init__(self, layer, channels, kernel_shape, name=None, **conv_kwargs):
    super().__init__(name=name)
    self._pads = [((k - 1) // 2, k // 2) for k in kernel_shape]
    self._conv = layer(output_channels=channels, kernel_shape=kernel_shape, padding='VALID', **conv_kwargs)

  def __call__(self, x):
    return self._conv(jnp.pad(x, [(0, 0), *self._pads, (0, 0)], mode='edge'))


class PaddedConv2D(PaddedConv):
  def __init__(self, channels, kernel_shape, name=None, **conv_kwargs):
    super().__init__(hk.Conv2D, channels, kernel_shape, name=name, **conv_kwargs)


def forward(x):
  return PaddedConv2D(3, (3, 2), name="conv")(x)


model = hk.transform(forward)
params = model.init(jax.random.key(0), jnp.ones((2, 6, 6, 2)))
"""


def test_forwarded_keywords_reach_the_flax_layer_unchanged():
    linen = convert_source(FORWARDED, "linen").code
    assert "self.hidden = nn.Dense(self.size, **self.linear_kwargs)" in linen, linen
    nnx = convert_source(FORWARDED, "nnx").code
    assert "self.hidden = nnx.Linear(din, size, rngs=rngs, **linear_kwargs)" in nnx, nnx
    assert "TODO" not in linen + nnx


@pytest.mark.parametrize("target", ["linen", "nnx"])
def test_forwarded_keywords_verify_equivalent(tmp_path: Path, target: str):
    path = tmp_path / "model.py"
    path.write_text(FORWARDED, encoding="utf-8")
    result = verify(path, target, "model", ["f32[2,5]"], steps=1)
    assert result.ok, report_text(result)


RENAMED = FORWARDED.replace('Block(4, name="first")', 'Block(4, name="first", with_bias=False, w_init=hk.initializers.Constant(0.5))').replace(
    "Wide()(x)", "Wide(b_init=hk.initializers.Constant(0.25))(x)"
)


def test_keywords_passed_on_take_their_flax_names_where_the_class_is_built_in_linen():
    code = convert_source(RENAMED, "linen").code
    assert 'Block(4, name="first", linear_kwargs=FrozenDict(use_bias=False, kernel_init=nn.initializers.constant(0.5)))' in code, code
    assert "Wide(bias_init=nn.initializers.constant(0.25))(x)" in code, code
    assert "self.hidden = nn.Dense(self.size, **self.linear_kwargs)" in code, code
    assert "TODO" not in code, code


def test_keywords_a_subclass_passes_on_take_their_flax_names_where_it_is_built_in_linen():
    code = convert_source(FORWARDED.replace("Wide()(x)", "Wide(with_bias=False)(x)"), "linen").code
    assert "Wide(use_bias=False)(x)" in code, code  # `Wide` is a function in Linen: it gathers them itself
    assert "TODO" not in code, code


def test_renamed_keywords_verify_equivalent_in_linen(tmp_path: Path):
    path = tmp_path / "model.py"
    path.write_text(RENAMED, encoding="utf-8")
    result = verify(path, "linen", "model", ["f32[2,5]"], steps=1)
    assert result.ok, report_text(result)


def test_a_value_the_table_cannot_convert_leaves_a_todo_where_the_class_is_built():
    code = convert_source(FORWARDED.replace('Block(4, name="first")', 'Block(4, name="first", w_init=my_init)'), "linen").code
    lines = code.splitlines()
    built = next(i for i, line in enumerate(lines) if "FrozenDict(w_init=my_init)" in line)
    assert "`w_init` reaches `hk.Linear`" in lines[built - 1] and "`my_init` is not an `hk.initializers` call" in lines[built - 1], code


@pytest.mark.parametrize("target", ["linen", "nnx"])
@pytest.mark.parametrize(
    "change, why",
    [
        (  # a subclass's own keyword is not renamed, so the layer may receive Haiku's name
            ("super().__init__(8, name=name, **linear_kwargs)", "super().__init__(8, name=name, with_bias=False, **linear_kwargs)"),
            "`hk.Linear` is called with `**linear_kwargs`, which this file's calls fill with `with_bias` (Flax: `use_bias`)",
        ),
        (
            ('def forward(x):', 'LAYERS = {4: Block}\n\n\ndef forward(x):'),
            "`hk.Linear` is called with `**linear_kwargs`, whose keys are not seen in this file",
        ),
        (
            ('model = hk', 'def build(**linear_kwargs):\n  return Wide(**linear_kwargs)\n\n\nmodel = hk'),
            "`hk.Linear` is called with `**linear_kwargs`, whose keys are not seen in this file",
        ),
    ],
    ids=["subclass-keyword", "class-held-in-a-dict", "name-bound-elsewhere"],
)
def test_keys_not_renamed_or_not_seen_leave_a_todo_naming_them(change: tuple[str, str], why: str, target: str):
    code = convert_source(FORWARDED.replace(*change), target).code
    lines = code.splitlines()
    call = next(i for i, line in enumerate(lines) if "self.hidden = " in line)
    assert "self.hidden = hk.Linear(" in lines[call], code
    # Linen says why above the layer; NNX, which builds it knowing its input size, above its call
    said = lines[call - 1] if target == "linen" else lines[next(i for i, line in enumerate(lines) if "self.hidden(x)" in line) - 1]
    assert why in said, code


def test_a_kernel_shape_in_a_variable_is_replicated_when_it_is_an_int_or_one_long():
    code = convert_source(CONV_CLASS, "linen").code
    assert (
        "self._conv = self.layer(self.channels, (self.kernel_shape,) * 2 if isinstance(self.kernel_shape, int) "
        "else tuple(self.kernel_shape) if len(self.kernel_shape) == 2 else tuple(self.kernel_shape) * 2, "
        "padding='VALID', **self.conv_kwargs)"
    ) in code, code
    assert "TODO" not in code and "hk." not in code, code


def test_layer_class_with_forwarded_keywords_verifies_equivalent_in_linen(tmp_path: Path):
    path = tmp_path / "model.py"
    path.write_text(CONV_CLASS, encoding="utf-8")
    result = verify(path, "linen", "model", ["f32[2,6,6,2]"], steps=1)
    assert result.ok, report_text(result)


def test_nnx_leaves_keys_to_rename_to_a_todo():
    code = convert_source(RENAMED, "nnx").code
    assert "which this file's calls fill with `b_init` (Flax: `bias_init`), `w_init` (Flax: `kernel_init`), `with_bias` (Flax: `use_bias`)" in code, code
    assert "Block(4, with_bias=False, w_init=hk.initializers.Constant(0.5))" in code, code  # left as it was


def test_layer_class_handed_as_a_value_is_left_to_a_todo_in_nnx():
    code = convert_source(CONV_CLASS, "nnx").code
    assert "# TODO(haiku2flax:HK000): `hk.Conv2D` is used in a way its rule cannot convert" in code, code


@pytest.mark.parametrize(("kernel_shape", "replicated"), [(3, (3, 3)), ((3,), (3, 3)), ((3, 5), (3, 5)), ([2, 4], (2, 4))])
def test_the_replicated_kernel_shape_is_what_haiku_reads(kernel_shape, replicated):
    """Haiku's ConvND replicates an int or a one-element sequence over the spatial dimensions."""
    import libcst as cst

    from haiku2flax.engine.calls import _replicated_if_int

    expression = cst.Module([]).code_for_node(_replicated_if_int(cst.Name("k"), 2))
    assert eval(expression, {"k": kernel_shape}) == replicated
