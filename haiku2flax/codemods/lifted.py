"""Lifted transforms: `hk.scan` over a module (shared parameters) and `hk.layer_stack` (stacked ones).

What it converts:
- `hk.scan(cell, carry, xs)` where `cell` is a module class of this file, built inline or assigned to a
  local first (`cell = RNNCell(h)`, then `cell.initial_state(b)` and `hk.scan(cell, ...)`):
  - Linen: the constructor becomes `nn.scan(RNNCell, variable_broadcast='params',
    split_rngs={'params': False})(h)` (the other methods, such as `initial_state`, still work on it)
    and the scan becomes `cell(carry, xs)`.
  - NNX: the cell is built in `__init__` (`self.cell`, its input size is the feature size of `xs`; its
    carry size is read from `initial_state`'s `jnp.zeros((batch, size))`), and the scan becomes
    `nnx.scan(lambda carry, cell, x: cell(carry, x), in_axes=(nnx.Carry, None, 0),
    out_axes=(nnx.Carry, 0))(carry, self.cell, xs)`.
  `length`, `reverse` and `unroll` keep their names. Both scan over axis 0, as Haiku does, so a
  `jnp.swapaxes` around the scan stays as written.
- `hk.scan(step, carry, xs)` where `def step(carry, x)` of the method calls layers the method built in
  locals used nowhere else (`proj = hk.Linear(h)`):
  - Linen: those lines move into `step`, which takes the module first (`def step(mdl, carry, x)`), and
    the scan becomes `nn.scan(step, variable_broadcast='params', split_rngs={'params': False})(self,
    carry, xs)`: layers built inside the lifted function, one set of parameters for every step.
  - NNX: the layers are built in `__init__` (sized from `carry`'s `jnp.zeros((b, h))` and one step of
    `xs`) and the scan becomes `nnx.scan(step, in_axes=(nnx.Carry, 0), out_axes=(nnx.Carry, 0))(carry, xs)`.
- `@hk.layer_stack(n)` / `@hk.experimental.layer_stack(n)` on a function that builds one module
  (`return Block(f)(x, training)`), called as `stack_block(x)`, or applied as `hk.layer_stack(n)(stack_block)(x)`
  (the same conversion, the function then decorated):
  - Linen: the function takes the layer as its first argument and is decorated with
    `functools.partial(nn.scan, variable_axes={'params': 0}, split_rngs={'params': True}, length=n)`;
    it returns `(carry, None)`, scan's `(carry, ys)`, and calls become `stack_block(Block(f), x)[0]`.
  - NNX: `__init__` builds the stack with `nnx.vmap(lambda rngs: Block(din, f, rngs=rngs))(rngs.split(n))`
    and the function becomes `@nnx.scan(in_axes=(0, nnx.Carry), out_axes=nnx.Carry)` over it:
    `stack_block(self.stack_block, x)`.
  `with_per_layer_inputs=True` (the function returns `(carry, per_layer_output)`) and `unroll` are kept;
  an `hk.layer_stack(n)` never applied to anything is dropped.

Why: Haiku's transforms hide the parameters from the transformed function, Flax's are told what to do
with each collection: a scanned cell shares one set of parameters across steps (broadcast, one init
key), a layer stack has its own per layer on a leading axis, exactly Haiku's `(n, ...)` layout, so
weights map leaf by leaf. Haiku draws a fresh key per step or layer, so Linen also splits the
`'dropout'` stream where the module draws random numbers, and NNX layers each get their own split
`rngs`. `nnx.scan` rather than `jax.lax.scan` because it carries module state (RNG counts) through
the loop, where a closure over the module fails on the first mutation.

Not converted (TODO with the reason): `hk.scan` over a module not built in the same method or a
function that builds layers itself or calls Haiku APIs, a cell used any other way than scanned or through its other methods, an NNX cell that draws
random numbers (a broadcast cell would reuse one key at every step), scanned or stacked modules that
keep state (BatchNorm, `hk.get_state`: the collections' axes are a choice to make by hand), layer
stacks with `pass_reverse_to_layer_fn` / transparency, stacked functions that build more than one
module, `hk.layer_stack` used other than as the decorator of a function defined in the method, and
stacked functions used other than by calling them at the top level of that method.

Example (NNX)::

    cell = RNNCell(self.hidden_size)          # __init__: self.cell = RNNCell(din, hidden_size, rngs=rngs)
    carry = cell.initial_state(x.shape[0])    carry = self.cell.initial_state(x.shape[0])
    carry, y = hk.scan(cell, carry, xs)       carry, y = nnx.scan(
                                                  lambda carry, cell, x: cell(carry, x),
                                                  in_axes=(nnx.Carry, None, 0), out_axes=(nnx.Carry, 0),
                                              )(carry, self.cell, xs)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import libcst as cst

from ..engine import analysis
from ..engine import matchers as m
from ..engine.calls import BoundCall, Unconvertible, code, convert_construct_call, convert_layer_call_args, keyword_arg, respell_args
from ..engine.context import Context, FileFact, attr
from ..engine.names import dotted_name
from ..engine.registry import Status, register
from ..engine.tables import Construct
from ..engine.walk import Transformer, Walker
from .interfaces import LINEN_CALLS, LINEN_NODES, NNX_CALLS, NNX_NODES, CallSite, LeaveResult, LinenMethod, MethodRoom, NnxMethod, on_call

RULE_SCAN = register("HK300", "scan", Status.PARTIAL, "hk.scan over a module or a step function -> nn.scan / nnx.scan with shared parameters", __name__, apis=("scan",))
RULE_LAYER_STACK = register(
    "HK301", "layer-stack", Status.PARTIAL, "hk.layer_stack -> nn.scan / nnx.vmap + nnx.scan with per-layer parameters", __name__,
    apis=("layer_stack", "experimental.layer_stack"),
)

SCAN_ARGS = ("f", "init", "xs", "length", "reverse", "unroll")
SCAN_OPTIONS = ("length", "reverse", "unroll")  # the same names and meaning in nn.scan and nnx.scan
LAYER_STACK_APIS = ("layer_stack", "experimental.layer_stack")
LAYER_STACK_ARGS = (
    "num_layers", "with_per_layer_inputs", "unroll", "pass_reverse_to_layer_fn", "transparent", "transparency_map", "name",
)
LAYER_STACK_UNSUPPORTED = ("pass_reverse_to_layer_fn", "transparent", "transparency_map")
RANDOM_APIS = ("dropout", "next_rng_key", "maybe_next_rng_key")
STATE_APIS = ("get_state", "set_state")  # and table layers with state (BatchNorm)
STATE_CONSTRUCTORS = ("zeros", "ones", "empty", "full")  # `jnp.zeros((batch, size))` in `initial_state`
CELL_STATE_METHOD = "initial_state"

SCAN_FUNCTION = (
    "hk.scan over something other than a module built in this method: Flax's lifted scan needs the module; "
    "build it here (`cell = Cell(...)`) and scan it, or use `jax.lax.scan` if the function builds no modules"
)
LAYER_STACK_ELSEWHERE = (
    "`hk.layer_stack` is converted as the decorator of a function defined in the method that calls it; "
    "write it that way (`@hk.layer_stack(n)` on the def), or stack the layers by hand"
)
STATEFUL = (
    "the {what} keeps state (BatchNorm statistics, hk.get_state): the Flax scan must also be told how to "
    "carry or stack those collections; convert it by hand"
)
NNX_RANDOM_CELL = (
    "the scanned cell draws random numbers: Haiku gives every step a fresh key, a cell broadcast by "
    "`nnx.scan` reuses one; split the cell's rngs per step by hand (`nnx.split_rngs` and `in_axes` for its RNG state)"
)


# -- reading the Haiku code ----------------------------------------------------------------------------
@dataclass(eq=False)
class ScanSite:
    """`hk.scan(cell, init, xs, ...)`; `problem` says why it is left as it is."""

    call: cst.Call
    constructor: cst.Call | None = None  # `Cell(...)`: the first argument, or the value assigned to `local`
    function: cst.FunctionDef | None = None  # or `def step(carry, x)` of the method, calling layers built in it
    layers: list[cst.Assign] = field(default_factory=list)  # `proj = hk.Linear(h)`: the layers that function calls
    outputs: tuple[str | None, str | None] = (None, None)  # `carry, ys = hk.scan(step, ...)`
    first_once_moved: bool = False  # Linen: that function opens the method once the layers moved into it
    local: str | None = None
    assignment: cst.Assign | None = None
    uses: list[cst.Attribute] = field(default_factory=list)  # `local.initial_state` and other method reads
    options: dict[str, cst.BaseExpression] = field(default_factory=dict)
    random: bool = False  # the cell draws random numbers
    problem: str | None = None

    @property
    def cell(self) -> cst.Call:
        """The cell's constructor, once read (a site without a problem has one)."""
        assert self.constructor is not None
        return self.constructor

    @property
    def cell_class(self) -> str:
        func = self.cell.func
        assert isinstance(func, cst.Name)  # a module class of this file
        return func.value


