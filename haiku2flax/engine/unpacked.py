"""What a module constructor's `**kwargs` may hold: the keywords the file's own constructions pass into it.

`class Conv(hk.Module): def __init__(self, n, name=None, **conv_kwargs)` built as `Conv(4)` and
`Conv(8, w_init=init)` in the file forwards `{"w_init"}` to the layer it builds with `**conv_kwargs`;
a subclass's `super().__init__(..., **conv_kwargs)` passes on what its own constructions give it. A
table layer called with `**conv_kwargs` can then be converted when none of those keys needs renaming
(the keyword reaches the Flax layer unchanged), and otherwise gets a TODO naming the keys.

Why only the file: a caller elsewhere is not seen, as for every value the rewrite reads. A class the
file refers to other than by building it (`LAYERS = {2: Conv}`) or deriving from it, or never builds,
has unknown keys, and so has any `**kwargs` name the file binds elsewhere too.
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from . import analysis
from . import matchers as m
from .context import Context, FileFact
from .tables import Construct
from .walk import descendants

SUPER_INIT = m.Attribute(value=m.Call(func=m.Name("super")), attr=m.Name("__init__"))


class _Constructors:
    """The module classes of a file with a `**` constructor parameter, and how the file builds each."""

    def __init__(self, module: cst.Module, ctx: Context) -> None:
        self.classes = analysis.haiku_module_classes(module, ctx.names)
        self.inits = {name: analysis.find_method(classdef, "__init__") for name, classdef in self.classes.items()}
        self.builds: dict[str, list[tuple[cst.Call, str | None]]] = {name: [] for name in self.classes}  # (call, class it is in)
        self.referenced: set[str] = set()  # classes named other than as what a call builds or a base
        for statement in module.body:
            inside = statement.name.value if isinstance(statement, cst.ClassDef) and statement.name.value in self.classes else None
            self._read(statement, inside)
        self.keys: dict[str, frozenset[str] | None] = {}

    def _read(self, statement: cst.CSTNode, inside: str | None) -> None:
        called: set[int] = set()
        for node in descendants(statement):
            if isinstance(node, cst.ClassDef):
                called.update(id(base.value) for base in node.bases)
                called.add(id(node.name))
            elif isinstance(node, cst.Call) and isinstance(node.func, cst.Name) and node.func.value in self.classes:
                self.builds[node.func.value].append((node, inside))
                called.add(id(node.func))
            elif isinstance(node, cst.Call) and m.matches(node.func, SUPER_INIT) and inside is not None:
                parent = self._parent(inside)
                if parent is not None:
                    self.builds[parent].append((node, inside))
            elif isinstance(node, cst.Name) and node.value in self.classes and id(node) not in called:
                self.referenced.add(node.value)

    def receivers(self, name: str, ctx: Context) -> list[Construct] | None:
        """The table layers `name`'s `**` parameter goes to (through its parent's, where it passes it on to
        `super().__init__`); None when it is read any other way (`self.options = kwargs`, a helper call)."""
        star = self.star(name)
        if star is None:
            return None
        found: list[Construct] = []
        unpacked = 0
        for call in (n for n in descendants(self.classes[name]) if isinstance(n, cst.Call)):
            for arg in call.args:
                if arg.star != "**" or not (_is_name(arg.value, star) or analysis.self_attribute(arg.value) == star):
                    continue
                unpacked += 1
                parent = self._parent(name) if m.matches(call.func, SUPER_INIT) else None
                construct = ctx.tables.get(ctx.names.haiku_api(call.func) or "")
                passed_on = self.receivers(parent, ctx) if parent is not None else [construct] if construct is not None else None
                if passed_on is None:
                    return None
                found += passed_on
        reads = sum(1 for n in descendants(self.classes[name]) if _is_name(n, star))
        return found if reads == unpacked + 1 else None  # the parameter itself, and each `**` of it

    def _parent(self, name: str) -> str | None:
        bases = [b.value.value for b in self.classes[name].bases if isinstance(b.value, cst.Name)]
        return next((base for base in bases if base in self.classes), None)

    def star(self, name: str) -> str | None:
        init = self.inits[name]
        star = init.params.star_kwarg if init is not None else None
        return star.name.value if isinstance(star, cst.Param) else None

    def keys_of(self, name: str) -> frozenset[str] | None:
        """The keywords `name`'s constructions may put into its `**` parameter; None where some are unknown."""
        if name not in self.keys:
            self.keys[name] = None  # a construction cycle reads as unknown
            self.keys[name] = self._keys(name)
        return self.keys[name]

    def _keys(self, name: str) -> frozenset[str] | None:
        if name in self.referenced or not self.builds[name]:
            return None
        init = self.inits[name]
        named = {p.name.value for p in (*init.params.params, *init.params.kwonly_params)} if init is not None else set()
        keys: set[str] = set()
        for call, inside in self.builds[name]:
            for arg in call.args:
                if arg.star == "**":
                    passed_on = self.keys_of(inside) if inside is not None and isinstance(arg.value, cst.Name) and arg.value.value == self.star(inside) else None
                    if passed_on is None:
                        return None
                    keys |= passed_on - named
                elif arg.keyword is not None and arg.keyword.value not in named:
                    keys.add(arg.keyword.value)
        return frozenset(keys)


