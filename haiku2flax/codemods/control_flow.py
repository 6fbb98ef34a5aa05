"""Control flow and lifted function transforms inside modules: `hk.cond`, `hk.switch`, `hk.fori_loop`,
`hk.while_loop`, `hk.running_init`, `hk.remat` and `hk.vmap`.

What it converts:
- `hk.cond`, `hk.switch`, `hk.fori_loop`, `hk.while_loop` whose functions touch no module or parameter
  (library functions, lambdas and functions of this file that build no layer, call no `self.` method
  and no Haiku API) -> `jax.lax.cond` / `switch` / `fori_loop` / `while_loop` with the same arguments,
  in both targets.
- `hk.running_init()`: Linen `self.is_initializing()` (Linen has the same init phase). NNX builds every
  layer in `__init__` and has no init phase, so `hk.running_init()` is False for every call: `if
  hk.running_init(): A else: B` becomes `B` (and `if not hk.running_init(): B` becomes `B`), provided
  the init-only `A` uses no module (it then only exists to create parameters, or to skip a loop Haiku
  refuses to run in init).
- `hk.remat(f, ...)(args)` and `hk.vmap(f, ..., split_rng=...)(args)`, where `f` is a lambda or a function
  defined in the method (used only there) that builds layers inline:
  - Linen: `nn.remat(f, ...)(self, args)` / `nn.vmap(f, variable_axes={'params': None},
    split_rngs={'params': False}, ...)(self, args)`, `f` taking the module first (`def f(mdl, h)`), as
    Linen's lifted transforms of functions do; the layers are built inside `f`, as in Haiku (a layer
    built outside and closed over leaks tracers under `nn.remat`). `static_argnums` count the module.
  - NNX: the layers are built in `__init__` and `f` calls them (`self.linear(h)`), so `nnx.remat(f,
    ...)(args)` / `nnx.vmap(f, ...)(args)` close over the module: the parameters are read, never
    mutated, and broadcast (shared) by `nnx.vmap`, as `hk.vmap` shares them.
  `f` that uses no module becomes `jax.checkpoint(f, ...)(args)` / `jax.vmap(f, ...)(args)` in both.
  A lambda that calls one layer the method built before it (`proj = hk.Linear(8)`, then
  `hk.vmap(lambda row: proj(row), split_rng=False)(x)`): Linen lifts that layer rather than `self`
  (`nn.vmap(lambda mdl, row: mdl(row), ...)(proj, x)`); NNX closes over `self.proj` as above.
- `hk.cond` / `hk.switch` whose branches call one layer built in the method (and are lambdas, or use no
  module): Linen `nn.cond(p, lambda mdl, y: mdl(y), lambda mdl, *operands: f(*operands), proj, x)`, the
  layer passed as the branches' module; NNX `nnx.cond` / `nnx.switch` with the same branches, which
  read `self.proj` (built in `__init__`) and never mutate it.

Why: `jax.lax` control flow over pure functions is exactly what Haiku's wrappers run (they only thread
Haiku's state through); Flax's lifted transforms are needed only where parameters are involved.

Not converted (TODO with the reason): branches or loop bodies that build or otherwise use modules (Linen
needs `nn.cond(pred, t, f, self, *ops)` / `nn.switch` / `nn.while_loop` with functions taking the module
and every branch's layers created at init; NNX needs the layers in `__init__` and `nnx.cond` /
`nnx.switch` / `nnx.fori_loop` / `nnx.while_loop`), functions this tool cannot see into (arguments,
imported helpers, `functools.partial`), `hk.running_init()` used other than as the test of an `if` (NNX)
or out of reach of `self` (Linen), an init-only block that runs modules (NNX), `hk.remat` / `hk.vmap`
not applied and called at once (decorators, stored wrappers), functions that also call stored modules,
`self.` methods, Haiku APIs or draw random numbers, and `hk.vmap(split_rng=True)` over layers (shared or
per-element parameters is a choice to make by hand).

Example (Linen)::

    def mlp(h):                                    def mlp(mdl, h):
      return jax.nn.gelu(hk.Linear(8)(h))            return jax.nn.gelu(nn.Dense(8)(h))
    y = hk.remat(mlp)(x)                           y = nn.remat(mlp)(self, x)
    z = hk.cond(p, jax.nn.relu, jnp.tanh, y)       z = jax.lax.cond(p, jax.nn.relu, jnp.tanh, y)
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TypeVar

import libcst as cst

from ..engine import analysis
from ..engine import matchers as m
from ..engine.calls import BoundCall, Unconvertible, keyword_arg, respell_args
from ..engine.context import Context, FileFact, attr
from ..engine.names import dotted_name
from ..engine.registry import Status, register
from ..engine.walk import Transformer, Walker
from .interfaces import LINEN_CALLS, LINEN_NODES, NNX_CALLS, NNX_NODES, CallSite, LinenMethod, MethodRoom, NnxMethod, on_call, on_leave
from .lifted import FunctionCode, all_functions, assigned_name
from .shape_probe import forget_stand_in, stand_in
from .transforms import TRANSFORMS

RULE_COND = register("HK302", "cond", Status.PARTIAL, "hk.cond -> jax.lax.cond (module-free branches) / nn.cond, nnx.cond (branches calling one layer)", __name__, apis=("cond",))
RULE_SWITCH = register("HK303", "switch", Status.PARTIAL, "hk.switch -> jax.lax.switch (module-free branches) / nn.switch, nnx.switch (branches calling one layer)", __name__, apis=("switch",))
RULE_FORI_LOOP = register("HK304", "fori-loop", Status.PARTIAL, "hk.fori_loop with a module-free body -> jax.lax.fori_loop", __name__, apis=("fori_loop",))
RULE_WHILE_LOOP = register(
    "HK305", "while-loop", Status.PARTIAL, "hk.while_loop with module-free functions -> jax.lax.while_loop", __name__, apis=("while_loop",)
)
RULE_RUNNING_INIT = register(
    "HK306", "running-init", Status.PARTIAL, "hk.running_init() -> Linen self.is_initializing(); NNX keeps the apply branch", __name__,
    apis=("running_init",),
)
RULE_REMAT = register("HK307", "remat", Status.PARTIAL, "hk.remat(f)(x) -> nn.remat(f)(self, x) / nnx.remat(f)(x) / jax.checkpoint", __name__, apis=("remat",))
RULE_VMAP = register(
    "HK308", "vmap", Status.PARTIAL, "hk.vmap(f)(x) -> nn.vmap / nnx.vmap with shared parameters, or jax.vmap", __name__, apis=("vmap",)
)


@dataclass(frozen=True)
class _LaxApi:
    rule: str
    functions: tuple[tuple[int, str], ...]  # (position, keyword) of the arguments that are functions


LAX = {  # Haiku API -> its jax.lax namesake
    "cond": _LaxApi(RULE_COND, ((1, "true_fun"), (2, "false_fun"))),
    "switch": _LaxApi(RULE_SWITCH, ((1, "branches"),)),
    "fori_loop": _LaxApi(RULE_FORI_LOOP, ((2, "body_fun"),)),
    "while_loop": _LaxApi(RULE_WHILE_LOOP, ((0, "cond_fun"), (1, "body_fun"))),
}
LIFTED = {  # Haiku API -> (rule, argument names, the JAX transform for module-free functions)
    "remat": (RULE_REMAT, ("fun", "prevent_cse", "policy", "static_argnums", "concrete"), "checkpoint"),
    "vmap": (RULE_VMAP, ("fun", "in_axes", "out_axes", "axis_name", "axis_size", "split_rng", "spmd_axis_name"), "vmap"),
}
CONTROL_FLOW_APIS = (*LAX, *LIFTED, "running_init")  # what a file must mention for this family to read it
HAIKU_ONLY_OPTIONS = ("split_rng", "concrete")  # meaningless once Haiku's state is gone
Room = TypeVar("Room", bound=MethodRoom)
MODULE_PARAM = "mdl"  # the module argument of a Linen lifted function, as Flax's docs name it
LIFTED_BRANCHES = ("cond", "switch")  # converted to nn./nnx. namesakes where the branches call one local layer

BRANCHES_USE_MODULES = (
    "{what} {uses}: Linen needs `nn.{api}` with functions taking the module first (`(mdl, *operands)`) and "
    "every branch's layers created at init (`if self.is_initializing()`); NNX needs the layers built in "
    "`__init__` and `nnx.{api}`; convert it by hand"
)
LIFTED_ELSEWHERE = (
    "`hk.{api}` is converted where it is applied and called at once (`hk.{api}(f)(x)`, `f` a lambda or a "
    "function of this method); write it that way, or use `nn.{api}` / `nnx.{api}` by hand"
)
LIFTED_USES = (
    "the {api}-transformed function {uses}: only layers built inside it convert (Linen builds them in the "
    "lifted function, NNX in `__init__`); convert it by hand"
)
SPLIT_RNG_OVER_LAYERS = (
    "`hk.vmap(split_rng=True)` over a function that builds layers: choose shared parameters "
    "(`nn.vmap(..., variable_axes={'params': None}, split_rngs={'params': False})`, `nnx.vmap` closing over "
    "the module) or one set per element (`{'params': 0}`, split rngs) and write it by hand"
)
NO_SELF = "`hk.running_init()` / a lifted transform outside a module method or transformed function: there is no `self` to ask; convert by hand"
NNX_RUNNING_INIT = (
    "NNX has no init phase (layers are built in `__init__`), so `hk.running_init()` is False for every call; "
    "it is converted as the test of an `if` (`if hk.running_init(): ... else: ...`): rewrite it that way or by hand"
)
NNX_INIT_ONLY_MODULES = (
    "the init-only block {uses}: NNX builds every layer in `__init__`; check that each layer it creates is "
    "built there, then delete the block"
)


# -- what a function touches ---------------------------------------------------------------------------
@dataclass
class FunctionUses:
    """What a function passed to a Haiku control-flow or lifted transform touches."""

    builds: list[str] = field(default_factory=list)  # layers built inline: `hk.Linear(8)(h)`
    layers: list[str] = field(default_factory=list)  # layers the method built in a local, called: `proj(h)`
    others: list[str] = field(default_factory=list)  # any other use of modules, parameters or unknown code

    @property
    def pure(self) -> bool:
        return not self.builds and not self.layers and not self.others

    @property
    def closed_layer(self) -> str | None:
        """The one local layer the function calls, where that is all it does with modules."""
        names = set(self.layers)
        return self.layers[0] if len(names) == 1 and not self.builds and not self.others else None

    def add(self, other: FunctionUses) -> None:
        self.builds += other.builds
        self.layers += other.layers
        self.others += other.others

    def describe(self) -> str:
        return "uses " + ", ".join(dict.fromkeys(self.others or self.builds or [f"`{n}`" for n in self.layers]))


@dataclass(frozen=True)
class _Scope:
    """The function around a call: its nested functions (top level only) and its other local names."""

    defs: dict[str, cst.FunctionDef]
    locals: frozenset[str]
    layers: frozenset[str]  # locals assigned a module once, at the top level: `proj = hk.Linear(8)`

    @classmethod
    def of(cls, function: cst.FunctionDef, code: FunctionCode, is_module: Callable[[cst.Call], bool]) -> _Scope:
        params = {p.name.value for p in (*function.params.params, *function.params.kwonly_params, *function.params.posonly_params)}
        defs = {d.name.value: d for d, top in code.defs if top}
        names = frozenset((params | _assigned(function.body.body)) - set(defs))
        built = [name for a, top in code.assigns if top and isinstance(a.value, cst.Call) and is_module(a.value) and (name := assigned_name(a))]
        assignments = [name for a, _ in code.assigns for t in a.targets for name in _names(t.target)]
        layers = {n for n in built if assignments.count(n) == 1 and n not in params}
        return cls(defs, names, frozenset(layers))


class _Analyzer:
    """Reads which modules and parameters a function touches, following functions of this file."""

    def __init__(self, ctx: Context, classes: dict[str, cst.ClassDef], module_defs: dict[str, cst.FunctionDef]) -> None:
        self.ctx = ctx
        self.classes = classes
        self.module_defs = module_defs

    def is_module_constructor(self, call: cst.Call) -> bool:
        api = self.ctx.names.haiku_api(call.func)
        return (api is not None and self.ctx.tables.get(api) is not None) or isinstance(call.func, cst.Name) and call.func.value in self.classes

    def function(self, expression: cst.BaseExpression, scope: _Scope) -> FunctionUses:
        uses = FunctionUses()
        self._function(expression, scope, uses, set())
        return uses

    def block(self, node: cst.CSTNode, scope: _Scope) -> FunctionUses:
        uses = FunctionUses()
        _UseReader(self, scope, uses, set(), frozenset()).walk(node)
        return uses

    def _function(self, expression: cst.BaseExpression, scope: _Scope, uses: FunctionUses, seen: set[str]) -> None:
        if isinstance(expression, cst.Lambda):
            _UseReader(self, scope, uses, seen, _param_names(expression.params)).walk(expression.body)
        elif isinstance(expression, cst.Name):
            self._named(expression.value, scope, uses, seen)
        elif isinstance(expression, cst.Attribute) and self.ctx.names.haiku_api(expression) is not None:
            uses.others.append(f"hk.{self.ctx.names.haiku_api(expression)}")
        elif isinstance(expression, cst.Attribute) and _root(expression) == "self":
            uses.others.append(f"`{dotted_name(expression) or 'self...'}`")
        elif not isinstance(expression, cst.Attribute):  # `jnp.tanh` is a library function
            uses.others.append("a function expression this tool cannot follow")

    def _named(self, name: str, scope: _Scope, uses: FunctionUses, seen: set[str]) -> None:
        """A function named in the code: one of this file (read it), a builtin, or something unseen."""
        function = scope.defs.get(name) or (self.module_defs.get(name) if name not in scope.locals else None)
        if function is None:
            if name in scope.locals or not hasattr(builtins, name):
                uses.others.append(f"`{name}`, which this tool cannot see into")
            return
        if name in seen:
            return
        seen.add(name)
        _UseReader(self, scope, uses, seen, _param_names(function.params)).walk(function.body)


class _UseReader(Walker):
    def __init__(self, analyzer: _Analyzer, scope: _Scope, uses: FunctionUses, seen: set[str], params: frozenset[str]) -> None:
        self.analyzer = analyzer
        self.scope = scope
        self.uses = uses
        self.seen = seen
        self.params = params  # the function's own parameters: calling one calls something unseen
        self._constructors: set[cst.CSTNode] = set()

    def visit_Call(self, node: cst.Call) -> None:
        analyzer, uses = self.analyzer, self.uses
        if node in self._constructors:
            return
        if isinstance(node.func, cst.Call) and analyzer.is_module_constructor(node.func):
            self._constructors.add(node.func)
            uses.builds.append(dotted_name(node.func.func) or "a module")
            return
        api = analyzer.ctx.names.haiku_api(node.func)
        if api is not None:
            uses.others.append(f"hk.{api}")
        elif analyzer.is_module_constructor(node):
            uses.others.append(f"a stored `{dotted_name(node.func)}`")
        elif _root(node.func) == "self":
            uses.others.append(f"`{dotted_name(node.func) or 'self...'}`")
        elif isinstance(node.func, cst.Name):
            if node.func.value in self.params:
                uses.others.append(f"`{node.func.value}`, which this tool cannot see into")
            elif node.func.value in self.scope.layers:
                uses.layers.append(node.func.value)
            else:
                analyzer._named(node.func.value, self.scope, uses, self.seen)


def _root(node: cst.BaseExpression) -> str | None:
    while isinstance(node, cst.Attribute | cst.Call | cst.Subscript):
        node = node.value if isinstance(node, cst.Attribute | cst.Subscript) else node.func
    return node.value if isinstance(node, cst.Name) else None


def _param_names(params: cst.Parameters) -> frozenset[str]:
    return frozenset(p.name.value for p in (*params.params, *params.kwonly_params, *params.posonly_params))


def _argument(call: cst.Call, position: int, keyword: str) -> cst.BaseExpression | None:
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == keyword:
            return arg.value
    positional = [a for a in call.args if a.keyword is None]
    if any(a.star for a in positional[: position + 1]) or position >= len(positional):
        return None
    return positional[position].value


# -- the sites of a file ---------------------------------------------------------------------------
@dataclass(eq=False)
class LiftedFunction:
    """`hk.remat(f, ...)(args)` / `hk.vmap(f, ...)(args)`; `problem` says why it is left as it is."""

    api: str
    rule: str
    transform: cst.Call  # `hk.remat(f, ...)`
    call: cst.Call  # `hk.remat(f, ...)(args)`
    options: dict[str, cst.BaseExpression] = field(default_factory=dict)
    function: cst.Lambda | cst.FunctionDef | None = None  # a function building layers, converted with the site
    layer: str | None = None  # the one layer built outside the function that it calls: Linen lifts that layer
    sized: bool = False  # NNX: the function's parameters have the sizes of the call's arguments
    problem: str | None = None


@dataclass(eq=False)
class InitGuard:
    """`if hk.running_init(): A else: B` (or `if not ...`): NNX keeps `B`."""

    kept_block: cst.IndentedBlock | None
    problem: str | None = None


@dataclass
class ControlFlowSites:
    """The file's control flow and lifted transforms, found before the rewrite, by their nodes."""

    lax: dict[cst.CSTNode, str | None] = field(default_factory=dict)  # hk.cond/... calls -> None (convert) or the problem
    lax_layers: dict[cst.CSTNode, str] = field(default_factory=dict)  # hk.cond/switch calls -> the one local layer they call
    lifted: dict[cst.CSTNode, LiftedFunction] = field(default_factory=dict)  # by the called transform
    lifted_functions: dict[cst.CSTNode, LiftedFunction] = field(default_factory=dict)  # by the function converted with it
    lifted_params: dict[cst.CSTNode, LiftedFunction] = field(default_factory=dict)  # by that function's parameters
    elsewhere: dict[cst.CSTNode, str] = field(default_factory=dict)  # other references to hk.remat/vmap -> the reason
    running_init: dict[cst.CSTNode, bool] = field(default_factory=dict)  # hk.running_init() calls -> `self` is in reach
    guards: dict[cst.CSTNode, InitGuard] = field(default_factory=dict)  # by the `if`
    guard_tests: set[cst.CSTNode] = field(default_factory=set)  # the `hk.running_init()` calls those `if`s test

    @classmethod
    def read(cls, module: cst.Module, ctx: Context, classes: dict[str, cst.ClassDef], forwards: set[str]) -> ControlFlowSites:
        found = cls()
        apis = CONTROL_FLOW_APIS
        if not any(ctx.names.haiku_api(node) in apis for node in _references(module)):
            return found  # the common case, in one pass
        module_defs = {s.name.value: s for s in module.body if isinstance(s, cst.FunctionDef)}
        analyzer = _Analyzer(ctx, classes, module_defs)
        with_self = _functions_with_self(module, classes, forwards)
        for function in all_functions(module):
            code = FunctionCode.of(function)
            scope = _Scope.of(function, code, analyzer.is_module_constructor)
            for call, top in code.calls:
                api = ctx.names.haiku_api(call.func)
                if api in LAX:
                    found._add_lax(call, api, analyzer, scope)
                elif api == "running_init":
                    found.running_init[call] = function in with_self
                elif isinstance(call.func, cst.Call) and (lifted := ctx.names.haiku_api(call.func.func)) in LIFTED:
                    site = _read_lifted(call, call.func, lifted, analyzer, scope, code, function, top)
                    site.problem = site.problem or (None if function in with_self or site.function is None else NO_SELF)
                    found.lifted[call] = site
                    if site.problem is None and site.function is not None:
                        found.lifted_functions[site.function] = site
                        found.lifted_params[site.function.params] = site
            found._read_guards(function.body, analyzer, scope, ctx)
        converted = {site.transform.func for site in found.lifted.values()}
        for node in _references(module):
            api = ctx.names.haiku_api(node)
            if api in LIFTED and node not in converted:
                found.elsewhere[node] = LIFTED_ELSEWHERE.format(api=api)
        return found

    def _add_lax(self, call: cst.Call, api: str, analyzer: _Analyzer, scope: _Scope) -> None:
        functions: list[cst.BaseExpression] = []
        for position, keyword in LAX[api].functions:
            value = _argument(call, position, keyword)
            if value is None:
                self.lax[call] = f"`hk.{api}` is called without its functions spelled out; convert it by hand"
                return
            if api == "switch" and not isinstance(value, cst.List | cst.Tuple):
                self.lax[call] = "`hk.switch` branches are not a list written in the call; convert it by hand"
                return
            functions.extend(e.value for e in value.elements) if isinstance(value, cst.List | cst.Tuple) else functions.append(value)
        uses = FunctionUses()
        branches = [(function, analyzer.function(function, scope)) for function in functions]
        for _, found in branches:
            uses.add(found)
        layer = uses.closed_layer if api in LIFTED_BRANCHES else None
        if layer is not None and all(isinstance(f, cst.Lambda) or u.pure for f, u in branches):
            if any(a.keyword is not None or a.star for a in call.args):
                self.lax[call] = f"`hk.{api}` over a layer is converted with positional arguments; convert it by hand"
                return
            self.lax[call], self.lax_layers[call] = None, layer
            return
        what = "the branches" if api in ("cond", "switch") else "the loop functions"
        self.lax[call] = None if uses.pure else BRANCHES_USE_MODULES.format(what=what, uses=uses.describe(), api=api)

    def _read_guards(self, body: cst.BaseSuite, analyzer: _Analyzer, scope: _Scope, ctx: Context) -> None:
        for statement in getattr(body, "body", ()):
            if not isinstance(statement, cst.If):
                continue
            test = statement.test
            negated = isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not)
            if isinstance(test, cst.UnaryOperation) and negated:
                test = test.expression
            if not (isinstance(test, cst.Call) and ctx.names.haiku_api(test.func) == "running_init" and not test.args):
                continue
            init_only, kept = (statement.orelse, statement.body) if negated else (statement.body, statement.orelse)
            if isinstance(kept, cst.Else):
                kept = kept.body
            uses = analyzer.block(init_only, scope) if init_only is not None else FunctionUses()
            problem = None if uses.pure else NNX_INIT_ONLY_MODULES.format(uses=uses.describe())
            self.guard_tests.add(test)
            self.guards[statement] = InitGuard(kept if isinstance(kept, cst.IndentedBlock) else None, problem)