@dataclass(frozen=True)
class CellSizes:
    """A scanned cell's `__call__(carry, x)`: NNX needs the carry's feature size for layers that read it."""

    carry: str
    step_input: str
    carry_size: cst.BaseExpression | None


@dataclass(eq=False)
class LayerStack:
    """A function decorated with `hk.layer_stack(n)`, the one module it builds, and its call sites."""

    function: cst.FunctionDef
    applied: cst.Call | None = None  # `hk.layer_stack(n)(function)(x)`, where the function is not decorated
    num_layers: cst.BaseExpression | None = None
    per_layer_inputs: bool = False
    unroll: cst.BaseExpression | None = None
    name: str | None = None
    construction: cst.Call | None = None  # `Ctor(args)(call_args)` in the function's body
    calls: list[cst.Call] = field(default_factory=list)
    random: bool = False
    problem: str | None = None

    @property
    def built(self) -> cst.Call:
        """`Ctor(args)(call_args)`, once read (a stack without a problem has it)."""
        assert self.construction is not None
        return self.construction

    @property
    def constructor(self) -> cst.Call:
        func = self.built.func
        assert isinstance(func, cst.Call)  # read as a module built and called at once
        return func

    @property
    def layers(self) -> cst.BaseExpression:
        """`n`, once read."""
        assert self.num_layers is not None
        return self.num_layers


@dataclass
class LiftedSites:
    """Every lifted transform of a file, found before the rewrite, by the nodes involved."""

    scans: dict[cst.CSTNode, ScanSite] = field(default_factory=dict)  # the hk.scan calls
    cell_constructors: dict[cst.CSTNode, ScanSite] = field(default_factory=dict)  # cell constructor calls
    cell_assignments: dict[cst.CSTNode, ScanSite] = field(default_factory=dict)  # `cell = Cell(...)`
    cell_uses: dict[cst.CSTNode, ScanSite] = field(default_factory=dict)  # `cell.method`
    step_functions: dict[cst.CSTNode, ScanSite] = field(default_factory=dict)  # scanned `def step(carry, x)`
    step_layers: dict[cst.CSTNode, ScanSite] = field(default_factory=dict)  # `proj = hk.Linear(h)` they call
    cells: dict[str, CellSizes] = field(default_factory=dict)  # by class name
    stacks: dict[cst.CSTNode, LayerStack] = field(default_factory=dict)  # the decorated functions
    stack_calls: dict[cst.CSTNode, LayerStack] = field(default_factory=dict)
    unused_stacks: set[cst.CSTNode] = field(default_factory=set)  # `stack = hk.layer_stack(n)` never applied
    other_stacks: set[cst.CSTNode] = field(default_factory=set)  # any other `hk.layer_stack(...)` call: a TODO

    @classmethod
    def read(cls, module: cst.Module, ctx: Context, classes: dict[str, cst.ClassDef]) -> LiftedSites:
        found = cls()
        if not any(ctx.names.haiku_api(call.func) in ("scan", *LAYER_STACK_APIS) for call in _calls_in(module)):
            return found  # the common case, in one pass instead of one per function
        reader = _Reader(ctx, classes)
        for function in all_functions(module):
            code = FunctionCode.of(function)
            if ctx.enabled(RULE_SCAN):
                for call, _ in code.calls:
                    if ctx.names.haiku_api(call.func) == "scan":
                        found._add_scan(reader.scan(call, code), function)
            if ctx.enabled(RULE_LAYER_STACK):
                applied = _applied_stacks(code, ctx)
                for nested, top_level in code.defs:
                    if any(_is_layer_stack(d.decorator, ctx) for d in nested.decorators) or nested in applied:
                        found._add_stack(reader.stack(nested, top_level, code, applied.get(nested)))
                unused = [a for a, _ in code.assigns if _unused_layer_stack(a, code, ctx)]
                found.unused_stacks |= set(unused)
                known = {a.value for a in unused} | {d.decorator for f, _ in code.defs for d in f.decorators}
                known |= {parts[0] for call in applied.values() if (parts := _applied_parts(call, ctx))}
                found.other_stacks |= {c for c, _ in code.calls if _is_layer_stack(c, ctx) and c not in known}
        for site in found.scans.values():
            if site.problem is None and site.constructor is not None:
                found.cells[site.cell_class] = _cell_sizes(classes[site.cell_class])
        return found

    def _add_scan(self, site: ScanSite, method: cst.FunctionDef) -> None:
        self.scans[site.call] = site
        if site.problem is not None:
            return
        if site.function is not None:
            statements = list(method.body.body)
            before = statements[: statements.index(site.function)] if site.function in statements else [site.function]
            site.first_once_moved = all(isinstance(s, cst.SimpleStatementLine) and s.body[0] in site.layers for s in before)
            self.step_functions[site.function] = site
            self.step_layers.update({layer: site for layer in site.layers})
        if site.constructor is not None:
            self.cell_constructors[site.constructor] = site
        if site.assignment is not None:
            self.cell_assignments[site.assignment] = site
        self.cell_uses.update({use: site for use in site.uses})

    def _add_stack(self, stack: LayerStack) -> None:
        self.stacks[stack.function] = stack
        if stack.problem is None:
            self.stack_calls.update({call: stack for call in stack.calls})


