"""The base of every rule transformer: reporting, and TODO comments on the enclosing statement."""

from __future__ import annotations

import libcst as cst

from .context import Context, add_todo_lines

STATEMENTS = (cst.SimpleStatementLine, cst.BaseCompoundStatement)


class Rewriter(cst.CSTTransformer):
    """A LibCST transformer that knows the conversion context.

    `todo(node, rule, reason)` leaves the code as it is, reports it, and puts a
    `# TODO(haiku2flax:RULE): reason` comment above the innermost statement holding `node`.
    `insert_before_statement(line)` puts a new statement before the innermost simple statement.
    """

    def __init__(self, ctx: Context) -> None:
        super().__init__()
        self.ctx = ctx
        self._statement_todos: list[list[tuple[str, str]]] = []
        self._inserted: list[list[cst.SimpleStatementLine]] = []

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

    # -- statement tracking ------------------------------------------------------------------------
    def on_visit(self, node: cst.CSTNode) -> bool:
        if isinstance(node, STATEMENTS):
            self._statement_todos.append([])
        if isinstance(node, cst.SimpleStatementLine):
            self._inserted.append([])
        return super().on_visit(node)

    def on_leave(self, original_node: cst.CSTNode, updated_node: cst.CSTNode):  # type: ignore[override]
        result = super().on_leave(original_node, updated_node)
        if isinstance(original_node, STATEMENTS):
            todos = self._statement_todos.pop()
            if isinstance(result, cst.FlattenSentinel) and todos:
                nodes = list(result.nodes)
                result = cst.FlattenSentinel([add_todo_lines(nodes[0], todos), *nodes[1:]])
            elif isinstance(result, cst.CSTNode):
                result = add_todo_lines(result, todos)
        if isinstance(original_node, cst.SimpleStatementLine):
            inserted = self._inserted.pop()
            if inserted and isinstance(result, cst.SimpleStatementLine):
                first = inserted[0].with_changes(leading_lines=result.leading_lines)
                result = cst.FlattenSentinel([first, *inserted[1:], result.with_changes(leading_lines=[])])
        return result
