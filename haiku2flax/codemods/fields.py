"""Linen fields vs. attributes: what a Haiku `__init__` binds, split into dataclass fields and `setup()`.

A Linen module's constructor arguments are frozen dataclass fields: `setup()` may read them but not
assign them (`SetAttributeInModuleSetupError`). Haiku code rebinds its arguments freely, so the class
conversion (HK001) keeps every field under the argument's name holding the raw value, and gives a
value derived from it an attribute of its own:

- `self.units = units + [1]` (or any `self.<field> = ...` other than the plain copy `self.units = units`)
  -> `self._units = self.units + [1]` in `setup()`, and every `self.units` the class's methods (and its
  subclasses' in the file) read becomes `self._units`. The idiom is a leading underscore; where `_units`
  is taken, `_units_1`, `_units_2`...
- A list `__init__` grows in place (`self.layers = []`, `self.layers.append(...)`) is built in a local
  and assigned at the end of `setup()`: Linen freezes a list assigned there into a tuple.
- A local rebinding of an argument stays a local: `sizes = tuple(sizes)` -> `sizes = tuple(self.sizes)`,
  later reads of `sizes` unchanged; a conditional one (`if w is None: w = ...`) starts from the field
  (`w = self.w` before it).
- An attribute named like the Linen Module API (`self.name`, `self.parent`, `self.scope`,
  `self.variables`, `self.init`, `self.apply`, ...) would shadow it, and is renamed the same way. A
  Haiku dataclass module's own `name` field is dropped (every Linen module has one, with the same role).
  A constructor argument named so (or `nn`) would be such a field: renaming it changes the module's
  keywords for every caller, in other files too, so it gets a TODO.

Example::

    def __init__(self, sizes, name=None):         sizes: Any
      super().__init__(name=name)
      sizes = tuple(sizes)                        def setup(self):
      self.sizes = sizes + (1,)                     sizes = tuple(self.sizes)
                                                    self._sizes = sizes + (1,)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import libcst as cst

from ..engine import analysis
from ..engine.walk import Transformer, descendants

# What `nn.Module` defines on every instance: an attribute of the same name shadows it (or cannot be set).
MODULE_API = frozenset({
    "name", "parent", "scope", "variables", "path", "setup", "init", "init_with_output", "lazy_init", "apply", "bind",
    "unbind", "clone", "copy", "param", "variable", "sow", "put_variable", "get_variable", "has_variable", "has_rng",
    "make_rng", "is_initializing", "is_mutable_collection", "perturb", "tabulate", "module_paths",
})


@dataclass
class SetupPlan:
    """The `__init__` statements that move to `setup()`, with the attributes renamed on the way."""

    statements: list[cst.BaseStatement]  # in their `__init__` order, plain copies of fields left out
    renames: dict[str, str]  # `self.<attribute>` -> `self.<new name>`, for this class and its subclasses


def plan_setup(init: analysis.HaikuInit, inherited: dict[str, str], taken: set[str]) -> SetupPlan:
    """Which `__init__` statements go to `setup()`, and which attributes cannot keep their names there
    (`inherited`: the renames of the class's bases; `taken`: the names the class uses, which new ones avoid)."""
    params = {p.name.value for p in init.params}
    renames = dict(inherited)
    used = taken | params | set(inherited.values())
    for attribute in sorted(set().union(*(analysis.Bindings.of(s).attributes for s in init.statements))):
        if attribute not in renames and (attribute in MODULE_API | params and attribute not in init.fields):
            renames[attribute] = analysis.free_name(f"_{attribute}", used)
            used.add(renames[attribute])
    statements = [s for s in init.statements if not any(s is copy for copy in init.field_statements)]
    return SetupPlan(statements, renames)


def setup_body(statements: list[cst.BaseStatement], params: Iterable[str], renames: dict[str, str]) -> list[cst.BaseStatement]:
    """`__init__` statements as `setup()` reads them: an argument is its field until a statement rebinds
    the local (a local from then on, as in `__init__`); renamed attributes under their new names."""
    fields = set(params)
    result: list[cst.BaseStatement] = []
    for statement in statements:
        statement = analysis.rename_self_attributes(statement, renames)
        rebound = analysis.Bindings.of(statement).names & fields
        reads: dict[str, cst.BaseExpression] = {p: _field(p) for p in fields}
        value = _own_value(statement, rebound)
        if value is not None:  # `p = f(p)`: its value reads the field
            statement = cast(cst.BaseStatement, statement.deep_replace(value, analysis.substitute(value, reads)))
        else:  # the local starts from the field
            result.extend(cst.SimpleStatementLine([cst.Assign([cst.AssignTarget(cst.Name(p))], _field(p))]) for p in sorted(rebound))
            statement = analysis.substitute(statement, {p: read for p, read in reads.items() if p not in rebound})
        fields -= rebound
        result.append(statement)
    return result


def built_in_place(statements: list[cst.BaseStatement]) -> list[cst.BaseStatement]:
    """`setup()` statements with each list they grow in place (`self.layers = []`, then
    `self.layers.append(...)`) built in a local and assigned once built: Linen freezes a list assigned
    in `setup()` into a tuple, which has no `append`."""
    assigned = {analysis.self_attribute(a[0]) for a in map(analysis.simple_assign, statements) if a is not None}  # at the top
    grown: list[str] = list(dict.fromkeys(
        attribute
        for statement in statements
        for node in descendants(statement)
        if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value in _GROWING
        and (attribute := analysis.self_attribute(node.func.value)) is not None and attribute in assigned
    ))
    if not grown:
        return statements
    used = set().union(*(analysis.Names.of(s).used for s in statements))
    locals_ = {attribute: analysis.free_name(attribute.lstrip("_") or attribute, used) for attribute in grown}
    built = [cast(cst.BaseStatement, s.visit(_AttributesToLocals(locals_))) for s in statements]
    return [*built, *(cst.SimpleStatementLine([cst.Assign([cst.AssignTarget(_field(a))], cst.Name(locals_[a]))]) for a in grown)]


_GROWING = frozenset({"append", "extend", "insert"})


def names_in_use(classdef: cst.ClassDef) -> set[str]:
    """Every `self.<attribute>` a class reads or writes, and the names its body binds: a new attribute avoids them."""
    used = {name for node in descendants(classdef) if isinstance(node, cst.Attribute) and (name := analysis.self_attribute(node))}
    for statement in classdef.body.body:
        used |= {statement.name.value} if isinstance(statement, cst.FunctionDef | cst.ClassDef) else analysis.Bindings.of(statement).names
    return used


def clashing_fields(init: analysis.HaikuInit, namespace: str) -> dict[str, str]:
    """Arguments whose field would be named like the Module API, or like the Flax namespace (`nn`, which
    a field's default shadows in the class body: `@nn.compact`) -> why."""
    return {
        p.name.value: f"`{p.name.value}` is `{namespace}.Module.{p.name.value}`, which a field may not replace"
        if p.name.value in MODULE_API
        else f"a field `{namespace}` shadows the `{namespace}` module in the class body"
        for p in init.params
        if p.name.value in MODULE_API or p.name.value == namespace
    }


def _own_value(statement: cst.BaseStatement, rebound: set[str]) -> cst.BaseExpression | None:
    """The value of `p = value` when that is all the statement binds and the value binds nothing."""
    assign = analysis.simple_assign(statement)
    if assign is None or not isinstance(assign[0], cst.Name) or rebound != {assign[0].value} or analysis.Bindings.of(assign[1]).names:
        return None
    return assign[1]


def _field(name: str) -> cst.Attribute:
    return cst.Attribute(cst.Name("self"), cst.Name(name))


def is_haiku_name_field(statement: cst.CSTNode) -> bool:
    """`name: str | None = None` in a Haiku dataclass module: Haiku's module name, which every Linen module has."""
    return (
        isinstance(statement, cst.SimpleStatementLine)
        and len(statement.body) == 1
        and isinstance(statement.body[0], cst.AnnAssign)
        and isinstance(statement.body[0].target, cst.Name)
        and statement.body[0].target.value == "name"
    )


class _AttributesToLocals(Transformer):
    def __init__(self, locals_: dict[str, str]) -> None:
        super().__init__()
        self.locals = locals_

    def leave_Attribute(self, original: cst.Attribute, updated: cst.Attribute) -> cst.BaseExpression:
        name = analysis.self_attribute(original)
        return cst.Name(self.locals[name]) if name in self.locals else updated
