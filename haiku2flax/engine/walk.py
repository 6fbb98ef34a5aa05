"""Read-only passes over a LibCST tree, several times cheaper than `cst.CSTVisitor`.

LibCST's visitors and transformers share one traversal, which rebuilds every node it passes: a helper
pass that only reads (collect the names a function uses, find the calls of `model.init`) costs as
much as a rewrite of the file. `Walker` has the same hooks in the same order — `visit_<Node>(node)`,
returning False to skip the node's children, and `leave_<Node>(node)` — and touches nothing.
Whitespace, comments and punctuation are walked only by a walker with a hook for one of them.
`descendants(node)` yields the same nodes, for a search that keeps no state. `Transformer` is the
same economy for a pass that rewrites.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

import libcst as cst

# Nodes that hold only whitespace, comments or punctuation.
TRIVIA = frozenset(
    {
        cst.SimpleWhitespace, cst.ParenthesizedWhitespace, cst.TrailingWhitespace, cst.EmptyLine, cst.Comment, cst.Newline,
        cst.Comma, cst.Dot, cst.Colon, cst.Semicolon, cst.AssignEqual, cst.LeftParen, cst.RightParen,
        cst.LeftSquareBracket, cst.RightSquareBracket, cst.LeftCurlyBrace, cst.RightCurlyBrace,
    }
)

# LibCST gives its node classes slots by making each again: the class made first stays among its base's
# subclasses (`BaseParenthesizableWhitespace.__subclasses__()`), under the same name.
_TRIVIA_NAMES = frozenset((kind.__module__, kind.__qualname__) for kind in TRIVIA)

_FIELDS: dict[type, tuple[str, ...]] = {}
_CONTENT_FIELDS: dict[type, tuple[str, ...]] = {}


def _fields(kind: type[cst.CSTNode]) -> tuple[str, ...]:
    """The fields holding a node's children, in LibCST's visiting (source) order.

    That order is the order in which the node's `_visit_and_replace_children` names the fields, which
    its code object keeps in its constants (dataclass field order differs: decorators, `IfExp`).
    """
    names = {field.name for field in dataclasses.fields(kind)}
    visit_children = kind._visit_and_replace_children
    assert isinstance(visit_children, types.FunctionType)  # every CSTNode class defines it as a plain method
    code = visit_children.__code__
    order = tuple(dict.fromkeys(c for c in code.co_consts if isinstance(c, str) and c in names))
    _FIELDS[kind] = order
    return order


def content_fields(kind: type) -> tuple[str, ...]:
    """`_fields(kind)` less those whose declared type holds only whitespace, comments or punctuation
    (`lpar`, `comma`, `whitespace_after_func`): most of a node's fields, read for nothing otherwise."""
    fields = _fields(kind)
    try:
        hints = typing.get_type_hints(kind)
    except Exception:  # an annotation that does not resolve: keep every field
        hints = {}
    content = tuple(name for name in fields if name not in hints or not all(map(_holds_only_trivia, _leaf_types(hints[name]))))
    _CONTENT_FIELDS[kind] = content
    return content


def _leaf_types(annotation: object) -> list[object]:
    """`Sequence[Union[Comma, MaybeSentinel]]` -> [Comma, MaybeSentinel]."""
    if typing.get_origin(annotation) is None:
        return [annotation]
    return [leaf for argument in typing.get_args(annotation) for leaf in _leaf_types(argument)]


def _holds_only_trivia(annotation: object) -> bool:
    """A field of this type never holds a node that is walked: it is trivia, a base of trivia only,
    or not a node (`str`, `None`, `MaybeSentinel`)."""
    if not isinstance(annotation, type):
        return False
    if not issubclass(annotation, cst.CSTNode):
        return annotation in (str, type(None), cst.MaybeSentinel)
    trivia = annotation in TRIVIA or (annotation.__module__, annotation.__qualname__) in _TRIVIA_NAMES
    return trivia or bool(annotation.__subclasses__()) and all(map(_holds_only_trivia, annotation.__subclasses__()))


def _is_walked(kind: type, trivia: bool) -> bool:
    return issubclass(kind, cst.CSTNode) and (trivia or kind not in TRIVIA)


