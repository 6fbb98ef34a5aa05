"""What a rule may read and change: the rooms the targets hand to rule families. Read this first.

A rule family (one module of `haiku2flax.codemods`) converts one family of Haiku constructs. It does
not subclass a target: it registers plain functions, and the target calls them with a typed room.

- Call rules are keyed by Haiku API. `LINEN_CALLS.on("dropout", rule=RULE_DROPOUT)` registers a
  function `(room, call) -> new expression | None` for every call whose function resolves to
  `hk.dropout` (`"initializers.*"`: to any API of that namespace without a rule of its own);
  `constructor=True` keys it on the constructor of a layer built and called at once
  (`hk.MaxPool(...)(x)`); `on_call` registers one rule for both targets. The target resolves a
  call's API once, looks its rules up in the table and calls them in registration order; the first
  that returns an expression has converted the call, `None` hands it on. A rule whose id `--select`
  / `--ignore` turns off is not called.
- Calls on an object the file made with Haiku (`net.init(...)` of `net = hk.transform(f)`) are keyed
  by what a `key(ctx, call)` function the family registers names them: `NNX_FILE_CALLS.on_object(key, rule=...)`.
- `on_leave` / `on_visit` rules are keyed by node type, for constructs that are not a call
  (`NNX_NODES.on_leave(cst.With, rule=RULE_NAME_SCOPE)`): `(room, original, updated) -> node | None`
  on leave, `(room, node) -> None` on visit (`False`: the node's children are not visited); they run
  before the target's own hook for that type, and a leave rule that returns a replacement ends there
  (the target's own hook does not see it). A leave rule registered with `after=True` runs after the
  target's own hook, on what it returned, so the target's bookkeeping for that node (its scopes,
  statement tracking, the calls around) runs whatever the rule does.
- Rules that follow a whole function are components the target owns and drives at the nodes they
  name (`shapes.ShapeTracker`: every simple statement and function of a method).

Each target has a table per room: Linen converts a file in one pass (`LINEN_CALLS`, `LINEN_NODES`);
NNX converts each method of a Haiku class in its own pass (`NNX_CALLS`, `NNX_NODES`) and the rest of
the file in another (`NNX_FILE_CALLS`, `NNX_FILE_NODES`).

What a rule reads about the whole file (its transforms, its key sequences) is a `FileFact`
(`engine/context.py`): `ctx.fact(SEQUENCES)` works it out from the original module on first use.

A rule, whole (`codemods/dropout.py` has the real one)::

    RULE_DROPOUT = register("HK003", "dropout", Status.CONVERTED, "hk.dropout -> nn.Dropout", __name__, apis=("dropout",))

    @LINEN_CALLS.on("dropout", rule=RULE_DROPOUT)
    def linen_dropout(room: LinenMethod, call: CallSite) -> cst.BaseExpression:
        try:
            dropout = read_dropout(call.updated, room.ctx.names)
        except Unconvertible as reason:
            room.todo(call.original, RULE_DROPOUT, str(reason))  # left as it was, with a TODO
            return call.updated
        room.mark_builds_layer()
        room.converted(call.original, RULE_DROPOUT, "hk.dropout -> nn.Dropout")
        return ...  # `nn.Dropout(rate, deterministic=...)(x)`

The rooms, from the widest to the narrowest:
- `FileRoom`: the file (`ctx`: names, tables, needed imports and classes, `--select`) and the report
  (`converted` / `warn` / `todo`, the last also leaves a `# TODO(haiku2flax:RULE)` comment);
  `family(ItsState)`: a family's own state for the pass (`training.py` follows functions with it).
- `LinenMethod`: the Linen converter inside a function: `mark_builds_layer()` (the method gets
  `@nn.compact`), the static shapes of the Haiku expressions, layers built and called at once.
- `NnxMethod`: one method of a class on its way to NNX: feature sizes (`size_of` / `set_size`),
  building layers in `__init__` (`hoist`, `can_hoist`, `in_nested_block`, `new_attribute`,
  `add_to_init`), the flags that may become train/eval mode (`mode_flags`), static shapes, layers
  called at once.
  A family that follows the method as it goes keeps its state in `room.family(ItsState)`.
- `NnxFile`: the NNX converter outside the methods of Haiku classes (transforms, training code): the
  file's Haiku classes and what callers need to know of those converted so far (`class_infos`).
- `NnxClass`: the class being converted, for what its methods share (constructor arguments, `rngs`,
  building a layer, the layer lists of `__init__`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

import libcst as cst

if TYPE_CHECKING:
    from ..engine.context import Context
    from ..targets.nnx import ClassInfo
    from .conditional_layers import Guard
    from .layer_lists import LayerList

FamilyState = TypeVar("FamilyState")
Built = TypeVar("Built")

# An array's shape where literals fix it: None when even the rank is unknown; a None dimension has an unknown size.
Shape = tuple[int | None, ...] | None


class FileRoom(Protocol):
    """The file being converted and its report."""

    @property
    def ctx(self) -> Context: ...

    def converted(self, node: cst.CSTNode, rule: str, message: str) -> None: ...

    def warn(self, node: cst.CSTNode, rule: str, message: str) -> None: ...

    def todo(self, node: cst.CSTNode, rule: str, reason: str) -> None:
        """Leave the code as it is, report it, and put a TODO comment above the statement holding `node`."""

    def family(self, kind: type[FamilyState]) -> FamilyState:
        """A rule family's own state for this pass (the file's; one method's in `NnxMethod`), made by `kind()` on first use."""

    def insert_before_statement(self, line: cst.SimpleStatementLine) -> None:
        """Put `line` before the innermost simple statement being converted."""

    def todos_apart(self, build: Callable[[], Built | None]) -> tuple[Built | None, list[tuple[str, str]]]:
        """`build()` and the TODOs it raised, for the caller to put above what it built; when it built
        nothing (None) they stay above the current statement."""