def _read_lifted(
    call: cst.Call, transform: cst.Call, api: str, analyzer: _Analyzer, scope: _Scope, code: FunctionCode, method: cst.FunctionDef, top: bool
) -> LiftedFunction:
    rule, names, _ = LIFTED[api]
    site = LiftedFunction(api, rule, transform, call)
    try:
        bound = BoundCall.bind(transform, names, f"hk.{api}").args
    except Unconvertible as reason:
        site.problem = str(reason)
        return site
    site.options = {k: v for k, v in bound.items() if k != "fun"}
    if "fun" not in bound:
        site.problem = f"`hk.{api}` is called without its function; convert it by hand"
        return site
    uses = analyzer.function(bound["fun"], scope)
    if uses.pure:
        return site
    site.layer = uses.closed_layer
    if uses.others or (uses.layers and site.layer is None):
        site.problem = LIFTED_USES.format(api=api, uses=uses.describe())
    elif api == "vmap" and not m.matches(bound.get("split_rng"), m.Name("False")):
        site.problem = SPLIT_RNG_OVER_LAYERS
    elif isinstance(bound["fun"], cst.Lambda):
        site.function, site.sized = bound["fun"], True
    elif site.layer is not None:
        site.problem = f"the `hk.{api}`-transformed function calls `{site.layer}`, built outside it: pass a lambda, or convert it by hand"
    else:
        site.function, site.sized, site.problem = _local_function(bound["fun"], call, scope, code, method, top)
    if site.problem is None and any(a.star or a.keyword is not None for a in call.args):
        site.problem = f"the `hk.{api}`-transformed function is called with keyword or `*` arguments; convert it by hand"
    return site


