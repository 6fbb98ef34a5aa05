"""`hk.get_parameter`, `hk.get_state` and `hk.set_state`: parameters and state a module makes by hand.

What it converts (in `hk.Module` methods and in transformed forward functions, which become modules):
- Linen: `hk.get_parameter(name, shape, dtype, init)` -> `self.param(name, init, shape, dtype)` in a
  compact method; `hk.get_state(name, shape, dtype, init)` -> `self.variable('state', name, init,
  shape, dtype).value`; `hk.set_state(name, value)` -> `self.put_variable('state', name, value)`, under
  `if not self.is_initializing():` when `hk.get_state` creates that state. Apply with
  `mutable=['state']`.
- NNX: the parameter is built in `__init__` as `self.<name> = nnx.Param(...)` and read as
  `self.<name>[...]`; state is a `State(nnx.Variable)` (defined once per file) read the same way and
  written with `self.<name>[...] = value`. A shape entry `x.shape[-1]` becomes the inferred input size.
  A parameter the Haiku `__init__` makes (`self.w = hk.get_parameter('w', ...)`) is built there, as
  `self.w = nnx.Param(...)`, and the methods read it as `self.w[...]`.
- Initializers: Haiku's take `(shape, dtype)`, Flax's `(key, shape, dtype)`. `jnp.ones` / `jnp.zeros`
  become `nn.initializers.ones` / `zeros` where Flax calls the initializer (Linen `self.param`), and are
  called directly where the code builds the value (Linen state, NNX); `hk.initializers.*` convert by
  the initializer tables (`rules/initializers.toml`; fan-based ones only for parameters of rank >= 2,
  as jax reads no fans from 1-D shapes); an initializer already written for Flax is kept; any other
  callable is read as a Haiku `(shape, dtype)` function.

Why: Haiku returns values, Flax variables are references, so each read is taken when Haiku takes it
(`.value`, `[...]`) and a read before a write keeps the old value. Haiku's `init` returns the state
`hk.get_state` created, not what `hk.set_state` wrote after it, while Linen's `init` keeps writes made
during init: hence the `is_initializing()` guard. NNX has no init pass (the module is built eagerly), so
state holds its initial value until the first call, as Haiku's does.

Example (Linen)::

    counter = hk.get_state('counter', [], jnp.int32, init=jnp.ones)
    counter = self.variable('state', 'counter', jnp.ones, [], jnp.int32).value
    hk.set_state('counter', counter + 1)
    if not self.is_initializing():
      self.put_variable('state', 'counter', counter + 1)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst

from ..engine import analysis
from ..engine import matchers as m
from ..engine.calls import ARRAY_CONSTRUCTORS, ARRAY_MODULES, BoundCall, Unconvertible, convert_initializer, initializer_key
from ..engine.context import Context, FileFact, add_todo_lines, attr
from ..engine.names import ImportedNames, dotted_name
from ..engine.registry import Status, register
from ..engine.walk import Transformer, Walker, descendants
from .interfaces import (
    LINEN_CALLS, LINEN_NODES, NNX_CALLS, NNX_FILE_CALLS, NNX_FILE_NODES, NNX_NODES, CallSite, FileRoom, LinenMethod, NnxClass, NnxMethod,
)

RULE_PARAMETER = register(
    "HK200", "get-parameter", Status.PARTIAL,
    "hk.get_parameter -> self.param / nnx.Param built in __init__, Haiku initializers -> Flax initializers", __name__,
    apis=("get_parameter",),
)
RULE_STATE = register(
    "HK201", "state", Status.PARTIAL,
    "hk.get_state / hk.set_state -> self.variable('state', ...) / a State(nnx.Variable) built in __init__", __name__,
    apis=("get_state", "set_state"),
)

GET_PARAMETER, GET_STATE, SET_STATE = "get_parameter", "get_state", "set_state"
APIS = (GET_PARAMETER, GET_STATE, SET_STATE)
VARIABLE_ARGS = ("name", "shape", "dtype", "init")  # hk.get_parameter and hk.get_state
SET_STATE_ARGS = ("name", "value")
LINEN_COLLECTIONS = {GET_PARAMETER: "params", GET_STATE: "state"}
LINEN_STATE_COLLECTION = LINEN_COLLECTIONS[GET_STATE]
NNX_STATE_CLASS = "State"  # the nnx.Variable subclass this family defines for hk.get_state


@dataclass(frozen=True)
class VariableCall:
    """`hk.get_parameter` / `hk.get_state` / `hk.set_state`, bound to their Haiku signatures."""

    api: str
    name: str
    name_node: cst.BaseExpression
    args: dict[str, cst.BaseExpression]  # the others, by Haiku name

    @property
    def creates(self) -> bool:
        """A read with an init creates the variable when it does not exist yet."""
        return "init" in self.args

    @classmethod
    def read(cls, call: cst.Call, api: str) -> VariableCall:
        args = BoundCall.bind(call, SET_STATE_ARGS if api == SET_STATE else VARIABLE_ARGS, f"hk.{api}").args
        name_node = args.pop("name", None)
        name = name_node.evaluated_value if isinstance(name_node, cst.SimpleString) else None
        if not isinstance(name_node, cst.SimpleString) or not isinstance(name, str) or not name.isidentifier():
            raise Unconvertible(f"`hk.{api}` needs a literal name that is an identifier to become a Flax variable")
        return cls(api, name, name_node, args)


@dataclass(frozen=True)
class Initializer:
    """A Haiku parameter/state initializer read for Flax.

    `flax` takes `(key, shape, dtype)`. Otherwise `haiku` is a Haiku-style `(shape, dtype)` function, and
    `array` names the `jnp` constructor it is (`ones`, `zeros`), which has a Flax initializer twin and
    defaults to float32 as Haiku does.
    """

    flax: cst.BaseExpression | None = None
    haiku: cst.BaseExpression | None = None
    array: str | None = None


def read_initializer(init: cst.BaseExpression, shape: cst.BaseExpression | None, ctx: Context) -> Initializer:
    """`hk.initializers.*` convert by the initializer tables; fan-based ones only for a parameter of rank >= 2.

    The parameter keeps Haiku's shape and layout, so its fans are Haiku's; but jax reads no fans from a
    1-D shape (Haiku takes fan = shape[0]), and a rank that is not written out may be 1.
    """
    bound = (initializer_key(init) or "") in ctx.initializer_bindings  # converted where it is bound (HK202)
    if bound or ctx.names.haiku_api(init.func if isinstance(init, cst.Call) else init) is not None:
        rank = len(shape.elements) if isinstance(shape, cst.List | cst.Tuple) else 0
        return Initializer(flax=convert_initializer(init, ctx, ctx.ns, elementwise=rank < 2))
    name = dotted_name(init.func if isinstance(init, cst.Call) else init) or ""
    if ".initializers." in f".{name}":
        return Initializer(flax=init)
    module, _, function = name.rpartition(".")
    if module in ARRAY_MODULES and function in ARRAY_CONSTRUCTORS:
        return Initializer(haiku=init, array=function)
    return Initializer(haiku=init)


class _CallsByApi(Walker):
    """The `hk.get_parameter` / `hk.get_state` / `hk.set_state` calls of a subtree, in source order."""

    def __init__(self, names: ImportedNames) -> None:
        self.names = names
        self.calls: list[tuple[str, str | None, cst.Call]] = []

    def visit_Call(self, node: cst.Call) -> None:
        api = self.names.haiku_api(node.func)
        if api in APIS:
            try:
                name: str | None = VariableCall.read(node, api).name
            except Unconvertible:
                name = None
            self.calls.append((api, name, node))


def variable_calls(node: cst.CSTNode, names: ImportedNames) -> list[tuple[str, str | None, cst.Call]]:
    """(api, literal name or None, call) for each parameter/state call under `node`."""
    collector = _CallsByApi(names)
    collector.walk(node)
    return collector.calls


def uses_haiku_state(module: cst.Module, names: ImportedNames) -> bool:
    """The file keeps state with `hk.get_state` / `hk.set_state`: Linen's `'state'` collection, NNX's `State`.

    For the transforms family: `transform_with_state` init/apply of such a file read and write that
    collection (Linen) / filter that variable type (NNX), next to BatchNorm's `batch_stats` / `nnx.BatchStat`.
    """
    return any(api != GET_PARAMETER for api, _, _ in variable_calls(module, names))


def rule_for(api: str) -> str:
    return RULE_PARAMETER if api == GET_PARAMETER else RULE_STATE


def _with_parens(function: cst.BaseExpression) -> cst.BaseExpression:
    """`function` spelled so it can be called: a lambda or an expression gets parentheses."""
    if isinstance(function, cst.Name | cst.Attribute | cst.Call | cst.Subscript) or function.lpar:
        return function
    return function.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])


def _call(function: cst.BaseExpression, args: list[cst.BaseExpression]) -> cst.Call:
    return cst.Call(_with_parens(function), [cst.Arg(a) for a in args])


def _string(value: str) -> cst.SimpleString:
    return cst.SimpleString(f"'{value}'")


def _self_call(method: str, *args: cst.BaseExpression) -> cst.Call:
    return cst.Call(attr("self", method), [cst.Arg(a) for a in args])


def _read(updated: cst.Call, api: str, ctx: Context) -> tuple[VariableCall, Initializer | None]:
    """The call, and its initializer read for Flax (None for a read that creates nothing)."""
    call = VariableCall.read(updated, api)
    init = call.args.get("init")
    if api == GET_PARAMETER and ("shape" not in call.args or init is None):
        raise Unconvertible("`hk.get_parameter` needs its shape and init to become a Flax parameter")
    return call, read_initializer(init, call.args.get("shape"), ctx) if init is not None else None


def _shape_dtype(
    shape: cst.BaseExpression | None, init: Initializer, dtype: cst.BaseExpression | None, ctx: Context
) -> list[cst.BaseExpression]:
    """Haiku's `(shape, dtype)` for the initializer; dtype is spelled out where the callee's default is not float32."""
    shape = shape or cst.Name("None")
    if dtype is None and init.array is None and init.flax is None:
        ctx.needed_imports.add(("jax.numpy", None, "jnp"))
        dtype = attr("jnp", "float32")
    return [shape] if dtype is None else [shape, dtype]


# -- Linen: `self.param`, `self.variable('state', ...)` and `self.put_variable` in compact methods ----------
@dataclass(frozen=True)
class _LinenPlan:
    """Which calls are inside a module, which read a variable again, and which writes init must skip (by id).

    Linen raises on a second `self.param` / `self.variable` of one name, so a repeated read is
    `self.get_variable`; a write to state that `hk.get_state` creates is skipped during init.
    """

    in_module: set[cst.CSTNode] = field(default_factory=set)
    repeated: set[cst.CSTNode] = field(default_factory=set)
    skipped_in_init: set[cst.CSTNode] = field(default_factory=set)


def _plan_linen(module: cst.Module, ctx: Context) -> _LinenPlan:
    from .transforms import TRANSFORMS  # here, not at the top: transforms reads this module's names for state

    plan = _LinenPlan()
    classes, forwards = analysis.haiku_module_classes(module, ctx.names), ctx.fact(TRANSFORMS).forwards
    for statement in module.body:
        if isinstance(statement, cst.ClassDef) and statement.name.value in classes:
            functions = [s for s in statement.body.body if isinstance(s, cst.FunctionDef)]
        elif isinstance(statement, cst.FunctionDef) and statement.name.value in forwards:
            functions = [statement]
        else:
            continue
        created_state: set[str | None] = set()  # by an `hk.get_state` with an init, earlier in the source
        for function in functions:
            seen = set()
            for api, name, node in variable_calls(function, ctx.names):
                plan.in_module.add(node)
                if api == SET_STATE:
                    if name in created_state:
                        plan.skipped_in_init.add(node)
                elif (api, name) in seen:
                    plan.repeated.add(node)
                elif api == GET_STATE and name is not None and VariableCall.read(node, api).creates:
                    created_state.add(name)
                seen.add((api, name))
    return plan


LINEN_PLAN = FileFact(_plan_linen)


@dataclass
class _InitGuards:
    """Linen: the converted writes whose statement gets the init guard, and the guards made (by id)."""

    writes: set[cst.CSTNode] = field(default_factory=set)
    guards: set[cst.CSTNode] = field(default_factory=set)


@LINEN_CALLS.on(GET_PARAMETER, rule=RULE_PARAMETER)
@LINEN_CALLS.on(GET_STATE, SET_STATE, rule=RULE_STATE)
def linen_variable(room: LinenMethod, call: CallSite) -> cst.BaseExpression:
    original, rule = call.original, rule_for(call.api)
    plan = room.ctx.fact(LINEN_PLAN)
    if original not in plan.in_module:
        room.todo(original, rule, f"`hk.{call.api}` outside a module: move it into the module that owns the variable")
        return call.updated
    try:
        new, flax_api = _linen_call(room, original, call.updated, call.api, original in plan.repeated)
    except Unconvertible as reason:
        room.todo(original, rule, str(reason))
        return call.updated
    room.ctx.need_target_import()
    if original in plan.skipped_in_init:
        room.family(_InitGuards).writes.add(original)
    room.converted(original, rule, f"hk.{call.api} -> self.{flax_api}")
    return new


def _linen_call(room: LinenMethod, original: cst.Call, updated: cst.Call, api: str, repeated: bool) -> tuple[cst.BaseExpression, str]:
    """The Linen expression, and the Module method it calls."""
    if api == SET_STATE:
        write = VariableCall.read(updated, api)
        if "value" not in write.args:
            raise Unconvertible("`hk.set_state` needs a value")
        return _self_call("put_variable", _string(LINEN_STATE_COLLECTION), write.name_node, write.args["value"]), "put_variable"
    ctx = room.ctx
    call, init = _read(updated, api, ctx)
    collection = _string(LINEN_COLLECTIONS[api])
    if repeated or init is None:
        return _self_call("get_variable", collection, call.name_node), "get_variable"
    room.mark_builds_layer()
    arguments = _shape_dtype(call.args.get("shape"), init, call.args.get("dtype"), ctx)
    if api == GET_PARAMETER:
        if init.haiku is not None and init.array is None:
            room.warn(original, RULE_PARAMETER, "a Haiku initializer takes (shape, dtype): wrapped for Flax's (key, shape, dtype)")
            params = cst.Parameters([cst.Param(cst.Name(n)) for n in ("_", "shape", "dtype")])
            flax_init: cst.BaseExpression = cst.Lambda(params, _call(init.haiku, [cst.Name("shape"), cst.Name("dtype")]))
        else:
            flax_init = init.flax or attr(ctx.ns, f"initializers.{init.array}")
        return _self_call("param", call.name_node, flax_init, *arguments), "param"
    if init.flax is not None:  # draws a key: only when the variable is created
        lazy = cst.Lambda(cst.Parameters(), _call(init.flax, [_self_call("make_rng", _string("params")), *arguments]))
        variable = _self_call("variable", collection, call.name_node, lazy)
    else:
        assert init.haiku is not None  # an Initializer is Flax's or Haiku's
        variable = _self_call("variable", collection, call.name_node, init.haiku, *arguments)
    return cst.Attribute(variable, cst.Name("value")), "variable"


@LINEN_NODES.on_leave(cst.SimpleStatementLine, rule=RULE_STATE, after=True)
def guard_init_write(room: LinenMethod, original: cst.SimpleStatementLine, result: object) -> cst.If | None:
    """`hk.set_state(...)` on state `hk.get_state` creates: skipped while Linen's init runs.

    After the target's own hook, which still tracks the statement (shapes, layers built at their call)."""
    guards = room.family(_InitGuards)
    if not guards.writes:
        return None
    guarded = any(isinstance(small, cst.Expr) and small.value in guards.writes for small in original.body)
    if not guarded or not isinstance(result, cst.SimpleStatementLine):
        return None
    if len(original.body) != 1:
        room.todo(original, RULE_STATE, "put this write under `if not self.is_initializing():` (Haiku's init keeps the initial state)")
        return None
    guard = cst.UnaryOperation(cst.Not(), _self_call("is_initializing"))
    why = cst.TrailingWhitespace(cst.SimpleWhitespace("  "), cst.Comment("# as in Haiku, init keeps the initial state"))
    body = cst.IndentedBlock([result.with_changes(leading_lines=[])], header=why)
    new = cst.If(guard, body, leading_lines=result.leading_lines)
    guards.guards.add(new)
    return new


