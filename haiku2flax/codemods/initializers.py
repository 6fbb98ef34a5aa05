"""Initializers used as values: bound to a name or attribute, defaulted, returned by a helper, passed on.

What it converts: every `hk.initializers.*` call the initializer tables know, where it is written, when
the value it makes only flows to where an initializer goes: a table layer's initializer argument
(`w_init=`, `b_init=`, `scale_init=`...), `hk.nets.MLP(w_init=, b_init=)`, or the `init` of
`hk.get_parameter`. It may flow through names and `self.<attribute>`s (each binding of which must hold
such a value, `None`, or the caller's argument: `self.w_init = w_init or hk.initializers.TruncatedNormal()`,
`if w_init is None: w_init = ...`), `a or b`, `a if c else b`, and top-level functions that return one.
The layers take the name as it is. An initializer that reads fans (VarianceScaling, Orthogonal...)
still goes only where its table allows it (not to a 1-D parameter: jax reads no fans there).

Where the value may come from a caller (a constructor's `w_init=None`), the default converts and a TODO
says that callers now pass a Flax initializer: one from another file cannot be seen; what the file's own
callers pass (`Encoder(16, w_init=hk.initializers.RandomNormal(0.3))`) converts at the call. A value that is
only ever None or a caller's argument to a parameter defaulting to None (`hk.nets.MLP`'s `w_init=None`,
passed to each `hk.Linear`) falls back, in Linen, to the Flax layer's own default where it is None, as
Haiku's layer does (`kernel_init=self.w_init or nn.Dense.kernel_init`). A parameter passed on with no
default, a name also bound to something else, a value called Haiku-style (`init(shape, dtype)`) and
`functools.partial(hk.initializers.X, ...)` keep the Haiku code and the layer's TODO.

Why: Haiku code often builds one initializer and hands it to several layers, keeps it on the module or
defaults it in `__init__`; converting the value where it is written keeps that structure. A Haiku
initializer object wrapped into a Flax `lambda key, shape, dtype:` would call `hk.next_rng_key()`
outside a transform.

Example::

    init = hk.initializers.VarianceScaling(2.0)           init = nn.initializers.variance_scaling(2.0, 'fan_in', 'truncated_normal')
    x = hk.Linear(8, w_init=init)(x)                      x = nn.Dense(8, kernel_init=init)(x)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import TypeGuard, TypeVar, cast

import libcst as cst

from ..engine.calls import Unconvertible, convert_initializer, initializer_key
from ..engine.context import Context, FileFact
from ..engine.names import ImportedNames
from ..engine.registry import Status, register
from ..engine.rewriter import Rewriter
from ..engine.tables import Tables
from ..engine.walk import Walker
from .interfaces import NNX_FILE_CALLS, CallSite, FileRoom, on_call

RULE_INITIALIZER_BINDING = register(
    "HK202", "initializer-binding", Status.CONVERTED,
    "an hk.initializers value (a name, attribute, default or helper's return) passed to layers -> the Flax initializer where it is written", __name__,
)

INITIALIZER_CONVERSIONS = ("initializer", "elementwise_initializer")
COMPOSITE_INITIALIZERS = {"nets.MLP": ("w_init", "b_init")}  # rules that hand these to their inner Linear
GET_PARAMETER_INIT = ("init", 3)  # keyword, position of `hk.get_parameter`'s initializer

Node = TypeVar("Node", bound=cst.CSTNode)


CALLER = "caller"  # a function parameter: its value comes from the caller
AUGMENTED = "augmented"  # `x += ...`: never an initializer


def _operands(value: cst.BaseExpression) -> Iterator[cst.BaseExpression]:
    """The values an expression may evaluate to: both sides of `a or b`, both branches of `a if c else b`."""
    if isinstance(value, cst.BooleanOperation) and isinstance(value.operator, cst.Or):
        yield from _operands(value.left)
        yield from _operands(value.right)
    elif isinstance(value, cst.IfExp):
        yield from _operands(value.body)
        yield from _operands(value.orelse)
    else:
        yield value


def _is_none(value: cst.BaseExpression) -> bool:
    return isinstance(value, cst.Name) and value.value == "None"


def _parameters(function: cst.FunctionDef) -> list[str]:
    return [param.name.value for param in (*function.params.posonly_params, *function.params.params, *function.params.kwonly_params)]


def _read_key(value: cst.BaseExpression) -> str | None:
    """The name a value reads: `init`, `self.init`, or the function `make_init` of `make_init(...)`."""
    key = initializer_key(value)
    return key.removesuffix("()") if key is not None else None


class _Values(Walker):
    """What each name, attribute and top-level function may hold, and where each is read."""

    def __init__(self, names: ImportedNames, tables: Tables) -> None:
        self.names = names
        self.tables = tables
        # key -> the values bound to it (`init`, `self.init`) or returned (`make_init()`); CALLER: a parameter
        self.bound: dict[str, list[cst.BaseExpression | str]] = {}
        self.reads: Counter[str] = Counter()
        self.allowed_reads: dict[str, list[str | None]] = {}  # read key -> per allowed read, the key it flows to (None: a layer)
        self.functions: list[str | None] = []  # enclosing functions: the name of a top-level one, else None
        self.depth = 0  # classes and functions around the node
        self.signatures: dict[str, list[str]] = {}  # top-level function or class -> the parameters its callers fill
        self.passed: set[int] = set()  # ids of the values the file's own callers pass to those parameters
        # Scopes (0: the module, else the id of the function holding a name, or the class holding `self.x`)
        # where a key is bound, where a binding holds an `hk.initializers` call itself, and where layers read it.
        self.scopes: list[tuple[int, int]] = [(0, 0)]  # (function scope, class scope) around the node
        self.bound_in: set[tuple[str, int]] = set()
        self.written_in: set[tuple[str, int]] = set()
        self.copied_in: dict[tuple[str, int], set[tuple[str, int]]] = {}  # (key, scope) <- the (key, scope)s it is bound to
        self.layer_reads: set[tuple[str, int]] = set()
        self.none_defaults: dict[str, bool] = {}  # parameter -> every parameter of that name defaults to None

    def visit_Module(self, node: cst.Module) -> None:
        for statement in node.body:
            if isinstance(statement, cst.FunctionDef):
                self.signatures[statement.name.value] = _parameters(statement)
            elif isinstance(statement, cst.ClassDef):
                for member in statement.body.body:
                    if isinstance(member, cst.FunctionDef) and member.name.value == "__init__":
                        self.signatures[statement.name.value] = _parameters(member)[1:]  # not `self`

    def _bind_arguments(self, call: cst.Call) -> None:
        """`Encoder(16, w_init=...)`: the value the caller passes is bound to the parameter."""
        parameters = self.signatures.get(call.func.value) if isinstance(call.func, cst.Name) else None
        if parameters is None or any(arg.star for arg in call.args):
            return
        for position, arg in enumerate(call.args):
            parameter = arg.keyword.value if arg.keyword is not None else parameters[position] if position < len(parameters) else None
            if parameter in parameters and parameter is not None:
                self.bound.setdefault(parameter, []).append(arg.value)  # passed from the caller's scope
                self._allow(arg.value, parameter)
                self.passed.update(id(operand) for operand in _operands(arg.value))

    def _allow(self, value: cst.BaseExpression, flows_to: str | None) -> None:
        for operand in _operands(value):
            key = _read_key(operand)
            if key is not None:
                self.allowed_reads.setdefault(key, []).append(flows_to)
                if flows_to is None and not isinstance(operand, cst.Call):
                    self.layer_reads.add((key, self._scope(key)))

    def _scope(self, key: str) -> int:
        function, cls = self.scopes[-1]
        return cls if key.startswith("self.") else function

    def _bind(self, key: str, value: cst.BaseExpression | str) -> None:
        self.bound.setdefault(key, []).append(value)
        self.bound_in.add((key, self._scope(key)))
        for operand in _operands(value) if not isinstance(value, str) else ():
            if self.is_initializer_call(operand):
                self.written_in.add((key, self._scope(key)))
            elif (inner := initializer_key(operand)) is not None and not inner.endswith("()"):
                self.copied_in.setdefault((key, self._scope(key)), set()).add((inner, self._scope(inner)))

    @cached_property
    def written(self) -> set[tuple[str, int]]:
        """(key, scope)s given an `hk.initializers` call there, directly or through keys bound to one."""
        written = set(self.written_in)
        while grown := {bound for bound, copied in self.copied_in.items() if bound not in written and copied & written}:
            written |= grown
        return written

    def reads_a_value_written_in_its_scope(self, key: str) -> bool:
        """Each layer reads the key where it is given an `hk.initializers` call (or, not bound there, at module
        level): a parameter of one function, passed on as it came, is not converted because a parameter of
        the same name elsewhere has a default."""
        written = self.written
        return all((key, scope) in written or ((key, scope) not in self.bound_in and (key, 0) in written)
                   for read, scope in self.layer_reads if read == key)

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.depth += 1
        self.scopes.append((self.scopes[-1][0], id(node)))

    def leave_ClassDef(self, node: cst.ClassDef) -> None:
        self.depth -= 1
        self.scopes.pop()

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        name = node.name.value
        self.functions.append(name if self.depth == 0 else None)
        self.depth += 1
        self.reads[name] -= 1  # its name is walked as a read
        if self.depth == 1:
            self.bound.setdefault(f"{name}()", [])
        self.scopes.append((id(node), self.scopes[-1][1]))
        for parameter in _parameters(node):
            self._bind(parameter, CALLER)
            self.reads[parameter] -= 1
        for param in (*node.params.posonly_params, *node.params.params, *node.params.kwonly_params):
            defaults_none = param.default is not None and _is_none(param.default)
            self.none_defaults[param.name.value] = self.none_defaults.get(param.name.value, True) and defaults_none

    def leave_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.functions.pop()
        self.depth -= 1
        self.scopes.pop()

    def visit_Return(self, node: cst.Return) -> None:
        function = self.functions[-1] if self.functions else None
        if function is not None:
            returned = node.value if node.value is not None else cst.Name("None")
            self.bound[f"{function}()"].append(returned)
            self._allow(returned, f"{function}()")

    def visit_Assign(self, node: cst.Assign) -> None:
        for target in node.targets:
            key = initializer_key(target.target)
            if key is not None and not key.endswith("()"):
                self._bind(key, node.value)
                self.reads[key] -= 1  # the target itself is walked as a read below
                self._allow(node.value, key)

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        key = initializer_key(node.target)
        if key is not None:
            self._bind(key, AUGMENTED)

    def visit_Comparison(self, node: cst.Comparison) -> None:
        """`w_init is None`: a test of the value, not a use."""
        tests = node.comparisons
        if len(tests) == 1 and isinstance(tests[0].operator, cst.Is | cst.IsNot) and _is_none(tests[0].comparator):
            key = _read_key(node.left)
            if key is not None and not isinstance(node.left, cst.Call):
                self.allowed_reads.setdefault(key, []).append(None)

    def visit_Name(self, node: cst.Name) -> None:
        self.reads[node.value] += 1

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        key = initializer_key(node)
        if key is not None and "." in key:
            self.reads[key] += 1
        else:
            self.walk(node.value)  # `x.init` does not read `init`
        return False

    def visit_Arg(self, node: cst.Arg) -> bool:
        self.walk(node.value)  # nor does the keyword of `init=...`
        return False

    def visit_Call(self, node: cst.Call) -> None:
        for arg in self._initializer_args(node):
            self._allow(arg.value, None)
        self._bind_arguments(node)

    def _initializer_args(self, call: cst.Call) -> list[cst.Arg]:
        api = self.names.haiku_api(call.func)
        if api is None:
            return []
        if api == "get_parameter":
            keyword, position = GET_PARAMETER_INIT
            positional = [a for a in call.args if a.keyword is None]
            return [a for a in call.args if a.keyword is not None and a.keyword.value == keyword] + positional[position : position + 1]
        construct = self.tables.get(api)
        wanted: tuple[str, ...] = COMPOSITE_INITIALIZERS.get(api, ())
        if construct is not None:
            wanted = tuple(name for name, how in construct.convert.items() if how in INITIALIZER_CONVERSIONS)
        return [a for a in call.args if a.keyword is not None and a.keyword.value in wanted]

    def is_initializer_call(self, value: cst.BaseExpression) -> TypeGuard[cst.Call]:
        return isinstance(value, cst.Call) and (self.names.haiku_api(value.func) or "") in self.tables.initializers


@dataclass
class InitializerValues:
    """Keys whose every value is an `hk.initializers` call the tables know (or comes from a caller, or is
    None), read only where an initializer goes or flows on to another such key."""

    sources: dict[str, tuple[cst.Call, ...]]  # key -> the calls it may hold
    defaults: dict[int, str]  # id of a call that stands in for a parameter the caller may pass -> that parameter
    passed_on: frozenset[str]  # keys holding only None or what a caller passes to a parameter defaulting to None


def _initializer_values(module: cst.Module, names: ImportedNames, tables: Tables) -> InitializerValues:
    found = _Values(names, tables)
    found.walk(module)

    def holds_initializers(key: str, keys: set[str]) -> bool:
        values = found.bound[key]
        operands = [o for value in values if not isinstance(value, str) for o in _operands(value)]
        if not values or len(operands) + values.count(CALLER) < len(values):
            return False  # an augmented assignment, or a function that returns nothing
        if not all(_is_none(o) or found.is_initializer_call(o) or initializer_key(o) in keys for o in operands):
            return False
        read = _read_key(cst.parse_expression(key))
        allowed = found.allowed_reads.get(read or "", [])
        return found.reads[read or ""] == len(allowed) and all(to is None or to in keys for to in allowed)

    def holds_only_initializers(key: str, keys: set[str]) -> bool:
        return holds_initializers(key, keys) and (key.endswith("()") or found.reads_a_value_written_in_its_scope(key))

    def passed_on(key: str, keys: set[str]) -> bool:
        """None, or what a caller passes where the parameter defaults to None: the layers' own default or the caller's."""
        values = found.bound[key]
        calls = [o for value in values if not isinstance(value, str) for o in _operands(value) if found.is_initializer_call(o)]
        caller_ok = CALLER not in values or found.none_defaults.get(key, False)
        return not key.endswith("()") and not calls and caller_ok and holds_initializers(key, keys)

    keys = _largest(set(found.bound), holds_only_initializers)
    passed = _largest(set(found.bound) - keys, passed_on)

    calls: dict[str, set[cst.Call]] = {}
    callers: dict[str, set[str]] = {}

    def resolve(key: str, seen: frozenset[str]) -> None:
        if key in calls:
            return
        calls[key], callers[key] = set(), set()
        for value in found.bound[key]:
            if value == CALLER:
                callers[key].add(key)
                continue
            for operand in _operands(cast(cst.BaseExpression, value)):
                if found.is_initializer_call(operand):
                    calls[key].add(operand)
                elif (inner := initializer_key(operand)) in keys and inner not in seen and inner is not None:
                    resolve(inner, seen | {key})
                    calls[key] |= calls[inner]
                    callers[key] |= callers[inner]

    for key in keys:
        resolve(key, frozenset())
    sources = {key: tuple(sorted(calls[key], key=id)) for key in keys if calls[key]}
    defaults = {
        id(call): parameter
        for key in sources
        for parameter in sorted(callers[key])
        for call in calls[key]
        if id(call) not in found.passed  # what the file's own callers pass is converted there
    }
    return InitializerValues(sources, defaults, frozenset(passed))


def _largest(keys: set[str], holds: Callable[[str, set[str]], bool]) -> set[str]:
    """The largest subset of `keys` whose every key `holds` given the others."""
    while True:
        kept = {key for key in keys if holds(key, keys)}
        if kept == keys:
            return keys
        keys = kept


def initializer_bindings(module: cst.Module, names: ImportedNames, tables: Tables) -> dict[str, tuple[cst.Call, ...]]:
    """Key (`init`, `self.init`, `make_init()`) -> the `hk.initializers.*` calls it may hold, for keys read
    only as initializers."""
    return _initializer_values(module, names, tables).sources


def initializer_values(module: cst.Module, names: ImportedNames, tables: Tables) -> InitializerValues:
    """The file's initializer bindings (`sources`) and the keys that pass a caller's initializer or None on (`passed_on`)."""
    return _initializer_values(module, names, tables)


CALLER_DEFAULTS = FileFact(lambda module, ctx: _initializer_values(module, ctx.names, ctx.tables).defaults)


@on_call("initializers.*", rule=RULE_INITIALIZER_BINDING)
def convert_binding(room: FileRoom, call: CallSite) -> cst.BaseExpression | None:
    """The bound `hk.initializers.*` call becomes the Flax initializer (the reads are passed on by
    `convert_initializer`)."""
    ctx = room.ctx
    if not any(bound is call.original for calls in ctx.initializer_bindings.values() for bound in calls):
        return None
    try:
        converted = convert_initializer(call.updated, ctx, ctx.ns)
    except Unconvertible as reason:
        room.todo(call.original, RULE_INITIALIZER_BINDING, str(reason))
        return call.updated
    room.converted(call.original, RULE_INITIALIZER_BINDING, "an initializer bound to a name -> the Flax initializer")
    parameter = ctx.fact(CALLER_DEFAULTS).get(id(call.original))
    if parameter is not None:
        room.todo(
            call.original, RULE_INITIALIZER_BINDING,
            f"`{parameter}` is now a Flax initializer: callers pass `{ctx.ns}.initializers.*` (called as `(key, shape, "
            "dtype)`), not an `hk.initializers` object (it would call `hk.next_rng_key()` outside a transform)",
        )
    return converted


NNX_FILE_CALLS.on("initializers.*", rule=RULE_INITIALIZER_BINDING)(convert_binding)  # not a decorator: `_BindingRule` calls the function on a plain file room


class _BindingRule(Rewriter):
    """The binding rule alone, for statements a target moves rather than visits."""

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        if not self.ctx.enabled(RULE_INITIALIZER_BINDING):
            return updated
        converted = convert_binding(self, CallSite(original, updated, self.ctx.names.haiku_api(original.func) or ""))
        return converted if converted is not None else updated


def convert_bindings(node: Node, ctx: Context) -> Node:
    """`node` with its initializer bindings converted: for statements a target moves rather than visits."""
    return cast(Node, node.visit(_BindingRule(ctx))) if ctx.initializer_bindings else node  # calls become calls