class _Reader:
    """Reads one `hk.scan` call or layer-stack function, with the facts needed to convert it or say why not."""

    def __init__(self, ctx: Context, classes: dict[str, cst.ClassDef]) -> None:
        self.ctx = ctx
        self.classes = classes

    def local_class(self, node: cst.BaseExpression) -> str | None:
        if isinstance(node, cst.Call) and isinstance(node.func, cst.Name) and node.func.value in self.classes:
            return node.func.value
        return None

    def scan(self, call: cst.Call, code: FunctionCode) -> ScanSite:
        site = ScanSite(call)
        try:
            bound = BoundCall.bind(call, SCAN_ARGS, "hk.scan").args
        except Unconvertible as reason:
            site.problem = str(reason)
            return site
        if not {"f", "init", "xs"} <= bound.keys():
            site.problem = "`hk.scan` is called without its f, init and xs spelled out"
            return site
        site.options = {name: bound[name] for name in SCAN_OPTIONS if name in bound}
        cell = bound["f"]
        if isinstance(cell, cst.Name) and any(d.name.value == cell.value for d, _ in code.defs):
            site.problem = self._step_function_problem(site, cell, code)
            return site
        if isinstance(cell, cst.Name):
            self._local_cell(site, cell, code)
        elif isinstance(cell, cst.Call) and self.local_class(cell) is not None:
            site.constructor = cell
        else:
            site.problem = SCAN_FUNCTION
        if site.problem is None and self.keeps_state(site.cell):
            site.problem = STATEFUL.format(what="scanned cell")
        if site.problem is None:
            site.random = self.draws_randomness(site.cell)
        return site

    def _local_cell(self, site: ScanSite, cell: cst.Name, code: FunctionCode) -> None:
        """`cell = Cell(...)` once, at the top of the method, and `cell` used only as scanned or `cell.method`."""
        name = cell.value
        assignments = [(a, top) for a, top in code.assigns if assigned_name(a) == name]
        constructor = assignments[0][0].value if len(assignments) == 1 and assignments[0][1] else None
        if not isinstance(constructor, cst.Call) or self.local_class(constructor) is None:
            site.problem = SCAN_FUNCTION
            return
        assignment = assignments[0][0]
        site.local, site.assignment, site.constructor = name, assignment, constructor
        site.uses = [a for a in code.attributes if m.matches(a.value, m.Name(name)) and a.attr.value != "__call__"]
        accounted = {assignment.targets[0].target, cell, *(a.value for a in site.uses)}
        if set(code.names.get(name, [])) != accounted:
            site.problem = (
                f"`{name}` is used other than by scanning it once and calling its other methods; "
                "a scanned Flax module runs the whole scan when called: scan it explicitly by hand"
            )

    def _step_function_problem(self, site: ScanSite, name: cst.Name, code: FunctionCode) -> str | None:
        """`def step(carry, x)` of the method, used only here, that calls layers the method built in locals
        (`proj = hk.Linear(h)`, used nowhere else) and no other module or Haiku API."""
        function, top = next((d, top) for d, top in code.defs if d.name.value == name.value)
        params = function.params
        if not top or function.decorators or code.names.get(name.value) != [name]:
            return "the scanned function must be an undecorated function of this method, defined at its top level and used only here"
        if len(params.params) != 2 or params.star_arg is not cst.MaybeSentinel.DEFAULT or params.kwonly_params or params.star_kwarg:
            return "the scanned function must take `(carry, x)`; convert it by hand"
        site.function = function
        targets = [a.targets[0].target for a, _ in code.assigns if a.value is site.call and len(a.targets) == 1]
        pair = targets[0].elements if targets and isinstance(targets[0], cst.Tuple) and len(targets[0].elements) == 2 else ()
        names = [e.value.value if isinstance(e.value, cst.Name) else None for e in pair]
        site.outputs = (names[0], names[1]) if names else (None, None)
        inner = FunctionCode.of(function)
        method_locals = {name for a, _ in code.assigns for t in a.targets for name in analysis.Names.of(t.target).used}
        for call, _ in inner.calls:
            if self.ctx.names.haiku_api(call.func) is not None or (isinstance(call.func, cst.Call) and self._is_module(call.func)):
                return "the scanned function builds layers or calls Haiku APIs itself; scan a module (`hk.scan(Cell(...), ...)`) or convert it by hand"
            if (dotted_name(call.func) or "").split(".")[0] == "self":
                return "the scanned function calls a method or submodule of `self`; convert it by hand"
            called = call.func.value if isinstance(call.func, cst.Name) else None
            if called is None or called not in method_locals:
                continue  # a library or module-level function
            assigns = [a for a, top in code.assigns if assigned_name(a) == called and top]
            layer = assigns[0].value if len(assigns) == 1 else None
            if not isinstance(layer, cst.Call) or not self._is_module(layer) or len(code.names[called]) != 1 + len(inner.names[called]):
                return f"the scanned function calls `{called}`: only layers built once in the method, used only in that function, convert"
            if self.keeps_state(layer):
                return STATEFUL.format(what="layer the scanned function calls")
            if self.draws_randomness(layer):
                return NNX_RANDOM_CELL
            if assigns[0] not in site.layers:
                site.layers.append(assigns[0])
        return None

    def stack(self, function: cst.FunctionDef, top_level: bool, code: FunctionCode, applied: cst.Call | None) -> LayerStack:
        stack = LayerStack(function, applied)
        stack.problem = self._stack_problem(stack, top_level, code)
        if stack.problem is None and self.keeps_state(stack.constructor):
            stack.problem = STATEFUL.format(what="stacked module")
        stack.random = stack.problem is None and self.draws_randomness(stack.constructor)
        return stack

    def _stack_problem(self, stack: LayerStack, top_level: bool, code: FunctionCode) -> str | None:
        function = stack.function
        if not top_level:
            return "the stacked function is defined inside a loop or condition; define it at the top of the method"
        if len(function.decorators) != (0 if stack.applied else 1):
            return "the stacked function has other decorators; apply them inside the Flax scan by hand"
        parts = _applied_parts(stack.applied, self.ctx) if stack.applied is not None else None
        decorator = parts[0] if parts else function.decorators[0].decorator
        assert isinstance(decorator, cst.Call)  # `hk.layer_stack(...)`, as the stack was found
        try:
            bound = BoundCall.bind(decorator, LAYER_STACK_ARGS, "hk.layer_stack").args
        except Unconvertible as reason:
            return str(reason)
        unsupported = [n for n in LAYER_STACK_UNSUPPORTED if n in bound and not m.matches(bound[n], m.Name("False") | m.Name("None"))]
        if unsupported or "num_layers" not in bound:
            return f"`hk.layer_stack` with {', '.join(unsupported) or 'no num_layers'} has no Flax counterpart here; write the scan by hand"
        per_layer = bound.get("with_per_layer_inputs", cst.Name("False"))
        name = bound.get("name")
        if not m.matches(per_layer, m.Name("True") | m.Name("False")) or not (name is None or isinstance(name, cst.SimpleString)):
            return "`with_per_layer_inputs` and `name` must be literals to convert the layer stack"
        stack.num_layers, stack.unroll = bound["num_layers"], bound.get("unroll")
        stack.per_layer_inputs = m.matches(per_layer, m.Name("True"))
        value = name.evaluated_value if isinstance(name, cst.SimpleString) else None
        stack.name = value if isinstance(value, str) else None
        return self._stacked_function_problem(stack) or self._stack_calls_problem(stack, code)

    def _stacked_function_problem(self, stack: LayerStack) -> str | None:
        function = stack.function
        params = function.params
        if params.star_arg is not cst.MaybeSentinel.DEFAULT or params.kwonly_params or params.star_kwarg or params.posonly_params:
            return "the stacked function takes `*`, keyword-only or positional-only parameters; convert it by hand"
        if any(p.default is not None for p in params.params) or not params.params or (not stack.per_layer_inputs and len(params.params) != 1):
            return "the stacked function must take the carry (and, with per-layer inputs, those inputs) without defaults"
        inner = FunctionCode.of(function)
        constructions = [(c, top) for c, top in inner.calls if isinstance(c.func, cst.Call) and self._is_module(c.func)]
        others = [c for c, _ in inner.calls if self.ctx.names.haiku_api(c.func) is not None and not any(c is k.func for k, _ in constructions)]
        if len(constructions) != 1 or others or inner.defs:
            return "the stacked function must build exactly one module and use no other Haiku API; stack the layers by hand"
        construction, top = constructions[0]
        if not top:
            return "the stacked module is built inside a loop or condition; stack the layers by hand"
        own = {p.name.value for p in params.params} | {assigned_name(a) for a, _ in inner.assigns}
        if analysis.Names.of(construction.func).used & own:
            return "the stacked module's constructor arguments depend on the stacked function's inputs; stack by hand"
        if any(r.value is None for r in inner.returns):
            return "the stacked function has a bare `return`"
        stack.construction = construction
        return None

    def _stack_calls_problem(self, stack: LayerStack, code: FunctionCode) -> str | None:
        name = stack.function.name.value
        if stack.applied is not None:
            calls = [stack.applied] if (stack.applied, True) in code.calls else []
            references: set[cst.CSTNode] = {parts[1] for c in calls if (parts := _applied_parts(c, self.ctx))}
        else:
            calls = [c for c, top in code.calls if m.matches(c.func, m.Name(name)) and top]
            references = {c.func for c in calls}
        expected = len(stack.function.params.params) if stack.per_layer_inputs else 1
        if not calls or set(code.names.get(name, [])) != references:
            return f"`{name}` is used other than by calling it at the top level of the method; call it there, or convert by hand"
        if any(len(c.args) != expected or any(a.keyword is not None or a.star for a in c.args) for c in calls):
            return f"`{name}` must be called with {expected} positional argument(s)"
        stack.calls = calls
        return None

    def _is_module(self, call: cst.Call) -> bool:
        return self.local_class(call) is not None or _construct(self.ctx, call) is not None

    def draws_randomness(self, constructor: cst.Call) -> bool:
        """Does the module built by `constructor` (or one it builds) draw random numbers?"""
        return self._uses(constructor, lambda call: self.ctx.names.haiku_api(call.func) in RANDOM_APIS, set())

    def keeps_state(self, constructor: cst.Call) -> bool:
        """Does the module built by `constructor` (or one it builds) keep state, such as BatchNorm statistics?"""

        def stateful(call: cst.Call) -> bool:
            construct = _construct(self.ctx, call)
            return self.ctx.names.haiku_api(call.func) in STATE_APIS or bool(construct is not None and construct.state)

        return self._uses(constructor, stateful, set())

    def _uses(self, call: cst.Call, found: Callable[[cst.Call], bool], seen: set[str]) -> bool:
        """`found(call)`, or, for a module class of this file, a call in it (or in a class it builds) that is."""
        if found(call):
            return True
        local = self.local_class(call)
        if local is None or local in seen:
            return False
        seen.add(local)
        return any(self._uses(inner, found, seen) for inner in _calls_in(self.classes[local]))