@LINEN_NODES.on_leave(cst.IndentedBlock, rule=RULE_STATE, after=True)
def merge_init_guards(room: LinenMethod, original: cst.IndentedBlock, result: object) -> cst.IndentedBlock | None:
    """Consecutive guarded writes share one `if not self.is_initializing():`."""
    guards = room.family(_InitGuards).guards
    if not guards or not isinstance(result, cst.IndentedBlock):
        return None
    body: list[cst.BaseStatement] = []
    for statement in result.body:
        previous = body[-1] if body else None
        if (
            isinstance(statement, cst.If) and isinstance(statement.body, cst.IndentedBlock) and statement in guards
            and isinstance(previous, cst.If) and isinstance(previous.body, cst.IndentedBlock) and previous in guards
            and not statement.leading_lines
        ):
            merged = previous.with_changes(body=previous.body.with_changes(body=[*previous.body.body, *statement.body.body]))
            guards.add(merged)
            body[-1] = merged
        else:
            body.append(statement)
    return result.with_changes(body=body) if len(body) != len(result.body) else None


# -- NNX: variables built in `__init__`, read and written with `[...]` ------------------------------------
@dataclass
class _StatementWrites:
    """The `hk.set_state(...)` calls of a method that are whole statements (by id)."""

    calls: set[cst.CSTNode] = field(default_factory=set)


