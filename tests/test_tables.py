"""The rule tables checked against the real libraries, and every table layer run side by side.

1. Signatures: each entry's Haiku arguments are the Haiku constructor's (in order: positional calls are
   bound by it), and every Flax argument it writes exists on the Flax API, positional ones in place.
2. Side by side: each layer is built from a sample Haiku call, converted by the table, given the Haiku
   weights through the table's `params`/`state` mapping, and must compute the same outputs; every Haiku
   parameter and every Flax variable must be mapped.
3. Conversions: what each argument conversion writes, and what it leaves with a TODO.
"""

from __future__ import annotations

import functools
import inspect
import re

import flax.linen as nn
import haiku as hk
import jax
import jax.numpy as jnp
import libcst as cst
import numpy as np
import pytest
from flax import nnx

from haiku2flax.engine import convert_source
from haiku2flax.engine.calls import CONVERTERS, INPUT_SIZE, PLACEHOLDER, code, convert_construct_call, convert_layer_call_args
from haiku2flax.engine.context import Context
from haiku2flax.engine.names import ImportedNames
from haiku2flax.engine.tables import CONVERSIONS, TARGETS, Construct, TableError, load_tables

TABLES = load_tables()
NAMESPACES = {"linen": nn, "nnx": nnx}


def resolve(namespace: object, dotted: str) -> object:
    return functools.reduce(getattr, dotted.split("."), namespace)


def parameters(function: object, skip_self: bool = False) -> list[inspect.Parameter]:
    found = list(inspect.signature(function).parameters.values())  # type: ignore[arg-type]
    return found[1:] if skip_self else found


def flax_parameters(target: str, api: str) -> list[inspect.Parameter]:
    """The Flax constructor's parameters (a Linen dataclass's fields; an NNX `__init__`; a function's)."""
    obj = resolve(NAMESPACES[target], api)
    if target == "nnx" and isinstance(obj, type):
        return parameters(obj.__init__, skip_self=True)
    return parameters(obj)


ENTRIES = [pytest.param(c, id=c.haiku) for c in [*TABLES.constructs.values(), *TABLES.initializers.values()]]


# -- 1. signatures ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("construct", ENTRIES)
def test_haiku_signature(construct: Construct):
    haiku_api = resolve(hk, construct.haiku)
    assert construct.haiku_args == tuple(p.name for p in parameters(haiku_api))
    if construct.haiku_call_args:
        assert construct.haiku_call_args == tuple(p.name for p in parameters(haiku_api.__call__, skip_self=True))
    known = set(construct.haiku_args) | set(construct.haiku_call_args)
    for field in ("convert", "defaults", "todo"):
        assert set(getattr(construct, field)) <= known, field
    for target in TARGETS:
        api = construct.targets[target]
        assert set(api.args) | set(api.flax_default) <= set(construct.haiku_args)
        assert set(api.call_args) | set(api.negated) <= set(construct.haiku_call_args)


@pytest.mark.parametrize("construct", ENTRIES)
@pytest.mark.parametrize("target", TARGETS)
def test_flax_signature(construct: Construct, target: str):
    api = construct.targets[target]
    flax = flax_parameters(target, api.api)
    names = [p.name for p in flax]
    written = {n for n in api.args.values() if n} | set(api.add) | set(api.positional) | set(api.inputs)
    assert written <= set(names), sorted(written - set(names))
    # Positional arguments are written in place: they must be the API's leading positional parameters.
    assert list(api.positional) == names[: len(api.positional)]
    assert all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in flax[: len(api.positional)])
    if api.call_args:
        call = parameters(resolve(NAMESPACES[target], api.api).__call__, skip_self=True)
        assert set(api.call_args.values()) <= {p.name for p in call}
        assert call[0].name == api.call_args[construct.haiku_call_args[0]]  # the input stays positional


