"""NNX: layers built under an `if` on constructor state, and feature sizes through any `if`.

What it converts: a layer a method builds inside `if <test>:` (or its `else:` / `elif:`), where the test
reads only what `__init__` has (its arguments, fields it sets, module-level names), as in
`hk.nets.MobileNetV1Block`'s `if self.use_bn: bn1 = hk.BatchNorm(...); out = bn1(out, is_training)`.
The layer is built in `__init__` under the same condition and called under the original `if`::

    if self.use_bn:                                 # __init__
      bn = hk.BatchNorm(True, True, 0.999)          if use_bn:
      out = bn(out, is_training)                      self.bn = nnx.BatchNorm(din, momentum=0.999, rngs=rngs)
                                                    # __call__
                                                    if self.use_bn:
                                                      out = self.bn(out)

Both inline layers (`hk.LayerNorm(...)(x)`) and layers stored in a local inside the branch convert; a
layer the Haiku `__init__` builds under an `if` stays under it there, sized at its first call.
Feature sizes survive any `if`: after it, a variable keeps the size its branches agree on (`out =
bn(out)` keeps `out`'s size, so the next layer still gets its input size); where they differ, the size
is unknown and the next layer's input size becomes a constructor argument with a TODO. A branch that
ends in `return` or `raise` does not flow on; a method whose returns disagree has no known output size.

Why: NNX builds every layer eagerly in `__init__`, and Haiku only creates a layer's parameters when its
branch runs; building it under the same condition gives the same parameters for every configuration.

Not converted: a condition on call arguments or on values computed in the method (`if is_training:`)
leaves the layer with the hoisting TODO: which layers exist cannot depend on a call in NNX (build both
in `__init__` and choose at call time, by hand).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import libcst as cst

from ..engine import analysis
from ..engine.calls import code
from ..engine.registry import Status, register
from ..engine.walk import Walker
from .control_flow import CONTROL_FLOW
from .interfaces import NnxMethod

RULE_CONDITIONAL_LAYER = register(
    "HK600", "conditional-layer", Status.CONVERTED, "NNX: a layer built under `if <constructor state>` is built in `__init__` under that `if`",
    __name__,
)


@dataclass(frozen=True)
class Branch:
    """One arm of an `if`: its test taken (the body) or not (the `else`); `key` tells `if`s apart."""

    key: cst.If
    taken: bool
    test: cst.BaseExpression = field(compare=False)


Guard = tuple[Branch, ...]  # the branches a statement sits in, outermost first


def guarded_blocks(body: cst.BaseSuite, is_conditional: Callable[[cst.BaseExpression], bool]) -> Iterator[tuple[cst.BaseSuite, Guard]]:
    """`body` and every branch of an `if` on constructor state reached from it without passing a loop,
    each with its guard."""
    yield body, ()
    yield from _branches(body, (), is_conditional)


def _branches(block: cst.BaseSuite, guard: Guard, is_conditional: Callable[[cst.BaseExpression], bool]) -> Iterator[tuple[cst.BaseSuite, Guard]]:
    for statement in getattr(block, "body", ()):
        node = statement
        outer = guard
        while isinstance(node, cst.If) and is_conditional(node.test):
            taken, skipped = Branch(node, True, node.test), Branch(node, False, node.test)
            yield node.body, (*outer, taken)
            yield from _branches(node.body, (*outer, taken), is_conditional)
            outer = (*outer, skipped)
            if isinstance(node.orelse, cst.Else):
                yield node.orelse.body, outer
                yield from _branches(node.orelse.body, outer, is_conditional)
            node = node.orelse


def guarded_lines(entries: list[tuple[Guard, cst.BaseStatement]], convert: Callable[[cst.BaseExpression], cst.BaseExpression]) -> list[cst.BaseStatement]:
    """`__init__` statements: each entry under `if`s rebuilt from its guard (`convert` rewrites the tests),
    neighbours under the same `if` sharing it."""
    lines: list[cst.BaseStatement] = []
    start = 0
    while start < len(entries):
        guard, line = entries[start]
        if not guard:
            lines.append(line)
            start += 1
            continue
        end = start
        while end < len(entries) and entries[end][0][:1] and entries[end][0][0].key == guard[0].key:
            end += 1
        taken = [(g[1:], s) for g, s in entries[start:end] if g[0].taken]
        skipped = [(g[1:], s) for g, s in entries[start:end] if not g[0].taken]
        test = convert(guard[0].test)
        if taken:
            lines.append(cst.If(test, cst.IndentedBlock(guarded_lines(taken, convert)), _orelse(guarded_lines(skipped, convert))))
        else:
            lines.append(cst.If(_negated(test), cst.IndentedBlock(guarded_lines(skipped, convert))))
        start = end
    return lines


def _orelse(lines: list[cst.BaseStatement]) -> cst.If | cst.Else | None:
    if not lines:
        return None
    return lines[0] if len(lines) == 1 and isinstance(lines[0], cst.If) else cst.Else(cst.IndentedBlock(lines))


def _negated(test: cst.BaseExpression) -> cst.BaseExpression:
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        return test.expression.with_changes(lpar=[], rpar=[]) if isinstance(test.expression, cst.Name | cst.Attribute) else test.expression
    if isinstance(test, cst.BooleanOperation | cst.IfExp | cst.Lambda | cst.NamedExpr):
        test = test.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
    return cst.UnaryOperation(cst.Not(), test)


class _SelfReads(Walker):
    """The `self.<name>` attributes an expression reads, and whether it calls a `self.` method."""

    def __init__(self) -> None:
        self.attributes: set[str] = set()
        self.calls_self = False

    def visit_Attribute(self, node: cst.Attribute) -> None:
        name = analysis.self_attribute(node)
        if name is not None:
            self.attributes.add(name)

    def visit_Call(self, node: cst.Call) -> None:
        self.calls_self |= analysis.self_attribute(node.func) is not None


def init_attributes(init: cst.FunctionDef | None) -> set[str]:
    """The attributes `__init__` sets on `self`."""
    found: set[str] = set()

    class Targets(Walker):
        def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
            name = analysis.self_attribute(node.target)
            if name is not None:
                found.add(name)

    if init is not None:
        Targets().walk(init)
    return found


def _ends_flow(block: cst.BaseSuite) -> bool:
    """Does the block end in `return` or `raise` (so what it assigns never reaches the code after the `if`)?"""
    body = getattr(block, "body", ())
    last = body[-1] if body else None
    if isinstance(block, cst.SimpleStatementSuite):
        last = block
    return isinstance(last, cst.SimpleStatementLine | cst.SimpleStatementSuite) and isinstance(last.body[-1], cst.Return | cst.Raise)


def _same_size(a: cst.BaseExpression | None, b: cst.BaseExpression | None) -> bool:
    return a is not None and b is not None and code(a) == code(b)


Sizes = dict[str, cst.BaseExpression | None]  # variable -> its feature size


@dataclass
class _IfSizes:
    before: Sizes
    blocks: set[cst.BaseSuite]  # the `if`'s own branch blocks (an `elif` is an `if` of its own)
    after: list[Sizes] = field(default_factory=list)  # the sizes at the end of each branch that flows on


class ConditionalBranches:
    """The `if`s of one NNX method: the guard of what is built now (`layer_guard`, which `add_to_init`
    records), branches on constructor state counted as part of the method's block, and feature sizes
    merged over the branches of every `if`.

    The NNX method rewriter owns one and calls it at every `if` (`visit_if` / `leave_if`) and block
    (`enter_block` / `leave_block`); `sizes` is the rewriter's own table of variable sizes.
    """

    def __init__(self, room: NnxMethod, sizes: Sizes) -> None:
        self.room = room
        self.sizes = sizes
        self.layer_guard: Guard = ()
        self._guards: dict[cst.CSTNode, Guard] = {}  # branch block -> its guard
        self._outer_guards: list[Guard] = []
        self._ifs: list[_IfSizes] = []
        self._branch_returns: list[cst.BaseExpression | None] = []
        self._init_attributes = init_attributes(room.conversion.init_def)

    def read(self, body: cst.BaseSuite) -> list[tuple[cst.BaseSuite, Guard]]:
        """Find the method's branches on constructor state: they run at most once, as part of the method's
        block, so their layers are hoisted (under their guard)."""
        blocks = list(guarded_blocks(body, self.is_constructor_condition))
        for block, guard in blocks[1:]:
            self._guards[block] = guard
            self.room.inline_block(block)
        return blocks

    def is_constructor_condition(self, test: cst.BaseExpression) -> bool:
        """Does the test read only what `__init__` has (so `__init__` can evaluate it the same way)?"""
        if (analysis.Names.of(test).used & self.room.method_locals) - self.room.conversion.locals_in_init:
            return False
        reads = _SelfReads()
        reads.walk(test)
        uses_haiku = any(self.room.ctx.names.haiku_api(n) is not None for n in _references(test))
        return not reads.calls_self and not uses_haiku and reads.attributes <= self._init_attributes

    def returned(self, size: cst.BaseExpression | None) -> cst.BaseExpression | None:
        """The method's output size, given a `return` of `size` at its top level or in a conditional
        branch: known only while every return agrees."""
        sizes = [*self._branch_returns, size]
        if self.layer_guard:
            self._branch_returns.append(size)
        return size if all(_same_size(size, s) for s in sizes) else None

    # -- branches: the guard of what is built there, and the sizes each leaves ---------------------
    def visit_if(self, node: cst.If) -> None:
        if node not in self.room.ctx.fact(CONTROL_FLOW).guards:  # `hk.running_init()` keeps one branch
            blocks = {node.body} | ({node.orelse.body} if isinstance(node.orelse, cst.Else) else set())
            self._ifs.append(_IfSizes(dict(self.sizes), blocks))

    def leave_if(self, original: cst.If) -> None:
        if original not in self.room.ctx.fact(CONTROL_FLOW).guards:
            frame = self._ifs.pop()
            if original.orelse is None:  # the test failing keeps the sizes
                frame.after.append(frame.before)
            elif isinstance(original.orelse, cst.If):  # what the `elif` chain left
                frame.after.append(dict(self.sizes))
            self._merge(frame.after)

    def _merge(self, branches: list[Sizes]) -> None:
        self.sizes.clear()
        if not branches:  # every branch returns: what follows is unreachable
            return
        for name in set().union(*branches):
            values = [b.get(name) for b in branches]
            if all(_same_size(values[0], v) for v in values):
                self.sizes[name] = values[0]

    def enter_block(self, node: cst.BaseSuite) -> None:
        guard = self._guards.get(node)
        if guard is not None:
            self._outer_guards.append(self.layer_guard)
            self.layer_guard = guard

    def leave_block(self, original: cst.BaseSuite) -> None:
        if original in self._guards:
            self.layer_guard = self._outer_guards.pop()
        if self._ifs and original in self._ifs[-1].blocks:
            frame = self._ifs[-1]
            if not _ends_flow(original):
                frame.after.append(dict(self.sizes))
            self.sizes.clear()
            self.sizes.update(frame.before)


class _References(Walker):
    def __init__(self) -> None:
        self.found: list[cst.BaseExpression] = []

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        self.found.append(node)
        return False

    def visit_Name(self, node: cst.Name) -> None:
        self.found.append(node)


def _references(node: cst.CSTNode) -> list[cst.BaseExpression]:
    walker = _References()
    walker.walk(node)
    return walker.found