def _construct(ctx: Context, call: cst.Call) -> Construct | None:
    """The rule-table entry of a Haiku layer constructor (`hk.Linear(...)`), or None."""
    api = ctx.names.haiku_api(call.func)
    return ctx.tables.get(api) if api is not None else None


def _is_layer_stack(node: cst.BaseExpression, ctx: Context) -> bool:
    return isinstance(node, cst.Call) and ctx.names.haiku_api(node.func) in LAYER_STACK_APIS


def _applied_parts(call: cst.Call, ctx: Context) -> tuple[cst.Call, cst.Name] | None:
    """(`hk.layer_stack(n)`, `f`) of `hk.layer_stack(n)(f)(...)`, or None."""
    transform = call.func
    if not isinstance(transform, cst.Call) or len(transform.args) != 1:
        return None
    stack, function = transform.func, transform.args[0]
    if isinstance(stack, cst.Call) and _is_layer_stack(stack, ctx) and isinstance(function.value, cst.Name) and function.keyword is None:
        return stack, function.value
    return None


def _applied_stacks(code: FunctionCode, ctx: Context) -> dict[cst.FunctionDef, cst.Call]:
    """The method's functions stacked by applying the transform (`hk.layer_stack(n)(f)(x)`), by function."""
    defs = {d.name.value: d for d, _ in code.defs}
    found: dict[cst.FunctionDef, cst.Call] = {}
    for call, _ in code.calls:
        parts = _applied_parts(call, ctx)
        if parts is not None and parts[1].value in defs:
            found.setdefault(defs[parts[1].value], call)
    return found


def assigned_name(assign: cst.Assign) -> str | None:
    if len(assign.targets) == 1 and isinstance(assign.targets[0].target, cst.Name):
        return assign.targets[0].target.value
    return None


def _unused_layer_stack(assign: cst.Assign, code: FunctionCode, ctx: Context) -> bool:
    """`stack = hk.layer_stack(n)` whose result is never read: it builds nothing."""
    name = assigned_name(assign)
    return name is not None and _is_layer_stack(assign.value, ctx) and len(code.names.get(name, [])) == 1


def _cell_sizes(classdef: cst.ClassDef) -> CellSizes:
    """Parameter names of the cell's `__call__(carry, x)`, and the carry's size from `initial_state`."""
    call = analysis.find_method(classdef, "__call__")
    params = [p.name.value for p in call.params.params[1:3]] if call is not None else []
    carry, step_input = (params + ["", ""])[:2]
    return CellSizes(carry, step_input, _initial_state_size(analysis.find_method(classdef, CELL_STATE_METHOD)))


def _filled_size(value: cst.BaseExpression) -> cst.BaseExpression | None:
    """`4` for `jnp.zeros((batch, 4))`: the last axis of an array filled from a literal shape."""
    if not isinstance(value, cst.Call) or (dotted_name(value.func) or "").rsplit(".", 1)[-1] not in STATE_CONSTRUCTORS or not value.args:
        return None
    shape = value.args[0].value
    if not isinstance(shape, cst.Tuple | cst.List) or not shape.elements:
        return None
    return shape.elements[-1].value


def _initial_state_size(method: cst.FunctionDef | None) -> cst.BaseExpression | None:
    """`self.hidden_size` for `return jnp.zeros((batch_size, self.hidden_size))`."""
    body = method.body.body if method is not None and isinstance(method.body, cst.IndentedBlock) else ()
    statements = [s for s in body if not analysis.is_docstring(s)]
    line = statements[0] if len(statements) == 1 else None
    returned = line.body[0] if isinstance(line, cst.SimpleStatementLine) and len(line.body) == 1 else None
    size = _filled_size(returned.value) if isinstance(returned, cst.Return) and returned.value is not None else None
    return size if size is not None and analysis.Names.of(size).used <= {"self"} else None