@NNX_NODES.on_visit(cst.Expr, rule=RULE_STATE)
def find_statement_write(room: NnxMethod, node: cst.Expr) -> None:
    if isinstance(node.value, cst.Call) and room.ctx.names.haiku_api(node.value.func) == SET_STATE:
        room.family(_StatementWrites).calls.add(node.value)


@NNX_CALLS.on(GET_PARAMETER, rule=RULE_PARAMETER)
@NNX_CALLS.on(GET_STATE, SET_STATE, rule=RULE_STATE)
def nnx_variable(room: NnxMethod, call: CallSite) -> cst.BaseExpression:
    original = call.original
    if call.api == SET_STATE:
        if original not in room.family(_StatementWrites).calls:
            room.todo(original, RULE_STATE, "`hk.set_state` inside an expression: write `self.<name>[...] = value` as a statement")
        return call.updated  # a statement: rewritten by `nnx_write`
    try:
        return _nnx_read(room, original, call.updated, call.api)
    except Unconvertible as reason:
        room.todo(original, rule_for(call.api), str(reason))
        return call.updated


def _nnx_read(room: NnxMethod, original: cst.Call, updated: cst.Call, api: str) -> cst.BaseExpression:
    ctx = room.ctx
    call, init = _read(updated, api, ctx)
    existing = _variable_attribute(room, call)
    if existing is not None:
        room.converted(original, rule_for(api), f"hk.{api} -> self.{existing}[...]")
        return _value_of(existing)
    if init is None:
        raise Unconvertible(f"`hk.{api}('{call.name}')` reads state created elsewhere: create it in `__init__` by hand")
    if room.in_nested_block(original, f"hk.{api}"):
        return updated
    shape = call.args.get("shape")
    if shape is not None:
        sized = shape.visit(_InputSizes(room, call.name, original))
        assert isinstance(sized, cst.BaseExpression)  # it only replaces subscripts: the shape stays an expression
        shape = sized
    dtype = _init_dtype(room, original, call)
    if not room.can_hoist([e for e in (shape, init.flax, init.haiku) if e is not None], original):
        return updated
    attribute = room.new_attribute(call.name, call.name)
    room.add_to_init(attribute, _nnx_variable(api, init, shape, dtype, ctx), original, needs_rngs=init.flax is not None)
    room.converted(original, rule_for(api), f"hk.{api} -> self.{attribute}, built in __init__")
    return _value_of(attribute)