class MethodRoom(FileRoom, Protocol):
    """What both targets know inside a function."""

    def static_shape(self, node: cst.BaseExpression) -> Shape:
        """The shape of an original (Haiku) expression, where literal arguments fix it."""

    def called_at_once(self, call: cst.Call) -> bool:
        """`call` is the constructor of a layer called right away: `hk.MaxPool(...)(x)`."""

    def enclosing_call(self) -> cst.Call | None:
        """The (original) call whose parts hold the call being left, if any."""

    def remove_statement(self, statement: cst.SimpleStatementLine) -> cst.RemovalSentinel:
        """What a leave rule returns to drop `statement`; its blank lines go to the next statement of its block."""

    @property
    def function(self) -> cst.FunctionDef | None:
        """The function being converted, as it was (Linen: the innermost; NNX: the method)."""


class LinenMethod(MethodRoom, Protocol):
    """The Linen converter inside a function."""

    def mark_builds_layer(self) -> None:
        """A layer is built inline here: the enclosing method needs `@nn.compact`."""

    def convert_copy(self, node: cst.Call) -> cst.BaseExpression:
        """A copy of `node` (code from elsewhere in the file) converted by this pass."""


class NnxFile(FileRoom, Protocol):
    """The NNX converter outside the methods of Haiku classes (transforms, training code)."""

    @property
    def classes(self) -> dict[str, cst.ClassDef]:
        """The file's Haiku module classes, by name."""

    @property
    def class_infos(self) -> dict[str, ClassInfo]:
        """What callers need to know of the classes converted so far (constructor signature, removed flags)."""