@pytest.mark.parametrize("construct", ENTRIES)
def test_templates_and_literals_parse(construct: Construct):
    readable = set(construct.haiku_args) | set(construct.defaults) | {INPUT_SIZE}
    templates = [t for api in construct.targets.values() for t in api.add.values()]
    if construct.output_size is not None and PLACEHOLDER.search(construct.output_size):
        templates.append(construct.output_size)
    for template in templates:
        assert set(PLACEHOLDER.findall(template)) <= readable, template
        cst.parse_expression(PLACEHOLDER.sub(r"\1", template))
    for api in construct.targets.values():
        for values in api.flax_default.values():
            for value in values:
                cst.parse_expression(value)


def test_every_conversion_is_implemented():
    assert set(CONVERTERS) == set(CONVERSIONS)


# -- 2. side by side --------------------------------------------------------------------------------------
# For every table layer: a sample Haiku constructor call, the input's shape (ids for Embed), and the call's
# keyword arguments at init and at the compared apply.
SAMPLES = {
    "Linear": ("hk.Linear(4)", (2, 3)),
    "Conv1D": ("hk.Conv1D(4, 3, stride=2, padding=hk.pad.causal)", (2, 9, 3)),
    "Conv2D": ("hk.Conv2D(4, 3, rate=2, padding=(1, 2))", (2, 7, 7, 3)),
    "Conv3D": ("hk.Conv3D(6, (1, 2, 3), feature_group_count=3, padding='VALID')", (2, 5, 5, 5, 3)),
    "Conv1DTranspose": ("hk.Conv1DTranspose(5, 3, stride=2)", (2, 5, 3)),
    "Conv2DTranspose": ("hk.Conv2DTranspose(3, 3, stride=2)", (2, 4, 4, 3)),  # Cin == Cout: only the swap tells
    "Conv3DTranspose": ("hk.Conv3DTranspose(2, 2, padding='VALID')", (2, 3, 3, 3, 3)),
    "DepthwiseConv1D": ("hk.DepthwiseConv1D(2, 3)", (2, 7, 3)),
    "DepthwiseConv2D": ("hk.DepthwiseConv2D(1, 3, stride=2)", (2, 6, 6, 3)),
    "DepthwiseConv3D": ("hk.DepthwiseConv3D(3, 2, padding='VALID')", (2, 4, 4, 4, 2)),
    "BatchNorm": ("hk.BatchNorm(True, True, 0.9)", (4, 3, 3, 5), {"is_training": True}, {"is_training": False}),
    "LayerNorm": ("hk.LayerNorm(-1, True, True)", (2, 5, 6)),
    "RMSNorm": ("hk.RMSNorm(-1)", (2, 6)),
    "GroupNorm": ("hk.GroupNorm(2)", (2, 4, 4, 6)),
    "InstanceNorm": ("hk.InstanceNorm(True, True)", (2, 4, 4, 3)),
    "Embed": ("hk.Embed(11, 4)", (2, 5)),
}
NAMES = ImportedNames.from_module(cst.parse_module("import haiku as hk\n"))


# Layers whose calls or parameter trees this one-input, flat-tree test cannot express, run side by side by
# their fixtures instead (`tests/test_fixtures_verify.py`, both targets).
FIXTURE_SAMPLES = {"MultiHeadAttention": "fixtures/attention", "LSTM": "fixtures/recurrent", "VanillaRNN": "fixtures/recurrent"}


def test_every_layer_has_a_sample():
    assert set(SAMPLES) | set(FIXTURE_SAMPLES) == set(TABLES.constructs)


def _sample(haiku_api: str):
    constructor, shape, *kwargs = SAMPLES[haiku_api]
    init_kwargs, apply_kwargs = kwargs or ({}, {})
    key = jax.random.key(0)
    if haiku_api == "Embed":
        x = jax.random.randint(key, shape, 0, 11)
    else:
        x = 0.5 * jax.random.normal(key, shape) + 0.3
    return constructor, x, init_kwargs, apply_kwargs


