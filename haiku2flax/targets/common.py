"""Readings of Haiku calls that both targets rewrite, each in its own way."""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst
import libcst.matchers as m

from ..engine.analysis import Transformed
from ..engine.calls import BoundCall, Unconvertible
from ..engine.names import ImportedNames

DROPOUT_ARGS = ("rng", "rate", "x", "broadcast_dims")


@dataclass(frozen=True)
class DropoutCall:
    """`hk.dropout(rng, rate, x, broadcast_dims)` read for the Flax `Dropout` layer.

    `R if flag else 0` as the rate is Haiku's idiom for "drop only in training": it reads as rate `R`
    with `deterministic=not flag`, and `flag` is kept so callers can see where the mode came from.
    """

    rate: cst.BaseExpression
    x: cst.BaseExpression
    deterministic: cst.BaseExpression | None  # None: always drops, as Haiku does
    flag: str | None  # the mode flag of the `R if flag else 0` idiom
    explicit_rng: cst.BaseExpression | None  # a key that is not `hk.next_rng_key()`
    broadcast_dims: cst.BaseExpression | None


def _is_zero(node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.Integer | cst.Float) and float(node.value) == 0.0


def read_dropout(call: cst.Call, names: ImportedNames) -> DropoutCall:
    bound = BoundCall.bind(call, DROPOUT_ARGS, "hk.dropout").args
    if not {"rng", "rate", "x"} <= bound.keys():
        raise Unconvertible("`hk.dropout` needs rng, rate and x")
    rng = bound["rng"]
    explicit = None
    if not (isinstance(rng, cst.Call) and names.haiku_api(rng.func) == "next_rng_key" and not rng.args):
        explicit = rng
    rate = bound["rate"]
    deterministic, flag = None, None
    if isinstance(rate, cst.IfExp) and _is_zero(rate.orelse):
        deterministic = cst.UnaryOperation(operator=cst.Not(), expression=rate.test)
        flag = rate.test.value if isinstance(rate.test, cst.Name) else None
        rate = rate.body
    return DropoutCall(rate, bound["x"], deterministic, flag, explicit, bound.get("broadcast_dims"))


@dataclass(frozen=True)
class TransformCall:
    """`f.init(...)` or `f.apply(...)` on a module-level `f = hk.transform(...)`."""

    node: cst.Call
    transformed: Transformed
    method: str  # "init" or "apply"

    @classmethod
    def read(cls, call: cst.Call, transforms: dict[str, Transformed]) -> TransformCall | None:
        if not m.matches(call.func, m.Attribute(value=m.Name(), attr=m.Name("init") | m.Name("apply"))):
            return None
        transformed = transforms.get(call.func.value.value)  # type: ignore[attr-defined]
        if transformed is None:
            return None
        return cls(call, transformed, call.func.attr.value)  # type: ignore[attr-defined]

    def split_apply(self, call: cst.Call) -> ApplyArgs:
        """An `apply` call's params, state, rng and the model's own arguments."""
        names = ["params", *(["state"] if self.transformed.with_state else []), *(["rng"] if self.transformed.apply_rng else [])]
        leading = call.args[: len(names)]
        if len(leading) < len(names) or any(a.star or a.keyword is not None for a in leading):
            raise Unconvertible(f"`apply` is called without its {'/'.join(names)} arguments spelled out")
        values = {name: arg.value for name, arg in zip(names, leading)}
        rng = values.get("rng")
        if rng is not None and m.matches(rng, m.Name("None")):
            rng = None
        return ApplyArgs(values["params"], values.get("state"), rng, list(call.args[len(names) :]), len(names))


@dataclass(frozen=True)
class ApplyArgs:
    params: cst.BaseExpression
    state: cst.BaseExpression | None
    rng: cst.BaseExpression | None
    rest: list[cst.Arg]
    leading_count: int  # how many arguments precede the model's own


class ParamsToSelf(cst.CSTTransformer):
    """Reads of constructor parameters become `self.<param>` (Linen `setup` sees only fields)."""

    def __init__(self, params: set[str]) -> None:
        super().__init__()
        self.params = params

    def leave_Attribute(self, original: cst.Attribute, updated: cst.Attribute) -> cst.Attribute:
        return updated.with_changes(attr=original.attr)

    def leave_Arg(self, original: cst.Arg, updated: cst.Arg) -> cst.Arg:
        return updated.with_changes(keyword=original.keyword)

    def leave_Name(self, original: cst.Name, updated: cst.Name) -> cst.BaseExpression:
        if original.value in self.params:
            return cst.Attribute(value=cst.Name("self"), attr=cst.Name(original.value))
        return updated