class NnxMethod(MethodRoom, Protocol):
    """One method of a Haiku class being converted to an `nnx.Module`."""

    mode_flags: set[str]  # flags passed as `deterministic=not flag`: may become the module's train/eval mode
    carried_sizes: set[str]  # `__init__` variables standing for the size a loop iteration is handed: `x + layer(x)` keeps it

    @property
    def function(self) -> cst.FunctionDef:
        """The method, as it was in the Haiku source."""

    @property
    def method(self) -> cst.FunctionDef:
        """The Haiku method being converted."""

    @property
    def conversion(self) -> NnxClass:
        """The class this method belongs to."""

    def family(self, kind: type[FamilyState]) -> FamilyState:
        """A rule family's own state for this method, made by `kind()` on first use."""

    def set_variable_size(self, name: str, size: cst.BaseExpression | None) -> None:
        """The feature size a variable of this method holds from here on."""

    def variable_size(self, name: str) -> cst.BaseExpression | None:
        """The feature size a variable of this method holds here, when dataflow tells it."""

    def set_size_after_statement(self, name: str, size: cst.BaseExpression | None) -> None:
        """The feature size a name the statement being left assigns holds after it (one of a tuple's, say)."""

    @property
    def method_locals(self) -> set[str]:
        """The names the method binds: its parameters and what it assigns."""

    def size_of(self, node: cst.BaseExpression) -> cst.BaseExpression | None:
        """The feature size (last axis) of an expression of this method, when dataflow tells it."""

    def set_size(self, node: cst.BaseExpression, size: cst.BaseExpression | None) -> cst.BaseExpression:
        """Record the feature size of an expression this rule produced; returns the expression."""

    def without_mode_args(self, statement: cst.BaseStatement) -> cst.BaseStatement:
        """`statement` (converted) without the `deterministic=not flag` arguments of `mode_flags`."""

    def inline_block(self, block: cst.BaseSuite) -> None:
        """`block` runs once, as part of the block around it (a name scope's): layers built there move to `__init__`."""

    def enter_function(self) -> None:
        """A nested function starts: the sizes set from here on, and the size it returns, are its own."""

    def leave_function(self) -> cst.BaseExpression | None:
        """Back to the sizes before the nested function; returns the size it returned (None: unknown)."""

    def in_loop_or_condition(self) -> bool:
        """The statement being converted is in a loop, condition or `with` of the method, not at its top level."""

    def reads_constructor_state(self, expression: cst.BaseExpression) -> bool:
        """`__init__` can evaluate `expression` the same way: it reads only constructor arguments and attributes."""

    def in_nested_block(self, node: cst.CSTNode, what: str) -> bool:
        """True, with a TODO, where `what` is built in a loop or condition (it cannot move to `__init__`)."""

    def can_hoist(self, expressions: list[cst.BaseExpression], node: cst.CSTNode) -> bool:
        """Whether `__init__` has every name these expressions read (else a TODO)."""

    def hoist(
        self, constructor: cst.Call, updated: cst.Call, stored_as: str | None = None, guard: Guard | None = None
    ) -> cst.BaseExpression | None:
        """`self.<attribute>(...)` for a layer `constructor` called as `updated`, now built in `__init__`
        (None, maybe with a TODO, where it cannot be)."""

    def input_size(self, attribute: str, inputs: list[cst.Arg], node: cst.CSTNode) -> cst.BaseExpression:
        """The input feature size of `attribute` called on `inputs`, or a new constructor argument + TODO."""

    def new_attribute(self, base: str, explicit: str | None = None) -> str:
        """A fresh attribute name the way Haiku names modules: `linear`, `linear_1`, or the given name."""

    def add_to_init(
        self,
        attribute: str,
        constructor: cst.BaseExpression,
        source: cst.CSTNode,
        needs_rngs: bool = False,
        guard: Guard | None = None,
        lines: list[cst.BaseStatement] | None = None,
    ) -> None:
        """Build `self.<attribute> = constructor` (or run `lines`) at the end of `__init__`."""


