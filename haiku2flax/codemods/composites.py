"""`hk.nets.MLP`, `hk.Sequential` and `hk.BatchApply`: layers that hold or wrap other layers.

What it converts:
- `hk.nets.MLP([300, 10])` -> Linen `nn.Sequential([nn.Dense(300), nn.relu, nn.Dense(10)])`; NNX
  `nnx.Sequential(nnx.Linear(din, 300, rngs=rngs), nnx.relu, nnx.Linear(300, 10, rngs=rngs))`, built in
  `__init__`. `with_bias`, `w_init`, `b_init` go to every layer (as `hk.Linear`'s do), `activation`
  (default relu) goes between the layers and, with `activate_final=True`, after the last one.
- `hk.Sequential([hk.Linear(300), jax.nn.relu, hk.Linear(10)])` -> `nn.Sequential([...])` /
  `nnx.Sequential(...)` (varargs), each layer converted by its own rule; NNX chains the input sizes
  from one layer to the next (`hk.Flatten()` and pooling modules inside become lambdas). Layers built
  one per size, `[*[hk.Linear(s) for s in sizes], ...]` or the whole list so, chain in NNX as
  `*[nnx.Linear(in_features, s, rngs=rngs) for in_features, s in zip((din, *sizes[:-1]), sizes)]`.
- `hk.BatchApply(layer)(x)` for a table layer whose Flax counterpart maps over any leading axes
  (`nn.Dense`, `nn.Conv`, `nn.Embed`, `nn.LayerNorm`, `nn.RMSNorm`) -> `layer(x)`: merging the
  leading axes, applying and splitting them back is what Flax does already.

Why: Flax has no MLP class; a Sequential of Dense layers is the same function with the same
parameters in the same order (`mlp/~/linear_0` -> `layers_0` / `layers/0`). NNX builds layers eagerly,
so every `nnx.Linear` needs its input size: the first from dataflow, the next from the previous layer.
An MLP whose `output_sizes` is computed (`(*self.units, n)`, a variable) cannot be written out layer by
layer: it becomes `HaikuMLP(sizes, ...)` (NNX `HaikuMLP(din, sizes, ..., rngs=rngs)`), a module the file
gains once that builds one Dense / Linear per size in a loop (NNX chains the input sizes with
`zip((din, *sizes[:-1]), sizes)`) and applies the activation between them; its output size is the last size.
Left as TODOs, with why: an MLP called with `dropout_rate`/`rng` (Haiku drops after each
activation, with keys from `rng`: add Dropout layers by hand), a Sequential of anything but a literal
list or such a comprehension, NNX Sequential elements that are neither table layers nor functions,
and `hk.BatchApply` of anything else (write the merge/apply/split out: `y = f(x.reshape(-1, *x.shape[n:]))`, then
`y.reshape(*x.shape[:n], *y.shape[1:])`).

Example::

    hk.nets.MLP([300, 10], activation=jax.nn.gelu)(x)
    nn.Sequential([nn.Dense(300), jax.nn.gelu, nn.Dense(10)])(x)

    hk.nets.MLP((*self.units, self.size), activate_final=True)(x)
    HaikuMLP((*self.units, self.size), activate_final=True)(x)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import libcst as cst

from ..engine.analysis import Names
from ..engine.calls import BoundCall, Unconvertible, code, convert_construct_call, keyword_arg, literal, output_size
from ..engine.context import Context, attr, rename_namespace
from ..engine.registry import Status, register
from ..engine.tables import Construct
from .interfaces import LINEN_CALLS, NNX_CALLS, CallSite, FileRoom, LinenMethod, NnxClass, NnxMethod
from .pooling import pool_function
from .reshapes import output_feature_size, reshape_function

RULE_MLP = register("HK014", "mlp", Status.PARTIAL, "hk.nets.MLP -> nn.Sequential / nnx.Sequential of Dense / Linear layers", __name__, apis=("nets.MLP",))
RULE_SEQUENTIAL = register("HK015", "sequential", Status.PARTIAL, "hk.Sequential -> nn.Sequential / nnx.Sequential", __name__, apis=("Sequential",))
RULE_BATCH_APPLY = register("HK016", "batch-apply", Status.PARTIAL, "hk.BatchApply(layer) -> the layer (Flax maps over leading axes)", __name__, apis=("BatchApply",))

MLP_ARGS = ("output_sizes", "w_init", "b_init", "with_bias", "activation", "activate_final", "name")
MLP_CALL_ARGS = ("inputs", "dropout_rate", "rng")
SEQUENTIAL_ARGS = ("layers", "name")
BATCH_APPLY_ARGS = ("f", "num_dims")
RULES = {"nets.MLP": RULE_MLP, "Sequential": RULE_SEQUENTIAL}
# Flax layers that apply to the trailing axes and map over any number of leading ones.
LEADING_AXES_MAPPED = ("Linear", "Embed", "LayerNorm", "RMSNorm", "Conv1D", "Conv2D", "Conv3D")

MLP_CLASS = "HaikuMLP"  # the module an MLP over computed sizes becomes, defined once in the file that needs it
MLP_DOC = '"""hk.nets.MLP over sizes known at run time: a {layer} layer per size, the activation between them."""'
MLP_LOOP = """
  def __call__(self, x):
    for index, layer in enumerate({layers}):
      x = layer(x)
      if index < len({layers}) - 1 or self.activate_final:
        x = self.activation(x)
    return x
