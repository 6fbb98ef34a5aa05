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

from dataclasses import dataclass

import libcst as cst

from ..engine import analysis
from ..engine import matchers as m
from ..engine.calls import ARRAY_CONSTRUCTORS, ARRAY_MODULES, BoundCall, Unconvertible, convert_initializer
from ..engine.context import Context, attr
from ..engine.names import ImportedNames, dotted_name
from ..engine.registry import Status, register
from ..engine.rewriter import Rewriter
from ..engine.walk import Walker, descendants

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
        if not isinstance(name, str) or not name.isidentifier():
            raise Unconvertible(f"`hk.{api}` needs a literal name that is an identifier to become a Flax variable")
        return cls(api, name, name_node, args)  # type: ignore[arg-type]


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
    bound = (dotted_name(init) or "") in ctx.initializer_bindings  # converted where it is bound (HK202)
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


class _Variables(Rewriter):
    """What both targets share: reading the calls, and Haiku's `(shape, dtype)` arguments."""

    def _read(self, updated: cst.Call, api: str) -> tuple[VariableCall, Initializer | None]:
        call = VariableCall.read(updated, api)
        init = call.args.get("init")
        if api == GET_PARAMETER and ("shape" not in call.args or init is None):
            raise Unconvertible("`hk.get_parameter` needs its shape and init to become a Flax parameter")
        return call, read_initializer(init, call.args.get("shape"), self.ctx) if init is not None else None

    def _shape_dtype(
        self, shape: cst.BaseExpression | None, init: Initializer, dtype: cst.BaseExpression | None
    ) -> list[cst.BaseExpression]:
        """Haiku's `(shape, dtype)` for the initializer; dtype is spelled out where the callee's default is not float32."""
        shape = shape or cst.Name("None")
        if dtype is None and init.array is None and init.flax is None:
            self.ctx.needed_imports.add(("jax.numpy", None, "jnp"))
            dtype = attr("jnp", "float32")
        return [shape] if dtype is None else [shape, dtype]