Hook = Callable[..., object] | None
TransformHook = Callable[..., Any] | None  # what a transformer's hook returns goes into the tree
Node = TypeVar("Node", bound=cst.CSTNode)


class Walker:
    """A read-only visitor: subclass it with `visit_<Node>` / `leave_<Node>` hooks, then `walk(node)`.

    As in `cst.CSTVisitor`, `on_visit(node)` / `on_leave(node)` see every node and call the hooks; a
    subclass that overrides them calls `super()`.
    """

    _hooks: dict[type, tuple[Hook, Hook]] = {}
    _walked: dict[type, bool] = {}  # per type of field value: is it a node whose walk does something?
    _trivia = False
    _generic = False  # on_visit / on_leave are overridden

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls._hooks = {}
        cls._walked = {}
        cls._trivia = any(hasattr(cls, f"{prefix}_{kind.__name__}") for kind in TRIVIA for prefix in ("visit", "leave"))
        cls._generic = cls.on_visit is not Walker.on_visit or cls.on_leave is not Walker.on_leave

    def _hooks_for(self, kind: type) -> tuple[Hook, Hook]:
        hooks = self._hooks.get(kind)
        if hooks is None:
            cls = type(self)
            visit, leave = (getattr(cls, f"{prefix}_{kind.__name__}", None) for prefix in ("visit", "leave"))
            hooks = self._hooks[kind] = (visit, leave)
        return hooks

    def on_visit(self, node: cst.CSTNode) -> bool:
        visit = self._hooks_for(type(node))[0]
        return visit is None or visit(self, node) is not False

    def on_leave(self, original_node: cst.CSTNode) -> None:
        leave = self._hooks_for(type(original_node))[1]
        if leave is not None:
            leave(self, original_node)

    def walk(self, node: cst.CSTNode) -> None:
        if self._generic:
            if self.on_visit(node):
                self._walk_children(node)
            self.on_leave(node)
            return
        kind = type(node)
        visit, leave = self._hooks.get(kind) or self._hooks_for(kind)
        if visit is None or visit(self, node) is not False:
            self._walk_children(node)
        if leave is not None:
            leave(self, node)

    def _walk_children(self, node: cst.CSTNode) -> None:
        walked = self._walked
        names = _FIELDS.get(type(node)) if self._trivia else _CONTENT_FIELDS.get(type(node))
        if names is None:
            names = _fields(type(node)) if self._trivia else content_fields(type(node))
        for name in names:
            value = getattr(node, name)
            kind = type(value)
            if kind is tuple or kind is list:
                for item in value:
                    walk = walked.get(type(item))
                    if walk is None:
                        walk = self._walks(type(item))
                    if walk:
                        self.walk(item)
                continue
            walk = walked.get(kind)
            if walk is None:
                walk = self._walks(kind)
            if walk:
                self.walk(value)

    def _walks(self, kind: type) -> bool:
        """Whether a child of this type is walked: a node, unless walking it would do nothing (no hook of
        this walker for it, no children it walks: a name, a number, an operator), which is most nodes."""
        walks = _is_walked(kind, self._trivia)
        if walks and not self._generic and self._hooks_for(kind) == (None, None):
            fields = (_FIELDS if self._trivia else _CONTENT_FIELDS).get(kind)
            if fields is None:
                fields = _fields(kind) if self._trivia else content_fields(kind)
            walks = bool(fields)
        self._walked[kind] = walks
        return walks


_DESCENDANTS_WALKED: dict[type, bool] = {}  # per type of field value: a node `descendants` yields?