"""
MLP_SOURCE = {
    "linen": f"""
class {MLP_CLASS}(nn.Module):
  {MLP_DOC.format(layer="Dense")}

  output_sizes: Sequence[int]
  activation: Callable[[jax.Array], jax.Array] = nn.relu
  activate_final: bool = False
  use_bias: bool = True
  kernel_init: nn.initializers.Initializer = nn.initializers.lecun_normal()
  bias_init: nn.initializers.Initializer = nn.initializers.zeros_init()

  def setup(self):
    self.layers = [
        nn.Dense(size, use_bias=self.use_bias, kernel_init=self.kernel_init, bias_init=self.bias_init)
        for size in self.output_sizes
    ]
{MLP_LOOP.format(layers="self.layers")}""",
    "nnx": f"""
class {MLP_CLASS}(nnx.Module):
  {MLP_DOC.format(layer="Linear")}

  def __init__(
      self, in_features: int, output_sizes: Sequence[int], *, activation: Callable[[jax.Array], jax.Array] = nnx.relu,
      activate_final: bool = False, use_bias: bool = True, kernel_init: nnx.Initializer = nnx.initializers.lecun_normal(),
      bias_init: nnx.Initializer = nnx.initializers.zeros_init(), rngs: nnx.Rngs,
  ):
    sizes = tuple(output_sizes)
    self.layers = nnx.List([
        nnx.Linear(din, dout, use_bias=use_bias, kernel_init=kernel_init, bias_init=bias_init, rngs=rngs)
        for din, dout in zip((in_features, *sizes[:-1]), sizes)
    ])
    self.activation = activation
    self.activate_final = activate_final
{MLP_LOOP.format(layers="self.layers")}""",
}


def composite_api(ctx: Context, call: cst.Call) -> str | None:
    """"nets.MLP" or "Sequential" for a constructor call of one, else None."""
    api = ctx.names.haiku_api(call.func)
    return api if api in RULES else None


@dataclass(frozen=True)
class _Layer:
    """One element of the Flax Sequential: a Haiku layer to convert, or a function kept as it is."""

    constructor: cst.Call | None  # a table layer's Haiku constructor
    function: cst.BaseExpression | None = None
    loop: cst.CompFor | None = None  # the layer is built once per size: `*[hk.Linear(size) for size in sizes]`


def _comprehension_layer(comprehension: cst.BaseExpression) -> _Layer:
    """`[hk.Linear(size) for size in sizes]` (spliced into the layers or the whole list): one layer per size."""
    if isinstance(comprehension, cst.ListComp | cst.GeneratorExp):
        loop, element = comprehension.for_in, comprehension.elt
        if loop.inner_for_in is None and not loop.ifs and isinstance(loop.target, cst.Name) and isinstance(element, cst.Call):
            return _Layer(element, loop=loop)
    raise Unconvertible(
        "the layers are not a literal list, nor one layer per size (`[hk.Linear(size) for size in sizes]`): "
        "NNX builds each layer with its input size; list them"
    )


def _literal_sizes(call: cst.Call) -> cst.List | cst.Tuple | None:
    """An MLP's `output_sizes` when the code lists them (`[300, 10]`), None when it computes them."""
    sizes = BoundCall.bind(call, MLP_ARGS, "hk.nets.MLP").args.get("output_sizes")
    if sizes is None:
        raise Unconvertible("`hk.nets.MLP` needs its `output_sizes`")
    if not isinstance(sizes, cst.List | cst.Tuple) or any(isinstance(e, cst.StarredElement) for e in sizes.elements):
        return None
    return sizes


