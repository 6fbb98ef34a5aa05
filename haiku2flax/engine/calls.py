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


def _arg(value: cst.BaseExpression, keyword: str | None = None) -> cst.Arg:
    if keyword is None:
        return cst.Arg(value=value)
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
        args.append(_arg(remaining.pop(name)))
    args.extend(_arg(value, name) for name, value in remaining.items())
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
        if flax_name is not None:
            values[flax_name] = value
    for name, source in api.add.items():
        values.setdefault(name, cst.parse_expression(source))
    values.update(extra or {})
    return build_call(attr(ns, api.api), values, api.positional)