def _local_function(
    name: cst.BaseExpression, call: cst.Call, scope: _Scope, code: FunctionCode, method: cst.FunctionDef, top: bool
) -> tuple[cst.FunctionDef | None, bool, str | None]:
    """(the nested function, whether its parameters may take the sizes its arguments have where it is
    defined, problem): a function of the method used only here, so it may take the module argument."""
    function = scope.defs.get(name.value) if isinstance(name, cst.Name) else None
    if function is None or len(code.names.get(function.name.value, [])) != 1 or function.decorators:
        return None, False, "the transformed function must be a lambda or an undecorated function of this method used only here; convert it by hand"
    if not top:
        return None, False, "the transform is applied inside a loop or condition; convert it by hand"
    statements = list(method.body.body)
    after = next(i for i, s in enumerate(statements) if s is function)
    reassigned = _assigned(statements[after + 1 :])
    args = {n for a in call.args for n in _names(a.value)}
    return function, not (args & reassigned), None


def _names(node: cst.CSTNode) -> set[str]:
    return analysis.Names.of(node).used


class _Assigned(Walker):
    def __init__(self) -> None:
        self.names: set[str] = set()

    def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
        self.names |= _names(node.target)

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self.names |= _names(node.target)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        self.names |= _names(node.target)

    def visit_For(self, node: cst.For) -> None:
        self.names |= _names(node.target)