def _linear_keywords(bound: dict[str, cst.BaseExpression]) -> list[cst.Arg]:
    """The arguments an MLP passes to each of its `hk.Linear` layers."""
    return [keyword_arg(k, v) for k, v in bound.items() if k in ("with_bias", "w_init", "b_init")]


def _mlp_layers(call: cst.Call, ctx: Context) -> list[_Layer]:
    bound = BoundCall.bind(call, MLP_ARGS, "hk.nets.MLP").args
    sizes = _literal_sizes(call)
    assert sizes is not None  # an MLP over computed sizes is a `computed_mlp`
    shared = _linear_keywords(bound)
    activation = bound.get("activation", attr(ctx.ns, "relu"))
    activate_final = literal(bound["activate_final"]) if "activate_final" in bound else False
    if activate_final not in (True, False):
        raise Unconvertible("`activate_final` is not a literal bool: write the layers out")
    layers = []
    for index, element in enumerate(sizes.elements):
        linear = cst.Call(cst.Attribute(cst.Name("hk"), cst.Name("Linear")), [cst.Arg(element.value), *shared])
        layers.append(_Layer(linear))
        if index < len(sizes.elements) - 1 or activate_final:
            layers.append(_Layer(None, activation))
    return layers


def computed_mlp(call: cst.Call, ctx: Context, inputs: tuple[cst.BaseExpression, ...] = ()) -> tuple[cst.Call, cst.BaseExpression]:
    """(`HaikuMLP(*inputs, sizes, ...)`, its output size) for an MLP over computed sizes; the file gains
    the `HaikuMLP` module. Each Linear's arguments are converted by the table, as `hk.Linear`'s are."""
    bound = BoundCall.bind(call, MLP_ARGS, "hk.nets.MLP").args
    sizes = bound["output_sizes"]
    linear = ctx.tables.get("Linear")
    assert linear is not None  # the tables always hold hk.Linear
    layer = cst.Call(cst.Attribute(cst.Name("hk"), cst.Name("Linear")), [cst.Arg(cst.Integer("1")), *_linear_keywords(bound)])
    layer_args = convert_construct_call(layer, linear, ctx.target, ctx.ns, inputs, ctx=ctx).args
    keywords = [keyword_arg(k, bound[k]) for k in ("activation", "activate_final") if k in bound]
    keywords += [a for a in layer_args if a.keyword is not None]
    if ctx.target == "nnx":
        keywords.append(keyword_arg("rngs", cst.Name("rngs")))
    if "name" in bound:
        keywords.append(keyword_arg("name", bound["name"]))
    definition = cst.parse_module(MLP_SOURCE[ctx.target]).body[0]
    assert isinstance(definition, cst.ClassDef)
    ctx.need_definition(rename_namespace(definition, ctx.ns))
    ctx.needed_imports |= {("collections.abc", "Callable", None), ("collections.abc", "Sequence", None), ("jax", None, None)}
    ctx.need_target_import()
    last = sizes.elements[-1] if isinstance(sizes, cst.List | cst.Tuple) and sizes.elements else None
    output = last.value if isinstance(last, cst.Element) else cst.parse_expression(f"{_subscripted(sizes)}[-1]")
    return cst.Call(cst.Name(MLP_CLASS), [*(cst.Arg(i) for i in inputs), cst.Arg(sizes), *keywords]), output


def _sequential_layers(call: cst.Call) -> list[_Layer]:
    bound = BoundCall.bind(call, SEQUENTIAL_ARGS, "hk.Sequential").args
    layers = bound.get("layers")
    if layers is None:
        raise Unconvertible("`hk.Sequential` needs its layers")
    if not isinstance(layers, cst.List | cst.Tuple):
        return [_comprehension_layer(layers)]
    return [
        _comprehension_layer(e.value) if isinstance(e, cst.StarredElement)
        else _Layer(e.value) if isinstance(e.value, cst.Call)
        else _Layer(None, e.value)
        for e in layers.elements
    ]


def _name_arg(call: cst.Call, names: tuple[str, ...], api: str) -> list[cst.Arg]:
    name = BoundCall.bind(call, names, f"hk.{api}").args.get("name")
    return [keyword_arg("name", name)] if name is not None else []


