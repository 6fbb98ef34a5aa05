"""The engine's fast paths agree with the LibCST machinery they replace, on every fixture.

`Walker` visits what `cst.CSTVisitor` visits, in the same order; `Transformer` rewrites as
`cst.CSTTransformer` does; `positions.generate` gives PositionProvider's starts and `positions.code`
LibCST's code; `engine.matchers` answers as `libcst.matchers` does. And the command line
loads no more than it needs.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import libcst as cst
import libcst.matchers as lm
import pytest
from libcst.metadata import MetadataWrapper, PositionProvider

from haiku2flax.engine import matchers as m
from haiku2flax.engine import positions
from haiku2flax.engine.calls import parsed
from haiku2flax.engine.walk import TRIVIA, Transformer, Walker, descendants

SOURCES = sorted((Path(__file__).resolve().parent.parent / "fixtures").glob("*/*/*.py"))


def _modules() -> list[cst.Module]:
    return [cst.parse_module(path.read_text(encoding="utf-8")) for path in SOURCES]


class _Order(cst.CSTVisitor):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[cst.CSTNode] = []

    def on_visit(self, node: cst.CSTNode) -> bool:
        self.seen.append(node)
        return True


class _WalkOrder(Walker):
    def __init__(self) -> None:
        self.seen: list[cst.CSTNode] = []

    def on_visit(self, node: cst.CSTNode) -> bool:
        self.seen.append(node)
        return True


class _Names(Walker):
    """Hooks, and a hook that skips children, as the rules write them."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def visit_Name(self, node: cst.Name) -> None:
        self.seen.append(node.value)

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        self.walk(node.value)
        return False


class _LibcstNames(cst.CSTVisitor):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def visit_Name(self, node: cst.Name) -> None:
        self.seen.append(node.value)

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        node.value.visit(self)
        return False


def test_walker_visits_what_cst_visitor_visits() -> None:
    for module in _modules():
        libcst_order, walk_order = _Order(), _WalkOrder()
        module.visit(libcst_order)
        walk_order.walk(module)
        expected = [id(node) for node in libcst_order.seen if type(node) not in TRIVIA]  # trivia hold only trivia
        assert [id(node) for node in walk_order.seen] == expected
        assert [id(node) for node in descendants(module)] == expected
        names, libcst_names = _Names(), _LibcstNames()
        names.walk(module)
        module.visit(libcst_names)
        assert names.seen == libcst_names.seen


class _Numbers(Walker):
    """A hook on leaving a leaf only: the walk skips the leaves no hook asks for, not these."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def leave_Integer(self, node: cst.Integer) -> None:
        self.seen.append(node.value)


def test_walker_leaves_leaves_it_has_hooks_for() -> None:
    for module in _modules():
        numbers = _Numbers()
        numbers.walk(module)
        assert numbers.seen == [node.value for node in descendants(module) if isinstance(node, cst.Integer)]


class _Rename(cst.CSTTransformer):
    """A leaf hook, a trivia hook, a skipped subtree and a removal: what the rules' helpers do."""

    def leave_Name(self, original: cst.Name, updated: cst.Name) -> cst.Name:
        return updated.with_changes(value=updated.value.upper())

    def visit_Lambda(self, node: cst.Lambda) -> bool:
        return False

    def leave_Pass(self, original: cst.Pass, updated: cst.Pass) -> cst.RemovalSentinel:
        return cst.RemovalSentinel.REMOVE


class _FastRename(Transformer, _Rename):
    pass


class _Commas(cst.CSTTransformer):
    def leave_Comma(self, original: cst.Comma, updated: cst.Comma) -> cst.Comma:
        return updated.with_changes(whitespace_after=cst.SimpleWhitespace("  "))


class _FastCommas(Transformer, _Commas):
    pass


def test_transformer_rewrites_as_cst_transformer() -> None:
    for module in _modules():
        for libcst_transformer, transformer in ((_Rename(), _FastRename()), (_Commas(), _FastCommas())):
            expected = module.visit(libcst_transformer).code
            assert module.visit(transformer).code == expected
            assert expected != module.code