def _assigned(statements: Sequence[cst.CSTNode]) -> set[str]:
    walker = _Assigned()
    for statement in statements:
        walker.walk(statement)
    return walker.names


class _References(Walker):
    def __init__(self) -> None:
        self.found: list[cst.BaseExpression] = []

    def visit_Name(self, node: cst.Name) -> None:
        self.found.append(node)

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        self.found.append(node)
        return False  # `hk.remat` is one reference, not also `hk`


def _references(module: cst.Module) -> list[cst.BaseExpression]:
    walker = _References()
    walker.walk(module)
    return walker.found


def _functions_with_self(module: cst.Module, classes: dict[str, cst.ClassDef], forwards: set[str]) -> set[cst.CSTNode]:
    """The functions where the converted code has a `self`: methods of Haiku classes (and functions
    nested in them) and transformed forwards, which become modules."""
    roots: list[cst.CSTNode] = [s for s in module.body if isinstance(s, cst.FunctionDef) and s.name.value in forwards]
    roots += list(classes.values())
    return {f for root in roots for f in all_functions(root)}


def _read_control_flow(module: cst.Module, ctx: Context) -> ControlFlowSites:
    if not ctx.mentions(*CONTROL_FLOW_APIS):
        return ControlFlowSites()
    return ControlFlowSites.read(module, ctx, analysis.haiku_module_classes(module, ctx.names), set(ctx.fact(TRANSFORMS).forwards))