def check_call_args(constructor: cst.Call, call_args: list[cst.Arg], ctx: Context) -> None:
    """Calling an MLP with dropout, or a Sequential with more than the input: Unconvertible."""
    api = composite_api(ctx, constructor)
    if api == "nets.MLP":
        bound = BoundCall.bind(cst.Call(cst.Name("_"), call_args), MLP_CALL_ARGS, "hk.nets.MLP(...)").args
        if bound.keys() - {"inputs"}:
            raise Unconvertible(
                "`hk.nets.MLP` with `dropout_rate`/`rng` drops out after each activation, with keys from `rng`: "
                f"put `{ctx.ns}.Dropout` layers into the Sequential by hand"
            )
    elif len(call_args) != 1 or call_args[0].keyword is not None or call_args[0].star:
        raise Unconvertible(f"`hk.{api}` passes extra arguments to its first layer only; call that layer by hand")


def nnx_sequential(
    constructor: cst.Call,
    ctx: Context,
    size: cst.BaseExpression | None,
    input_size: Callable[[str, cst.BaseExpression | None], cst.BaseExpression],
    attribute: str,
) -> tuple[cst.Call, cst.BaseExpression | None]:
    """(`nnx.Sequential(...)`, output size) for an MLP or Sequential whose input has feature size `size`.

    `input_size(name, size)` gives a layer's input size, or a constructor argument with a TODO.
    """
    from ..targets.nnx import ELEMENTWISE  # the targets import the codemods

    api = composite_api(ctx, constructor)
    if api == "nets.MLP" and _literal_sizes(constructor) is None:
        return computed_mlp(constructor, ctx, (input_size(attribute, size),))
    layers = _mlp_layers(constructor, ctx) if api == "nets.MLP" else _sequential_layers(constructor)
    elements: list[cst.Arg] = []
    for index, layer in enumerate(layers):
        if layer.function is not None:
            name = (code(layer.function).rsplit(".", 1)[-1]) if isinstance(layer.function, cst.Name | cst.Attribute) else ""
            elements.append(cst.Arg(layer.function))
            size = size if name in ELEMENTWISE else None
            continue
        built = layer.constructor
        assert built is not None  # a layer is a function or a constructor
        inner = ctx.names.haiku_api(built.func)
        if layer.loop is None and (inner == "Flatten" or inner == "Reshape"):
            elements.append(cst.Arg(reshape_function(built, inner)))
            size = output_feature_size(built, inner)
            continue
        if layer.loop is None and (inner == "MaxPool" or inner == "AvgPool"):
            elements.append(cst.Arg(pool_function(ctx.ns, built, inner)))
            continue
        construct = ctx.tables.get(inner) if inner is not None else None
        if construct is None:
            raise Unconvertible(f"`{code(built)}` in the Sequential: only table layers and functions convert; build it in `__init__` by hand")
        built = built.with_changes(args=[a for a in built.args if not (a.keyword is not None and a.keyword.value == "name")])
        if layer.loop is not None:
            _check_layer_per_size(built, construct, layer.loop)
        sized = tuple(input_size(f"{attribute}_{index}" if index else attribute, size) for _ in construct.targets["nnx"].inputs[:1])
        if layer.loop is not None:
            element, size = _layer_per_size(built, construct, layer.loop, sized, ctx)
            elements.append(element)
            continue
        new = convert_construct_call(built, construct, "nnx", ctx.ns, sized, {"rngs": cst.Name("rngs")}, ctx=ctx)
        elements.append(cst.Arg(new))
        size = output_size(built, construct, sized)
    return cst.Call(attr(ctx.ns, "Sequential"), elements), size


def _layer_per_size(
    built: cst.Call, construct: Construct, loop: cst.CompFor, inputs: tuple[cst.BaseExpression, ...], ctx: Context
) -> tuple[cst.Arg, cst.BaseExpression]:
    """(`*[nnx.Linear(din, size, rngs=rngs) for din, size in zip((in, *sizes[:-1]), sizes)]`, `sizes[-1]`)
    for `*[hk.Linear(size) for size in sizes]`: each layer's input size is the size before it."""
    assert isinstance(loop.target, cst.Name)  # `_comprehension_layer` checked it
    variable = loop.target.value
    din = "in_features" if variable != "in_features" else "in_size"
    new = convert_construct_call(built, construct, "nnx", ctx.ns, (cst.Name(din),), {"rngs": cst.Name("rngs")}, ctx=ctx)
    sizes = loop.iter
    chained = cst.parse_expression(f"zip(({code(inputs[0])}, *{_subscripted(sizes)}[:-1]), {code(sizes)})")
    target = cst.Tuple([cst.Element(cst.Name(din)), cst.Element(cst.Name(variable))], lpar=[], rpar=[])
    comprehension = cst.ListComp(new, cst.CompFor(target=target, iter=chained))
    return cst.Arg(comprehension, star="*"), cst.parse_expression(f"{_subscripted(sizes)}[-1]")