class FunctionCode(Walker):
    """A function's own calls, assignments, nested functions and returns (not those of nested functions),
    each with whether it sits at the function's top level (outside loops and conditions); and every
    variable Name in it, nested functions included."""

    def __init__(self) -> None:
        self.calls: list[tuple[cst.Call, bool]] = []
        self.assigns: list[tuple[cst.Assign, bool]] = []
        self.defs: list[tuple[cst.FunctionDef, bool]] = []
        self.returns: list[cst.Return] = []
        self.attributes: list[cst.Attribute] = []
        self.names: dict[str, list[cst.Name]] = {}
        self._blocks = 0  # compound statements around the current node
        self._nested = 0  # nested functions around the current node

    @classmethod
    def of(cls, node: cst.FunctionDef) -> FunctionCode:
        code = cls()
        code.walk(node.body)
        return code

    @property
    def _own(self) -> bool:
        return self._nested == 0

    def on_visit(self, node: cst.CSTNode) -> bool:
        if isinstance(node, cst.BaseCompoundStatement) and not isinstance(node, cst.FunctionDef):
            self._blocks += 1
        return super().on_visit(node)

    def on_leave(self, original_node: cst.CSTNode) -> None:
        if isinstance(original_node, cst.BaseCompoundStatement) and not isinstance(original_node, cst.FunctionDef):
            self._blocks -= 1
        super().on_leave(original_node)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        if self._own:
            self.defs.append((node, self._blocks == 0))
        self._nested += 1
        for part in (*node.decorators, node.params, node.body):
            self.walk(part)
        self._nested -= 1
        return False  # its own name is a definition, not a use

    def visit_Call(self, node: cst.Call) -> None:
        if self._own:
            self.calls.append((node, self._blocks == 0))

    def visit_Assign(self, node: cst.Assign) -> None:
        if self._own:
            self.assigns.append((node, self._blocks == 0))

    def visit_Return(self, node: cst.Return) -> None:
        if self._own:
            self.returns.append(node)

    def visit_Name(self, node: cst.Name) -> None:
        self.names.setdefault(node.value, []).append(node)

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        if isinstance(node.value, cst.Name):
            self.attributes.append(node)
        self.walk(node.value)  # the attribute name is not a variable
        return False

    def visit_Arg(self, node: cst.Arg) -> bool:
        self.walk(node.value)  # nor is a keyword
        return False


class _Calls(Walker):
    def __init__(self) -> None:
        self.found: list[cst.Call] = []

    def visit_Call(self, node: cst.Call) -> None:
        self.found.append(node)


def _calls_in(node: cst.CSTNode) -> list[cst.Call]:
    collector = _Calls()
    collector.walk(node)
    return collector.found


class _Functions(Walker):
    def __init__(self) -> None:
        self.found: list[cst.FunctionDef] = []

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.found.append(node)


def all_functions(module: cst.CSTNode) -> list[cst.FunctionDef]:
    collector = _Functions()
    collector.walk(module)
    return collector.found


# -- writing the Flax code -----------------------------------------------------------------------------
class _ReturnWithNone(Transformer):
    """`return x` -> `return x, None` in one function (not in functions nested in it): scan's `(carry, ys)`."""

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        return False

    def visit_Lambda(self, node: cst.Lambda) -> bool:
        return False

    def leave_Return(self, original: cst.Return, updated: cst.Return) -> cst.Return:
        if updated.value is None:  # (a stacked function has none: it returns the carry)
            return updated
        pair = cst.Tuple([cst.Element(updated.value), cst.Element(cst.Name("None"))], lpar=[], rpar=[])
        return updated.with_changes(value=pair)


def _dict(items: Mapping[str, cst.BaseExpression]) -> cst.Dict:
    return cst.Dict([cst.DictElement(cst.SimpleString(f"'{k}'"), v) for k, v in items.items()])


def _split_rngs(params: bool, random: bool) -> cst.Dict:
    """Linen's `split_rngs`: a stream split per step/layer gets a fresh key there, as Haiku's keys do."""
    streams = {"params": cst.Name(str(params))}
    if random:
        streams["dropout"] = cst.Name("True")
    return _dict(streams)


def _options(values: dict[str, cst.BaseExpression | None]) -> list[cst.Arg]:
    return [keyword_arg(name, value) for name, value in values.items() if value is not None]


def _core_scan_call(updated: cst.Call) -> tuple[cst.Call, dict[str, cst.BaseExpression]]:
    """`hk.scan`'s f, init and xs as its first three positional arguments (spelling kept), and all values."""
    bound = BoundCall.bind(updated, SCAN_ARGS, "hk.scan").args
    core = [a for a in updated.args if any(a.value is bound[n] for n in ("f", "init", "xs"))]
    ordered = sorted(core, key=lambda a: [bound["f"], bound["init"], bound["xs"]].index(a.value))
    args = [a.with_changes(keyword=None, equal=cst.MaybeSentinel.DEFAULT) for a in ordered]
    last = updated.args[-1]  # the options may have come last: end the way the call ended
    args[-1] = args[-1].with_changes(comma=last.comma, whitespace_after_arg=last.whitespace_after_arg)
    return updated.with_changes(args=args), bound


def _layer_param(stack: LayerStack) -> str:
    """The stacked function's new first parameter: the module, named after its class (`block`)."""
    func = stack.constructor.func
    base = analysis.snake_case((dotted_name(func) or "layer").rsplit(".", 1)[-1])
    taken = analysis.Names.of(stack.function).used
    return base if base not in taken else f"{base}_layer"


def _read_lifted(module: cst.Module, ctx: Context) -> LiftedSites:
    if not ctx.mentions("scan", "layer_stack"):
        return LiftedSites()
    return LiftedSites.read(module, ctx, analysis.haiku_module_classes(module, ctx.names))


LIFTED_SITES = FileFact(_read_lifted)  # the file's scans and layer stacks, read before the rewrite


# -- what both targets share: stacked functions are converted whole, statements made unnecessary go ------
def _stack_to_convert(room: MethodRoom, function: cst.FunctionDef) -> LayerStack | None:
    """The layer stack `function` is, to convert whole (None where it is not one, or stays with a TODO)."""
    stack = room.ctx.fact(LIFTED_SITES).stacks.get(function)
    if stack is not None and stack.problem is not None:
        room.todo(function, RULE_LAYER_STACK, stack.problem)
        return None
    return stack


def skip_stacked_function(room: MethodRoom, node: cst.FunctionDef) -> bool | None:
    """A stacked function is converted whole when it is left: nothing in it is converted on the way."""
    stack = room.ctx.fact(LIFTED_SITES).stacks.get(node)
    return False if stack is not None and stack.problem is None else None


def _stacked_function(
    room: MethodRoom, original: cst.FunctionDef, result: LeaveResult, stack: LayerStack, layer_args: list[cst.Arg], decorator: cst.BaseExpression
) -> cst.FunctionDef | None:
    """The function scanned over the stack: the module is its first argument, called where it was built."""
    layer = _layer_param(stack)
    if layer_args:  # an argument the layer no longer takes may have been last
        layer_args[-1] = layer_args[-1].with_changes(comma=stack.built.args[-1].comma)
    body = stack.function.body.deep_replace(stack.built, cst.Call(cst.Name(layer), layer_args))
    assert isinstance(body, cst.BaseSuite)  # the construction was a call inside it
    params = stack.function.params.with_changes(params=[cst.Param(cst.Name(layer)), *stack.function.params.params])
    room.converted(original, RULE_LAYER_STACK, f"hk.layer_stack({stack.function.name.value}) -> scan over stacked layers")
    if not isinstance(result, cst.FunctionDef):
        return None
    return stack.function.with_changes(decorators=[cst.Decorator(decorator)], params=params, body=body, leading_lines=result.leading_lines)