CONTROL_FLOW = FileFact(_read_control_flow)  # the file's control flow, read before the rewrite


# -- writing the Flax code: what both targets share -------------------------------------------------
def _convert_lax(room: Room, call: CallSite, over_layer: Callable[[Room, CallSite, str], cst.BaseExpression]) -> cst.BaseExpression | None:
    """`hk.cond(p, f, g, x)` over module-free functions -> `jax.lax.cond(p, f, g, x)`, over one local
    layer -> `over_layer`; else a TODO."""
    sites = room.ctx.fact(CONTROL_FLOW)
    if call.original not in sites.lax:
        return None
    problem, rule = sites.lax[call.original], LAX[call.api].rule
    if problem is not None:
        room.todo(call.original, rule, problem)
        return call.updated
    layer = sites.lax_layers.get(call.original)
    if layer is not None:
        room.ctx.need_target_import()
        room.converted(call.original, rule, f"hk.{call.api} over the layer `{layer}` -> {room.ctx.ns}.{call.api}")
        return over_layer(room, call, layer)
    room.ctx.needed_imports.add(("jax", None, None))
    room.converted(call.original, rule, f"hk.{call.api} over module-free functions -> jax.lax.{call.api}")
    return call.updated.with_changes(func=attr("jax", f"lax.{call.api}"))