class NnxClass(Protocol):
    """A Haiku class on its way to an `nnx.Module`, shared by the rooms of its methods."""

    @property
    def ctx(self) -> Context: ...

    @property
    def converter(self) -> FileRoom:
        """The file's converter: the report for what happens outside any method."""

    @property
    def classdef(self) -> cst.ClassDef:
        """The Haiku class."""

    needs_rngs: bool  # the constructor takes `rngs: nnx.Rngs`
    init_locals: set[str]  # variables the statements built in `__init__` assign there (`in_features`)

    def is_module_constructor(self, call: cst.Call) -> bool:
        """A table layer, an MLP or Sequential, or a Haiku module class of this file."""

    @property
    def hoisted(self) -> Sequence[InitBuilt]:
        """The layers the methods build inline, now built in `__init__`, in order."""

    @property
    def init_layers(self) -> Mapping[str, InitLayer]:
        """The layers the Haiku `__init__` builds (`self.encoder = hk.Linear(...)`), by attribute."""

    @property
    def init_def(self) -> cst.FunctionDef | None:
        """The Haiku `__init__`, if the class has one."""

    @property
    def locals_in_init(self) -> set[str]:
        """The names `__init__` has: `self` and its parameters."""

    @property
    def layer_lists(self) -> dict[str, LayerList]:
        """Lists of layers `__init__` builds (`self.layers = [hk.Linear(n) for n in sizes]`), by attribute."""

    def built_in_init(self) -> list[tuple[str, cst.CSTNode]]:
        """(attribute, the Haiku node it comes from) of what the methods converted so far build in `__init__`."""

    def build(
        self,
        constructor: cst.Call,
        attribute: str,
        call_args: list[cst.Arg],
        rewriter: NnxMethod | None,
        node: cst.CSTNode,
        known_size: cst.BaseExpression | None = None,
    ) -> tuple[cst.BaseExpression, cst.BaseExpression | None] | None:
        """(NNX constructor, output size) of a Haiku layer called on `call_args` (or on an input of size
        `known_size`), or None with a TODO."""

    def call_args_for(
        self, constructor: cst.Call, call_args: list[cst.Arg], rewriter: NnxMethod, node: cst.CSTNode
    ) -> list[cst.Arg] | None:
        """The arguments of calling the NNX layer built from `constructor`, or None with a TODO."""

    def input_size(
        self, attribute: str, size: cst.BaseExpression | None, method: NnxMethod | None, node: cst.CSTNode,
        value: cst.BaseExpression | None = None,
    ) -> cst.BaseExpression:
        """`size`; when it is unknown, a shape probe of the input `value`, else a new constructor argument
        with a TODO saying what to pass."""


class InitBuilt(Protocol):
    """A layer a method built inline, now built once in `__init__`."""

    constructor: cst.BaseExpression  # its NNX constructor


class InitLayer(Protocol):
    """A layer the Haiku `__init__` builds: NNX needs its input size, known at its first use."""

    statement: cst.BaseStatement  # the `__init__` statement building it
    resolved: cst.BaseExpression | None  # its NNX constructor, once that use is converted


@dataclass(frozen=True)
class CallSite:
    """A call being left: as it was in the Haiku source, as the rules below it left it, and its API."""

    original: cst.Call
    updated: cst.Call
    api: str  # the Haiku API path of the function (`dropout`, `nets.MLP`), of the constructor called at once, or an object key


RoomT = TypeVar("RoomT", bound=FileRoom, contravariant=True)


class ObjectKey(Protocol):
    """What a call on an object the file made with Haiku is (`transform.init`), or None for other calls."""

    def __call__(self, ctx: Context, call: cst.Call, /) -> str | None: ...


class CallRule(Protocol[RoomT]):
    def __call__(self, room: RoomT, call: CallSite, /) -> cst.BaseExpression | None: ...