def _is_name(node: cst.CSTNode, name: str) -> bool:
    return isinstance(node, cst.Name) and node.value == name


@dataclass(frozen=True)
class Renamed:
    """A keyword a module class's constructions pass on to a table layer: its Flax name, and the layer
    whose table converts its value."""

    flax_name: str
    construct: Construct


def _renames(constructors: _Constructors, ctx: Context) -> dict[str, dict[str, Renamed]]:
    """Class -> the keywords its constructions take under their Flax names: each key its `**` parameter
    may hold that every table layer receiving it names alike (a key some layer has no name for stays).
    Linen only: NNX builds the class from the original call where it hoists it, so its keys stay (a TODO)."""
    found: dict[str, dict[str, Renamed]] = {}
    if ctx.target != "linen":
        return found
    for name in constructors.classes:
        keys = constructors.keys_of(name)
        receivers = constructors.receivers(name, ctx) if keys else None
        if keys is None or not receivers:
            continue
        renamed: dict[str, Renamed] = {}
        for key in keys:
            flax_names = {r.targets[ctx.target].args.get(key) for r in receivers}
            kinds = {r.convert.get(key) for r in receivers}
            flax_name = flax_names.pop() if len(flax_names) == 1 and len(kinds) == 1 else None
            if flax_name:
                renamed[key] = Renamed(flax_name, receivers[0])
        found[name] = renamed
    changed = True
    while changed:  # a key arrives renamed only where every way into the class renames it
        changed = False
        for name, builds in constructors.builds.items():
            for call, inside in builds:
                if not m.matches(call.func, SUPER_INIT) or inside is None:
                    continue
                kept = {a.keyword.value for a in call.args if a.keyword is not None}
                if any(a.star == "**" for a in call.args):
                    kept |= set(constructors.keys_of(inside) or ()) - set(found.get(inside, {}))
                dropped = kept & set(found.get(name, {}))
                if dropped:
                    found[name] = {k: v for k, v in found[name].items() if k not in dropped}
                    changed = True
    return found


@dataclass(frozen=True)
class Unpacked:
    keys: dict[str, frozenset[str]]  # `**kwargs` parameter name -> the keywords it may hold
    renamed: dict[str, frozenset[str]]  # `**kwargs` parameter name -> those of them its constructions take under Flax names
    renames: dict[str, dict[str, Renamed]]  # class -> Haiku keyword -> its Flax name, where its constructions pass it
    stars: dict[str, str]  # class -> its `**` parameter


def _read_unpacked_keys(module: cst.Module, ctx: Context) -> Unpacked:
    constructors = _Constructors(module, ctx)
    by_star: dict[str, list[str]] = {}
    for name in constructors.classes:
        star = constructors.star(name)
        if star is not None:
            by_star.setdefault(star, []).append(name)
    bindings = analysis.AssignedNameCounts()
    bindings.walk(module)
    renames = _renames(constructors, ctx)
    found = Unpacked({}, {}, renames, {name: star for star, classes in by_star.items() for name in classes})
    for star, classes in by_star.items():
        keys = {name: constructors.keys_of(name) for name in classes}
        if bindings.counts[star] == len(classes) and all(k is not None for k in keys.values()):
            found.keys[star] = frozenset().union(*(k for k in keys.values() if k is not None))
            found.renamed[star] = frozenset(
                key for key in found.keys[star] if all(key not in (k or ()) or key in renames.get(name, {}) for name, k in keys.items())
            )
    return found


UNPACKED = FileFact(_read_unpacked_keys)


def unpacked_keys(value: cst.BaseExpression, ctx: Context) -> tuple[frozenset[str], frozenset[str]] | None:
    """The keys `**value` may hold (`conv_kwargs`, or the Linen field `self.conv_kwargs`) and those of them
    that arrive under their Flax names; None when unknown."""
    name = value.value if isinstance(value, cst.Name) else analysis.self_attribute(value)
    unpacked = ctx.fact(UNPACKED)
    if name is None or name not in unpacked.keys:
        return None
    return unpacked.keys[name], unpacked.renamed[name]