def _check_layer_per_size(built: cst.Call, construct: Construct, loop: cst.CompFor) -> None:
    """Unconvertible unless the comprehension's layer takes the loop variable as its output size, and
    nothing else of it, and needs its input size (so that the sizes chain)."""
    assert isinstance(loop.target, cst.Name)  # `_comprehension_layer` checked it
    variable = loop.target.value
    uses = [a.value for a in built.args if variable in Names.of(a).used]
    size = output_size(built, construct)
    if not construct.targets["nnx"].inputs or size is None or uses != [size]:
        raise Unconvertible(
            f"`{code(built)}` in the Sequential: only layers whose output size is the loop variable (`{variable}`), "
            "and that need their input size, chain in a comprehension; list them"
        )


def _subscripted(sizes: cst.BaseExpression) -> str:
    """`sizes`, in parentheses unless a subscript can follow it as it is."""
    return code(sizes) if isinstance(sizes, cst.Name | cst.Attribute | cst.Subscript | cst.Call) else f"({code(sizes)})"


@LINEN_CALLS.on("nets.MLP", rule=RULE_MLP)
@LINEN_CALLS.on("Sequential", rule=RULE_SEQUENTIAL)
def linen_sequential(room: LinenMethod, call: CallSite) -> cst.BaseExpression:
    """`hk.nets.MLP(...)` -> `nn.Sequential([nn.Dense(...), ...])`, `hk.Sequential` -> `nn.Sequential`."""
    original, updated, api = call.original, call.updated, call.api
    ctx = room.ctx
    try:
        if api == "nets.MLP" and _literal_sizes(updated) is None:
            mlp, _ = computed_mlp(updated, ctx)
            room.mark_builds_layer()
            room.converted(original, RULE_MLP, f"hk.nets.MLP over computed sizes -> {MLP_CLASS}")
            return mlp
        if api == "nets.MLP":
            layers: list[cst.BaseExpression] = []
            linear = ctx.tables.get("Linear")
            assert linear is not None
            for layer in _mlp_layers(updated, ctx):
                if layer.constructor is None:
                    assert layer.function is not None
                    layers.append(layer.function)
                    continue
                layers.append(convert_construct_call(layer.constructor, linear, "linen", ctx.ns, ctx=ctx))
            listed: cst.BaseExpression = cst.List([cst.Element(layer) for layer in layers])
            name = _name_arg(updated, MLP_ARGS, api)
        else:
            listed = BoundCall.bind(updated, SEQUENTIAL_ARGS, "hk.Sequential").args["layers"]
            name = _name_arg(updated, SEQUENTIAL_ARGS, api)
    except (Unconvertible, KeyError) as reason:
        room.todo(original, RULES[api], str(reason) if isinstance(reason, Unconvertible) else "`hk.Sequential` needs its layers")
        return updated
    ctx.need_target_import()
    room.mark_builds_layer()
    room.converted(original, RULES[api], f"hk.{api} -> nn.Sequential")
    return cst.Call(attr(ctx.ns, "Sequential"), [cst.Arg(listed), *name])


@LINEN_CALLS.on("nets.MLP", rule=RULE_MLP, constructor=True)
@LINEN_CALLS.on("Sequential", rule=RULE_SEQUENTIAL, constructor=True)
def linen_sequential_call(room: LinenMethod, call: CallSite) -> None:
    """`hk.nets.MLP(...)(x, dropout_rate=...)`: a TODO for what the Flax Sequential cannot take."""
    assert isinstance(call.original.func, cst.Call)
    try:
        check_call_args(call.original.func, list(call.original.args), room.ctx)
    except Unconvertible as reason:
        room.todo(call.original, RULES[call.api], str(reason))