def _haiku_leaves(tree) -> dict[str, jax.Array]:
    """`{'conv2_d': {'w': …}}` -> `{'w': …}`; `{'batch_norm/~/mean_ema': {'average': …}}` -> `{'mean_ema/average': …}`."""
    out = {}
    for module, leaves in tree.items():
        relative = "/".join(part for part in module.split("/")[1:] if part != "~")
        for name, value in leaves.items():
            out[f"{relative}/{name}" if relative else name] = value
    return out


RESHAPES = {None: lambda v: v, "flatten": lambda v: v.reshape(-1), "swap_last": lambda v: jnp.swapaxes(v, -1, -2)}


def _flax_call(call: str, construct: Construct, target: str, kwargs: dict) -> str:
    """`layer.apply(variables, x, use_running_average=not False)`: the Haiku call's arguments converted by the table."""
    keywords = [cst.Arg(cst.parse_expression(repr(v)), keyword=cst.Name(k)) for k, v in kwargs.items()]
    args = convert_layer_call_args(cst.Call(cst.Name("f"), [cst.Arg(cst.Name("x")), *keywords]), construct, target)
    flax_call = cst.parse_expression(call)
    return code(flax_call.with_changes(args=[*flax_call.args, *args]))  # type: ignore[attr-defined]


@pytest.mark.parametrize("haiku_api", sorted(SAMPLES))
@pytest.mark.parametrize("target", TARGETS)
def test_side_by_side(haiku_api: str, target: str):
    construct = TABLES.constructs[haiku_api]
    constructor, x, init_kwargs, apply_kwargs = _sample(haiku_api)
    namespace = {"hk": hk, "nn": nn, "nnx": nnx, "jnp": jnp, "x": x, "key": jax.random.key(3)}

    forward = hk.transform_with_state(lambda x, **kw: eval(constructor, namespace)(x, **kw))
    params, state = forward.init(jax.random.key(1), x, **init_kwargs)
    params = jax.tree.map(lambda p: p + 0.1 * jax.random.normal(jax.random.key(2), p.shape), params)  # no zero biases
    with jax.default_matmul_precision("highest"):
        expected, _ = forward.apply(params, state, None, x, **apply_kwargs)

    haiku_leaves = {**_haiku_leaves(params), **_haiku_leaves(state)}
    assert set(_haiku_leaves(params)) <= set(construct.params), "Haiku parameters missing from the table"
    assert set(construct.params) | set(construct.state) <= set(haiku_leaves), "table leaves that Haiku does not have"
    converted = {
        leaf.name: RESHAPES[leaf.reshape](haiku_leaves[haiku_name])
        for table in (construct.params, construct.state)
        for haiku_name, leaf in table.items()
    }

    ctx = Context(target, TABLES, NAMES)
    extra = {"rngs": cst.parse_expression("nnx.Rngs(0)")} if target == "nnx" else None
    ns = "nn" if target == "linen" else "nnx"
    inputs = (cst.Integer(str(x.shape[-1])),)
    flax_layer = convert_construct_call(cst.parse_expression(constructor), construct, target, ns, inputs, extra, ctx=ctx)
    namespace["layer"] = layer = eval(code(flax_layer), namespace)
    if target == "linen":
        variables = eval(_flax_call("layer.init(key)", construct, target, init_kwargs), namespace)
        collections = {name: collection for collection, leaves in variables.items() for name in leaves}
        shapes = {name: variables[collection][name].shape for name, collection in collections.items()}
    else:
        names = [name for kind in (nnx.Param, nnx.BatchStat) for name in nnx.to_pure_dict(nnx.state(layer, kind))]
        shapes = {name: getattr(layer, name)[...].shape for name in names}
    assert {name: value.shape for name, value in converted.items()} == shapes

    with jax.default_matmul_precision("highest"):
        if target == "linen":
            namespace["variables"] = {c: {n: converted[n] for n in collections if collections[n] == c} for c in variables}
            actual = eval(_flax_call("layer.apply(variables)", construct, target, apply_kwargs), namespace)
        else:
            for name, value in converted.items():
                getattr(layer, name)[...] = value
            actual = eval(_flax_call("layer()", construct, target, apply_kwargs), namespace)
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=1e-5, atol=1e-5)


