"""Rewrite a Haiku constructor call into its Flax counterpart by reading a `Construct` table entry.

Arguments are bound to the Haiku signature recorded in the table (positional order, keywords),
renamed, and written back with the Flax API's positional arguments first, so `hk.Linear(10,
with_bias=False)` becomes `nn.Dense(10, use_bias=False)` or `nnx.Linear(din, 10, use_bias=False,
rngs=rngs)`.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from .context import attr
from .tables import Construct


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


def convert_construct_call(
    call: cst.Call,
    construct: Construct,
    target: str,
    ns: str,
    inputs: tuple[cst.BaseExpression, ...] = (),
    extra: dict[str, cst.BaseExpression] | None = None,
) -> cst.Call:
    """The Flax call for a Haiku constructor call. `inputs` fill the NNX input-size arguments."""
    api = construct.targets[target]
    bound = BoundCall.bind(call, construct.haiku_args, f"hk.{construct.haiku}")
    values: dict[str, cst.BaseExpression] = dict(zip(api.inputs, inputs, strict=True))
    for name, value in bound.args.items():
        if name not in api.args:
            raise Unconvertible(f"`hk.{construct.haiku}({name}=...)` has no {target} counterpart")
        flax_name = api.args[name]
        if flax_name:
            values[flax_name] = value
    for name, source in api.add.items():
        values.setdefault(name, cst.parse_expression(source))
    values.update(extra or {})
    return build_call(attr(ns, api.api), values, api.positional)


def negate(value: cst.BaseExpression) -> cst.BaseExpression:
    """`not value`, simplified for literals and double negations."""
    if isinstance(value, cst.Name) and value.value in ("True", "False"):
        return cst.Name("False" if value.value == "True" else "True")
    if isinstance(value, cst.UnaryOperation) and isinstance(value.operator, cst.Not):
        return value.expression
    return cst.UnaryOperation(operator=cst.Not(), expression=value)


def convert_layer_call_args(call: cst.Call, construct: Construct, target: str) -> list[cst.Arg]:
    """The arguments of calling the built layer: `(x, is_training)` -> `(x, use_running_average=not is_training)`.

    The first argument (the input) stays positional; the others become keywords with their Flax names.
    """
    if not construct.haiku_call_args:
        return list(call.args)
    api = construct.targets[target]
    bound = BoundCall.bind(call, construct.haiku_call_args, f"hk.{construct.haiku}(...)")
    values: dict[str, cst.BaseExpression] = {}
    for name, value in bound.args.items():
        flax_name = api.call_args.get(name)
        if flax_name is None:
            raise Unconvertible(f"calling `hk.{construct.haiku}` with `{name}` has no {target} counterpart")
        values[flax_name] = negate(value) if name in api.negated else value
    first = api.call_args.get(construct.haiku_call_args[0], "")
    return build_call(cst.Name("_"), values, (first,)).args  # type: ignore[return-value]


def _without_comment(comma: cst.Comma | cst.MaybeSentinel) -> cst.Comma | cst.MaybeSentinel:
    if isinstance(comma, cst.Comma) and isinstance(comma.whitespace_after, cst.ParenthesizedWhitespace):
        return comma.with_changes(whitespace_after=comma.whitespace_after.with_changes(first_line=cst.TrailingWhitespace()))
    return comma


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