def _nnx_variable(
    api: str, init: Initializer, shape: cst.BaseExpression | None, dtype: cst.BaseExpression | None, ctx: Context
) -> cst.Call:
    """`nnx.Param(...)` / `State(...)` holding the initial value, as `__init__` builds it (`rngs` draws a key)."""
    arguments = _shape_dtype(shape, init, dtype, ctx)
    if init.flax is not None:
        value = _call(init.flax, [cst.Call(attr("rngs", "params")), *arguments])
    else:
        assert init.haiku is not None  # an Initializer is Flax's or Haiku's
        value = _call(init.haiku, arguments)
    variable_type = attr(ctx.ns, "Param") if api == GET_PARAMETER else cst.Name(NNX_STATE_CLASS)
    return cst.Call(variable_type, [cst.Arg(value)])


def _init_dtype(room: NnxMethod, original: cst.Call, call: VariableCall) -> cst.BaseExpression | None:
    """The dtype, unless it depends on the call (`x.dtype`): `__init__` then builds float32, Flax's default."""
    dtype = call.args.get("dtype")
    if dtype is None:
        return None
    local = analysis.Names.of(dtype).used & room.method_locals - room.conversion.locals_in_init
    if local:
        room.warn(original, rule_for(call.api), f"the dtype depends on {', '.join(sorted(local))}: `__init__` builds it as float32")
        return None
    return dtype


