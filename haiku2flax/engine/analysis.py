"""Target-independent reading of Haiku code: module classes, their constructors, and transforms.

Both targets start from the same facts: which classes are `hk.Module`s, which constructor arguments
are plain configuration (`self.features = features`), which statements build submodules, and which
module-level names hold `hk.transform(...)` results (assigned, or a decorated function).
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import cast

import libcst as cst

from . import matchers as m
from .calls import code, keyword_arg
from .names import ImportedNames, dotted_name
from .walk import Transformer, Walker


def snake_case(name: str) -> str:
    """Haiku's default module name: `MultiHeadAttention` -> `multi_head_attention`."""
    name = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z\d])([A-Z])", r"\1_\2", name).lower()


def camel_case(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def forward_class_name(function: str, taken: Collection[str]) -> str:
    """The class a transformed forward becomes: its name in CamelCase, unless its file binds that name
    already (`@hk.transform def net` beside `class Net`): then `NetModel` (`NetModel2`, ...)."""
    name = camel_case(function)
    candidates = itertools.chain([name], (f"{name}Model{index if index > 1 else ''}" for index in itertools.count(1)))
    return next(candidate for candidate in candidates if candidate not in taken)


def module_level_names(module: cst.Module) -> set[str]:
    """The names a module's top-level classes, functions, assignments and imports bind."""
    names = set()
    for statement in module.body:
        if isinstance(statement, cst.ClassDef | cst.FunctionDef):
            names.add(statement.name.value)
        elif isinstance(statement, cst.SimpleStatementLine):
            names |= Bindings.of(statement).names
    return names


def explicit_name(call: cst.Call) -> str | None:
    """The `name='...'` a Haiku module constructor is given, when it is a literal identifier."""
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == "name" and isinstance(arg.value, cst.SimpleString):
            value = arg.value.evaluated_value
            if isinstance(value, str) and value.isidentifier():
                return value
    return None


def is_super_init(statement: cst.BaseStatement) -> bool:
    """`super().__init__(...)` or `hk.Module.__init__(self, ...)`."""
    if not isinstance(statement, cst.SimpleStatementLine) or len(statement.body) != 1:
        return False
    small = statement.body[0]
    if not isinstance(small, cst.Expr) or not isinstance(small.value, cst.Call):
        return False
    func = small.value.func
    if m.matches(func, m.Attribute(value=m.Call(func=m.Name("super")), attr=m.Name("__init__"))):
        return True
    return isinstance(func, cst.Attribute) and func.attr.value == "__init__" and (dotted_name(func.value) or "").endswith("Module")


def self_attribute(node: cst.BaseExpression) -> str | None:
    """`x` for `self.x`, else None."""
    if isinstance(node, cst.Attribute) and isinstance(node.value, cst.Name) and node.value.value == "self":
        return node.attr.value
    return None


def rename_self_attributes(node: cst.CSTNodeT, renames: dict[str, str]) -> cst.CSTNodeT:
    """`node` with each `self.<old>` spelled `self.<new>`."""
    return cast(cst.CSTNodeT, node.visit(_RenameSelfAttributes(renames))) if renames else node  # an attribute stays an attribute


class _RenameSelfAttributes(Transformer):
    def __init__(self, renames: dict[str, str]) -> None:
        super().__init__()
        self.renames = renames

    def leave_Attribute(self, original: cst.Attribute, updated: cst.Attribute) -> cst.Attribute:
        name = self_attribute(original)
        return updated.with_changes(attr=cst.Name(self.renames[name])) if name in self.renames else updated


def free_name(base: str, taken: set[str]) -> str:
    """`base`, or else the first of `base_1`, `base_2`, ... not in `taken` (Haiku's own numbering)."""
    candidate, index = base, 0
    while candidate in taken:
        index += 1
        candidate = f"{base}_{index}"
    return candidate


def simple_assign(statement: cst.BaseStatement) -> tuple[cst.BaseExpression, cst.BaseExpression] | None:
    """(target, value) of a one-target assignment statement."""
    if not isinstance(statement, cst.SimpleStatementLine) or len(statement.body) != 1:
        return None
    small = statement.body[0]
    if isinstance(small, cst.Assign) and len(small.targets) == 1:
        return small.targets[0].target, small.value
    if isinstance(small, cst.AnnAssign) and small.value is not None:
        return small.target, small.value
    return None


def returned_value(statement: cst.BaseStatement) -> cst.BaseExpression | None:
    """`value` of a statement line that is only `return value`."""
    if isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1 and isinstance(statement.body[0], cst.Return):
        return statement.body[0].value
    return None


def is_docstring(statement: cst.BaseStatement | cst.BaseSmallStatement) -> bool:
    return m.matches(statement, m.SimpleStatementLine(body=[m.Expr(value=m.SimpleString() | m.ConcatenatedString())]))


def leading_lines(statement: cst.BaseStatement | cst.BaseSmallStatement) -> Sequence[cst.EmptyLine]:
    """The blank and comment lines above a statement line (each has them; `BaseStatement` does not say so); none
    for a statement of a one-line suite (`if x: y = 1`)."""
    return statement.leading_lines if isinstance(statement, cst.SimpleStatementLine | cst.BaseCompoundStatement) else ()


@dataclass
class HaikuInit:
    """A Haiku module's `__init__`, split into what the targets treat differently."""

    params: list[cst.Param]  # without self and `name`
    fields: dict[str, cst.Param]  # attribute -> parameter, for `self.a = a` copies
    field_statements: list[cst.BaseStatement]
    other_statements: list[cst.BaseStatement]  # everything else (submodules, derived values)
    has_name_param: bool
    docstring: cst.BaseStatement | None = None
    star_kwargs: cst.Param | None = None  # `**kwargs` read by the body (not only passed on to `super().__init__`)
    star_args: cst.Param | None = None  # `*args` read by the body
    super_init: cst.Call | None = None  # the `super().__init__(...)` call
    statements: list[cst.BaseStatement] = field(default_factory=list)  # all but the docstring and `super().__init__`, in order


def read_init(function: cst.FunctionDef | None) -> HaikuInit:
    if function is None:
        return HaikuInit([], {}, [], [], has_name_param=True)
    all_params = [*function.params.params, *function.params.kwonly_params]
    params = [p for p in all_params[1:] if p.name.value != "name"]
    by_name = {p.name.value: p for p in params}
    star_kwargs = function.params.star_kwarg
    if isinstance(star_kwargs, cst.Param):
        by_name[star_kwargs.name.value] = star_kwargs
    super_init: cst.Call | None = None
    copies: dict[int, str] = {}  # `self.a = a` while the local `a` still holds the argument
    stored: set[str] = set()  # attributes other statements store
    rebound: set[str] = set()  # arguments whose local an earlier statement rebinds: no longer the raw value
    statements: list[cst.BaseStatement] = []
    docstring = None
    body = function.body.body if isinstance(function.body, cst.IndentedBlock) else ()
    for index, statement in enumerate(body):
        if index == 0 and is_docstring(statement):
            docstring = statement
            continue
        if is_super_init(statement):
            super_init = cst.ensure_type(cst.ensure_type(cst.ensure_type(statement, cst.SimpleStatementLine).body[0], cst.Expr).value, cst.Call)
            continue
        statements.append(statement)
        assign = simple_assign(statement)
        attribute = self_attribute(assign[0]) if assign is not None else None
        value = assign[1] if assign is not None else None
        if isinstance(value, cst.Name) and value.value == attribute and attribute in by_name and attribute not in rebound | set(copies.values()):
            copies[id(statement)] = attribute
            continue
        bindings = Bindings.of(statement)
        rebound |= bindings.names
        stored |= bindings.attributes
    # a plain field: only ever the copy of its argument
    fields = {name: by_name[name] for name in copies.values() if name not in stored}
    field_statements = [s for s in statements if copies.get(id(s)) in fields]
    other = [s for s in statements if copies.get(id(s)) not in fields]
    read = Names.of(cst.IndentedBlock(body=statements)).used
    kept_kwargs = star_kwargs if isinstance(star_kwargs, cst.Param) and star_kwargs.name.value in read else None
    star_args = function.params.star_arg
    read_args = star_args if isinstance(star_args, cst.Param) and star_args.name.value in read else None
    return HaikuInit(
        params, fields, field_statements, other, len(params) != len(all_params) - 1, docstring, kept_kwargs, read_args, super_init, statements
    )


def super_init_args(init: HaikuInit) -> list[cst.Arg]:
    """What `super().__init__(...)` passes its parent other than `name` (a Haiku parent's constructor arguments)."""
    call = init.super_init
    if call is None:
        return []
    args = call.args if m.matches(call.func, m.Attribute(value=m.Call(func=m.Name("super")))) else call.args[1:]  # `Base.__init__(self, ...)`
    return [a for a in args if a.keyword is None or a.keyword.value != "name"]


def name_by_keyword(call: cst.Call, init: cst.FunctionDef | None) -> cst.Call:
    """`Block(64, "block")` -> `Block(64, name="block")` for `__init__(self, hidden, name=None, ...)`,
    with the arguments after `name` by keyword too: the converted constructors take no positional `name`."""
    positional = [p.name.value for p in init.params.params[1:]] if init is not None else []
    if "name" not in positional:
        return call
    at = positional.index("name")
    args = list(call.args)
    for index, arg in enumerate(args):
        if arg.keyword is not None or arg.star == "**":
            break
        if arg.star or index >= len(positional):  # `*args`: where `name` falls is not known
            return call
        if index >= at:
            args[index] = keyword_arg(positional[index], arg.value).with_changes(comma=arg.comma)
    return call.with_changes(args=args)


@dataclass
class Bindings:
    """The variables a subtree binds (assignments, loops, parameters, imports...) and the `self.<attribute>`s it stores."""

    names: set[str] = field(default_factory=set)
    attributes: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, node: cst.CSTNode) -> Bindings:
        collector = _BindingCollector()
        collector.walk(node)
        return cls(collector.names, collector.attributes)