@dataclass
class CallRules(Generic[RoomT]):
    """One target's call rules, by the Haiku API they handle."""

    target: str
    by_api: dict[str, list[tuple[str, CallRule[RoomT]]]] = field(default_factory=dict)
    by_constructor: dict[str, list[tuple[str, CallRule[RoomT]]]] = field(default_factory=dict)
    by_object: list[tuple[ObjectKey, str, CallRule[RoomT]]] = field(default_factory=list)

    def on(self, *apis: str, rule: str, constructor: bool = False) -> Callable[[CallRule[RoomT]], CallRule[RoomT]]:
        """Register a function as the rule `rule` for calls of `apis` (with `constructor`: for layers of
        `apis` built and called at once, keyed by the constructor's API)."""
        table = self.by_constructor if constructor else self.by_api

        def register(function: CallRule[RoomT]) -> CallRule[RoomT]:
            for api in apis:
                table.setdefault(api, []).append((rule, function))
            return function

        return register

    def on_object(self, key: ObjectKey, *, rule: str) -> Callable[[CallRule[RoomT]], CallRule[RoomT]]:
        """Register a function as the rule `rule` for calls on an object the file made with Haiku, which
        `key(ctx, call)` names (`transform.init` for `net.init(...)` of `net = hk.transform(f)`); tried
        for calls whose function is no Haiku API."""

        def register(function: CallRule[RoomT]) -> CallRule[RoomT]:
            self.by_object.append((key, rule, function))
            return function

        return register

    def dispatch(self, room: RoomT, original: cst.Call, updated: cst.Call) -> cst.BaseExpression | None:
        """The call as the first rule for its API converts it, or None when no rule did."""
        names = room.ctx.names
        if self.by_constructor and isinstance(original.func, cst.Call):
            inner = names.haiku_api(original.func.func)
            if inner is not None and inner in self.by_constructor:
                result = self._first(self.by_constructor[inner], room, CallSite(original, updated, inner))
                if result is not None:
                    return result
        api = names.haiku_api(original.func)
        if api is None:
            return self._on_object(room, original, updated) if self.by_object else None
        rules = self.by_api.get(api) or self.by_api.get(f"{api.rpartition('.')[0]}.*")
        return self._first(rules, room, CallSite(original, updated, api)) if rules else None

    def _on_object(self, room: RoomT, original: cst.Call, updated: cst.Call) -> cst.BaseExpression | None:
        for key, rule, function in self.by_object:
            made = key(room.ctx, original)
            if made is not None and room.ctx.enabled(rule):
                result = function(room, CallSite(original, updated, made))
                if result is not None:
                    return result
        return None

    @staticmethod
    def _first(rules: list[tuple[str, CallRule[RoomT]]], room: RoomT, call: CallSite) -> cst.BaseExpression | None:
        enabled = room.ctx.enabled
        for rule, function in rules:
            if enabled(rule):
                result = function(room, call)
                if result is not None:
                    return result
        return None


LINEN_CALLS: CallRules[LinenMethod] = CallRules("linen")
NNX_CALLS: CallRules[NnxMethod] = CallRules("nnx")
NNX_FILE_CALLS: CallRules[NnxFile] = CallRules("nnx")  # NNX outside the methods of Haiku classes


SharedCallRule = TypeVar("SharedCallRule", bound=CallRule[MethodRoom])
SharedLeaveRule = TypeVar("SharedLeaveRule", bound="LeaveRule[MethodRoom]")


def on_call(*apis: str, rule: str, constructor: bool = False) -> Callable[[SharedCallRule], SharedCallRule]:
    """Register a rule that reads only what both targets offer, for both (see `CallRules.on`)."""

    def register(function: SharedCallRule) -> SharedCallRule:
        LINEN_CALLS.on(*apis, rule=rule, constructor=constructor)(function)
        NNX_CALLS.on(*apis, rule=rule, constructor=constructor)(function)
        return function

    return register


Hook = Callable[..., Any] | None
LeaveResult = cst.CSTNode | cst.FlattenSentinel[Any] | cst.RemovalSentinel


class LeaveRule(Protocol[RoomT]):
    def __call__(self, room: RoomT, original: Any, updated: Any, /) -> LeaveResult | None: ...


