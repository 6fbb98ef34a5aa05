"""Rewrite a Haiku constructor call into its Flax counterpart by reading a `Construct` table entry.

Arguments are bound to the Haiku signature recorded in the table (positional order, keywords),
converted where their meaning differs (`convert`: kernel shapes, strides, padding, axes, initializers),
dropped where they ask for what Flax does anyway (`flax_default`), renamed, and written back with the
Flax API's positional arguments first; Haiku's defaults that Flax does not share are added (`add`,
templates that may read other arguments and the input size). So `hk.Conv2D(8, 3, stride=2)` becomes
`nn.Conv(8, (3, 3), strides=2)` or `nnx.Conv(din, 8, (3, 3), strides=2, rngs=rngs)`. The format is
documented in the header of `rules/layers.toml`; `hk.initializers.*` convert by the same machinery.
"""

from __future__ import annotations

import ast
import functools
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeGuard

import libcst as cst

from . import matchers as m
from .context import Context, attr
from .names import dotted_name
from .tables import Construct
from .walk import Transformer


class Unconvertible(Exception):
    """The call cannot be converted faithfully; the message is the TODO's reason."""


@dataclass(frozen=True)
class BoundCall:
    """A Haiku call's arguments by Haiku parameter name, in the order they were written."""

    args: dict[str, cst.BaseExpression]

    @classmethod
    def bind(cls, call: cst.Call, names: tuple[str, ...], api: str) -> BoundCall:
        bound: dict[str, cst.BaseExpression] = {}
        position = 0
        for arg in call.args:
            if arg.star:
                raise Unconvertible(f"`{api}` is called with `{arg.star}` arguments; map them by hand")
            if arg.keyword is None:
                if position >= len(names):
                    raise Unconvertible(f"`{api}` takes at most {len(names)} positional arguments")
                bound[names[position]] = arg.value
                position += 1
            else:
                if arg.keyword.value not in names:
                    raise Unconvertible(f"`{api}` has no argument `{arg.keyword.value}`")
                bound[arg.keyword.value] = arg.value
        return cls(bound)


def keyword_arg(keyword: str, value: cst.BaseExpression) -> cst.Arg:
    """`keyword=value`, spelled without spaces around `=`."""
    return cst.Arg(
        value=value,
        keyword=cst.Name(keyword),
        equal=cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace("")),
    )


def build_call(func: cst.BaseExpression, values: dict[str, cst.BaseExpression], positional: tuple[str, ...]) -> cst.Call:
    """`func(...)` with `positional` names (while present, in order) first, keywords after."""
    args = []
    remaining = dict(values)
    for name in positional:
        if name not in remaining:
            break
        args.append(cst.Arg(remaining.pop(name)))
    args.extend(keyword_arg(name, value) for name, value in remaining.items())
    return cst.Call(func=func, args=args)


@functools.lru_cache(maxsize=256)
def parsed(text: str) -> cst.BaseExpression:
    """`cst.parse_expression(text)`, parsed once per text: nodes are immutable, so every place that
    writes the same fixed expression can share one."""
    return cst.parse_expression(text)


def code(node: cst.CSTNode) -> str:
    """The source text of a node, for messages and literal reading."""
    return cst.Module([]).code_for_node(node)


NOT_LITERAL = object()


def literal(node: cst.BaseExpression) -> object:
    """The Python value of a literal expression (`3`, `(1, 2)`, `'SAME'`, `None`), else NOT_LITERAL."""
    try:
        return ast.literal_eval(code(node))
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return NOT_LITERAL


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _same_code(a: str, b: str) -> bool:
    """Whether two expressions are the same code, whatever their spacing and quotes."""
    try:
        return ast.dump(ast.parse(a.strip(), mode="eval")) == ast.dump(ast.parse(b.strip(), mode="eval"))
    except SyntaxError:
        return False


SEPARATOR = cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))