# -- 3. conversions ---------------------------------------------------------------------------------------
def converted_line(statement: str, target: str = "linen") -> str:
    """The conversion of `y = <statement>` inside a compact method / NNX `__call__`: the layer's line."""
    source = f"import haiku as hk\n\n\nclass M(hk.Module):\n  def __call__(self, x):\n    y = {statement}\n    return y\n"
    out = convert_source(source, target).code
    body = out.split("def __init__", 1)[1] if target == "nnx" and "def __init__" in out else out.split("def __call__", 1)[1]
    lines = [line.strip() for line in body.splitlines()]
    wanted = [line for line in lines if line.startswith(("self.", "y =", "# TODO")) and "rngs: nnx.Rngs" not in line]
    return "\n".join(wanted[:2] if wanted and wanted[0].startswith("# TODO") else wanted[:1])


# (Haiku statement, Linen line), by what the case shows.
CONVERTS = {
    "int kernel -> tuple of ndim": ("hk.Conv2D(8, 3)(x)", "nn.Conv(8, (3, 3))(x)"),
    "1-sequence kernel -> 1-tuple": ("hk.Conv1D(8, [5])(x)", "nn.Conv(8, (5,))(x)"),
    "1-sequence kernel replicated": ("hk.Conv3D(8, (3,))(x)", "nn.Conv(8, (3, 3, 3))(x)"),
    "ints stay ints: Flax broadcasts them": (
        "hk.Conv2D(8, 3, stride=2, rate=(1, 2))(x)",
        "nn.Conv(8, (3, 3), strides=2, kernel_dilation=(1, 2))(x)",
    ),
    "1-sequence stride replicated": ("hk.Conv2D(8, 3, stride=(2,))(x)", "nn.Conv(8, (3, 3), strides=(2, 2))(x)"),
    "a single pair pads every dimension": (
        "hk.Conv2D(8, 3, padding=(1, 2))(x)",
        "nn.Conv(8, (3, 3), padding=((1, 2), (1, 2)))(x)",
    ),
    "1-sequence of pairs replicated": (
        "hk.Conv2D(8, 3, padding=[(0, 1)])(x)",
        "nn.Conv(8, (3, 3), padding=((0, 1), (0, 1)))(x)",
    ),
    "pad.causal in 1-D": ("hk.Conv1D(8, 3, padding=hk.pad.causal)(x)", "nn.Conv(8, (3,), padding='CAUSAL')(x)"),
    "pad.same with a literal kernel and rate": (
        "hk.Conv2D(8, 4, rate=2, padding=hk.pad.same)(x)",
        "nn.Conv(8, (4, 4), kernel_dilation=2, padding=((3, 3), (3, 3)))(x)",
    ),
    "pad.valid": ("hk.Conv2D(8, 3, padding=hk.pad.valid)(x)", "nn.Conv(8, (3, 3), padding='VALID')(x)"),
    "channels-last data_format dropped": ("hk.Conv2D(8, 3, data_format='channels_last')(x)", "nn.Conv(8, (3, 3))(x)"),
    "output_shape None dropped": ("hk.Conv2DTranspose(8, 3, output_shape=None)(x)", "nn.ConvTranspose(8, (3, 3))(x)"),
    "depthwise: channels read from the input": (
        "hk.DepthwiseConv2D(3, 3)(x)",
        "nn.Conv(x.shape[-1] * 3, (3, 3), feature_group_count=x.shape[-1])(x)",
    ),
    "layer norm param_axis": (
        "hk.LayerNorm(-1, True, False, param_axis=1)(x)",
        "nn.LayerNorm(use_scale=True, use_bias=False, feature_axes=1, epsilon=1e-5, use_fast_variance=False)(x)",
    ),
    "the user's eps and variance win": (
        "hk.LayerNorm([1, 2], True, True, eps=1e-3, use_fast_variance=True)(x)",
        "nn.LayerNorm(reduction_axes=[1, 2], use_scale=True, use_bias=True, epsilon=1e-3, use_fast_variance=True)(x)",
    ),
    "group norm default axis dropped": (
        "hk.GroupNorm(4, axis=slice(1, None))(x)",
        "nn.GroupNorm(num_groups=4, epsilon=1e-5, use_fast_variance=False)(x)",
    ),
    "embed default lookup style dropped": (
        "hk.Embed(10, 4, lookup_style=hk.EmbedLookupStyle.ARRAY_INDEX)(x)",
        "nn.Embed(10, 4)(x)",
    ),
    "Haiku's default stddev written": (
        "hk.Linear(4, w_init=hk.initializers.RandomNormal())(x)",
        "nn.Dense(4, kernel_init=nn.initializers.normal(1.0))(x)",
    ),
    "truncated normal bounds": (
        "hk.Linear(4, b_init=hk.initializers.TruncatedNormal(mean=0.0, upper=1.0))(x)",
        "nn.Dense(4, bias_init=nn.initializers.truncated_normal(1.0, upper=1.0))(x)",
    ),
    "uniform from 0": (
        "hk.Linear(4, w_init=hk.initializers.RandomUniform(0, 3))(x)",
        "nn.Dense(4, kernel_init=nn.initializers.uniform(3))(x)",
    ),
    "variance scaling defaults written": (
        "hk.Linear(4, w_init=hk.initializers.VarianceScaling())(x)",
        "nn.Dense(4, kernel_init=nn.initializers.variance_scaling(1.0, 'fan_in', 'truncated_normal'))(x)",
    ),
    "uniform scaling squared": (
        "hk.Linear(4, w_init=hk.initializers.UniformScaling(2.0))(x)",
        "nn.Dense(4, kernel_init=nn.initializers.variance_scaling(4.0, 'fan_in', 'uniform'))(x)",
    ),
    "uniform scaling of a name": (
        "hk.Linear(4, w_init=hk.initializers.UniformScaling(s))(x)",
        "nn.Dense(4, kernel_init=nn.initializers.variance_scaling(s ** 2, 'fan_in', 'uniform'))(x)",
    ),
    "kernel shape in a variable": (
        "hk.Conv2D(8, k)(x)",
        "nn.Conv(8, (k,) * 2 if isinstance(k, int) else tuple(k) if len(k) == 2 else tuple(k) * 2)(x)",
    ),
    "orthogonal axis": (
        "hk.Linear(4, w_init=hk.initializers.Orthogonal(axis=0))(x)",
        "nn.Dense(4, kernel_init=nn.initializers.orthogonal(column_axis=0))(x)",
    ),
}