class _BindingCollector(Walker):
    def __init__(self) -> None:
        self.names: set[str] = set()
        self.attributes: set[str] = set()

    def _target(self, target: cst.BaseExpression) -> None:
        attribute = self_attribute(target)
        if isinstance(target, cst.Name):
            self.names.add(target.value)
        elif isinstance(target, cst.Tuple | cst.List):
            for element in target.elements:
                self._target(element.value)
        elif isinstance(target, cst.StarredElement):
            self._target(target.value)
        elif attribute is not None:
            self.attributes.add(attribute)

    def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
        self._target(node.target)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        self._target(node.target)

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self._target(node.target)

    def visit_For(self, node: cst.For) -> None:
        self._target(node.target)

    def visit_CompFor(self, node: cst.CompFor) -> None:
        self._target(node.target)

    def visit_NamedExpr(self, node: cst.NamedExpr) -> None:
        self._target(node.target)

    def visit_AsName(self, node: cst.AsName) -> None:
        if isinstance(node.name, cst.BaseExpression):
            self._target(node.name)

    def visit_Param(self, node: cst.Param) -> None:
        self.names.add(node.name.value)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.names.add(node.name.value)

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.names.add(node.name.value)

    def visit_ImportAlias(self, node: cst.ImportAlias) -> None:
        if node.asname is None:
            self.names.add((dotted_name(node.name) or "").split(".")[0])

    def visit_Global(self, node: cst.Global) -> None:
        self.names.update(item.name.value for item in node.names)

    def visit_Nonlocal(self, node: cst.Nonlocal) -> None:
        self.names.update(item.name.value for item in node.names)