def _variable_attribute(room: NnxMethod, call: VariableCall) -> str | None:
    """The attribute an earlier call of this class built for the same parameter or state."""
    creator = GET_PARAMETER if call.api == GET_PARAMETER else GET_STATE
    for attribute, source in room.conversion.built_in_init():
        if isinstance(source, cst.Call) and room.ctx.names.haiku_api(source.func) == creator:
            if VariableCall.read(source, creator).name == call.name:  # it was read once already
                return attribute
    return None


@NNX_NODES.on_leave(cst.Expr, rule=RULE_STATE)
def nnx_write(room: NnxMethod, original: cst.Expr, updated: cst.Expr) -> cst.Assign | None:
    """`hk.set_state(name, value)` -> `self.<name>[...] = value`."""
    if original.value not in room.family(_StatementWrites).calls or not isinstance(updated.value, cst.Call):
        return None
    try:
        call = VariableCall.read(updated.value, SET_STATE)
        if "value" not in call.args:
            raise Unconvertible("`hk.set_state` needs a value")
    except Unconvertible as reason:
        room.todo(original, RULE_STATE, str(reason))
        return None
    attribute = _variable_attribute(room, call)
    if attribute is None:
        room.todo(original, RULE_STATE, f"no `hk.get_state('{call.name}', ...)` before this: create the `State` variable in `__init__` by hand")
        return None
    room.converted(original, RULE_STATE, f"hk.set_state -> self.{attribute}[...] = ...")
    return cst.Assign([cst.AssignTarget(_value_of(attribute))], call.args["value"])


