"""`import model` … `model.net.apply(params, x)`: models and classes of another file reached through its module.

The rules follow what a file imports by name (`from model import net`). A file that reaches them through
the module is converted as if it had imported them by name, then given its own style back:
- before: each `model.net` becomes the local name the tree index chose (`FileView.qualified`), bound by a
  `from model import net` put on the line of `import model` (line numbers, which notes give, stay);
- after: that import, as the conversion left it (`from model import make_net`), is removed and each
  name it binds is written through the module again (`model.make_net(...)`). A name the converted code
  also binds itself keeps its import.
"""

from __future__ import annotations

from collections.abc import Mapping

import libcst as cst
from libcst.metadata import MetadataWrapper, ScopeProvider

from .names import dotted_name


def unqualify(source: str, qualified: Mapping[str, tuple[str, str, str]]) -> str:
    """`source` with each `model.net` read as its local name, bound by `from model import net as local`."""
    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError:
        return source  # the conversion reports it
    return module.visit(_Unqualify(qualified)).code


def requalify(code: str, qualified: Mapping[str, tuple[str, str, str]]) -> str:
    """The converted `code` with the imports `unqualify` added removed, their names reached through the module."""
    wrapper = MetadataWrapper(cst.parse_module(code))
    scopes = wrapper.resolve(ScopeProvider)
    module = wrapper.module
    global_scope = scopes.get(module)
    sources = {(source, reached) for source, reached, _ in qualified.values()}
    replaced: dict[cst.CSTNode, cst.BaseExpression] = {}
    added: set[int] = set()  # the imports `unqualify` added
    kept: dict[int, list[cst.ImportAlias]] = {}  # of those, the names the code binds elsewhere too
    for statement in module.body:
        if not isinstance(statement, cst.SimpleStatementLine):
            continue
        for small in statement.body[1:]:
            if not isinstance(small, cst.ImportFrom) or isinstance(small.names, cst.ImportStar) or small.module is None:
                continue
            reached = _reached(statement, dotted_name(small.module) or "", sources)
            if reached is None:
                continue
            added.add(id(small))
            for alias in small.names:
                local = alias.evaluated_alias or alias.evaluated_name
                assignments = list(global_scope.assignments[local]) if global_scope is not None else []
                if len(assignments) != 1:
                    kept.setdefault(id(small), []).append(alias.with_changes(comma=cst.MaybeSentinel.DEFAULT))
                    continue
                through = _dotted(f"{reached}.{alias.evaluated_name}")
                for access in assignments[0].references:  # (those of nested scopes too)
                    replaced[access.node] = through
    return module.visit(_Requalify(replaced, added, kept)).code


def _reached(statement: cst.SimpleStatementLine, source: str, sources: set[tuple[str, str]]) -> str | None:
    """How the line's own `import model [as m]` reaches `source`, when the line has one `unqualify` matched."""
    for small in statement.body:
        if isinstance(small, cst.Import):
            for alias in small.names:
                name = dotted_name(alias.name) or ""
                reached = alias.evaluated_alias or name
                if name == source and (source, reached) in sources:
                    return reached
    return None


def _dotted(text: str) -> cst.Name | cst.Attribute:
    """The expression `a.b.c` of that dotted name."""
    *outer, last = text.split(".")
    return cst.Attribute(_dotted(".".join(outer)), cst.Name(last)) if outer else cst.Name(last)


class _Unqualify(cst.CSTTransformer):
    def __init__(self, qualified: Mapping[str, tuple[str, str, str]]) -> None:
        self.locals = {(reached, attribute): local for local, (_, reached, attribute) in qualified.items()}
        self.qualified = qualified

    def leave_Attribute(self, original: cst.Attribute, updated: cst.Attribute) -> cst.BaseExpression:
        local = self.locals.get((dotted_name(original.value) or "", original.attr.value))
        return cst.Name(local) if local is not None else updated

    def leave_Module(self, original: cst.Module, updated: cst.Module) -> cst.Module:
        """Each binding import on the line of the module-level `import model` it reaches through."""
        pending = dict(self.qualified)
        body = []
        for statement in updated.body:
            if isinstance(statement, cst.SimpleStatementLine):
                imports = [small for small in statement.body if isinstance(small, cst.Import)]
                reached = {alias.evaluated_alias or dotted_name(alias.name) or "": dotted_name(alias.name) or "" for small in imports for alias in small.names}
                added: list[cst.BaseSmallStatement] = []
                for local, (source, through, attribute) in list(pending.items()):
                    if reached.get(through) == source:
                        alias = cst.ImportAlias(cst.Name(attribute), asname=None if local == attribute else cst.AsName(cst.Name(local)))
                        added.append(cst.ImportFrom(module=_dotted(source), names=[alias]))
                        del pending[local]
                statement = statement.with_changes(body=[*statement.body, *added]) if added else statement
            body.append(statement)
        return updated.with_changes(body=body)


class _Requalify(cst.CSTTransformer):
    def __init__(self, replaced: dict[cst.CSTNode, cst.BaseExpression], added: set[int], kept: dict[int, list[cst.ImportAlias]]) -> None:
        self.replaced, self.added, self.kept = replaced, added, kept

    def leave_Name(self, original: cst.Name, updated: cst.Name) -> cst.BaseExpression:
        return self.replaced.get(original, updated)

    def leave_SimpleStatementLine(self, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine) -> cst.SimpleStatementLine:
        if not any(id(small) in self.added for small in original.body):
            return updated
        body = []
        for small_original, small in zip(original.body, updated.body, strict=True):
            if id(small_original) not in self.added:
                body.append(small)
            elif id(small_original) in self.kept:
                assert isinstance(small, cst.ImportFrom)
                body.append(small.with_changes(names=self.kept[id(small_original)]))
        if not body:  # (the conversion removed `import model` itself: the line stays as it is)
            return updated
        last = body[-1].with_changes(semicolon=cst.MaybeSentinel.DEFAULT)
        return updated.with_changes(body=[*body[:-1], last])