def find_method(classdef: cst.ClassDef, name: str) -> cst.FunctionDef | None:
    for statement in classdef.body.body:
        if isinstance(statement, cst.FunctionDef) and statement.name.value == name:
            return statement
    return None


def is_haiku_module_class(classdef: cst.ClassDef, names: ImportedNames, local_modules: set[str]) -> bool:
    for base in classdef.bases:
        if names.haiku_api(base.value) == "Module":
            return True
        if isinstance(base.value, cst.Name) and base.value.value in local_modules:
            return True
    return False


def haiku_module_classes(module: cst.Module, names: ImportedNames) -> dict[str, cst.ClassDef]:
    """Module-level classes deriving (directly or through another one here) from `hk.Module`."""
    found: dict[str, cst.ClassDef] = {}
    for statement in module.body:
        if isinstance(statement, cst.ClassDef) and is_haiku_module_class(statement, names, set(found)):
            found[statement.name.value] = statement
    return found


TRANSFORMS = {"transform", "transform_with_state", "multi_transform"}


@dataclass
class Transformed:
    """A module-level `NAME = hk.transform(fn)` (possibly inside `hk.without_apply_rng`), or a function
    decorated with `@hk.transform`."""

    name: str
    function: str
    with_state: bool
    apply_rng: bool
    statement: cst.SimpleStatementLine | cst.FunctionDef
    multi: bool = False  # hk.multi_transform: `apply` is a tuple of functions
    lambda_forward: cst.FunctionDef | None = None  # `hk.transform(lambda x: Model()(x))`, as a function
    factory: cst.Call | None = None  # `hk.transform(make_forward(n))`: the call; `function` is nested in `make_forward`
    outer_self: bool = False  # that nested forward reads the factory's `self` (`outer_self`)
    by_callers: bool = False  # a module-level function no code of its file transforms: its callers do

    @property
    def decorated(self) -> bool:
        """`@hk.transform def f(...)` (or a function its callers transform): the function and the
        transformed object share one name."""
        return isinstance(self.statement, cst.FunctionDef)