def as_tuple(elements: Sequence[cst.BaseExpression]) -> cst.Tuple:
    """`(a, b)`, and `(a,)` for one element."""
    last = len(elements) - 1
    return cst.Tuple(
        [
            cst.Element(e, comma=SEPARATOR if i < last else (cst.Comma() if last == 0 else cst.MaybeSentinel.DEFAULT))
            for i, e in enumerate(elements)
        ]
    )


def _int_tuple(values: tuple[int, ...] | list[int]) -> cst.Tuple:
    return as_tuple([cst.Integer(str(v)) for v in values])


@dataclass(frozen=True)
class _Argument:
    """One Haiku argument being converted, with what its conversion may need to read."""

    name: str
    value: cst.BaseExpression
    construct: Construct
    bound: dict[str, cst.BaseExpression]
    ns: str
    ctx: Context | None

    def haiku_api(self, node: cst.BaseExpression) -> str | None:
        return self.ctx.names.haiku_api(node) if self.ctx is not None else None

    def literal_default(self, name: str) -> object:
        value = self.bound.get(name)
        if value is not None:
            return literal(value)
        default = self.construct.defaults.get(name)
        return ast.literal_eval(default) if default is not None else NOT_LITERAL

    def cannot(self, why: str) -> Unconvertible:
        return Unconvertible(f"`{self.construct.display}({self.name}={code(self.value)})`: {why}")


