"""HK202: an `hk.initializers.*` call bound to a name converts once, where it is bound, when every read
of the name is an initializer argument; any other read keeps the Haiku call (and the layers' TODOs)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from haiku2flax.engine import convert_source
from haiku2flax.harness import verify
from haiku2flax.harness.pytest_helper import report_text

TARGETS = ("linen", "nnx")


ENCODER = """\
    import haiku as hk


    class Encoder(hk.Module):
      def __init__(self, width, w_init=None, name=None):
        super().__init__(name=name)
        self.width = width
        self.w_init = w_init or hk.initializers.TruncatedNormal(stddev=0.1)

      def __call__(self, x):
        return hk.Linear(self.width, w_init=self.w_init)(x)
"""


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
def test_name_bound_to_two_initializers_converts_both(target: str):
    source = """\
    import haiku as hk

    init = hk.initializers.RandomNormal(0.5)
    init = hk.initializers.RandomNormal(0.1)


    class Net(hk.Module):
      def __call__(self, x):
        return hk.Linear(4, w_init=init)(x)
    """
    code = _convert(source, target)
    ns = "nn" if target == "linen" else "nnx"
    assert f"init = {ns}.initializers.normal(0.5)\ninit = {ns}.initializers.normal(0.1)" in code
    assert "TODO" not in code


@pytest.mark.parametrize("target", TARGETS)
def test_name_bound_to_an_initializer_and_something_else_is_left_alone(target: str):
    source = """\
    import haiku as hk

    init = hk.initializers.RandomNormal(0.5)
    init = make_initializer()


    class Net(hk.Module):
      def __call__(self, x):
        return hk.Linear(4, w_init=init)(x)
    """
    code = _convert(source, target)
    assert "init = hk.initializers.RandomNormal(0.5)" in code
    assert "is not an `hk.initializers` call the tables know" in code


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


@pytest.mark.parametrize("target", TARGETS)
def test_attribute_defaulted_with_or_converts_and_asks_callers_for_flax(target: str):
    source = ENCODER
    code = _convert(source, target)
    ns = "nn" if target == "linen" else "nnx"
    assert f"w_init or {ns}.initializers.truncated_normal(0.1)" in code
    assert "kernel_init=self." in code
    assert f"# TODO(haiku2flax:HK202): `w_init` is now a Flax initializer: callers pass `{ns}.initializers.*`" in code
    assert "import haiku" not in code


@pytest.mark.parametrize("target", TARGETS)
def test_none_default_replaced_in_the_body_converts(target: str):
    source = """\
    import haiku as hk


    class Net(hk.Module):
      def __init__(self, b_init=None, name=None):
        super().__init__(name=name)
        if b_init is None:
          b_init = hk.initializers.Constant(0.1)
        self.b_init = b_init

      def __call__(self, x):
        return hk.Linear(4, b_init=self.b_init)(x)
    """
    code = _convert(source, target)
    ns = "nn" if target == "linen" else "nnx"
    assert f"b_init = {ns}.initializers.constant(0.1)" in code
    assert "bias_init=" in code
    assert "`b_init` is now a Flax initializer" in code
    assert "import haiku" not in code


@pytest.mark.parametrize("target", TARGETS)
def test_parameter_without_a_default_keeps_the_layer_todo(target: str):
    """Nothing in the file says what callers pass: the layer stays Haiku, with its TODO."""
    source = """\
    import haiku as hk


    class Net(hk.Module):
      def __init__(self, w_init, name=None):
        super().__init__(name=name)
        self.w_init = w_init

      def __call__(self, x):
        return hk.Linear(4, w_init=self.w_init)(x)
    """
    code = _convert(source, target)
    assert "hk.Linear(4, w_init=" in code
    assert "TODO(haiku2flax:HK002)" in code


@pytest.mark.parametrize("target", TARGETS)
def test_helper_function_returning_initializers_converts(target: str):
    source = """\
    import haiku as hk


    def make_init(scale, uniform=False):
      if uniform:
        return hk.initializers.UniformScaling(scale)
      return hk.initializers.VarianceScaling(scale)


    class Net(hk.Module):
      def __call__(self, x):
        return hk.Linear(4, w_init=make_init(2.0))(x)
    """
    code = _convert(source, target)
    ns = "nn" if target == "linen" else "nnx"
    assert f"return {ns}.initializers.variance_scaling(scale ** 2, 'fan_in', 'uniform')" in code
    assert f"return {ns}.initializers.variance_scaling(scale, 'fan_in', 'truncated_normal')" in code
    assert "kernel_init=make_init(2.0)" in code
    assert "TODO" not in code


@pytest.mark.parametrize("target", TARGETS)
def test_helper_called_haiku_style_or_returning_other_values_is_left_alone(target: str):
    source = """\
    import haiku as hk
    import jax.numpy as jnp


    def make_init():
      return hk.initializers.RandomNormal(0.5)


    def other_init(custom):
      if custom:
        return custom
      return hk.initializers.RandomNormal(0.5)


    table = make_init()([3], jnp.float32)


    class Net(hk.Module):
      def __call__(self, x):
        return hk.Linear(4, w_init=make_init(), b_init=other_init(None))(x)
    """
    code = _convert(source, target)
    assert code.count("return hk.initializers.RandomNormal(0.5)") == 2
    assert "is not an `hk.initializers` call the tables know" in code


@pytest.mark.parametrize("target", TARGETS)
def test_fan_based_default_refused_for_a_bias(target: str):
    source = """\
    import haiku as hk


    class Net(hk.Module):
      def __init__(self, b_init=None, name=None):
        super().__init__(name=name)
        self.b_init = b_init or hk.initializers.VarianceScaling(2.0)

      def __call__(self, x):
        return hk.Linear(4, b_init=self.b_init)(x)
    """
    assert "reads the parameter's fans" in _convert(source, target)


@pytest.mark.parametrize("target", TARGETS)
def test_partial_of_an_initializer_class_stays_a_todo(target: str):
    """`functools.partial(hk.initializers.X, ...)` is not converted: its callers' arguments would have to
    follow the table's renames and defaults; both the binding and the layer say so."""
    source = """\
    import functools

    import haiku as hk

    scaled = functools.partial(hk.initializers.VarianceScaling, mode="fan_avg")


    class Net(hk.Module):
      def __call__(self, x):
        return hk.Linear(4, w_init=scaled(0.5))(x)
    """
    code = _convert(source, target)
    assert "TODO(haiku2flax:HK000): `hk.initializers.VarianceScaling`" in code
    assert "TODO(haiku2flax:HK002): `hk.Linear` w_init: `scaled(0.5)`" in code