def read_transform(value: cst.BaseExpression, names: ImportedNames) -> tuple[str, bool, bool, bool] | None:
    """(function name, with_state, apply takes an rng, multi) of a transform expression."""
    apply_rng = True
    if isinstance(value, cst.Call) and names.haiku_api(value.func) == "without_apply_rng" and len(value.args) == 1:
        apply_rng = False
        value = value.args[0].value
    if not isinstance(value, cst.Call) or len(value.args) != 1:
        return None
    api = names.haiku_api(value.func)
    forward = value.args[0].value
    if api not in TRANSFORMS or not (isinstance(forward, cst.Name) or _trivial_lambda(forward) is not None):
        return None
    function = forward.value if isinstance(forward, cst.Name) else LAMBDA_FORWARD
    return function, api == "transform_with_state", apply_rng, api == "multi_transform"


LAMBDA_FORWARD = "<lambda>"  # the forward of `hk.transform(lambda x: Model()(x))`: no function of the file


def _trivial_lambda(node: cst.BaseExpression) -> cst.FunctionDef | None:
    """`lambda x: Model(...)(x)` as the function `def <lambda>(x): return Model(...)(x)`, if that is trivial."""
    if not isinstance(node, cst.Lambda):
        return None
    function = cst.FunctionDef(
        name=cst.Name("_"), params=node.params, body=cst.IndentedBlock([cst.SimpleStatementLine([cst.Return(node.body)])])
    )
    return function if trivial_forward(function) is not None else None


def decorated_transform(function: cst.FunctionDef, names: ImportedNames) -> tuple[str, bool, bool, bool] | None:
    """`read_transform` of the call a function's decorators make: `@hk.without_apply_rng @hk.transform
    def f` is `hk.without_apply_rng(hk.transform(f))`."""
    if not function.decorators:
        return None
    value: cst.BaseExpression = function.name
    for decorator in reversed(function.decorators):
        value = cst.Call(decorator.decorator, [cst.Arg(value)])
    return read_transform(value, names)


