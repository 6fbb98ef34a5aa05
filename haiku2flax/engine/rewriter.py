"""The base of every rule transformer: reporting, and TODO comments on the enclosing statement."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Protocol, TypeVar, cast

import libcst as cst

from .context import Context, add_todo_lines
from .walk import TRIVIA, Transformer, TransformHook as Hook, class_hook, content_fields

STATEMENTS = (cst.SimpleStatementLine, cst.BaseCompoundStatement)
Built = TypeVar("Built")


FamilyState = TypeVar("FamilyState")


class NodeRuleTable(Protocol):
    """Rules keyed by node type that a target runs before its own hooks (`codemods.interfaces.NodeRules`)."""

    def hooks(self, kind: type, visit: Hook, leave: Hook) -> tuple[Hook, Hook]: ...


class Rewriter(Transformer):
    """A LibCST transformer that knows the conversion context.

    `todo(node, rule, reason)` leaves the code as it is, reports it, and puts a
    `# TODO(haiku2flax:RULE): reason` comment above the innermost statement holding `node`.
    `insert_before_statement(line)` puts a new statement before the innermost simple statement;
    `remove_statement(statement)`, returned by its leave hook, drops it and hands its blank lines on.

    Hooks are the `visit_<Node>` / `leave_<Node>` methods of the class, looked up once per node type
    (LibCST looks them up at every node), preceded by the rules of `node_rules` for that type (and followed
    by those registered to run after it);
    per-field hooks (`visit_<Node>_<field>`) are not called.
    Whitespace, comments and punctuation (most of a tree's nodes) are not walked into, and come out
    as they were, unless the class has a hook for one of them; nor are the nodes that hold nothing else
    (`Name`, `Integer`, `Pass`): their hooks run, and LibCST does not rebuild them.
    """

    _hooks: dict[type, tuple[Hook, Hook, bool, bool, bool]] = {}
    node_rules: ClassVar[NodeRuleTable | None] = None  # a target's rules by node type

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls._hooks = {}

    def __init__(self, ctx: Context) -> None:
        super().__init__()
        self.ctx = ctx
        self._statement_todos: list[list[tuple[str, str]]] = []
        self._inserted: list[list[cst.SimpleStatementLine]] = []
        self._removed_lines: list[cst.EmptyLine] = []  # the blank lines of the statement being removed
        self._blank_lines: list[cst.EmptyLine] = []  # those of the statement just removed, for the next one
        self._receivers: dict[int, list[cst.EmptyLine]] = {}  # statement id -> blank lines to put above it
        self._families: dict[type, object] = {}  # rule families' own state for this pass

    def family(self, kind: type[FamilyState]) -> FamilyState:
        """A rule family's own state for this pass, made by `kind()` on first use."""
        state = self._families.get(kind)
        if state is None:
            state = self._families[kind] = kind()
        return cast(FamilyState, state)

    # -- reporting ---------------------------------------------------------------------------------
    def converted(self, node: cst.CSTNode, rule: str, message: str) -> None:
        self.ctx.notes.converted(node, rule, message)

    def warn(self, node: cst.CSTNode, rule: str, message: str) -> None:
        self.ctx.notes.warn(node, rule, message)

    def todo(self, node: cst.CSTNode, rule: str, reason: str) -> None:
        self.ctx.notes.todo(node, rule, reason)
        if self._statement_todos:
            self._statement_todos[-1].append((rule, reason))

    def insert_before_statement(self, line: cst.SimpleStatementLine) -> None:
        if self._inserted:
            self._inserted[-1].append(line)

    def remove_statement(self, statement: cst.SimpleStatementLine) -> cst.RemovalSentinel:
        """What a leave hook returns to drop `statement`; its blank lines go to the next statement of its block."""
        self._removed_lines = [line for line in statement.leading_lines if line.comment is None]
        return cst.RemovalSentinel.REMOVE

    def todos_apart(self, build: Callable[[], Built | None]) -> tuple[Built | None, list[tuple[str, str]]]:
        """`build()` and the TODOs it raised, for the caller to put above what it built; when it built
        nothing (None) they stay above the current statement."""
        self._statement_todos.append([])
        try:
            built = build()
        finally:
            todos = self._statement_todos.pop()
        if built is None and self._statement_todos:
            self._statement_todos[-1].extend(todos)
        return built, todos

    # -- dispatch and statement tracking ------------------------------------------------------------
    def _hooks_for(self, kind: type) -> tuple[Hook, Hook, bool, bool, bool]:
        """(visit hook, leave hook, walk the children, is a statement, is a simple statement line) for a node type."""
        hooks = self._hooks.get(kind)
        if hooks is None:
            cls = type(self)
            descend = cls._walks_trivia or (kind not in TRIVIA and bool(content_fields(kind)))
            statement, simple_line = issubclass(kind, STATEMENTS), kind is cst.SimpleStatementLine
            visit, leave = class_hook(cls, "visit", kind), class_hook(cls, "leave", kind)
            if cls.node_rules is not None:
                visit, leave = cls.node_rules.hooks(kind, visit, leave)
            hooks = self._hooks[kind] = (visit, leave, descend, statement, simple_line)
        return hooks

    def on_visit(self, node: cst.CSTNode) -> bool:
        visit, _, descend, statement, simple_line = self._hooks.get(type(node)) or self._hooks_for(type(node))
        if statement:
            self._statement_todos.append([])
            if self._blank_lines:
                self._receivers[id(node)], self._blank_lines = self._blank_lines, []
        if simple_line:
            self._inserted.append([])
        return (visit is None or visit(self, node) is not False) and descend

    def on_leave(
        self, original_node: cst.CSTNodeT, updated_node: cst.CSTNodeT
    ) -> cst.CSTNodeT | cst.RemovalSentinel | cst.FlattenSentinel[cst.CSTNodeT]:
        _, leave, _, statement, simple_line = self._hooks.get(type(original_node)) or self._hooks_for(type(original_node))
        result = leave(self, original_node, updated_node) if leave is not None else updated_node
        if statement:
            todos = self._statement_todos.pop()
            if isinstance(result, cst.FlattenSentinel) and todos:
                nodes = list(result.nodes)
                result = cst.FlattenSentinel([add_todo_lines(nodes[0], todos), *nodes[1:]])
            elif isinstance(result, cst.CSTNode):
                result = add_todo_lines(result, todos)
        if simple_line:
            inserted = self._inserted.pop()
            if inserted and isinstance(result, cst.SimpleStatementLine):
                first = inserted[0].with_changes(leading_lines=result.leading_lines)
                result = cst.FlattenSentinel([first, *inserted[1:], result.with_changes(leading_lines=[])])
        if self._blank_lines or self._removed_lines:  # only the next statement of the same block takes them
            self._blank_lines, self._removed_lines = self._removed_lines, []
        if statement and self._receivers:
            lines = self._receivers.pop(id(original_node), None)
            if lines and isinstance(result, STATEMENTS):
                result = result.with_changes(leading_lines=[*lines, *result.leading_lines])
        return result