class LinenParameters(_Variables):
    """Linen: `self.param`, `self.variable('state', ...)` and `self.put_variable` in compact methods."""

    def visit_Module(self, node: cst.Module) -> bool | None:
        self._plan_variables(node)
        return super().visit_Module(node)

    def _plan_variables(self, module: cst.Module) -> None:
        """Which calls are inside a module, which read a variable again, and which writes init must skip.

        Linen raises on a second `self.param` / `self.variable` of one name, so a repeated read is
        `self.get_variable`; a write to state that `hk.get_state` creates is skipped during init.
        """
        self._in_module: set[int] = set()
        self._repeated: set[int] = set()
        self._skipped_in_init: set[int] = set()
        self._guarded: set[int] = set()  # converted writes whose statement gets the init guard
        self._guards: set[int] = set()  # the `if not self.is_initializing():` statements made
        for statement in module.body:
            if isinstance(statement, cst.ClassDef) and statement.name.value in self.classes:  # type: ignore[attr-defined]
                functions = [s for s in statement.body.body if isinstance(s, cst.FunctionDef)]
            elif isinstance(statement, cst.FunctionDef) and statement.name.value in self.forwards:  # type: ignore[attr-defined]
                functions = [statement]
            else:
                continue
            created_state: set[str | None] = set()  # by an `hk.get_state` with an init, earlier in the source
            for function in functions:
                seen = set()
                for api, name, node in variable_calls(function, self.ctx.names):
                    self._in_module.add(id(node))
                    if api == SET_STATE:
                        if name in created_state:
                            self._skipped_in_init.add(id(node))
                    elif (api, name) in seen:
                        self._repeated.add(id(node))
                    elif api == GET_STATE and name is not None and VariableCall.read(node, api).creates:
                        created_state.add(name)
                    seen.add((api, name))

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        api = self.ctx.names.haiku_api(original.func)
        if api not in APIS or not self.ctx.enabled(rule_for(api)):
            return super().leave_Call(original, updated)
        if id(original) not in self._in_module:
            self.todo(original, rule_for(api), f"`hk.{api}` outside a module: move it into the module that owns the variable")
            return updated
        try:
            new, flax_api = self._linen_call(original, updated, api)
        except Unconvertible as reason:
            self.todo(original, rule_for(api), str(reason))
            return updated
        self.ctx.need_target_import()
        if id(original) in self._skipped_in_init:
            self._guarded.add(id(original))
        self.converted(original, rule_for(api), f"hk.{api} -> self.{flax_api}")
        return new

    def _linen_call(self, original: cst.Call, updated: cst.Call, api: str) -> tuple[cst.BaseExpression, str]:
        """The Linen expression, and the Module method it calls."""
        if api == SET_STATE:
            call = VariableCall.read(updated, api)
            if "value" not in call.args:
                raise Unconvertible("`hk.set_state` needs a value")
            return _self_call("put_variable", _string(LINEN_STATE_COLLECTION), call.name_node, call.args["value"]), "put_variable"
        call, init = self._read(updated, api)
        collection = _string(LINEN_COLLECTIONS[api])
        if id(original) in self._repeated or init is None:
            return _self_call("get_variable", collection, call.name_node), "get_variable"
        self.mark_builds_layer()  # type: ignore[attr-defined]
        arguments = self._shape_dtype(call.args.get("shape"), init, call.args.get("dtype"))
        if api == GET_PARAMETER:
            if init.haiku is not None and init.array is None:
                self.warn(original, RULE_PARAMETER, "a Haiku initializer takes (shape, dtype): wrapped for Flax's (key, shape, dtype)")
                params = cst.Parameters([cst.Param(cst.Name(n)) for n in ("_", "shape", "dtype")])
                flax_init: cst.BaseExpression = cst.Lambda(params, _call(init.haiku, [cst.Name("shape"), cst.Name("dtype")]))
            else:
                flax_init = init.flax or attr(self.ctx.ns, f"initializers.{init.array}")
            return _self_call("param", call.name_node, flax_init, *arguments), "param"
        if init.flax is not None:  # draws a key: only when the variable is created
            lazy = cst.Lambda(cst.Parameters(), _call(init.flax, [_self_call("make_rng", _string("params")), *arguments]))
            variable = _self_call("variable", collection, call.name_node, lazy)
        else:
            variable = _self_call("variable", collection, call.name_node, init.haiku, *arguments)  # type: ignore[arg-type]
        return cst.Attribute(variable, cst.Name("value")), "variable"

    def leave_SimpleStatementLine(self, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine):
        """`hk.set_state(...)` on state `hk.get_state` creates: skipped while Linen's init runs."""
        guarded = any(isinstance(small, cst.Expr) and id(small.value) in self._guarded for small in original.body)
        if not guarded:
            return super().leave_SimpleStatementLine(original, updated)
        if len(original.body) != 1:
            self.todo(original, RULE_STATE, "put this write under `if not self.is_initializing():` (Haiku's init keeps the initial state)")
            return updated
        guard = cst.UnaryOperation(cst.Not(), _self_call("is_initializing"))
        why = cst.TrailingWhitespace(cst.SimpleWhitespace("  "), cst.Comment("# as in Haiku, init keeps the initial state"))
        body = cst.IndentedBlock([updated.with_changes(leading_lines=[])], header=why)
        new = cst.If(guard, body, leading_lines=updated.leading_lines)
        self._guards.add(id(new))
        return new

    def leave_IndentedBlock(self, original: cst.IndentedBlock, updated: cst.IndentedBlock) -> cst.IndentedBlock:
        """Consecutive guarded writes share one `if not self.is_initializing():`."""
        updated = super().leave_IndentedBlock(original, updated)
        body: list[cst.BaseStatement] = []
        for statement in updated.body:
            previous = body[-1] if body else None
            if id(statement) in self._guards and previous is not None and id(previous) in self._guards and not statement.leading_lines:
                merged = previous.with_changes(body=previous.body.with_changes(body=[*previous.body.body, *statement.body.body]))  # type: ignore[attr-defined]
                self._guards.add(id(merged))
                body[-1] = merged
            else:
                body.append(statement)
        return updated.with_changes(body=body) if len(body) != len(updated.body) else updated