def nnx_lax_over_layer(room: NnxMethod, call: CallSite, layer: str) -> cst.BaseExpression:
    """`hk.cond(p, lambda y: proj(y), jax.nn.relu, x)`, the branches calling one layer built in the method
    -> `nnx.cond` with the same branches: they call `self.proj`, built in `__init__`, and only read it. The
    result has the size of a branch that calls the layer."""
    sizes = (room.size_of(f.body) for f in _functions(call.updated, call.api) if isinstance(f, cst.Lambda))
    lifted = call.updated.with_changes(func=attr(room.ctx.ns, call.api))
    return room.set_size(lifted, next((s for s in sizes if s is not None), None))


def linen_lax_over_layer(room: LinenMethod, call: CallSite, layer: str) -> cst.BaseExpression:
    """`hk.cond(p, lambda y: proj(y), jax.nn.relu, x)` -> `nn.cond(p, lambda mdl, y: mdl(y), lambda mdl,
    *operands: jax.nn.relu(*operands), proj, x)`: the layer is passed as the module, which Linen's lifted
    control flow hands to every branch (a closure over it would leak out of the transform)."""
    lifted = attr(room.ctx.ns, call.api)
    functions = max(position for position, _ in LAX[call.api].functions) + 1
    args = list(call.updated.args)
    for position in range(1, functions):
        value = args[position].value
        if isinstance(value, cst.List | cst.Tuple):  # `hk.switch`'s branches
            value = value.with_changes(elements=[e.with_changes(value=_taking_layer(e.value, layer)) for e in value.elements])
        else:
            value = _taking_layer(value, layer)
        args[position] = args[position].with_changes(value=value)
    comma = cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
    args[functions - 1] = args[functions - 1].with_changes(comma=comma)
    module = cst.Arg(cst.Name(layer), comma=comma if args[functions:] else cst.MaybeSentinel.DEFAULT)
    return call.updated.with_changes(func=lifted, args=[*args[:functions], module, *args[functions:]])


def _functions(call: cst.Call, api: str) -> list[cst.BaseExpression]:
    """The functions `hk.cond` / `hk.switch` (...) takes, as spelled in the call."""
    values = [_argument(call, position, keyword) for position, keyword in LAX[api].functions]
    return [e.value for v in values if v is not None for e in (v.elements if isinstance(v, cst.List | cst.Tuple) else [cst.Element(v)])]


def _taking_layer(function: cst.BaseExpression, layer: str) -> cst.BaseExpression:
    """A branch taking the module first, as Linen's lifted control flow calls it: a lambda's calls of
    `layer` call the module; a module-free function is wrapped."""
    module = _module_param_name(function)
    if isinstance(function, cst.Lambda):
        body = function.body.visit(_Renamed(layer, module))
        assert isinstance(body, cst.BaseExpression)
        return function.with_changes(params=function.params.with_changes(params=[cst.Param(cst.Name(module)), *function.params.params]), body=body)
    operands = cst.Param(cst.Name("operands"))
    return cst.Lambda(
        cst.Parameters([cst.Param(cst.Name(module))], star_arg=operands),
        cst.Call(function, [cst.Arg(cst.Name("operands"), star="*")]),
    )


def _module_param_name(function: cst.CSTNode) -> str:
    return MODULE_PARAM if MODULE_PARAM not in _names(function) else "module"


class _Renamed(cst.CSTTransformer):
    """Every variable `old` -> `new` (attribute names and keywords are not variables)."""

    def __init__(self, old: str, new: str) -> None:
        self.old, self.new = old, new

    def leave_Name(self, original: cst.Name, updated: cst.Name) -> cst.Name:
        return updated.with_changes(value=self.new) if original.value == self.old else updated

    def leave_Attribute(self, original: cst.Attribute, updated: cst.Attribute) -> cst.Attribute:
        return updated.with_changes(attr=original.attr)

    def leave_Arg(self, original: cst.Arg, updated: cst.Arg) -> cst.Arg:
        return updated.with_changes(keyword=original.keyword)


for _api, _lax in LAX.items():
    LINEN_CALLS.on(_api, rule=_lax.rule)(partial(_convert_lax, over_layer=linen_lax_over_layer))
    NNX_CALLS.on(_api, rule=_lax.rule)(partial(_convert_lax, over_layer=nnx_lax_over_layer))


def _shared_lifted(room: MethodRoom, call: CallSite) -> cst.BaseExpression | LiftedFunction | None:
    """`hk.remat(f)(x)` / `hk.vmap(f)(x)`: a TODO, or `jax.checkpoint` / `jax.vmap` over a module-free
    function; the site itself where `f` builds layers (each target converts it its way)."""
    site = room.ctx.fact(CONTROL_FLOW).lifted.get(call.original)
    if site is None:
        return None
    if site.problem is not None:
        room.todo(call.original, site.rule, site.problem)
        return call.updated
    if site.function is None:
        _, _, jax_name = LIFTED[site.api]
        room.ctx.needed_imports.add(("jax", None, None))
        room.converted(site.call, site.rule, f"hk.{site.api} over a module-free function -> jax.{jax_name}")
        return call.updated.with_changes(func=cst.Call(attr("jax", jax_name), _transform_args(site, call.updated)))
    return site


