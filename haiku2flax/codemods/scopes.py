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
from .interfaces import NNX_NODES, FileRoom, MethodRoom, NnxMethod, on_leave

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


def _name_scope(room: FileRoom, node: cst.With) -> bool:
    """Is this `with` a lone name scope, which converts?"""
    return len(node.items) == 1 and node.items[0].asname is None and _is_scope(room, node.items[0].item)


def _is_scope(room: FileRoom, node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.Call) and room.ctx.names.haiku_api(node.func) in NAME_SCOPES


@on_leave(cst.With, rule=RULE_NAME_SCOPE)
def drop_name_scope(room: MethodRoom, original: cst.With, updated: cst.With) -> cst.FlattenSentinel[cst.BaseStatement] | None:
    """The `with` of a name scope gives way to its body."""
    if not _name_scope(room, original):
        if any(_is_scope(room, item.item) for item in original.items):
            room.todo(original, RULE_NAME_SCOPE, SCOPE_SHAPE)
        return None
    if not isinstance(updated.body, cst.IndentedBlock):
        room.todo(original, RULE_NAME_SCOPE, "write the body of the name scope on its own lines")
        return None
    room.converted(original, RULE_NAME_SCOPE, "name scope dropped, its body kept (Flax names layers by module path)")
    first, *rest = updated.body.body
    assert isinstance(first, cst.SimpleStatementLine | cst.BaseCompoundStatement)
    return cst.FlattenSentinel([first.with_changes(leading_lines=[*updated.leading_lines, *first.leading_lines]), *rest])


@NNX_NODES.on_visit(cst.With, rule=RULE_NAME_SCOPE)
def name_scope_block(room: NnxMethod, node: cst.With) -> None:
    """NNX: a name scope's body is part of the method's own block, so the layers built there are
    hoisted like any other."""
    if _name_scope(room, node):
        room.inline_block(node.body)


@on_leave(cst.Decorator, rule=RULE_TRANSPARENT)
def drop_transparent(room: MethodRoom, original: cst.Decorator, updated: cst.Decorator) -> cst.RemovalSentinel | None:
    """`@hk.transparent` goes (Linen: the converter visits whole classes; NNX: nested functions)."""
    return cst.RemovalSentinel.REMOVE if _transparent(room, original) else None


def _transparent(room: FileRoom, decorator: cst.Decorator) -> bool:
    """Is this `@hk.transparent` (reported as dropped)?"""
    if room.ctx.names.haiku_api(decorator.decorator) != "transparent":
        return False
    room.converted(decorator, RULE_TRANSPARENT, "@hk.transparent dropped: Flax nests this module's parameters under it")
    return True


def without_transparent(room: FileRoom, classdef: cst.ClassDef) -> cst.ClassDef:
    """NNX: `@hk.transparent` off the methods of a converted class (its method rewriters see method
    bodies only)."""
    if not room.ctx.enabled(RULE_TRANSPARENT):
        return classdef
    body = [
        s.with_changes(decorators=[d for d in s.decorators if not _transparent(room, d)]) if isinstance(s, cst.FunctionDef) else s
        for s in classdef.body.body
    ]
    return classdef.with_changes(body=classdef.body.with_changes(body=body))