class NnxParameters(_Variables):
    """NNX (a mixin of `NnxMethodRewriter`): variables built in `__init__`, read and written with `[...]`."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._statement_writes: set[int] = set()  # `hk.set_state(...)` calls that are whole statements

    def visit_Expr(self, node: cst.Expr) -> None:
        if isinstance(node.value, cst.Call) and self.ctx.names.haiku_api(node.value.func) == SET_STATE:
            self._statement_writes.add(id(node.value))

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        api = self.ctx.names.haiku_api(original.func)
        if api not in APIS or not self.ctx.enabled(rule_for(api)):
            return super().leave_Call(original, updated)
        if api == SET_STATE:
            if id(original) not in self._statement_writes:
                self.todo(original, RULE_STATE, "`hk.set_state` inside an expression: write `self.<name>[...] = value` as a statement")
            return updated  # a statement: rewritten in leave_Expr
        try:
            return self._nnx_read(original, updated, api)
        except Unconvertible as reason:
            self.todo(original, rule_for(api), str(reason))
            return updated

    def _nnx_read(self, original: cst.Call, updated: cst.Call, api: str) -> cst.BaseExpression:
        call, init = self._read(updated, api)
        existing = self._variable_attribute(call)
        if existing is not None:
            self.converted(original, rule_for(api), f"hk.{api} -> self.{existing}[...]")
            return _value_of(existing)
        if init is None:
            raise Unconvertible(f"`hk.{api}('{call.name}')` reads state created elsewhere: create it in `__init__` by hand")
        if self.in_nested_block(original, f"hk.{api}"):  # type: ignore[attr-defined]
            return updated
        shape = call.args.get("shape")
        if shape is not None:
            shape = shape.visit(_InputSizes(self, call.name, original))  # type: ignore[assignment]
        dtype = self._init_dtype(original, call)
        if not self.can_hoist([e for e in (shape, init.flax, init.haiku) if e is not None], original):  # type: ignore[attr-defined]
            return updated
        arguments = self._shape_dtype(shape, init, dtype)
        if init.flax is not None:
            value = _call(init.flax, [cst.Call(attr("rngs", "params")), *arguments])
        else:
            value = _call(init.haiku, arguments)  # type: ignore[arg-type]
        variable_type = attr(self.ctx.ns, "Param") if api == GET_PARAMETER else cst.Name(NNX_STATE_CLASS)
        attribute = self.new_attribute(call.name, call.name)  # type: ignore[attr-defined]
        self.add_to_init(attribute, cst.Call(variable_type, [cst.Arg(value)]), original, needs_rngs=init.flax is not None)  # type: ignore[attr-defined]
        self.converted(original, rule_for(api), f"hk.{api} -> self.{attribute}, built in __init__")
        return _value_of(attribute)

    def _init_dtype(self, original: cst.Call, call: VariableCall) -> cst.BaseExpression | None:
        """The dtype, unless it depends on the call (`x.dtype`): `__init__` then builds float32, Flax's default."""
        dtype = call.args.get("dtype")
        if dtype is None:
            return None
        local = analysis.Names.of(dtype).used & self.method_locals - self.state.locals_in_init  # type: ignore[attr-defined]
        if local:
            self.warn(original, rule_for(call.api), f"the dtype depends on {', '.join(sorted(local))}: `__init__` builds it as float32")
            return None
        return dtype

    def _variable_attribute(self, call: VariableCall) -> str | None:
        """The attribute an earlier call of this class built for the same parameter or state."""
        creator = GET_PARAMETER if call.api == GET_PARAMETER else GET_STATE
        for hoisted in self.state.hoisted:  # type: ignore[attr-defined]
            source = hoisted.source
            if isinstance(source, cst.Call) and self.ctx.names.haiku_api(source.func) == creator:
                if VariableCall.read(source, creator).name == call.name:  # it was read once already
                    return hoisted.attribute
        return None

    def leave_Expr(self, original: cst.Expr, updated: cst.Expr) -> cst.BaseSmallStatement:
        """`hk.set_state(name, value)` -> `self.<name>[...] = value`."""
        if id(original.value) not in self._statement_writes or not self.ctx.enabled(RULE_STATE):
            return updated
        try:
            call = VariableCall.read(updated.value, SET_STATE)  # type: ignore[arg-type]
            if "value" not in call.args:
                raise Unconvertible("`hk.set_state` needs a value")
        except Unconvertible as reason:
            self.todo(original, RULE_STATE, str(reason))
            return updated
        attribute = self._variable_attribute(call)
        if attribute is None:
            self.todo(original, RULE_STATE, f"no `hk.get_state('{call.name}', ...)` before this: create the `State` variable in `__init__` by hand")
            return updated
        self.converted(original, RULE_STATE, f"hk.set_state -> self.{attribute}[...] = ...")
        return cst.Assign([cst.AssignTarget(_value_of(attribute))], call.args["value"])