class VisitRule(Protocol[RoomT]):
    def __call__(self, room: RoomT, node: Any, /) -> bool | None: ...


@dataclass
class NodeRules(Generic[RoomT]):
    """One target's rules by node type, for constructs that are not calls; they run before the target's
    own `visit_<Node>` / `leave_<Node>` hook, or after it (`after=True`; see `engine.rewriter.Rewriter.node_rules`)."""

    target: str
    visiting: dict[type[cst.CSTNode], list[tuple[str, VisitRule[RoomT]]]] = field(default_factory=dict)
    leaving: dict[type[cst.CSTNode], list[tuple[str, LeaveRule[RoomT]]]] = field(default_factory=dict)
    leaving_after: dict[type[cst.CSTNode], list[tuple[str, LeaveRule[RoomT]]]] = field(default_factory=dict)

    def on_visit(self, kind: type[cst.CSTNode], *, rule: str) -> Callable[[VisitRule[RoomT]], VisitRule[RoomT]]:
        def register(function: VisitRule[RoomT]) -> VisitRule[RoomT]:
            self.visiting.setdefault(kind, []).append((rule, function))
            return function

        return register

    def on_leave(self, kind: type[cst.CSTNode], *, rule: str, after: bool = False) -> Callable[[LeaveRule[RoomT]], LeaveRule[RoomT]]:
        table = self.leaving_after if after else self.leaving

        def register(function: LeaveRule[RoomT]) -> LeaveRule[RoomT]:
            table.setdefault(kind, []).append((rule, function))
            return function

        return register

    def hooks(self, kind: type, visit: Hook, leave: Hook) -> tuple[Hook, Hook]:
        """A target's (visit, leave) hooks for node type `kind`, with this table's rules run first (its
        `after` leave rules on what the target's own leave hook returned)."""
        visits, leaves, afters = self.visiting.get(kind), self.leaving.get(kind), self.leaving_after.get(kind)
        if visits:
            visit = _visiting(visits, visit)
        if leaves or afters:
            leave = _leaving(leaves or [], leave, afters or [])
        return visit, leave


def _visiting(rules: list[tuple[str, VisitRule[Any]]], own: Hook) -> Hook:
    def visit(room: FileRoom, node: cst.CSTNode) -> object:
        children = True
        for rule, function in rules:
            if room.ctx.enabled(rule) and function(room, node) is False:
                children = False
        result = own(room, node) if own is not None else None
        return result if children else False

    return visit


def _leaving(rules: list[tuple[str, LeaveRule[Any]]], own: Hook, afterwards: list[tuple[str, LeaveRule[Any]]]) -> Hook:
    def leave(room: FileRoom, original: cst.CSTNode, updated: cst.CSTNode) -> object:
        result = None
        for rule, function in rules:
            if room.ctx.enabled(rule):
                result = function(room, original, updated)
                if result is not None:
                    break
        if result is None:
            result = own(room, original, updated) if own is not None else updated
        for rule, function in afterwards:
            if not isinstance(result, cst.CSTNode):  # removed or flattened: nothing left to rewrite
                break
            if room.ctx.enabled(rule):
                replaced = function(room, original, result)
                result = result if replaced is None else replaced
        return result

    return leave


LINEN_NODES: NodeRules[LinenMethod] = NodeRules("linen")
NNX_NODES: NodeRules[NnxMethod] = NodeRules("nnx")
NNX_FILE_NODES: NodeRules[NnxFile] = NodeRules("nnx")


def on_leave(kind: type[cst.CSTNode], *, rule: str) -> Callable[[SharedLeaveRule], SharedLeaveRule]:
    """Register a leave rule that reads only what both targets offer, for both."""

    def register(function: SharedLeaveRule) -> SharedLeaveRule:
        LINEN_NODES.on_leave(kind, rule=rule)(function)
        NNX_NODES.on_leave(kind, rule=rule)(function)
        return function

    return register