# -- NNX: parameters a Haiku `__init__` makes --------------------------------------------------------------
def _init_parameter(statement: cst.BaseStatement, ctx: Context) -> tuple[cst.Assign, VariableCall, Initializer] | None:
    """`self.w = hk.get_parameter('w', ...)` in a Haiku `__init__`, read (None for any other statement)."""
    if not (isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1 and isinstance(statement.body[0], cst.Assign)):
        return None
    assign = statement.body[0]
    attribute = analysis.self_attribute(assign.targets[0].target) if len(assign.targets) == 1 else None
    if attribute is None or not isinstance(assign.value, cst.Call) or ctx.names.haiku_api(assign.value.func) != GET_PARAMETER:
        return None
    call, init = _read(assign.value, GET_PARAMETER, ctx)
    if call.name != attribute:
        raise Unconvertible(f"NNX names a parameter after its attribute: store `hk.get_parameter('{call.name}', ...)` as `self.{call.name}`")
    assert init is not None  # `_read` requires a parameter's init
    return assign, call, init


def nnx_init_parameter(statement: cst.BaseStatement, room: NnxClass) -> cst.BaseStatement | None:
    """`self.w = hk.get_parameter('w', shape, dtype, init)` in `__init__` -> `self.w = nnx.Param(...)`, read as
    `self.w[...]` in the methods; the statement with a TODO where it cannot convert; None for other statements."""
    ctx = room.ctx
    if not ctx.enabled(RULE_PARAMETER):
        return None
    try:
        found = _init_parameter(statement, ctx)
    except Unconvertible as reason:
        ctx.notes.todo(statement, RULE_PARAMETER, str(reason))
        return add_todo_lines(statement, [(RULE_PARAMETER, str(reason))])
    if found is None:
        return None
    assign, call, init = found
    variable = _nnx_variable(GET_PARAMETER, init, call.args.get("shape"), call.args.get("dtype"), ctx)
    room.needs_rngs |= init.flax is not None
    ctx.need_target_import()
    room.converter.converted(statement, RULE_PARAMETER, f"hk.get_parameter in __init__ -> self.{call.name} = nnx.Param(...)")
    return statement.with_changes(body=[assign.with_changes(value=variable)])


@dataclass
class _InitParameters:
    """The parameters the class's `__init__` makes (attributes), read once per method; assignment targets seen."""

    attributes: set[str] | None = None
    targets: set[cst.CSTNode] = field(default_factory=set)


@NNX_NODES.on_visit(cst.AssignTarget, rule=RULE_PARAMETER)
def note_assigned(room: NnxMethod, node: cst.AssignTarget) -> None:
    room.family(_InitParameters).targets.add(node.target)