class _Upper(Transformer):
    """Rewrites the names it is given; `changes` says so, for `applied`."""

    def __init__(self, names: set[str]) -> None:
        super().__init__()
        self.names = names

    def leave_Name(self, original: cst.Name, updated: cst.Name) -> cst.Name:
        return updated.with_changes(value=updated.value.upper()) if original.value in self.names else updated

    def changes(self, node: cst.CSTNode) -> bool:
        return type(node) is cst.Name and node.value in self.names


def test_applied_rewrites_only_what_leads_to_a_change() -> None:
    for module in _modules():
        names = {node.value for node in descendants(module) if isinstance(node, cst.Name)}
        some = set(sorted(names)[::7])
        applied = _Upper(some).applied(module)
        assert applied.code == module.visit(_Upper(some)).code != module.code
        for statement, original in zip(applied.body, module.body, strict=True):
            rewritten = any(_Upper(some).changes(n) for n in descendants(original))
            assert (statement is original) is not rewritten  # what holds no change is not rebuilt
        assert _Upper({"not_a_name_here"}).applied(module) is module


def test_parsed_shares_one_node_per_text() -> None:
    first = parsed("din_shape[-1]")
    assert first is parsed("din_shape[-1]")
    assert first.deep_equals(cst.parse_expression("din_shape[-1]"))


def _all(module: cst.Module) -> list[cst.CSTNode]:
    found: list[cst.CSTNode] = []
    stack: list[cst.CSTNode] = [module]
    while stack:
        node = stack.pop()
        found.append(node)
        stack.extend(node.children)
    return found


def test_positions_are_position_providers_starts() -> None:
    for module in _modules():
        nodes = _all(module)
        expected = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
        code, starts = positions.generate(module, nodes)
        assert code == module.code
        assert positions.code(module) == module.code
        assert all(starts[id(node)] == (expected[node].start.line, expected[node].start.column) for node in nodes)


@pytest.mark.parametrize(
    "build",
    [
        lambda m: m.Attribute(value=m.Name(), attr=m.Name("init") | m.Name("apply")),
        lambda m: m.SimpleStatementLine(body=[m.Expr(value=m.SimpleString() | m.ConcatenatedString())]),
        lambda m: m.SimpleStatementLine(body=[m.DoNotCare()]),
        lambda m: m.SimpleStatementLine(body=[m.Return(value=m.Call(func=m.Call()))]),
        lambda m: m.UnaryOperation(m.Not(), m.Name()),
        lambda m: m.Arg(keyword=m.Name("training"), value=m.Name("True") | m.Name("False")),
        lambda m: m.Subscript(
            value=m.Attribute(attr=m.Name("shape")),
            slice=[m.SubscriptElement(m.Index(m.UnaryOperation(m.Minus(), m.Integer("1"))))],
        ),
        lambda m: m.Arg(keyword=None),
        lambda m: m.Call(args=[m.Arg(), m.Arg()]),
    ],
)
def test_matchers_answer_as_libcst_matchers(build) -> None:
    ours, theirs = build(m), build(lm)
    for module in _modules():
        for node in _all(module):
            assert m.matches(node, ours) == lm.matches(node, theirs)
    assert not m.matches(cst.MaybeSentinel.DEFAULT, ours)


def _imported_by(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    return set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())


def test_start_up_loads_no_more_than_it_needs() -> None:
    """The command line loads LibCST only for a file that mentions Haiku, and never `libcst.matchers`
    (importing it costs about as much as LibCST itself: use `haiku2flax.engine.matchers`)."""
    assert "libcst" not in _imported_by("import haiku2flax.cli")
    converting = _imported_by("import haiku2flax.cli, haiku2flax.targets.nnx, haiku2flax.targets.linen, haiku2flax.engine.rewrite")
    assert "libcst" in converting
    assert "libcst.matchers" not in converting