def _transform_args(site: LiftedFunction, updated: cst.Call, extra: tuple[cst.Arg, ...] = ()) -> list[cst.Arg]:
    """The (rewritten) function, `extra`, then the options Flax and JAX share with Haiku, by keyword (Flax
    takes them by keyword only)."""
    names = LIFTED[site.api][1]
    transform = updated.func
    assert isinstance(transform, cst.Call)  # `hk.remat(f, ...)`, as the site was read
    bound = BoundCall.bind(transform, names, f"hk.{site.api}").args
    options = [keyword_arg(k, v) for k, v in bound.items() if k != "fun" and k not in HAIKU_ONLY_OPTIONS]
    return [cst.Arg(bound["fun"]), *extra, *options]


def lifted_elsewhere(room: MethodRoom, original: cst.Name | cst.Attribute, updated: cst.Name | cst.Attribute, *, rule: str) -> None:
    """Another reference to `hk.remat` / `hk.vmap` (a decorator, a stored wrapper): a TODO."""
    reason = room.ctx.fact(CONTROL_FLOW).elsewhere.get(original)
    if reason is not None and LIFTED[room.ctx.names.haiku_api(original) or ""][0] == rule:
        room.todo(original, rule, reason)


# -- Linen: `self.is_initializing()`, and `nn.remat` / `nn.vmap` over functions taking the module first ----
@LINEN_CALLS.on("running_init", rule=RULE_RUNNING_INIT)
def linen_running_init(room: LinenMethod, call: CallSite) -> cst.BaseExpression | None:
    """`hk.running_init()` -> `self.is_initializing()` where the converted code has a `self`."""
    has_self = room.ctx.fact(CONTROL_FLOW).running_init.get(call.original)
    if has_self is None:
        return None
    if not has_self:
        room.todo(call.original, RULE_RUNNING_INIT, NO_SELF)
        return call.updated
    room.converted(call.original, RULE_RUNNING_INIT, "hk.running_init() -> self.is_initializing()")
    return cst.Call(attr("self", "is_initializing"))


def linen_lifted(room: LinenMethod, call: CallSite) -> cst.BaseExpression | None:
    """`hk.remat(f)(x)` -> `nn.remat(f)(self, x)`; `hk.vmap(f, split_rng=False)(x)` -> `nn.vmap(f,
    variable_axes={'params': None}, split_rngs={'params': False})(self, x)`."""
    site = _shared_lifted(room, call)
    if not isinstance(site, LiftedFunction):
        return site
    shared = (
        keyword_arg("variable_axes", cst.parse_expression("{'params': None}")),
        keyword_arg("split_rngs", cst.parse_expression("{'params': False}")),
    )
    updated = call.updated
    args = [_shifted_static_argnums(a) for a in _transform_args(site, updated, shared if site.api == "vmap" else ())]
    module = cst.Name("self")
    if site.layer is not None:  # the function calls the module it takes: the layer is lifted, not `self`
        module = cst.Name(site.layer)
        args[0] = args[0].with_changes(value=args[0].value.visit(_Renamed(site.layer, _module_param_name(site.call))))
    room.ctx.need_target_import()
    room.mark_builds_layer()
    room.converted(site.call, site.rule, f"hk.{site.api} -> nn.{site.api} over a function taking the module")
    return updated.with_changes(func=cst.Call(attr(room.ctx.ns, site.api), args), args=respell_args(updated, 0, [module], []))


def module_param(room: LinenMethod, original: cst.Parameters, updated: cst.Parameters, *, rule: str) -> cst.Parameters | None:
    """The lifted function takes the module first, as Linen passes it."""
    site = room.ctx.fact(CONTROL_FLOW).lifted_params.get(original)
    if site is None or site.rule != rule or site.function is None:
        return None
    return updated.with_changes(params=[cst.Param(cst.Name(_module_param_name(site.call))), *updated.params])


def _shifted_static_argnums(arg: cst.Arg) -> cst.Arg:
    """Linen counts the module as argument 0 of a lifted function."""
    if arg.keyword is None or arg.keyword.value != "static_argnums":
        return arg

    class Shift(Transformer):
        def leave_Integer(self, original: cst.Integer, updated: cst.Integer) -> cst.Integer:
            return updated.with_changes(value=str(int(original.value, 0) + 1))

    return arg.with_changes(value=arg.value.visit(Shift()))


# -- NNX: lifted functions call the layers built in `__init__`; `if hk.running_init()` keeps the apply branch --
class _ReturnedSizes:
    """What each rematerialised or vmapped function of a method returns (by its site), for the size of the call."""

    def __init__(self) -> None:
        self.by_site: dict[int, cst.BaseExpression | None] = {}


def nnx_lifted(room: NnxMethod, call: CallSite) -> cst.BaseExpression | None:
    """`hk.remat(f)(x)` -> `nnx.remat(f)(x)`, `f` closing over the module's layers."""
    site = _shared_lifted(room, call)
    if not isinstance(site, LiftedFunction):
        return site
    room.ctx.need_target_import()
    room.converted(site.call, site.rule, f"hk.{site.api} -> nnx.{site.api}, the layers built in __init__")
    result = call.updated.with_changes(func=cst.Call(attr(room.ctx.ns, site.api), _transform_args(site, call.updated)))
    return room.set_size(result, room.family(_ReturnedSizes).by_site.get(id(site)))


def _lifted_function(room: NnxMethod, node: cst.CSTNode, rule: str) -> LiftedFunction | None:
    site = room.ctx.fact(CONTROL_FLOW).lifted_functions.get(node)
    return site if site is not None and site.rule == rule else None