def drop_unused_stack(room: MethodRoom, original: cst.SimpleStatementLine, result: LeaveResult) -> cst.RemovalSentinel | None:
    """`stack = hk.layer_stack(n)` never applied to a function builds nothing: it goes."""
    if len(original.body) != 1 or original.body[0] not in room.ctx.fact(LIFTED_SITES).unused_stacks:
        return None
    room.converted(original, RULE_LAYER_STACK, "an hk.layer_stack never applied to a function builds nothing: dropped")
    return room.remove_statement(original)


@on_call(*LAYER_STACK_APIS, rule=RULE_LAYER_STACK)
def layer_stack_elsewhere(room: MethodRoom, call: CallSite) -> cst.BaseExpression | None:
    """`hk.layer_stack(n)` other than as the decorator of a function of the method: a TODO."""
    if call.original not in room.ctx.fact(LIFTED_SITES).other_stacks:
        return None
    room.todo(call.original, RULE_LAYER_STACK, LAYER_STACK_ELSEWHERE)
    return call.updated


for _nodes in (LINEN_NODES, NNX_NODES):
    _nodes.on_visit(cst.FunctionDef, rule=RULE_LAYER_STACK)(skip_stacked_function)
    _nodes.on_leave(cst.SimpleStatementLine, rule=RULE_LAYER_STACK, after=True)(drop_unused_stack)


# -- Linen: `nn.scan` over the cell class (parameters broadcast) or over the stacked layer (axis 0) --------
@LINEN_NODES.on_leave(cst.Call, rule=RULE_SCAN, after=True)
def linen_scanned_cell(room: LinenMethod, original: cst.Call, result: LeaveResult) -> cst.Call | None:
    """`Cell(h)` -> `nn.scan(Cell, variable_broadcast='params', split_rngs={'params': False})(h)`."""
    site = room.ctx.fact(LIFTED_SITES).cell_constructors.get(original)
    if site is None or not isinstance(result, cst.Call):
        return None
    room.ctx.need_target_import()
    room.mark_builds_layer()
    lifted = cst.Call(attr(room.ctx.ns, "scan"), [cst.Arg(result.func), *_broadcast_params(site)])
    return result.with_changes(func=lifted)


@LINEN_CALLS.on("scan", rule=RULE_SCAN)
def linen_scan(room: LinenMethod, call: CallSite) -> cst.BaseExpression | None:
    """`hk.scan(cell, carry, xs)` -> `cell(carry, xs)`: the cell is the `nn.scan`-lifted module."""
    site = room.ctx.fact(LIFTED_SITES).scans.get(call.original)
    if site is None:
        return None
    if site.problem is not None:
        room.todo(site.call, RULE_SCAN, site.problem)
        return call.updated
    core, bound = _core_scan_call(call.updated)
    if site.function is not None:
        room.ctx.need_target_import()
        room.mark_builds_layer()
        room.converted(site.call, RULE_SCAN, f"hk.scan over {site.function.name.value} -> nn.scan over it, its layers built inside")
        scan = cst.Call(attr(room.ctx.ns, "scan"), [cst.Arg(bound["f"]), *_broadcast_params(site)])
        return cst.Call(scan, respell_args(core, 1, [cst.Name("self")], []), whitespace_before_args=call.updated.whitespace_before_args)
    room.converted(site.call, RULE_SCAN, f"hk.scan over {site.cell_class} -> calling the nn.scan-lifted module")
    return cst.Call(bound["f"], respell_args(core, 1, [], []), whitespace_before_args=call.updated.whitespace_before_args)


class _StepLayers:
    """The converted `proj = nn.Dense(h)` lines a scanned function calls, moved into it, by scan site."""

    def __init__(self) -> None:
        self.lines: dict[int, list[cst.SimpleStatementLine]] = {}


@LINEN_NODES.on_leave(cst.SimpleStatementLine, rule=RULE_SCAN, after=True)
def linen_move_step_layer(room: LinenMethod, original: cst.SimpleStatementLine, result: LeaveResult) -> cst.RemovalSentinel | None:
    """`proj = nn.Dense(h)` goes into the scanned function that calls it: a Linen layer built outside a
    lifted transform and called inside it would leak the transform's tracers."""
    site = room.ctx.fact(LIFTED_SITES).step_layers.get(original.body[0]) if len(original.body) == 1 else None
    if site is None or not isinstance(result, cst.SimpleStatementLine):
        return None
    room.family(_StepLayers).lines.setdefault(id(site), []).append(_named_layer(result).with_changes(leading_lines=[]))
    return room.remove_statement(original)


def _named_layer(line: cst.SimpleStatementLine) -> cst.SimpleStatementLine:
    """`proj = nn.Dense(h)` -> `proj = nn.Dense(h, name="proj")`: the scanned module is a clone of `self`
    whose automatic names restart, and would collide with those of another compact method."""
    assign = line.body[0]
    if not isinstance(assign, cst.Assign) or not isinstance(assign.value, cst.Call) or (local := assigned_name(assign)) is None:
        return line
    layer = assign.value
    if any(a.keyword is not None and a.keyword.value == "name" for a in layer.args):
        return line
    named = layer.with_changes(args=[*layer.args, keyword_arg("name", cst.SimpleString(f'"{local}"'))])
    return line.with_changes(body=[assign.with_changes(value=named)])


@LINEN_NODES.on_leave(cst.FunctionDef, rule=RULE_SCAN, after=True)
def linen_step_function(room: LinenMethod, original: cst.FunctionDef, result: LeaveResult) -> cst.FunctionDef | None:
    """`def step(carry, x)` -> `def step(mdl, carry, x)`, the layers it calls built at its top: `nn.scan`
    calls it with the module, and the layers are the lifted module's (broadcast over the steps)."""
    site = room.ctx.fact(LIFTED_SITES).step_functions.get(original)
    if site is None or not isinstance(result, cst.FunctionDef) or not isinstance(result.body, cst.IndentedBlock):
        return None
    lines = room.family(_StepLayers).lines.get(id(site), [])
    taken = analysis.Names.of(original).used
    module = next(n for n in ("mdl", "module", "scanned") if n not in taken)
    params = result.params.with_changes(params=[cst.Param(cst.Name(module)), *result.params.params])
    function = result.with_changes(params=params, body=result.body.with_changes(body=[*lines, *result.body.body]))
    return function.with_changes(leading_lines=[]) if site.first_once_moved else function


def _broadcast_params(site: ScanSite) -> list[cst.Arg]:
    """One set of parameters for every step (and a fresh `'dropout'` key per step where the cell draws one)."""
    return [
        keyword_arg("variable_broadcast", cst.SimpleString("'params'")),
        keyword_arg("split_rngs", _split_rngs(params=False, random=site.random)),
        *_options(dict(site.options)),
    ]