def module_transforms(
    module: cst.Module, names: ImportedNames, in_functions: bool = False, factories: bool = False
) -> dict[str, Transformed]:
    """`f = hk.transform(forward)` and `@hk.transform def f` at module level; with `in_functions`, also
    `f = hk.transform(forward)` at the top of a module-level function (`def main():`) when nothing else in
    the file binds `f`, so `f.init` / `f.apply` mean this one; with `factories`, also module-level
    `f = hk.transform(make_forward(...))` whose forward is a function nested in `make_forward` (`factory_forward`)."""
    found = {}
    for definition in module.body:
        if isinstance(definition, cst.FunctionDef) and (read := decorated_transform(definition, names)) is not None:
            name = definition.name.value
            found[name] = Transformed(name, name, read[1], read[2], definition, read[3])
    local: list[cst.BaseStatement] = []
    for outer in module.body if in_functions else ():
        if isinstance(outer, cst.FunctionDef) and isinstance(outer.body, cst.IndentedBlock):
            local.extend(outer.body.body)
    top_level = {id(line) for line in module.body}
    module_functions = {line.name.value for line in module.body if isinstance(line, cst.FunctionDef)}
    bindings: AssignedNameCounts | None = None  # walked once, for the first transform found in a function
    statements: list[cst.BaseStatement] = [*module.body, *local]
    for statement in statements:
        assign = simple_assign(statement)
        if assign is None or not isinstance(assign[0], cst.Name):
            continue
        read = read_transform(assign[1], names)
        if read is None and factories and id(statement) in top_level:
            made = _factory_transform(statement, assign, names, module_functions, module)
            if made is not None:
                found[made.name] = made
            continue
        if read is not None and id(statement) not in top_level and read[0] not in {*module_functions, LAMBDA_FORWARD}:
            continue  # its forward is local to the function too: no module class can be made of it
        if read is not None and id(statement) not in top_level and bindings is None:
            bindings = AssignedNameCounts()
            bindings.walk(module)
        if read is not None and (id(statement) in top_level or (bindings is not None and bindings.counts[assign[0].value] == 1)):
            assert isinstance(statement, cst.SimpleStatementLine)
            name = assign[0].value
            lambda_forward = _trivial_lambda(_transformed_function(assign[1]))
            function = f"{LAMBDA_FORWARD[:-1]} {name}>" if lambda_forward is not None else read[0]  # one per transform
            found[name] = Transformed(name, function, read[1], read[2], statement, read[3], lambda_forward)
    return found


def _factory_transform(
    statement: cst.BaseStatement,
    assign: tuple[cst.BaseExpression, cst.BaseExpression],
    names: ImportedNames,
    module_functions: set[str],
    module: cst.Module,
) -> Transformed | None:
    """`f = hk.transform(make_forward(...))` with `make_forward` a module-level function of the file
    whose returns name one function nested in it: that function is the forward."""
    target, value = assign
    forward = value
    while isinstance(forward, cst.Call) and len(forward.args) == 1 and names.haiku_api(forward.func) in (*TRANSFORMS, "without_apply_rng"):
        forward = forward.args[0].value
    if not (isinstance(target, cst.Name) and isinstance(forward, cst.Call) and isinstance(forward.func, cst.Name)):
        return None
    factory = next((s for s in module.body if isinstance(s, cst.FunctionDef) and s.name.value == forward.func.value), None)
    nested = factory_forward(factory) if factory is not None else None
    if forward is value:  # `f = make_model()`: the factory returns `hk.transform(forward)` itself
        returned = factory_returned_transform(factory, names) if factory is not None else None
        read = read_transform(returned, names) if returned is not None else None
        read = read if read is not None and read[0] == nested else None
    else:
        read = read_transform(value.deep_replace(forward, cst.Name("_")), names)  # (`deep_replace` keeps the node type)
    if read is None or read[3] or nested is None or nested in module_functions:
        return None
    assert factory is not None
    forward_def = _nested_function(factory, nested)
    reads_self = outer_self(forward_def)
    if forward_def.decorators or (reads_self and _SelfReads.of(forward_def.body).bare):
        return None  # (the factory's `self` passed whole would be the module once the forward is a method)
    assert isinstance(statement, cst.SimpleStatementLine)
    return Transformed(target.value, nested, read[1], read[2], statement, factory=forward, outer_self=reads_self)