def enter_lifted_function(room: NnxMethod, node: cst.Lambda | cst.FunctionDef, *, rule: str) -> None:
    """A lifted function's layers are hoisted (it runs once, where it is called); its parameters take
    the sizes of the call's arguments."""
    site = _lifted_function(room, node, rule)
    if site is None:
        return
    arg_sizes = [room.size_of(a.value) if site.sized else None for a in site.call.args]
    room.enter_function()
    for position, param in enumerate(node.params.params):
        room.set_variable_size(param.name.value, arg_sizes[position] if position < len(arg_sizes) else None)
        stand_in(room, param.name.value, _probed_argument(site, position))
    if isinstance(node, cst.FunctionDef):
        room.inline_block(node.body)


def _probed_argument(site: LiftedFunction, position: int) -> cst.BaseExpression | None:
    """What a shape probe replays for the function's parameter at `position`: the argument under `hk.remat`,
    its first element under `hk.vmap` over the leading axis; None for an argument computed in the call
    (converted after the function) or mapped over another axis."""
    args = site.call.args
    argument = args[position].value if position < len(args) else None
    if not isinstance(argument, cst.Name):
        return None
    if site.api == "remat":
        return argument
    if "in_axes" in site.options:
        return None
    return cst.Subscript(argument, [cst.SubscriptElement(cst.Index(cst.Integer("0")))])


def leave_lifted_function(room: NnxMethod, original: cst.Lambda | cst.FunctionDef, updated: cst.Lambda | cst.FunctionDef, *, rule: str) -> None:
    """Back to the method's sizes; a rematerialised function's output size is its call's, and so is a
    function vmapped over the leading axis."""
    site = _lifted_function(room, original, rule)
    if site is None:
        return
    returned = room.size_of(updated.body) if isinstance(updated, cst.Lambda) else None
    for param in original.params.params:
        forget_stand_in(room, param.name.value)
    function_returned = room.leave_function()
    if isinstance(updated, cst.FunctionDef):
        returned = function_returned
    keeps_last_axis = site.api == "remat" or not {"in_axes", "out_axes"} & site.options.keys()  # vmap over axis 0
    room.family(_ReturnedSizes).by_site[id(site)] = returned if keeps_last_axis else None


for _api, (_rule, *_options) in LIFTED.items():  # each registered per rule, so `--ignore` turns off one of them
    LINEN_CALLS.on(_api, rule=_rule, constructor=True)(linen_lifted)
    NNX_CALLS.on(_api, rule=_rule, constructor=True)(nnx_lifted)
    LINEN_NODES.on_leave(cst.Parameters, rule=_rule)(partial(module_param, rule=_rule))
    for _kind in (cst.Attribute, cst.Name):
        on_leave(_kind, rule=_rule)(partial(lifted_elsewhere, rule=_rule))
    for _function in (cst.Lambda, cst.FunctionDef):
        NNX_NODES.on_visit(_function, rule=_rule)(partial(enter_lifted_function, rule=_rule))
        NNX_NODES.on_leave(_function, rule=_rule)(partial(leave_lifted_function, rule=_rule))


@NNX_CALLS.on("running_init", rule=RULE_RUNNING_INIT)
def nnx_running_init(room: NnxMethod, call: CallSite) -> cst.BaseExpression | None:
    """`hk.running_init()` is converted with the `if` it tests; anywhere else, a TODO."""
    sites = room.ctx.fact(CONTROL_FLOW)
    if call.original not in sites.running_init:
        return None
    if call.original not in sites.guard_tests:
        room.todo(call.original, RULE_RUNNING_INIT, NNX_RUNNING_INIT)
    return call.updated


@NNX_NODES.on_visit(cst.If, rule=RULE_RUNNING_INIT)
def enter_init_guard(room: NnxMethod, node: cst.If) -> None:
    """The kept branch of `if hk.running_init()` is part of the method's own block: its layers are the method's."""
    guard = room.ctx.fact(CONTROL_FLOW).guards.get(node)
    if guard is not None and guard.problem is None and guard.kept_block is not None:
        room.inline_block(guard.kept_block)


@NNX_NODES.on_leave(cst.If, rule=RULE_RUNNING_INIT)
def keep_apply_branch(
    room: NnxMethod, original: cst.If, updated: cst.If
) -> cst.If | cst.FlattenSentinel[cst.BaseStatement] | cst.RemovalSentinel | None:
    """`if hk.running_init(): A else: B` -> `B` (the method's own hook has nothing to do for such an `if`:
    the conditional branches leave it alone)."""
    guard = room.ctx.fact(CONTROL_FLOW).guards.get(original)
    if guard is None:
        return None
    if guard.problem is not None:
        room.todo(original, RULE_RUNNING_INIT, guard.problem)
        return updated
    room.converted(original, RULE_RUNNING_INIT, "if hk.running_init(): NNX has no init phase, the apply branch is kept")
    kept = _updated_statements(original, updated)
    if not kept:
        return cst.RemovalSentinel.REMOVE
    first, *rest = kept
    assert isinstance(first, cst.SimpleStatementLine | cst.BaseCompoundStatement)
    return cst.FlattenSentinel([first.with_changes(leading_lines=[*original.leading_lines, *first.leading_lines]), *rest])


def _updated_statements(original: cst.If, updated: cst.If) -> list[cst.BaseStatement]:
    """The kept statements as rewritten: the same positions in the updated `if`."""
    negated = isinstance(original.test, cst.UnaryOperation)
    kept = updated.body if negated else updated.orelse
    if isinstance(kept, cst.Else):
        kept = kept.body
    if isinstance(kept, cst.If):
        return [kept.with_changes(leading_lines=[])]
    if isinstance(kept, cst.SimpleStatementSuite):  # `else: y = f(x)` on one line
        return [cst.SimpleStatementLine(kept.body)]
    return list(kept.body) if isinstance(kept, cst.IndentedBlock) else []