@pytest.mark.parametrize(("statement", "expected"), CONVERTS.values(), ids=CONVERTS)
def test_converts(statement: str, expected: str):
    assert converted_line(statement) == f"y = {expected}"


# (Haiku statement, part of the TODO's reason), by why it is left as it was.
TODOS = {
    "kernel shape computed": ("hk.Conv2D(8, k + 1)(x)", "write the kernel shape as a tuple of 2 ints"),
    "kernel shape of the wrong rank": ("hk.Conv2D(8, (3, 3, 3))(x)", "write the kernel shape as a tuple of 2 ints"),
    "padding not literal": ("hk.Conv2D(8, 3, padding=pad)(x)", "write 'SAME', 'VALID' or one (low, high) pair"),
    "pad function, rate not literal": ("hk.Conv2D(8, 3, rate=r, padding=hk.pad.same)(x)", "need a literal kernel shape and rate"),
    # a literal data_format="NCHW" converts in Linen (tests/test_channels_first.py); one read from a variable cannot
    "channels-first": ("hk.Conv2D(8, 3, data_format=fmt)(x)", "Flax convolutions are channels-last"),
    "call-time precision": ("hk.Conv2D(8, 3)(x, precision=p)", "pass `precision=` to the Flax constructor"),
    "transpose output_shape": ("hk.Conv2DTranspose(8, 3, output_shape=(8, 8))(x)", "Flax has no `output_shape`"),
    "transpose mask layout": ("hk.Conv2DTranspose(8, 3, mask=m)(x)", "pass `mask=jnp.swapaxes(mask, -1, -2)`"),
    "transpose kernel fans": ("hk.Conv2DTranspose(8, 3, w_init=hk.initializers.Orthogonal())(x)", "reads the parameter's fans"),
    "axis slice": ("hk.LayerNorm(slice(1, None), True, True)(x)", "Flax takes the axes as ints"),
    "group norm axis": ("hk.GroupNorm(4, axis=(1, 2))(x)", "Flax's GroupNorm reduces over all non-batch axes"),
    "batch norm axis": ("hk.BatchNorm(True, True, 0.9, axis=(0, 1, 2))(x, True)", "Haiku's `axis` lists the axes to reduce"),
    "call-time scale": ("hk.LayerNorm(-1, True, True)(x, scale=s)", "Flax takes no call-time scale"),
    "embed one-hot": ("hk.Embed(10, 4, lookup_style='ONE_HOT')(x)", "Flax looks ids up by index only"),
    "embedding matrix": ("hk.Embed(embedding_matrix=m)(x)", "load the matrix into the `embedding` parameter"),
    "initializer variable": ("hk.Linear(4, w_init=init)(x)", "Flax initializers take `(key, shape, dtype)`"),
    "initializer lambda": ("hk.Linear(4, w_init=lambda s, d: jnp.ones(s, d))(x)", "Flax initializers take `(key, shape, dtype)`"),
    "identity initializer": ("hk.Linear(4, w_init=hk.initializers.Identity())(x)", "write one (e.g. from `jax.nn.initializers`)"),
    "normal with a mean": ("hk.Linear(4, w_init=hk.initializers.RandomNormal(1.0, 0.5))(x)", "jax's `normal` has mean 0"),
    "uniform not from 0": ("hk.Linear(4, w_init=hk.initializers.RandomUniform(-1.0, 1.0))(x)", "`uniform` draws from [0, scale)"),
    "fan_in_axes": ("hk.Linear(4, w_init=hk.initializers.VarianceScaling(fan_in_axes=(0,)))(x)", "map the axes by hand"),
    "fan-based init on a bias": ("hk.Linear(4, b_init=hk.initializers.VarianceScaling())(x)", "reads the parameter's fans"),
}