def factory_returned_transform(factory: cst.FunctionDef, names: ImportedNames) -> cst.BaseExpression | None:
    """`hk.transform(forward)` of a factory that ends returning a transform, from straight-line code (no
    other return hides in a block)."""
    body = factory.body.body if isinstance(factory.body, cst.IndentedBlock) else ()
    returned = [value for s in body if (value := returned_value(s)) is not None]
    if len(returned) != 1 or returned_value(body[-1]) is None or not all(isinstance(s, cst.SimpleStatementLine | cst.FunctionDef) for s in body):
        return None
    return returned[0] if read_transform(returned[0], names) is not None else None


def factory_forward(factory: cst.FunctionDef) -> str | None:
    """The one function defined at the top of `factory` that its return statements name (`return forward`,
    `return Agent(network=forward)`): what `hk.transform(factory(...))` transforms."""
    body = factory.body.body if isinstance(factory.body, cst.IndentedBlock) else ()
    nested = Counter(s.name.value for s in body if isinstance(s, cst.FunctionDef))
    returned = set().union(*(Names.of(value).used for s in body if (value := returned_value(s)) is not None))
    named = [name for name in nested if name in returned]
    return named[0] if len(named) == 1 and nested[named[0]] == 1 else None


def _nested_function(factory: cst.FunctionDef, name: str) -> cst.FunctionDef:
    body = factory.body.body if isinstance(factory.body, cst.IndentedBlock) else ()
    return next(s for s in body if isinstance(s, cst.FunctionDef) and s.name.value == name)


def outer_self(function: cst.FunctionDef) -> bool:
    """A nested function reads the `self` of the function around it (coax's `def q(self): def func(S): ... self.env`)."""
    return all(p.name.value != "self" for p in function.params.params) and "self" in Names.of(function.body).used


class _SelfReads(Walker):
    """Whether a subtree reads `self` other than as `self.<attribute>`."""

    def __init__(self) -> None:
        self.bare = False

    @classmethod
    def of(cls, node: cst.CSTNode) -> _SelfReads:
        reads = cls()
        reads.walk(node)
        return reads

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        if self_attribute(node) is None:
            self.walk(node.value)
        return False

    def visit_Name(self, node: cst.Name) -> None:
        self.bare = self.bare or node.value == "self"

    def visit_Param(self, node: cst.Param) -> bool:
        return False


def _transformed_function(value: cst.BaseExpression) -> cst.BaseExpression:
    """The `f` of `hk.transform(f)` / `hk.without_apply_rng(hk.transform(f))` (read_transform checked the shape)."""
    while isinstance(value, cst.Call) and value.args:
        value = value.args[0].value
    return value


