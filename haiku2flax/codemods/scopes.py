"""Parameter-path constructs: `@hk.transparent` and `with hk.experimental.name_scope(...)` / `hk.name_scope`.

What it converts, in both targets:
- `@hk.transparent` on a method: the decorator goes. Haiku then puts the method's layers in the
  caller's scope (`model/linear`); Flax nests them under the submodule (`Model_0/TwoLayers_0/Dense_0`,
  `self.two_layers.linear`).
- `with hk.experimental.name_scope("x"):` (and its alias `hk.name_scope`): the `with` goes and its body
  stays, in the enclosing block. Haiku prefixes the parameter paths inside it (`encoder/x/linear`);
  Flax names layers after their class or attribute only.

Why: neither changes what the code computes, only the names of Haiku's parameters, and Flax derives
names from its module tree. `haiku2flax verify` and `convert-params` match layers by call order, not
by name, so trained weights still convert; code that indexes parameters by those Haiku paths must be
checked (the parameter-path rule resolves the usual paths, not transparent or scoped ones).

Not converted (TODO with the reason): a name scope with `as`, or several context managers in one `with`,
and `hk.transparent` / `hk.name_scope` used other than as a method decorator / a `with` item.

Example::

    with hk.experimental.name_scope("embed"):     h = jax.nn.gelu(nn.Dense(self.width)(x))  # Linen
      h = jax.nn.gelu(hk.Linear(self.width)(x))
"""

from __future__ import annotations

import libcst as cst

from ..engine.registry import Status, register
from ..engine.rewriter import Rewriter

RULE_TRANSPARENT = register(
    "HK309", "transparent", Status.CONVERTED, "@hk.transparent: dropped (Flax nests the parameters; weights map by call order)", __name__,
    apis=("transparent",),
)
RULE_NAME_SCOPE = register(
    "HK310", "name-scope", Status.PARTIAL, "with hk.experimental.name_scope(...): the body stays, the scope goes (paths only)", __name__,
    apis=("experimental.name_scope", "name_scope"),
)

NAME_SCOPES = ("experimental.name_scope", "name_scope")
SCOPE_SHAPE = (
    "a name scope is converted as the only item of a `with` without `as` (its body then stays, as Flax "
    "has no name scopes); split the `with`, or convert it by hand"
)


class _Scopes(Rewriter):
    """Both targets: the `with` of a name scope gives way to its body."""

    def name_scope(self, node: cst.With) -> bool:
        """Is this `with` a lone name scope, which converts?"""
        return len(node.items) == 1 and node.items[0].asname is None and self._is_scope(node.items[0].item)

    def _is_scope(self, node: cst.BaseExpression) -> bool:
        return isinstance(node, cst.Call) and self.ctx.names.haiku_api(node.func) in NAME_SCOPES

    def leave_With(self, original: cst.With, updated: cst.With):
        if not self.name_scope(original):
            if any(self._is_scope(item.item) for item in original.items):
                self.todo(original, RULE_NAME_SCOPE, SCOPE_SHAPE)
            return super().leave_With(original, updated)
        self.converted(original, RULE_NAME_SCOPE, "name scope dropped, its body kept (Flax names layers by module path)")
        body = list(updated.body.body)  # type: ignore[attr-defined]
        first = body[0].with_changes(leading_lines=[*updated.leading_lines, *body[0].leading_lines])
        return cst.FlattenSentinel([first, *body[1:]])

    def leave_Decorator(self, original: cst.Decorator, updated: cst.Decorator):
        if _transparent(self, original):
            return cst.RemovalSentinel.REMOVE
        return super().leave_Decorator(original, updated)


def _transparent(rewriter: Rewriter, decorator: cst.Decorator) -> bool:
    """Is this `@hk.transparent` (reported as dropped)?"""
    if rewriter.ctx.names.haiku_api(decorator.decorator) != "transparent":
        return False
    rewriter.converted(decorator, RULE_TRANSPARENT, "@hk.transparent dropped: Flax nests this module's parameters under it")
    return True


class LinenScopes(_Scopes):
    """Linen: the converter visits whole classes, decorators included."""


class NnxScopes(_Scopes):
    """NNX (a mixin of the method rewriter): a name scope's body is part of the method's own block, so the
    layers built there are hoisted like any other."""

    def visit_With(self, node: cst.With) -> bool | None:
        if self.name_scope(node):
            self.inline_blocks.add(id(node.body))  # type: ignore[attr-defined]
        return super().visit_With(node)


class NnxTransparentMethods(Rewriter):
    """NNX (a mixin of the whole-file converter, whose method rewriters see method bodies only):
    `@hk.transparent` on the methods of a converted class."""

    def leave_ClassDef(self, original: cst.ClassDef, updated: cst.ClassDef) -> cst.ClassDef:
        if original.name.value in self.classes:  # type: ignore[attr-defined]
            body = [
                s.with_changes(decorators=[d for d in s.decorators if not _transparent(self, d)]) if isinstance(s, cst.FunctionDef) else s
                for s in updated.body.body
            ]
            updated = updated.with_changes(body=updated.body.with_changes(body=body))
        return super().leave_ClassDef(original, updated)  # type: ignore[return-value]
