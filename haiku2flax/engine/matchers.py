"""The part of `libcst.matchers` the rules use, without its import cost: `from ..engine import matchers as m`.

`import libcst.matchers` builds a matcher class for every node type: it costs about as much as
importing LibCST itself, on every run of the command (a pre-commit hook runs it on every commit).
Here a pattern is built on demand, with the same meaning: `m.<Node>(...)` takes the node's fields
positionally (in the node's order) or by keyword and matches a node of exactly that type whose given
fields match; a field pattern is another pattern, a list (a sequence of exactly these, element by
element), a string (equal), True/False/None (the same object), or `m.DoNotCare()`; `a | b` matches
what either matches. `matches(node, pattern)` says whether it does. Anything else from
`libcst.matchers` (wildcards, captures, metadata) is not here: import `libcst.matchers` for it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import libcst as cst


class Pattern:
    __slots__ = ()

    def __or__(self, other: Pattern) -> Pattern:
        return _OneOf((*_options(self), *_options(other)))

    def test(self, value: object) -> bool:
        raise NotImplementedError


def _options(pattern: Pattern) -> tuple[Pattern, ...]:
    return pattern.options if isinstance(pattern, _OneOf) else (pattern,)


class _OneOf(Pattern):
    __slots__ = ("options",)

    def __init__(self, options: tuple[Pattern, ...]) -> None:
        self.options = options

    def test(self, value: object) -> bool:
        return any(_field_matches(value, option) for option in self.options)


class _DoNotCare(Pattern):
    __slots__ = ()

    def test(self, value: object) -> bool:
        return True


_DO_NOT_CARE = _DoNotCare()


def DoNotCare() -> Pattern:  # noqa: N802 (spelled as in libcst.matchers)
    return _DO_NOT_CARE


class _NodePattern(Pattern):
    __slots__ = ("kind", "fields")

    def __init__(self, kind: str, fields: tuple[tuple[str, object], ...]) -> None:
        self.kind = kind
        self.fields = fields

    def test(self, value: object) -> bool:
        return type(value).__name__ == self.kind and all(_field_matches(getattr(value, name), want) for name, want in self.fields)


def _field_matches(value: object, want: object) -> bool:
    if isinstance(want, Pattern):
        return want.test(value)
    if isinstance(want, list | tuple):
        return (
            isinstance(value, Sequence)
            and not isinstance(value, str)
            and len(value) == len(want)
            and all(_field_matches(item, pattern) for item, pattern in zip(value, want))
        )
    if isinstance(want, str):
        return value == want
    if want is None or isinstance(want, bool):
        return value is want
    raise TypeError(f"not a pattern: {want!r}")


def matches(node: object, pattern: Pattern) -> bool:
    """Whether `node` matches `pattern` (a `MaybeSentinel` matches nothing)."""
    return not isinstance(node, cst.MaybeSentinel) and pattern.test(node)


def _factory(kind: str) -> Callable[..., Pattern]:
    fields = tuple(field.name for field in dataclasses.fields(getattr(cst, kind)))
    known = frozenset(fields)

    def pattern(*args: object, **kwargs: object) -> Pattern:
        if len(args) > len(fields) or not known.issuperset(kwargs) or not kwargs.keys().isdisjoint(fields[: len(args)]):
            raise TypeError(f"m.{kind}: bad arguments {args!r} {kwargs!r}")
        return _NodePattern(kind, (*zip(fields, args), *kwargs.items()))

    return pattern


def __getattr__(name: str) -> Callable[..., Pattern]:
    """`m.Name` and the like: made on first use, then a plain attribute of this module."""
    kind = getattr(cst, name, None)
    if not (isinstance(kind, type) and issubclass(kind, cst.CSTNode) and dataclasses.is_dataclass(kind)):
        raise AttributeError(f"{__name__} has no {name!r}: import libcst.matchers for it")
    factory = globals()[name] = _factory(name)
    return factory