@LINEN_NODES.on_leave(cst.FunctionDef, rule=RULE_LAYER_STACK, after=True)
def linen_stacked_function(room: LinenMethod, original: cst.FunctionDef, result: LeaveResult) -> cst.FunctionDef | None:
    """`@hk.layer_stack(n) def f(x)` -> `@functools.partial(nn.scan, variable_axes={'params': 0},
    split_rngs={'params': True}, length=n) def f(block, x)`, returning scan's `(carry, None)`."""
    stack = _stack_to_convert(room, original)
    if stack is None:
        return None
    construct = _construct(room.ctx, stack.constructor)
    args = convert_layer_call_args(stack.built, construct, "linen") if construct is not None else list(stack.built.args)
    room.ctx.needed_imports.add(("functools", None, None))
    decorator = cst.Call(
        attr("functools", "partial"),
        [
            cst.Arg(attr(room.ctx.ns, "scan")),
            keyword_arg("variable_axes", _dict({"params": cst.Integer("0")})),
            keyword_arg("split_rngs", _split_rngs(params=True, random=stack.random)),
            *_options({"length": stack.num_layers, "unroll": stack.unroll}),
        ],
    )
    function = _stacked_function(room, original, result, stack, args, decorator)
    if function is None or stack.per_layer_inputs:  # the latter already returns `(carry, per_layer_outputs)`
        return function
    return function.with_changes(body=function.body.visit(_ReturnWithNone()))


@LINEN_NODES.on_leave(cst.Call, rule=RULE_LAYER_STACK, after=True)
def linen_stack_call(room: LinenMethod, original: cst.Call, result: LeaveResult) -> cst.BaseExpression | None:
    """`stack_block(x)` -> `stack_block(Block(f), x)[0]`: the layer is built here, scanned in the function."""
    stack = room.ctx.fact(LIFTED_SITES).stack_calls.get(original)
    if stack is None or not isinstance(result, cst.Call):
        return None
    room.ctx.need_target_import()
    room.mark_builds_layer()
    layer = stack.constructor
    construct = _construct(room.ctx, layer)
    if construct is not None:
        layer = convert_construct_call(layer, construct, "linen", room.ctx.ns, ctx=room.ctx)
    if stack.name is not None and not any(a.keyword is not None and a.keyword.value == "name" for a in layer.args):
        layer = layer.with_changes(args=[*layer.args, keyword_arg("name", cst.SimpleString(repr(stack.name)))])
    call = result.with_changes(func=cst.Name(stack.function.name.value), args=respell_args(result, 0, [layer], []))
    if stack.per_layer_inputs:
        return call
    return cst.Subscript(call, [cst.SubscriptElement(cst.Index(cst.Integer("0")))])


# -- NNX: scanned cells and layer stacks are built in `__init__` -------------------------------------------
class _Cells:
    """The attribute each cell a method stores in a local (`cell = Cell(h)`) is built as, by scan site;
    None: it is left as it is."""

    def __init__(self) -> None:
        self.attributes: dict[int, str | None] = {}


def seed_cell_sizes(room: NnxMethod, node: cst.BaseSuite) -> None:
    """In a scanned cell's `__call__(carry, x)` the module's input is `x`, not the first argument the
    engine took it for; the carry has the size `initial_state` gives it."""
    if node is not room.method.body or room.method.name.value != "__call__":
        return
    cell = room.ctx.fact(LIFTED_SITES).cells.get(room.conversion.classdef.name.value)
    if cell is None or not cell.step_input:
        return
    carry = room.size_of(cst.Name(cell.carry))
    room.set_variable_size(cell.step_input, carry)
    room.set_variable_size(cell.carry, cell.carry_size)


for _suite in (cst.IndentedBlock, cst.SimpleStatementSuite):
    NNX_NODES.on_visit(_suite, rule=RULE_SCAN)(seed_cell_sizes)


@NNX_NODES.on_leave(cst.Call, rule=RULE_SCAN, after=True)
def nnx_name_cell(room: NnxMethod, original: cst.Call, result: LeaveResult) -> None:
    """`cell = Cell(h)` will be `self.cell`, built in `__init__` once the scan tells its input size."""
    site = room.ctx.fact(LIFTED_SITES).cell_constructors.get(original)
    if site is None or site.local is None:
        return
    cells = room.family(_Cells).attributes
    hoistable = not site.random and room.can_hoist(_constructor_args(original), original)
    cells[id(site)] = room.new_attribute(site.local) if hoistable else None


@NNX_NODES.on_leave(cst.SimpleStatementLine, rule=RULE_SCAN, after=True)
def nnx_drop_cell_line(room: NnxMethod, original: cst.SimpleStatementLine, result: LeaveResult) -> cst.RemovalSentinel | None:
    """`cell = Cell(h)` goes: the cell is built in `__init__` now."""
    site = room.ctx.fact(LIFTED_SITES).cell_assignments.get(original.body[0]) if len(original.body) == 1 else None
    attribute = room.family(_Cells).attributes.get(id(site)) if site is not None else None
    if site is None or attribute is None:
        return None
    room.converted(original, RULE_SCAN, f"`{site.local}` is built in __init__ as self.{attribute}")
    return room.remove_statement(original)


@NNX_NODES.on_leave(cst.Attribute, rule=RULE_SCAN)
def nnx_cell_use(room: NnxMethod, original: cst.Attribute, updated: cst.Attribute) -> cst.Attribute | None:
    """`cell.initial_state` -> `self.cell.initial_state`."""
    site = room.ctx.fact(LIFTED_SITES).cell_uses.get(original)
    attribute = room.family(_Cells).attributes.get(id(site)) if site is not None else None
    return updated.with_changes(value=attr("self", attribute)) if attribute is not None else None


@NNX_CALLS.on("scan", rule=RULE_SCAN)
def nnx_scan(room: NnxMethod, call: CallSite) -> cst.BaseExpression | None:
    """`hk.scan(cell, carry, xs)` -> `nnx.scan(lambda carry, cell, x: cell(carry, x), ...)(carry, self.cell, xs)`."""
    site = room.ctx.fact(LIFTED_SITES).scans.get(call.original)
    if site is None:
        return None
    updated = call.updated
    if site.problem is not None or site.random:
        room.todo(site.call, RULE_SCAN, site.problem or NNX_RANDOM_CELL)
        return updated
    if site.function is not None:
        core, bound = _core_scan_call(updated)
        room.ctx.need_target_import()
        room.converted(site.call, RULE_SCAN, f"hk.scan over {site.function.name.value} -> nnx.scan, its layers built in __init__")
        scan = cst.Call(attr(room.ctx.ns, "scan"), [cst.Arg(bound["f"]), *_step_axes(room.ctx.ns), *_options(dict(site.options))])
        sizes = room.family(_StepOutputs).sizes.get(id(site), (None, None))
        for name, size in zip(site.outputs, sizes, strict=True):  # the final carry; the stacked `y`s keep their size
            if name is not None:
                room.set_size_after_statement(name, size)
        return cst.Call(scan, respell_args(core, 1, [], []), whitespace_before_args=updated.whitespace_before_args)
    constructor = site.cell
    if site.local is not None:
        attribute = room.family(_Cells).attributes.get(id(site))
        if attribute is None:
            room.todo(site.call, RULE_SCAN, f"`{site.local}` could not be built in `__init__` (see above); scan it by hand")
            return updated
    elif room.in_nested_block(constructor, f"{site.cell_class}(...)") or not room.can_hoist(_constructor_args(constructor), constructor):
        return updated
    else:
        attribute = room.new_attribute(analysis.snake_case(site.cell_class), analysis.explicit_name(constructor))
    core, bound = _core_scan_call(updated)
    xs = room.set_size(bound["xs"], _step_input_size(room, bound["xs"]))
    built = room.conversion.build(constructor, attribute, [cst.Arg(xs)], room, constructor)
    if built is None:  # (a module class of this file always builds, maybe with a TODO)
        return updated
    room.add_to_init(attribute, built[0], constructor)
    ns = room.ctx.ns
    scan = cst.Call(
        attr(ns, "scan"),
        [
            cst.Arg(cst.parse_expression("lambda carry, cell, x: cell(carry, x)")),
            *_step_axes(ns, cell=True),
            *_options(dict(site.options)),
        ],
    )
    room.converted(site.call, RULE_SCAN, f"hk.scan over {site.cell_class} -> nnx.scan over self.{attribute}")
    args = respell_args(core, 2, [bound["init"], attr("self", attribute)], [])
    return cst.Call(scan, args, whitespace_before_args=updated.whitespace_before_args)