@LINEN_CALLS.on("BatchApply", rule=RULE_BATCH_APPLY, constructor=True)
def linen_batch_apply(room: LinenMethod, call: CallSite) -> cst.BaseExpression | None:
    """`hk.BatchApply(layer)(x)` -> `layer(x)`, the layer converted already."""
    layer = batch_apply_layer(call.original, room)
    if layer is None or not isinstance(call.updated.func, cst.Call):
        return None
    return call.updated.with_changes(func=call.updated.func.args[0].value)


def batch_apply_layer(call: cst.Call, rewriter: FileRoom) -> cst.Call | None:
    """The Haiku layer `hk.BatchApply(layer, ...)(x)` applies, when dropping the BatchApply is exact.

    None for any other call; a BatchApply of anything else gets a TODO (and None).
    """
    ctx = rewriter.ctx
    if not isinstance(call.func, cst.Call) or ctx.names.haiku_api(call.func.func) != "BatchApply" or not ctx.enabled(RULE_BATCH_APPLY):
        return None
    try:
        bound = BoundCall.bind(call.func, BATCH_APPLY_ARGS, "hk.BatchApply").args
    except Unconvertible as reason:
        rewriter.todo(call, RULE_BATCH_APPLY, str(reason))
        return None
    layer = bound.get("f")
    api = ctx.names.haiku_api(layer.func) if isinstance(layer, cst.Call) else None
    if api not in LEADING_AXES_MAPPED:
        rewriter.todo(
            call,
            RULE_BATCH_APPLY,
            "only a table layer that maps over leading axes (Linear, Embed, LayerNorm, RMSNorm, ConvND) drops its "
            "BatchApply; write the merge/apply/split out: `y = f(x.reshape(-1, *x.shape[n:]))`, then "
            "`y.reshape(*x.shape[:n], *y.shape[1:])`",
        )
        return None
    rewriter.converted(call, RULE_BATCH_APPLY, f"hk.BatchApply(hk.{api}) -> the layer itself (Flax maps over leading axes)")
    assert isinstance(layer, cst.Call)  # its API is a table layer's
    return layer


@NNX_CALLS.on("BatchApply", rule=RULE_BATCH_APPLY, constructor=True)
def nnx_batch_apply(room: NnxMethod, call: CallSite) -> cst.BaseExpression | None:
    """`hk.BatchApply(layer)(x)` in NNX: the layer is built in `__init__` and called.

    MLPs and Sequentials are built by the NNX target like table layers (see `build_nnx_composite`).
    """
    layer = batch_apply_layer(call.original, room)
    return room.hoist(layer, cst.Call(func=layer, args=call.updated.args)) if layer is not None else None


def build_nnx_composite(
    conversion: NnxClass,
    constructor: cst.Call,
    attribute: str,
    size: cst.BaseExpression | None,
    rewriter: NnxMethod | None,
    node: cst.CSTNode,
    value: cst.BaseExpression | None,
) -> tuple[cst.Call, cst.BaseExpression | None] | None:
    """The NNX class's `build` for an MLP or Sequential called on `value`: (NNX constructor, output size),
    or None with a TODO. An unknown input size of its first layer is probed from `value`."""
    api = composite_api(conversion.ctx, constructor)
    assert api is not None
    report: FileRoom = rewriter if rewriter is not None else conversion.converter

    def input_size(name: str, known: cst.BaseExpression | None) -> cst.BaseExpression:
        return conversion.input_size(name, known, rewriter, node, value if name == attribute else None)

    try:
        new, output = nnx_sequential(constructor, conversion.ctx, size, input_size, attribute)
    except Unconvertible as reason:
        report.todo(node, RULES[api], str(reason))
        return None
    conversion.needs_rngs |= "rngs" in Names.of(new).used
    conversion.ctx.need_target_import()
    report.converted(constructor, RULES[api], f"hk.{api} -> nnx.Sequential (built in __init__)")
    return new, output


def nnx_call_args(constructor: cst.Call, call_args: list[cst.Arg], rewriter: FileRoom, node: cst.CSTNode) -> list[cst.Arg] | None:
    """The arguments of calling an NNX MLP or Sequential, or None with a TODO."""
    try:
        check_call_args(constructor, call_args, rewriter.ctx)
    except Unconvertible as reason:
        rewriter.todo(node, RULES[composite_api(rewriter.ctx, constructor) or ""], str(reason))
        return None
    return call_args