def _spatial_literal(argument: _Argument, value: object) -> tuple[int, ...] | None:
    """Haiku's int-or-sequence shape read as a tuple of `ndim` ints (Haiku replicates ints and 1-sequences)."""
    ndim = argument.construct.ndim or 1
    if _is_int(value):
        return (value,) * ndim
    if isinstance(value, tuple | list) and len(value) in (1, ndim):
        ints = tuple(v for v in value if _is_int(v))
        return ints * (ndim // len(value)) if len(ints) == len(value) else None
    return None


def _kernel_shape(argument: _Argument) -> cst.BaseExpression:
    """`3` -> `(3, 3)`: Flax reads an int `kernel_size` as a 1-D kernel, so the tuple is always written.

    `1 if bottleneck else 3` -> `(1, 1) if bottleneck else (3, 3)`.
    """
    if isinstance(argument.value, cst.IfExp):
        body = _kernel_shape(replace(argument, value=argument.value.body))
        orelse = _kernel_shape(replace(argument, value=argument.value.orelse))
        return argument.value.with_changes(body=body, orelse=orelse)
    shape = _spatial_literal(argument, literal(argument.value))
    ndim = argument.construct.ndim
    if shape is None and ndim is not None and isinstance(argument.value, cst.Name | cst.Attribute):
        return _replicated_if_int(argument.value, ndim)
    if shape is None:
        raise argument.cannot(f"write the kernel shape as a tuple of {ndim} ints (Flax reads an int `kernel_size` as 1-D)")
    return _int_tuple(shape)


def _replicated_if_int(value: cst.Name | cst.Attribute, ndim: int) -> cst.BaseExpression:
    """`k` -> `(k,) * 2 if isinstance(k, int) else tuple(k) if len(k) == 2 else tuple(k) * 2`: a variable
    that may hold an int or a one-element sequence (Haiku replicates both over the spatial dimensions;
    Flax would read them as a 1-D kernel) or a sequence of every dimension."""
    k = code(value)
    if ndim == 1:
        return cst.parse_expression(f"({k},) if isinstance({k}, int) else tuple({k})")
    return cst.parse_expression(f"({k},) * {ndim} if isinstance({k}, int) else tuple({k}) if len({k}) == {ndim} else tuple({k}) * {ndim}")


def _spatial(argument: _Argument) -> cst.BaseExpression:
    """Strides and dilations: Flax broadcasts an int over the kernel's rank, as Haiku does; `(2,)` is replicated."""
    value = literal(argument.value)
    if value is NOT_LITERAL or _is_int(value):
        return argument.value
    shape = _spatial_literal(argument, value)
    if shape is None:
        raise argument.cannot(f"expected an int or {argument.construct.ndim} ints")
    return _int_tuple(shape)


PAD_FUNCTIONS: dict[str, Callable[[int], tuple[int, int]]] = {  # `hk.pad.*`: effective kernel size -> (low, high)
    "pad.valid": lambda k: (0, 0),
    "pad.same": lambda k: ((k - 1) // 2, k // 2),
    "pad.full": lambda k: (k - 1, k - 1),
    "pad.causal": lambda k: (k - 1, 0),
    "pad.reverse_causal": lambda k: (0, k - 1),
}


def _padding(argument: _Argument) -> cst.BaseExpression:
    """Strings pass; Haiku's single `(low, high)` pair and `hk.pad.*` functions become one pair per dimension.

    Flax reads `(1, 2)` as one symmetric padding per dimension and takes no functions, so anything that
    is not a literal (or a `hk.pad` function with a literal kernel shape and rate) is left with a TODO.
    """
    ndim = argument.construct.ndim or 1
    value = literal(argument.value)
    if isinstance(value, str):
        return argument.value
    if isinstance(value, tuple | list) and len(value) == 2 and all(_is_int(v) for v in value):
        return as_tuple([_int_tuple(value)] * ndim)
    if isinstance(value, tuple | list) and len(value) in (1, ndim) and all(
        isinstance(p, tuple | list) and len(p) == 2 and all(_is_int(v) for v in p) for p in value
    ):
        return as_tuple([_int_tuple(p) for p in value] * (ndim // len(value)))
    functions = argument.value.elements if isinstance(argument.value, cst.Tuple | cst.List) else [argument.value]
    names = [argument.haiku_api(f.value if isinstance(f, cst.BaseElement) else f) for f in functions]
    if value is NOT_LITERAL and names and all(n in PAD_FUNCTIONS for n in names) and len(names) in (1, ndim):
        kernel = _spatial_literal(argument, argument.literal_default("kernel_shape"))
        rate = _spatial_literal(argument, argument.literal_default("rate"))
        if kernel is not None and rate is not None:
            if names == ["pad.causal"] and ndim == 1:
                return cst.SimpleString("'CAUSAL'")
            if names == ["pad.valid"]:
                return cst.SimpleString("'VALID'")
            effective = [(k - 1) * r + 1 for k, r in zip(kernel, rate)]
            pads = [PAD_FUNCTIONS[n or ""](k) for n, k in zip(names * (ndim // len(names)), effective)]  # every name is one
            return as_tuple([_int_tuple(p) for p in pads])
    raise argument.cannot(
        "write 'SAME', 'VALID' or one (low, high) pair per spatial dimension (Flax reads a single pair as "
        "per-dimension padding and takes no `hk.pad` functions; those need a literal kernel shape and rate)"
    )


def _axes(argument: _Argument) -> cst.BaseExpression:
    if isinstance(argument.value, cst.Call) and m.matches(argument.value.func, m.Name("slice")):
        raise argument.cannot("Flax takes the axes as ints: write them as a tuple")
    return argument.value


ARRAY_CONSTRUCTORS = ("ones", "zeros")  # `jnp.ones(shape, dtype)` and the Flax initializer of the same name
ARRAY_MODULES = ("jnp", "jax.numpy", "np", "numpy")


def convert_initializer(value: cst.BaseExpression, ctx: Context, ns: str, *, elementwise: bool = False) -> cst.BaseExpression:
    """`hk.initializers.X(...)` -> `nn.initializers.x(...)` by the `[[initializer]]` tables.

    `elementwise`: only initializers that draw each element alike (no fans) fit the parameter: it is
    1-D (a bias or scale: jax's fan-based initializers reject those), or Flax lays it out differently.
    `jnp.zeros` / `jnp.ones` (Haiku calls them as `(shape, dtype)`) become Flax's `zeros` / `ones`, and a
    name bound to an `hk.initializers` call (HK202) passes as it is. Anything else (another variable, a
    lambda, a custom initializer) is unconvertible: Haiku initializers take `(shape, dtype)` and draw
    `hk.next_rng_key()`, Flax initializers take `(key, shape, dtype)`.
    """
    module, _, function = (dotted_name(value) or "").rpartition(".")
    if module in ARRAY_MODULES and function in ARRAY_CONSTRUCTORS:  # `w_init=jnp.zeros`: called as `(shape, dtype)`
        return attr(ns, f"initializers.{function}")
    bound = ctx.initializer_bindings.get(initializer_key(value) or "")  # a value the binding rule converts (HK202)
    calls = bound if bound is not None else (value,)
    entries = [_initializer_entry(call, ctx) for call in calls]
    if None in entries or not entries:
        raise Unconvertible(
            f"`{code(value)}` is not an `hk.initializers` call the tables know; Flax initializers take "
            "`(key, shape, dtype)`: write one (e.g. from `jax.nn.initializers`) by hand"
        )
    if elementwise and any(entry.layout_based for entry in entries if entry is not None):
        raise Unconvertible(
            f"`{code(value)}` reads the parameter's fans, which jax cannot read the same way here (a 1-D "
            "parameter, or a kernel Flax lays out differently): write the initializer by hand"
        )
    if bound is not None:
        return value
    entry = entries[0]
    assert isinstance(value, cst.Call) and entry is not None  # the tables know it: `value` is the `hk.initializers` call itself
    return convert_construct_call(value, entry, ctx.target, ns, ctx=ctx)


def initializer_key(value: cst.BaseExpression) -> str | None:
    """How the binding rule (HK202) names a value: `init`, `self.init`, or `make_init()` for any call of a
    function `make_init` (what it returns does not depend on its arguments' kind)."""
    if isinstance(value, cst.Call):
        return f"{value.func.value}()" if isinstance(value.func, cst.Name) else None
    name = dotted_name(value)
    if name is None or name.count(".") > 1 or ("." in name and not name.startswith("self.")):
        return None
    return name


def _initializer_entry(value: cst.BaseExpression, ctx: Context) -> Construct | None:
    api = ctx.names.haiku_api(value.func) if isinstance(value, cst.Call) else None
    return ctx.tables.initializers.get(api) if api is not None else None


def _initializer(argument: _Argument, elementwise: bool = False) -> cst.BaseExpression:
    if argument.ctx is None:
        raise argument.cannot("initializers need the file's imports to convert")
    if initializer_key(argument.value) in argument.ctx.passed_on_initializers:  # None: Haiku's default, the Flax layer's own
        flax = argument.construct.targets[argument.ctx.target]
        default = cst.Attribute(attr(argument.ns, flax.api), cst.Name(flax.args[argument.name]))
        return cst.BooleanOperation(argument.value, cst.Or(), default)
    try:
        return convert_initializer(argument.value, argument.ctx, argument.ns, elementwise=elementwise)
    except Unconvertible as reason:
        raise Unconvertible(f"`{argument.construct.display}` {argument.name}: {reason}") from None


CONVERTERS: dict[str, Callable[[_Argument], cst.BaseExpression]] = {
    "kernel_shape": _kernel_shape,
    "spatial": _spatial,
    "padding": _padding,
    "axes": _axes,
    "initializer": _initializer,
    "elementwise_initializer": lambda argument: _initializer(argument, elementwise=True),
}


class _Fill(Transformer):
    """Put argument values into a template's placeholders, parenthesised where precedence needs it."""

    ATOMS = (cst.Name, cst.Attribute, cst.Call, cst.Subscript, cst.Integer, cst.Float, cst.SimpleString, cst.Tuple, cst.List)

    def __init__(self, values: dict[str, cst.BaseExpression]) -> None:
        super().__init__()
        self.values = values

    def leave_Name(self, original: cst.Name, updated: cst.Name) -> cst.BaseExpression:
        value = self.values.get(original.value)
        if value is None:
            return updated
        if isinstance(value, self.ATOMS) or value.lpar:
            return value
        return value.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])

    def leave_BinaryOperation(self, original: cst.BinaryOperation, updated: cst.BinaryOperation) -> cst.BaseExpression:
        """Fold what reads better folded: `x * 1` -> `x`, `2.0 ** 2` -> `4.0`."""
        left, right = literal(updated.left), literal(updated.right)
        if isinstance(updated.operator, cst.Multiply) and 1 in (left, right) and _is_int(left if left == 1 else right):
            return updated.right if left == 1 else updated.left
        operations: dict[type, Callable[[Any, Any], object]] = {cst.Multiply: lambda a, b: a * b, cst.Power: lambda a, b: a**b}
        operation = operations.get(type(updated.operator))
        if operation is not None and all(isinstance(v, int | float) and not isinstance(v, bool) for v in (left, right)):
            folded = repr(operation(left, right))
            if len(folded) <= len(code(updated)):
                return cst.parse_expression(folded)
        return updated


PLACEHOLDER = re.compile(r"\{(\w+)\}")
INPUT_SIZE = "input_size"  # the template placeholder for the layer's input feature size


def render(template: str, values: dict[str, cst.BaseExpression]) -> cst.BaseExpression:
    """A table template (`"{input_size} * {channel_multiplier}"`) filled with argument values."""
    prefix = "__haiku2flax_"
    for name in PLACEHOLDER.findall(template):
        if name not in values:
            raise Unconvertible(f"needs `{name}`" if name != INPUT_SIZE else "needs the input feature size")
    expression = cst.parse_expression(PLACEHOLDER.sub(lambda m: prefix + m.group(1), template))
    filled = expression.visit(_Fill({prefix + k: v for k, v in values.items()}))
    assert isinstance(filled, cst.BaseExpression)  # names were replaced by expressions
    return filled.with_changes(lpar=[], rpar=[])  # an argument value needs no parentheses of its own


def _gives_flax_default(
    value: cst.BaseExpression, accepted: tuple[str, ...], bound: dict[str, cst.BaseExpression], ctx: Context | None
) -> bool:
    """Whether a Haiku value is one the table lists as what Flax does by default (`hk.` names resolved;
    an option may be a template of the other arguments: `"{key_size}"`)."""
    api = ctx.names.haiku_api(value) if ctx is not None else None
    text = f"hk.{api}" if api is not None else code(value)
    options = [code(render(o, bound)) if set(PLACEHOLDER.findall(o)) <= bound.keys() else o for o in accepted]
    return any(_same_code(text, option) for option in options)


def _template_values(
    construct: Construct, bound: dict[str, cst.BaseExpression], inputs: tuple[cst.BaseExpression, ...]
) -> dict[str, cst.BaseExpression]:
    """What a template's placeholders may read: the Haiku arguments (given, else defaulted: a default may
    itself be a template of the given arguments), the input size."""
    values = {
        name: render(source, bound) if PLACEHOLDER.search(source) else cst.parse_expression(source)
        for name, source in construct.defaults.items()
    }
    values.update(bound)
    if inputs:
        values[INPUT_SIZE] = inputs[0]
    return values


def convert_argument(
    name: str,
    value: cst.BaseExpression,
    construct: Construct,
    ctx: Context | None,
    ns: str | None = None,
    bound: dict[str, cst.BaseExpression] | None = None,
) -> cst.BaseExpression:
    """The Flax value of one Haiku argument of `construct` (read beside the other `bound` arguments)."""
    kind = construct.convert.get(name)
    namespace = ns if ns is not None else ctx.ns if ctx is not None else ""
    return CONVERTERS[kind](_Argument(name, value, construct, bound or {name: value}, namespace, ctx)) if kind else value


def convert_construct_call(
    call: cst.Call,
    construct: Construct,
    target: str,
    ns: str,
    inputs: tuple[cst.BaseExpression, ...] = (),
    extra: dict[str, cst.BaseExpression] | None = None,
    ctx: Context | None = None,
) -> cst.Call:
    """The Flax call for a Haiku constructor call.

    `inputs`: `(input feature size,)` when the caller knows it (NNX infers it; Linen may read it from the
    layer's call); it fills the table's `inputs` arguments and `{input_size}` in templates. `ctx` gives
    the file's imports and tables, which initializer and `hk.pad` arguments need.
    """
    api = construct.targets[target]
    forwarded = [a for a in call.args if a.star == "**"] if ctx is not None else []
    if ctx is not None and forwarded:
        _check_forwarded(forwarded, construct, target, ctx)
        call = without_args(call, forwarded)
    bound = BoundCall.bind(call, construct.haiku_args, f"{construct.display}").args
    values: dict[str, cst.BaseExpression] = {}
    given = dict(bound)  # what templates read: an argument dropped as Flax's default reads as not given
    for name, value in bound.items():
        if name in api.flax_default and _gives_flax_default(value, api.flax_default[name], bound, ctx):
            del given[name]
            continue
        flax_name = api.args.get(name)
        if flax_name is None:
            why = construct.todo.get(name) or f"has no {target} counterpart"
            raise Unconvertible(f"`{construct.display}({name}={code(value)})`: {why}")
        converted = convert_argument(name, value, construct, ctx, ns, bound)
        if flax_name:
            values[flax_name] = converted
    if api.inputs and not inputs:
        sized = [*api.inputs, *(n for n, template in api.add.items() if f"{{{INPUT_SIZE}}}" in template)]
        raise Unconvertible(
            f"`{construct.display}` needs its input feature size, which is not known where it is built: "
            f"build and call it in one expression, or write {', '.join(f'`{n}`' for n in sized)} by hand"
        )
    for name in api.inputs:
        values.setdefault(name, inputs[0])
    known = _template_values(construct, given, inputs)
    for name, template in api.add.items():
        if name not in values:
            values[name] = render(template, known)
    values.update(extra or {})
    converted = build_call(attr(ns, api.api), values, api.positional)
    return converted.with_changes(args=[*converted.args, *(a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in forwarded)])


def _check_forwarded(forwarded: list[cst.Arg], construct: Construct, target: str, ctx: Context) -> None:
    """Raise unless every key the `**kwargs` may hold reaches the Flax layer unchanged (same name, no
    conversion): then the call forwards them as they are."""
    from .unpacked import unpacked_keys  # it reads the file's classes through `analysis`, which imports this module

    api = construct.targets[target]
    for arg in forwarded:
        unpacked = unpacked_keys(arg.value, ctx)
        if unpacked is None:
            raise Unconvertible(
                f"`{construct.display}` is called with `**{code(arg.value)}`, whose keys are not seen in this file; map them by hand"
            )
        keys, arrive_flax = unpacked
        renamed = sorted(k for k in keys - arrive_flax if api.args.get(k) != k or k in construct.convert)
        if renamed:
            flax = ", ".join(f"`{k}` (Flax: `{api.args[k]}`)" if api.args.get(k) else f"`{k}` (no {target} counterpart)" for k in renamed)
            raise Unconvertible(
                f"`{construct.display}` is called with `**{code(arg.value)}`, which this file's calls fill with {flax}; "
                "pass the Flax keywords where they are built"
            )


def call_input_size(layer_call: cst.Call) -> tuple[cst.BaseExpression, ...]:
    """`(x.shape[-1],)` for a layer called on a name or attribute `x` (features last), else `()`.

    Linen builds layers at their first call, so where a layer is built and called in one expression its
    input feature size can be read from the input without evaluating anything twice.
    """
    first = layer_call.args[0] if layer_call.args else None
    if first is None or first.keyword is not None or first.star or not isinstance(first.value, cst.Name | cst.Attribute):
        return ()
    shape = cst.Attribute(value=first.value, attr=cst.Name("shape"))
    last = cst.UnaryOperation(operator=cst.Minus(), expression=cst.Integer("1"))
    return (cst.Subscript(value=shape, slice=[cst.SubscriptElement(cst.Index(last))]),)


def output_size(call: cst.Call, construct: Construct, inputs: tuple[cst.BaseExpression, ...] = ()) -> cst.BaseExpression | None:
    """A layer's output feature size: its input's (`keeps_size`), its `output_size` argument or template."""
    if construct.keeps_size:
        return inputs[0] if inputs else None
    if construct.output_size is None:
        return None
    try:
        bound = BoundCall.bind(call, construct.haiku_args, f"{construct.display}").args
        if construct.output_size in bound:
            return bound[construct.output_size]
        if not PLACEHOLDER.search(construct.output_size):
            return None
        return render(construct.output_size, _template_values(construct, bound, inputs))
    except Unconvertible:
        return None


def negate(value: cst.BaseExpression) -> cst.BaseExpression:
    """`not value`, simplified for literals and double negations."""
    if isinstance(value, cst.Name) and value.value in ("True", "False"):
        return cst.Name("False" if value.value == "True" else "True")
    if isinstance(value, cst.UnaryOperation) and isinstance(value.operator, cst.Not):
        return value.expression
    return cst.UnaryOperation(operator=cst.Not(), expression=value)


def convert_layer_call_args(call: cst.Call, construct: Construct, target: str) -> list[cst.Arg]:
    """The arguments of calling the built layer: `(x, is_training)` -> `(x, use_running_average=not is_training)`.

    The first argument (the input) stays positional, and so do the table's `call_positional` ones; the
    others become keywords with their Flax names.
    """
    if not construct.haiku_call_args:
        return list(call.args)
    api = construct.targets[target]
    bound = BoundCall.bind(call, construct.haiku_call_args, f"{construct.display}(...)")
    values: dict[str, cst.BaseExpression] = {}
    for name, value in bound.args.items():
        flax_name = api.call_args.get(name)
        if flax_name is None:
            why = construct.todo.get(name) or f"has no {target} counterpart"
            raise Unconvertible(f"calling `{construct.display}` with `{name}`: {why}")
        values[flax_name] = negate(value) if name in api.negated else value
    first = api.call_args.get(construct.haiku_call_args[0], "")
    return list(build_call(cst.Name("_"), values, (first, *api.call_positional)).args)


def _without_comment(comma: cst.Comma | cst.MaybeSentinel) -> cst.Comma | cst.MaybeSentinel:
    if isinstance(comma, cst.Comma) and isinstance(comma.whitespace_after, cst.ParenthesizedWhitespace):
        return comma.with_changes(whitespace_after=comma.whitespace_after.with_changes(first_line=cst.TrailingWhitespace()))
    return comma


def without_args(call: cst.Call, dropped: Collection[cst.Arg]) -> cst.Call:
    """`call` without the `dropped` arguments (by identity); the last one left loses its comma."""
    args = [a for a in call.args if not any(a is d for d in dropped)]
    if args:
        args[-1] = args[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
    return call.with_changes(args=args)


def respell_args(
    call: cst.Call, dropped: int, leading: list[cst.BaseExpression], appended: list[cst.Arg]
) -> list[cst.Arg]:
    """`call`'s arguments with the first `dropped` replaced by `leading` and `appended` added at the end.

    The kept arguments keep their own spelling (line breaks, comments); the new leading arguments take
    the separator that followed the dropped ones, and a comment that closed the argument list stays last.
    """
    old = list(call.args)
    kept = old[dropped:]
    separator = _without_comment(old[dropped - 1].comma) if 0 < dropped <= len(old) else cst.MaybeSentinel.DEFAULT
    new = [cst.Arg(value) for value in leading]
    if new:
        new[-1] = new[-1].with_changes(comma=separator if kept or appended else cst.MaybeSentinel.DEFAULT)
        new = [a if i == len(new) - 1 else a.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))) for i, a in enumerate(new)]
    args = [*new, *kept]
    if appended:
        closing = args[-1].whitespace_after_arg if args else cst.SimpleWhitespace("")
        trailing_comma = args[-1].comma if args else cst.MaybeSentinel.DEFAULT
        if args:
            args[-1] = args[-1].with_changes(
                comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")), whitespace_after_arg=cst.SimpleWhitespace("")
            )
        appended = [a.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))) for a in appended]
        appended[-1] = appended[-1].with_changes(comma=trailing_comma, whitespace_after_arg=closing)
        args.extend(appended)
    elif args and not kept:
        args[-1] = args[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)
    return args