@NNX_NODES.on_leave(cst.Attribute, rule=RULE_PARAMETER, after=True)
def read_init_parameter(room: NnxMethod, original: cst.Attribute, result: object) -> cst.Subscript | None:
    """`self.w`, a parameter `__init__` made -> `self.w[...]`: its value, as Haiku's attribute held."""
    if not room.ctx.mentions("get_parameter") or not isinstance(result, cst.Attribute):
        return None
    attribute = analysis.self_attribute(original)
    made = room.family(_InitParameters)
    if made.attributes is None:
        made.attributes = set()
        for statement in analysis.read_init(room.conversion.init_def).other_statements:
            try:
                found = _init_parameter(statement, room.ctx)
            except Unconvertible:
                continue
            if found is not None:
                made.attributes.add(found[1].name)
    if attribute not in made.attributes or original in made.targets:
        return None
    return cst.Subscript(result, [cst.SubscriptElement(cst.Index(cst.Ellipsis()))])


def _value_of(attribute: str) -> cst.Subscript:
    """`self.<attribute>[...]`: the variable's value, taken now (Haiku's reads are values)."""
    return cst.Subscript(attr("self", attribute), [cst.SubscriptElement(cst.Index(cst.Ellipsis()))])


LAST_DIMENSION = m.Subscript(
    value=m.Attribute(attr=m.Name("shape")), slice=[m.SubscriptElement(m.Index(m.UnaryOperation(m.Minus(), m.Integer("1"))))]
)


class _InputSizes(Transformer):
    """`x.shape[-1]` in a shape -> the feature size the NNX method rewriter inferred for `x`."""

    def __init__(self, room: NnxMethod, name: str, node: cst.CSTNode) -> None:
        super().__init__()
        self.room, self.name, self.node = room, name, node

    def leave_Subscript(self, original: cst.Subscript, updated: cst.Subscript) -> cst.BaseExpression:
        if not m.matches(original, LAST_DIMENSION) or not isinstance(original.value, cst.Attribute):
            return updated
        return self.room.input_size(self.name, [cst.Arg(original.value.value)], self.node)


# -- NNX, file level: the `State(nnx.Variable)` class, and calls outside any module ------------------------
@NNX_FILE_CALLS.on(GET_PARAMETER, rule=RULE_PARAMETER)
@NNX_FILE_CALLS.on(GET_STATE, SET_STATE, rule=RULE_STATE)
def outside_module(room: FileRoom, call: CallSite) -> cst.BaseExpression:
    """A parameter or state call the method rewriters never saw: it is outside any module."""
    room.todo(call.original, rule_for(call.api), f"`hk.{call.api}` outside a module: move it into the module that owns the variable")
    return call.updated


@NNX_FILE_NODES.on_leave(cst.Module, rule=RULE_STATE, after=True)
def define_state_class(room: FileRoom, original: cst.Module, result: object) -> cst.Module | None:
    """`class State(nnx.Variable)` once, before the first class or function, where the file builds `State(...)`."""
    ctx = room.ctx
    if not isinstance(result, cst.Module) or not ctx.mentions("get_state", "set_state") or not any(
        isinstance(node, cst.Call) and m.matches(node.func, m.Name(NNX_STATE_CLASS)) for node in descendants(result)
    ):
        return None
    variable = attr(ctx.ns, "Variable")
    if any(  # a file converted before, partly (it still uses Haiku elsewhere): its State class is there
        isinstance(s, cst.ClassDef) and s.name.value == NNX_STATE_CLASS and len(s.bases) == 1 and s.bases[0].value.deep_equals(variable)
        for s in result.body
    ):
        return None
    state_class = cst.ClassDef(
        cst.Name(NNX_STATE_CLASS),
        cst.IndentedBlock([cst.SimpleStatementLine([cst.Expr(cst.SimpleString(
            '"""Model state that is not trained: what Haiku kept with `hk.get_state` / `hk.set_state`."""'
        ))])]),
        bases=[cst.Arg(variable)],
    )
    body = list(result.body)
    at = next((i for i, s in enumerate(body) if isinstance(s, cst.ClassDef | cst.FunctionDef)), len(body))
    if at:
        state_class = state_class.with_changes(leading_lines=[cst.EmptyLine(), cst.EmptyLine()])
    return result.with_changes(body=[*body[:at], state_class, *body[at:]])
