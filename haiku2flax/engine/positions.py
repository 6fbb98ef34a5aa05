"""Line and column of a few nodes, at the price of generating the code once.

LibCST's PositionProvider gives every node of a file its range, tracking line and column token by
token while it generates the code again: for the handful of nodes a conversion reports on, that cost
more than parsing the file. Here code generation records, for the requested nodes only, where they
start in the token stream, and the generated text turns that into line and column afterwards. The
positions are PositionProvider's starts, to the node: syntactic (a statement starts after its leading
comments, an expression inside its parentheses).

Both generate code without LibCST's per-node context manager for syntactic positions (a generator run
for every node, a third of code generation's time), which only position tracking needs.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Collection, Iterator
from contextlib import _GeneratorContextManager, contextmanager
from dataclasses import dataclass, field
from types import TracebackType

import libcst as cst
from libcst._nodes.internal import CodegenState

NEWLINE = re.compile(r"\r\n?|\n")


class _NoRecording(_GeneratorContextManager[None, None, None]):
    """A context that does nothing, made once and entered any number of times (LibCST declares the
    generator-based kind, made anew for every node)."""

    def __init__(self) -> None:
        pass

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None) -> None:
        return None


_NO_RECORDING = _NoRecording()


class _PlainState(CodegenState):
    """Code generation that records no position."""

    __slots__ = ()

    def record_syntactic_position(
        self, node: cst.CSTNode, *, start_node: cst.CSTNode | None = None, end_node: cst.CSTNode | None = None
    ) -> _GeneratorContextManager[None, None, None]:
        return _NO_RECORDING


@dataclass
class _RecordingState(CodegenState):
    """Code generation that notes the token index where each wanted node starts."""

    wanted: set[int] = field(default_factory=set)
    starts: dict[int, int] = field(default_factory=dict)  # id(node) -> index of its first token
    _pending: dict[int, int] = field(default_factory=dict)  # whitespace-inclusive starts of open nodes

    def before_codegen(self, node: cst.CSTNode) -> None:
        if id(node) in self.wanted:
            self._pending[id(node)] = len(self.tokens)

    def after_codegen(self, node: cst.CSTNode) -> None:
        if id(node) in self.wanted:
            self.starts.setdefault(id(node), self._pending.pop(id(node)))  # a syntactic start wins

    def record_syntactic_position(
        self, node: cst.CSTNode, *, start_node: cst.CSTNode | None = None, end_node: cst.CSTNode | None = None
    ) -> _GeneratorContextManager[None, None, None]:
        return self._recording(node, start_node) if id(node) in self.wanted else _NO_RECORDING

    @contextmanager
    def _recording(self, node: cst.CSTNode, start_node: cst.CSTNode | None) -> Iterator[None]:
        if start_node is not None:
            self.wanted.add(id(start_node))
        start = len(self.tokens)
        yield
        self.starts[id(node)] = self.starts[id(start_node)] if start_node is not None else start


def generate(module: cst.Module, nodes: Collection[cst.CSTNode]) -> tuple[str, dict[int, tuple[int, int]]]:
    """`module.code`, and the 1-based line and 0-based column where each of `nodes` (by id) starts.

    A node that is not in the module has no entry.
    """
    if not nodes:  # plain code generation: no recording on every node
        return code(module), {}
    wanted = {id(n) for n in nodes}
    state = _RecordingState(default_indent=module.default_indent, default_newline=module.default_newline, wanted=set(wanted))
    module._codegen(state)
    text = "".join(state.tokens)
    if not state.starts:
        return text, {}
    offsets = list(itertools.accumulate(map(len, state.tokens), initial=0))
    line_starts = [0, *(match.end() for match in NEWLINE.finditer(text))]  # one pass, however many nodes
    return text, {key: _line_column(line_starts, offsets[index]) for key, index in state.starts.items() if key in wanted}


def code(module: cst.Module) -> str:
    """`module.code`, generated faster."""
    state = _PlainState(default_indent=module.default_indent, default_newline=module.default_newline)
    module._codegen(state)
    return "".join(state.tokens)


def _line_column(line_starts: list[int], offset: int) -> tuple[int, int]:
    line = bisect.bisect_right(line_starts, offset)
    return line, offset - line_starts[line - 1]