def descendants(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """`node` and every node under it but whitespace and punctuation, in source order."""
    stack = [node]
    while stack:
        node = stack.pop()
        yield node
        stack.extend(reversed(_children(node)))


def _children(node: cst.CSTNode) -> list[cst.CSTNode]:
    """The nodes right under `node` but whitespace and punctuation, in source order."""
    walked = _DESCENDANTS_WALKED
    below = []
    names = _CONTENT_FIELDS.get(type(node))
    for name in content_fields(type(node)) if names is None else names:
        value = getattr(node, name)
        for item in value if type(value) is tuple or type(value) is list else (value,):
            walk = walked.get(type(item))
            if walk is None:
                walk = walked[type(item)] = _is_walked(type(item), trivia=False)
            if walk:
                below.append(item)
    return below


def class_hook(cls: type, prefix: str, kind: type) -> TransformHook:
    """`cls`'s `visit_<Node>` / `leave_<Node>` for `kind`, None for LibCST's do-nothing defaults."""
    hook = getattr(cls, f"{prefix}_{kind.__name__}", None)
    return None if getattr(hook, "_is_no_op", False) else hook


class Transformer(cst.CSTTransformer):
    """A LibCST transformer that looks its `visit_<Node>` / `leave_<Node>` hooks up once per node type
    (LibCST looks them up at every node and calls two per-field hooks besides; those, `visit_<Node>_<field>`,
    are not called here).

    Whitespace, comments and punctuation (most of a tree's nodes) are not walked into, and come out as
    they were, unless the class has a hook for one of them; nor are the nodes that hold nothing else
    (`Name`, `Integer`, `Pass`): their hooks run, and LibCST does not rebuild them.
    """

    _node_hooks: dict[type, tuple[TransformHook, TransformHook, bool]] = {}
    _walks_trivia = False
    _spine: set[int] | None = None  # in `applied`: the nodes that are or hold one `changes` picks

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls._node_hooks = {}
        cls._walks_trivia = any(class_hook(cls, prefix, kind) for kind in TRIVIA for prefix in ("visit", "leave"))

    def _node_hooks_for(self, kind: type) -> tuple[TransformHook, TransformHook, bool]:
        """(visit hook, leave hook, walk the children) for a node type."""
        hooks = self._node_hooks.get(kind)
        if hooks is None:
            cls = type(self)
            descend = cls._walks_trivia or (kind not in TRIVIA and bool(content_fields(kind)))
            hooks = self._node_hooks[kind] = (class_hook(cls, "visit", kind), class_hook(cls, "leave", kind), descend)
        return hooks

    def on_visit(self, node: cst.CSTNode) -> bool:
        if self._spine is not None and id(node) not in self._spine:
            return False
        visit, _, descend = self._node_hooks.get(type(node)) or self._node_hooks_for(type(node))
        return (visit is None or visit(self, node) is not False) and descend

    def on_leave(
        self, original_node: cst.CSTNodeT, updated_node: cst.CSTNodeT
    ) -> cst.CSTNodeT | cst.RemovalSentinel | cst.FlattenSentinel[cst.CSTNodeT]:
        leave = (self._node_hooks.get(type(original_node)) or self._node_hooks_for(type(original_node)))[1]
        if leave is None:
            return updated_node
        result: cst.CSTNodeT | cst.RemovalSentinel | cst.FlattenSentinel[cst.CSTNodeT] = leave(self, original_node, updated_node)
        return result

    def on_visit_attribute(self, node: cst.CSTNode, attribute: str) -> None:
        pass

    def on_leave_attribute(self, original_node: cst.CSTNode, attribute: str) -> None:
        pass

    def changes(self, node: cst.CSTNode) -> bool:
        """Whether this pass may rewrite `node` itself (its hooks give any other node back as it came);
        a pass that can tell says so, and `applied` rebuilds only what leads to such nodes."""
        return True

    def applied(self, node: Node) -> Node:
        """`node` through this pass (which replaces it by a node of its kind), walking only into the
        nodes that are or hold one `changes` picks: `node` itself when there is none. Elsewhere the pass
        would copy each node for nothing (whitespace and punctuation are never among those it changes)."""
        spine: set[int] = set()
        self._mark_spine(node, spine)
        if id(node) not in spine:
            return node
        self._spine = spine
        try:
            return cast(Node, node.visit(self))
        finally:
            self._spine = None

    def _mark_spine(self, node: cst.CSTNode, spine: set[int]) -> bool:
        below = False
        for child in _children(node):
            below = self._mark_spine(child, spine) or below
        if below or self.changes(node):
            spine.add(id(node))
            return True
        return False