def _step_axes(ns: str, cell: bool = False) -> list[cst.Arg]:
    """`nnx.scan`'s axes for `step(carry, x) -> (carry, y)`; with `cell`, the module passed unscanned between them."""
    between = " None," if cell else ""
    return [
        keyword_arg("in_axes", cst.parse_expression(f"({ns}.Carry,{between} 0)")),
        keyword_arg("out_axes", cst.parse_expression(f"({ns}.Carry, 0)")),
    ]


@NNX_NODES.on_visit(cst.FunctionDef, rule=RULE_SCAN)
def nnx_enter_step_function(room: NnxMethod, node: cst.FunctionDef) -> None:
    """In a scanned `step(carry, x)` the carry has the size of scan's `init`, `x` that of one step of `xs`
    (the layers it calls are built in `__init__` with those input sizes)."""
    site = room.ctx.fact(LIFTED_SITES).step_functions.get(node)
    if site is None:
        return
    bound = BoundCall.bind(site.call, SCAN_ARGS, "hk.scan").args
    filled = _filled_size(bound["init"])
    carry = room.size_of(bound["init"]) or (filled if filled is not None and analysis.Names.of(filled).used <= {"self"} else None)
    sizes = [carry, _step_input_size(room, bound["xs"])]
    room.family(_StepOutputs).sizes[id(site)] = (carry, None)
    room.enter_function()
    for param, size in zip(node.params.params, sizes, strict=True):
        room.set_variable_size(param.name.value, size)


class _StepOutputs:
    """The sizes of the carry and of what each scanned function returns per step (`y`), by scan site."""

    def __init__(self) -> None:
        self.sizes: dict[int, tuple[cst.BaseExpression | None, cst.BaseExpression | None]] = {}


@NNX_NODES.on_leave(cst.FunctionDef, rule=RULE_SCAN)
def nnx_leave_step_function(room: NnxMethod, original: cst.FunctionDef, updated: cst.FunctionDef) -> None:
    """Back to the method's sizes, keeping the size of the step's `y` for the scan's stacked output."""
    site = room.ctx.fact(LIFTED_SITES).step_functions.get(original)
    if site is None:
        return
    returned = [r.value for r in FunctionCode.of(updated).returns]
    pairs = [r.elements[1].value for r in returned if isinstance(r, cst.Tuple) and len(r.elements) == 2]
    sizes = {code(size) if (size := room.size_of(y)) is not None else None: size for y in pairs}
    outputs = room.family(_StepOutputs).sizes
    ys = next(iter(sizes.values())) if len(sizes) == 1 and len(pairs) == len(returned) else None
    outputs[id(site)] = (outputs[id(site)][0], ys)
    room.leave_function()


def _step_input_size(room: NnxMethod, xs: cst.BaseExpression) -> cst.BaseExpression | None:
    """The feature size of one step of `xs`: its last axis, also after swapping two leading axes."""
    if isinstance(xs, cst.Call) and (dotted_name(xs.func) or "").rsplit(".", 1)[-1] == "swapaxes" and len(xs.args) == 3:
        if all(isinstance(a.value, cst.Integer) and a.keyword is None for a in xs.args[1:]):
            return room.size_of(xs.args[0].value)
    return room.size_of(xs)


@NNX_NODES.on_leave(cst.FunctionDef, rule=RULE_LAYER_STACK, after=True)
def nnx_stacked_function(room: NnxMethod, original: cst.FunctionDef, result: LeaveResult) -> cst.FunctionDef | None:
    """`@hk.layer_stack(n) def f(x)` -> `@nnx.scan(in_axes=(0, nnx.Carry), out_axes=nnx.Carry) def f(block, x)`
    (`(nnx.Carry, 0)` out with per-layer outputs)."""
    stack = _stack_to_convert(room, original)
    if stack is None:
        return None
    args = room.conversion.call_args_for(stack.constructor, list(stack.built.args), room, stack.built)
    ns = room.ctx.ns
    per_layer = len(stack.function.params.params) - 1 if stack.per_layer_inputs else 0
    in_axes = cst.parse_expression(f"(0, {ns}.Carry{', 0' * per_layer})")
    out_axes = cst.parse_expression(f"({ns}.Carry, 0)" if stack.per_layer_inputs else f"{ns}.Carry")
    decorator = cst.Call(attr(ns, "scan"), [keyword_arg("in_axes", in_axes), keyword_arg("out_axes", out_axes), *_options({"unroll": stack.unroll})])
    return _stacked_function(room, original, result, stack, args if args is not None else list(stack.built.args), decorator)


@NNX_NODES.on_leave(cst.Call, rule=RULE_LAYER_STACK, after=True)
def nnx_stack_call(room: NnxMethod, original: cst.Call, result: LeaveResult) -> cst.BaseExpression | None:
    """`stack_block(x)` -> `stack_block(self.stack_block, x)`; `__init__` builds the stack with `nnx.vmap`."""
    stack = room.ctx.fact(LIFTED_SITES).stack_calls.get(original)
    if stack is None or not isinstance(result, cst.Call):
        return None
    constructor, layers = stack.constructor, stack.layers
    label = f"hk.layer_stack({stack.function.name.value})"
    if room.in_nested_block(original, label) or not room.can_hoist([layers, *_constructor_args(constructor)], original):
        return result
    attribute = room.new_attribute(stack.function.name.value, stack.name)
    carry = result.args[0]
    built = room.conversion.build(constructor, attribute, [carry], room, original)
    if built is None:
        return result
    layer = built[0]
    if not any(a.keyword is not None and a.keyword.value == "rngs" for a in getattr(layer, "args", ())):
        room.todo(original, RULE_LAYER_STACK, f"the stacked `{dotted_name(constructor.func)}` takes no rngs, so it has nothing to stack; build it by hand")
        return result
    factory = cst.Call(attr(room.ctx.ns, "vmap"), [cst.Arg(cst.Lambda(cst.Parameters([cst.Param(cst.Name("rngs"))]), layer))])
    split = cst.Call(attr("rngs", "split"), [cst.Arg(layers)])
    room.add_to_init(attribute, cst.Call(factory, [cst.Arg(split)]), original, needs_rngs=True)
    room.converted(original, RULE_LAYER_STACK, f"{label}: self.{attribute} built in __init__ with nnx.vmap")
    function = cst.Name(stack.function.name.value)  # also where the stack was applied: `hk.layer_stack(n)(f)(x)`
    converted = result.with_changes(func=function, args=respell_args(result, 0, [attr("self", attribute)], []))
    return room.set_size(converted, None if stack.per_layer_inputs else room.size_of(carry.value))


def _constructor_args(constructor: cst.Call) -> list[cst.BaseExpression]:
    return [a.value for a in constructor.args if not (a.keyword is not None and a.keyword.value == "name")]