@pytest.mark.parametrize(("statement", "reason"), TODOS.values(), ids=TODOS)
@pytest.mark.parametrize("target", TARGETS)
def test_leaves_a_todo(statement: str, reason: str, target: str):
    line = converted_line(statement, target)
    assert line.startswith("# TODO(haiku2flax:HK002)") and reason in line, line
    assert "hk." in line.splitlines()[-1]  # the layer itself is left as it was


def test_depthwise_needs_the_input_channels_in_linen():
    source = (
        "import haiku as hk\n\n\nclass M(hk.Module):\n  def __init__(self, name=None):\n    super().__init__(name=name)\n"
        "    self.conv = hk.DepthwiseConv2D(2, 3)\n\n  def __call__(self, x):\n    return self.conv(x)\n"
    )
    out = convert_source(source, "linen").code
    assert "needs its input feature size" in out and "hk.DepthwiseConv2D(2, 3)" in out


def test_initializers_resolve_through_aliases():
    source = (
        "from haiku import initializers as hki\nimport haiku as hk\n\n\nclass M(hk.Module):\n"
        "  def __call__(self, x):\n    return hk.Linear(2, w_init=hki.Constant(0.5))(x)\n"
    )
    assert "nn.Dense(2, kernel_init=nn.initializers.constant(0.5))(x)" in convert_source(source, "linen").code


BAD_TABLE = """
[[construct]]
haiku = "Linear"
haiku_args = []
convert = { w_init = "nope" }

[construct.flax]
api = "Dense"
"""


def test_table_error_names_unknown_conversions(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(BAD_TABLE)
    with pytest.raises(TableError, match=re.escape("unknown conversion ['nope']")):
        load_tables((path,))