class AssignedNameCounts(Walker):
    """How many times each name is bound anywhere in a module (assignments, parameters, loops, imports...)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
        for name in _target_names(node.target):
            self.counts[name] += 1

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        for name in _target_names(node.target):
            self.counts[name] += 1

    def visit_For(self, node: cst.For) -> None:
        for name in _target_names(node.target):
            self.counts[name] += 1

    def visit_Param(self, node: cst.Param) -> None:
        self.counts[node.name.value] += 1

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.counts[node.name.value] += 1

    def visit_ImportAlias(self, node: cst.ImportAlias) -> None:
        bound = node.asname.name if node.asname is not None else node.name
        self.counts[(dotted_name(bound) or "").split(".")[0]] += 1


def bound_names(statement: cst.BaseStatement) -> list[str]:
    """The names a statement defines as a function or by assignment (not classes, not imports)."""
    if isinstance(statement, cst.FunctionDef):
        return [statement.name.value]
    assign = simple_assign(statement)
    return _target_names(assign[0]) if assign is not None else []


def _target_names(target: cst.BaseExpression) -> list[str]:
    if isinstance(target, cst.Name):
        return [target.value]
    if isinstance(target, cst.Tuple | cst.List):
        return [name for element in target.elements for name in _target_names(element.value)]
    return []


@dataclass
class Names:
    """Every Name read in a subtree (a cheap stand-in for scope analysis inside one function)."""

    used: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, node: cst.CSTNode) -> Names:
        collector = _NameCollector()
        collector.walk(node)
        return cls(collector.names)


class VariableWalker(Walker):
    """A walk whose `visit_Name` sees variables only: not attribute names (`x.shape`) nor keywords."""

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        self.walk(node.value)  # the attribute name itself is not a variable
        return False

    def visit_Arg(self, node: cst.Arg) -> bool:
        self.walk(node.value)  # nor is a keyword
        return False


class _NameCollector(VariableWalker):
    def __init__(self) -> None:
        self.names: set[str] = set()

    def visit_Name(self, node: cst.Name) -> None:
        self.names.add(node.value)


def trivial_forward(function: cst.FunctionDef) -> cst.Call | None:
    """The `Model(...)` of a forward function that is only `return Model(...)(<its own parameters>)`."""
    body = function.body.body if isinstance(function.body, cst.IndentedBlock) else ()
    statements = [s for s in body if not is_docstring(s)]
    if len(statements) != 1:
        return None
    outer = returned_value(statements[0])
    if not (isinstance(outer, cst.Call) and isinstance(outer.func, cst.Call)):  # `return Model(...)(...)`
        return None
    params = [p.name.value for p in function.params.params]
    passed = []
    for arg in outer.args:
        if arg.star or not isinstance(arg.value, cst.Name):
            return None
        passed.append(arg.value.value if arg.keyword is None else f"{arg.keyword.value}={arg.value.value}")
    expected = [name if i < len(passed) and "=" not in passed[i] else f"{name}={name}" for i, name in enumerate(params)]
    if passed != expected or isinstance(function.params.star_arg, cst.Param) or function.params.kwonly_params:
        return None
    inner = outer.func
    assert isinstance(inner, cst.Call)
    if Names.of(inner).used & set(params):
        return None
    return inner


@dataclass(frozen=True)
class MultiForward:
    """The forward of `hk.multi_transform`: one module, an init function and the apply methods."""

    module: cst.Call
    init_method: str
    apply_methods: tuple[str, ...]


def _method_of(expression: cst.BaseExpression, module: str, aliases: dict[str, cst.BaseExpression]) -> str | None:
    """`__call__` for `module` / `lambda x: module(x)`, `m` for `module.m` (through local aliases)."""
    if isinstance(expression, cst.Name) and expression.value in aliases:
        expression = aliases[expression.value]
    if m.matches(expression, m.Name(module)):
        return "__call__"
    if isinstance(expression, cst.Attribute) and m.matches(expression.value, m.Name(module)):
        return expression.attr.value
    if isinstance(expression, cst.Lambda) and isinstance(expression.body, cst.Call):
        params = [p.name.value for p in expression.params.params]
        passed = [a.value.value for a in expression.body.args if isinstance(a.value, cst.Name) and a.keyword is None]
        if passed == params and len(passed) == len(expression.body.args):
            return _method_of(expression.body.func, module, {})
    return None


def multi_forward(function: cst.FunctionDef) -> MultiForward | None:
    """Read `module = M(...); init = lambda x: module(x); return init, (module.a, module.b)` (or `init`
    written as `def init(x): return module(x)`)."""
    body = function.body.body if isinstance(function.body, cst.IndentedBlock) else ()
    statements = [s for s in body if not is_docstring(s)]
    if function.params.params or not statements:
        return None
    first = simple_assign(statements[0])
    if first is None or not isinstance(first[0], cst.Name) or not isinstance(first[1], cst.Call):
        return None
    module = first[0].value
    aliases: dict[str, cst.BaseExpression] = {}
    for statement in statements[1:-1]:
        if isinstance(statement, cst.FunctionDef):  # `def init(x): return module(x)`, read as its lambda
            only = [s for s in statement.body.body if not is_docstring(s)] if isinstance(statement.body, cst.IndentedBlock) else []
            value = returned_value(only[0]) if len(only) == 1 and not statement.decorators else None
            if value is None:
                return None
            aliases[statement.name.value] = cst.Lambda(statement.params, value)
            continue
        assign = simple_assign(statement)
        if assign is None or not isinstance(assign[0], cst.Name):
            return None
        aliases[assign[0].value] = assign[1]
    last = returned_value(statements[-1])
    if not isinstance(last, cst.Tuple):
        return None
    returned = last.elements
    if len(returned) != 2 or not isinstance(returned[1].value, cst.Tuple):
        return None
    init_method = _method_of(returned[0].value, module, aliases)
    methods = [_method_of(e.value, module, aliases) for e in returned[1].value.elements]
    if init_method is None or None in methods:
        return None
    return MultiForward(first[1], init_method, tuple(method for method in methods if method is not None))


def forward_module(function: cst.FunctionDef) -> cst.Call | None:
    """The module constructor of a forward that only builds one module (plain or multi_transform)."""
    inner = trivial_forward(function)
    if inner is not None:
        return inner
    multi = multi_forward(function)
    return multi.module if multi is not None else None


class _Substitute(Transformer):
    """Replace Names (not attribute names or keywords) by expressions."""

    def __init__(self, mapping: dict[str, cst.BaseExpression]) -> None:
        super().__init__()
        self.mapping = mapping

    def leave_Attribute(self, original: cst.Attribute, updated: cst.Attribute) -> cst.Attribute:
        return updated.with_changes(attr=original.attr)

    def leave_Arg(self, original: cst.Arg, updated: cst.Arg) -> cst.Arg:
        return updated.with_changes(keyword=original.keyword)

    def leave_Name(self, original: cst.Name, updated: cst.Name) -> cst.BaseExpression:
        return self.mapping.get(original.value, updated)

    def changes(self, node: cst.CSTNode) -> bool:
        return type(node) is cst.Name and node.value in self.mapping


def substitute(node: cst.CSTNodeT, mapping: dict[str, cst.BaseExpression]) -> cst.CSTNodeT:
    """`node` with the variables named in `mapping` replaced (attribute names and keywords are not variables)."""
    return _Substitute(mapping).applied(node) if mapping else node  # names give way to expressions: same node type


def with_dataclass_init(classdef: cst.ClassDef) -> cst.ClassDef:
    """A Haiku dataclass module (`@dataclasses.dataclass`, annotated fields, no `__init__`) read as the class
    with the `__init__` the dataclass generates: a target whose modules take their configuration as
    `__init__` arguments (NNX) converts that. Any other class, or fields it cannot read as plain
    arguments (`field(...)`, `ClassVar`), comes back as it is."""
    names = {"dataclass", "dataclasses.dataclass"}
    decorators = [d for d in classdef.decorators if dotted_name(d.decorator) not in names]
    if len(decorators) == len(classdef.decorators) or find_method(classdef, "__init__") is not None:
        return classdef
    fields = [
        s.body[0] for s in classdef.body.body
        if isinstance(s, cst.SimpleStatementLine) and len(s.body) == 1 and isinstance(s.body[0], cst.AnnAssign)
    ]
    if any(
        not isinstance(f.target, cst.Name) or isinstance(f.value, cst.Call) or "ClassVar" in code(f.annotation.annotation)
        for f in fields
    ):
        return classdef
    params = [cst.Param(cst.Name("self"))]
    params += [cst.Param(cast(cst.Name, f.target), annotation=cst.Annotation(f.annotation.annotation), default=f.value) for f in fields]
    given = [cast(cst.Name, f.target).value for f in fields]
    body: list[cst.BaseStatement] = [
        cst.parse_statement("super().__init__(name=name)" if "name" in given else "super().__init__()"),
        *(cst.parse_statement(f"self.{name} = {name}") for name in given if name != "name"),
    ]
    init = cst.FunctionDef(cst.Name("__init__"), cst.Parameters(params), cst.IndentedBlock(body))
    rest = [s for s in classdef.body.body if not (isinstance(s, cst.SimpleStatementLine) and s.body and s.body[0] in fields)]
    docstring = rest[:1] if rest and classdef.get_docstring() is not None else []
    return classdef.with_changes(decorators=decorators, body=classdef.body.with_changes(body=[*docstring, init, *rest[len(docstring):]]))
