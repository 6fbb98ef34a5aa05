"""Locals built by one statement and called exactly once later, where building at the call means the same.

    conv = hk.DepthwiseConv2D(channel_multiplier=1, kernel_shape=3)
    ...
    out = conv(inputs)

Linen builds a layer where it is first called, so such a layer can be built at its call instead, where
its input can be read (`nn.Conv(inputs.shape[-1], ...)(inputs)`). That is only the same program when
the constructor runs once per call: the call comes after the statement, in its block or a block inside
it but in no loop, lambda or function inside it, and nothing the constructor reads is rebound in between.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Generic, TypeVar

import libcst as cst

from .analysis import Names, simple_assign
from .walk import Walker

_SCOPES = (cst.Lambda, cst.FunctionDef, cst.ClassDef)
_REPEATS = (cst.For, cst.While, cst.ListComp, cst.SetComp, cst.DictComp, cst.GeneratorExp, *_SCOPES)  # may run code in them again


@dataclass(frozen=True)
class CalledOnce:
    """`name = constructor` (the whole `statement`), then `call` = `name(...)`, its only other use."""

    statement: cst.SimpleStatementLine
    constructor: cst.Call
    call: cst.Call


EventNode = TypeVar("EventNode", bound=cst.CSTNode)


@dataclass(frozen=True)
class _Event(Generic[EventNode]):
    node: EventNode
    blocks: tuple[int, ...]  # ids of the indented blocks around it, outermost first
    repeats: tuple[int, ...]  # ids of the loops and functions around it, outermost first
    order: int  # where it is in source order


class _Uses(Walker):
    """In source order: candidate statements, `name(...)` calls, name uses and bindings."""

    def __init__(self) -> None:
        self._blocks: list[int] = []
        self._repeats: list[int] = []
        self._functions = 0  # functions, lambdas and classes around the node being walked
        self._order = 0
        self.stores: dict[str, tuple[_Event[cst.SimpleStatementLine], cst.Call]] = {}  # name -> the statement assigning it a call (order: its end), the call
        self.calls: dict[str, list[_Event[cst.Call]]] = {}
        self.uses: Counter[str] = Counter()
        self.bindings: list[tuple[int, set[str]]] = []  # (order, the names a target reads or binds)

    def _event(self, node: EventNode) -> _Event[EventNode]:
        self._order += 1
        return _Event(node, tuple(self._blocks), tuple(self._repeats), self._order)

    def on_visit(self, node: cst.CSTNode) -> bool:
        if isinstance(node, cst.IndentedBlock):
            self._blocks.append(id(node))
        if isinstance(node, _REPEATS):
            self._repeats.append(id(node))
            self._functions += isinstance(node, _SCOPES)
        return super().on_visit(node)

    def on_leave(self, original_node: cst.CSTNode) -> None:
        super().on_leave(original_node)
        if isinstance(original_node, cst.IndentedBlock):
            self._blocks.pop()
        if isinstance(original_node, _REPEATS):
            self._repeats.pop()
            self._functions -= isinstance(original_node, _SCOPES)

    def leave_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
        assign = simple_assign(node)
        if (
            self._functions == 0  # a function inside is looked at on its own
            and assign is not None
            and isinstance(assign[0], cst.Name)
            and isinstance(assign[1], cst.Call)
            and not any(line.comment for line in node.leading_lines)  # its comments would have nowhere to go
        ):
            self.stores[assign[0].value] = self._event(node), assign[1]

    def visit_Call(self, node: cst.Call) -> None:
        if isinstance(node.func, cst.Name):
            self.calls.setdefault(node.func.value, []).append(self._event(node))

    def visit_Name(self, node: cst.Name) -> None:
        self.uses[node.value] += 1

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        self.walk(node.value)  # `x.conv` does not use `conv`
        return False

    def visit_Arg(self, node: cst.Arg) -> bool:
        self.walk(node.value)  # nor does a keyword `conv=`
        return False

    def _binds(self, target: cst.CSTNode | None) -> None:
        if target is not None:
            self.bindings.append((self._event(target).order, Names.of(target).used))

    def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
        self._binds(node.target)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        self._binds(node.target)

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self._binds(node.target)

    def visit_For(self, node: cst.For) -> None:
        self._binds(node.target)

    def visit_AsName(self, node: cst.AsName) -> None:
        self._binds(node.name)

    def visit_NamedExpr(self, node: cst.NamedExpr) -> None:
        self._binds(node.target)


def locals_called_once(function: cst.FunctionDef) -> list[CalledOnce]:
    """The locals of `function` (not of functions inside it) built once and called once, later, where
    building them at the call runs the same code."""
    uses = _Uses()
    uses.walk(function.body)
    found = []
    for name, (store, constructor) in uses.stores.items():
        calls = uses.calls.get(name, [])
        if uses.uses[name] != 2 or len(calls) != 1:  # the assignment and the call: nothing else reads or rebinds it
            continue
        call = calls[0]
        read = Names.of(constructor).used
        if (
            call.order < store.order
            or call.blocks[: len(store.blocks)] != store.blocks
            or call.repeats != store.repeats
            or any(store.order < order < call.order and names & read for order, names in uses.bindings)
        ):
            continue
        found.append(CalledOnce(store.node, constructor, call.node))
    return found