@pytest.mark.parametrize("target", TARGETS)
def test_initializers_the_files_callers_pass_convert_at_the_call(target: str):
    source = ENCODER + """\


    def forward(x):
      x = Encoder(4, w_init=hk.initializers.RandomNormal(0.3))(x)
      return Encoder(4, hk.initializers.Constant(0.5))(x)
    """
    code = _convert(source, target)
    ns = "nn" if target == "linen" else "nnx"
    assert f"w_init={ns}.initializers.normal(0.3)" in code
    assert f"4, {ns}.initializers.constant(0.5)" in code
    assert code.count("is now a Flax initializer") == 1  # at the default, not at the calls that pass one


@pytest.mark.parametrize("target", TARGETS)
def test_caller_passing_something_else_keeps_the_haiku_default(target: str):
    source = ENCODER + """\


    def forward(x):
      return Encoder(4, w_init=lambda shape, dtype: hk.initializers.Constant(0.5)(shape, dtype))(x)
    """
    code = _convert(source, target)
    assert "w_init or hk.initializers.TruncatedNormal(stddev=0.1)" in code
    assert "TODO(haiku2flax:HK002)" in code


@pytest.mark.parametrize("target", TARGETS)
def test_parameter_of_the_same_name_elsewhere_does_not_make_a_bare_one_known(target: str):
    """`Head` passes its own `w_init` on as it came: `Encoder`'s default says nothing about it. (Names are
    pooled over the file, so `Encoder` keeps its Haiku default too, with its TODO: never a silent guess.)"""
    source = ENCODER + """\


    class Head(hk.Module):
      def __init__(self, w_init, name=None):
        super().__init__(name=name)
        self.linear = hk.Linear(2, w_init=w_init)

      def __call__(self, x):
        return self.linear(x)
    """
    code = _convert(source, target)
    assert "hk.Linear(2, w_init=" in code
    assert "TODO(haiku2flax:HK002): `hk.Linear` w_init:" in code


PASSED_ON = """\
    import haiku as hk
    import jax
    import jax.numpy as jnp


    class Tower(hk.Module):
      def __init__(self, width, w_init=None, b_init=None, name=None):
        super().__init__(name=name)
        self.width = width
        self.w_init = w_init
        self.b_init = b_init

      def __call__(self, x):
        x = hk.Linear(self.width, w_init=self.w_init, b_init=self.b_init)(x)
        return hk.Conv1D(2, kernel_shape=3, w_init=self.w_init)(x[..., None])


    def forward(x):
      return Tower(4)(x)


    model = hk.transform(forward)
    params = model.init(jax.random.key(0), jnp.ones((2, 5)))
"""


def test_linen_initializer_passed_on_from_a_parameter_defaulting_to_none_falls_back_to_the_flax_default():
    code = _convert(PASSED_ON, "linen")
    assert "nn.Dense(self.width, kernel_init=self.w_init or nn.Dense.kernel_init, bias_init=self.b_init or nn.Dense.bias_init)" in code, code
    assert "nn.Conv(2, (3,), kernel_init=self.w_init or nn.Conv.kernel_init)" in code, code
    assert "TODO" not in code, code


def test_linen_passed_on_initializers_verify_equivalent(tmp_path: Path):
    path = tmp_path / "model.py"
    path.write_text(textwrap.dedent(PASSED_ON), encoding="utf-8")
    result = verify(path, "linen", "model", ["f32[2,5]"], steps=1)
    assert result.ok, report_text(result)


@pytest.mark.parametrize(
    "change",
    [
        ("w_init=None, b_init=None", "w_init, b_init=None"),  # no default: what callers pass is not known
        ("Tower(4)(x)", "Tower(4, w_init=jnp.ones)(x)"),  # a caller passes something else
    ],
    ids=["no-default", "caller-passes-another-value"],
)
def test_linen_initializer_that_may_not_be_none_or_a_callers_stays_under_a_todo(change: tuple[str, str]):
    code = _convert(PASSED_ON.replace(*change), "linen")
    assert "TODO(haiku2flax:HK002): `hk.Linear` w_init: `self.w_init` is not an `hk.initializers` call" in code, code
    assert "nn.Dense.kernel_init" not in code, code