def _value_of(attribute: str) -> cst.Subscript:
    """`self.<attribute>[...]`: the variable's value, taken now (Haiku's reads are values)."""
    return cst.Subscript(attr("self", attribute), [cst.SubscriptElement(cst.Index(cst.Ellipsis()))])


LAST_DIMENSION = m.Subscript(
    value=m.Attribute(attr=m.Name("shape")), slice=[m.SubscriptElement(m.Index(m.UnaryOperation(m.Minus(), m.Integer("1"))))]
)


class _InputSizes(cst.CSTTransformer):
    """`x.shape[-1]` in a shape -> the feature size the NNX method rewriter inferred for `x`."""

    def __init__(self, rewriter: NnxParameters, name: str, node: cst.CSTNode) -> None:
        super().__init__()
        self.rewriter, self.name, self.node = rewriter, name, node

    def leave_Subscript(self, original: cst.Subscript, updated: cst.Subscript) -> cst.BaseExpression:
        if not m.matches(original, LAST_DIMENSION):
            return updated
        return self.rewriter.input_size(self.name, [cst.Arg(original.value.value)], self.node)  # type: ignore[attr-defined]


class NnxStateClass(Rewriter):
    """NNX, file level (a mixin of `NnxConverter`): defines `State(nnx.Variable)` once, before its first user.

    Also flags parameter and state calls outside any module (the method rewriter never sees them).
    """

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        api = self.ctx.names.haiku_api(original.func)
        if api in APIS and self.ctx.enabled(rule_for(api)):
            self.todo(original, rule_for(api), f"`hk.{api}` outside a module: move it into the module that owns the variable")
        return super().leave_Call(original, updated)

    def leave_Module(self, original: cst.Module, updated: cst.Module) -> cst.Module:
        updated = super().leave_Module(original, updated)
        if not self.ctx.mentions("get_state", "set_state") or not any(
            isinstance(node, cst.Call) and m.matches(node.func, m.Name(NNX_STATE_CLASS)) for node in descendants(updated)
        ):
            return updated
        variable = attr(self.ctx.ns, "Variable")
        if any(  # a file converted before, partly (it still uses Haiku elsewhere): its State class is there
            isinstance(s, cst.ClassDef) and s.name.value == NNX_STATE_CLASS and len(s.bases) == 1 and s.bases[0].value.deep_equals(variable)
            for s in updated.body
        ):
            return updated
        state_class = cst.ClassDef(
            cst.Name(NNX_STATE_CLASS),
            cst.IndentedBlock([cst.SimpleStatementLine([cst.Expr(cst.SimpleString(
                '"""Model state that is not trained: what Haiku kept with `hk.get_state` / `hk.set_state`."""'
            ))])]),
            bases=[cst.Arg(variable)],
        )
        body = list(updated.body)
        at = next((i for i, s in enumerate(body) if isinstance(s, cst.ClassDef | cst.FunctionDef)), len(body))
        if at:
            state_class = state_class.with_changes(leading_lines=[cst.EmptyLine(), cst.EmptyLine()])
        return updated.with_changes(body=[*body[:at], state_class, *body[at:]])
