"""Functions of the file that build layers at each call, called from modules (NNX).

What it converts: a module-level function that builds Haiku layers and applies them, called from the
methods of Haiku modules or from transformed forwards, becomes an `nnx.Module` class named after it.
The parameters its layers are built from (`nb_fts` in `hk.Linear(nb_fts)`) are the class's constructor
arguments, the others its `__call__` arguments; each call site builds its own instance in its module's
`__init__` and calls it there.

Why: Haiku builds the function's layers anew at each call, in the scope of the module running it, so
each call site has its own weights. NNX builds layers once, in `__init__`, from their input sizes: the
function becomes a module its caller builds (an instance per call site, as Haiku had a set of weights
per call site). Linen needs no change: layers built while a compact method runs belong to that module,
so the function stays as it is, but for a literal `name=` in a function the file calls at more than one
place, which Linen would see twice in a module (Haiku numbers it, `fc_1`): it is dropped. A function whose parameters are read both by its layers' constructors
and by its computation, or that is used otherwise than called by modules (passed as a value, called
from plain code), keeps the generic TODO at its layers.

Example (NNX)::

    def messages(z, nb_fts):                        class Messages(nnx.Module):
      t_1 = hk.Linear(nb_fts)                         def __init__(self, din: int, nb_fts, *, rngs: nnx.Rngs):
      return jax.nn.relu(t_1(z))                        self.t_1 = nnx.Linear(din, nb_fts, rngs=rngs)

    class Net(hk.Module):                             def __call__(self, z):
      def __call__(self, x):                            return jax.nn.relu(self.t_1(z))
        return messages(x, self.n)
                                                    class Net(nnx.Module):
                                                      def __init__(self, din: int, n, *, rngs: nnx.Rngs):
                                                        self.messages = Messages(din, n, rngs=rngs)

                                                      def __call__(self, x):
                                                        return self.messages(x)
"""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst

from ..engine import analysis
from ..engine.context import Context, FileFact, attr
from ..engine.registry import Status, register
from ..engine.walk import Walker, descendants
from .composites import composite_api
from .interfaces import NNX_CALLS, CallSite, NnxMethod
from .transforms import TRANSFORMS

RULE_HELPER_LAYERS = register(
    "HK017", "helper-layers", Status.CONVERTED, "NNX: a function of the file building layers at each call -> an nnx.Module its callers build", __name__
)


@dataclass(frozen=True)
class Helper:
    """A module-level function building layers, called only by modules: the NNX class it becomes."""

    function: cst.FunctionDef
    class_name: str
    config: tuple[str, ...]  # parameters its layers are built from: the class's constructor arguments
    inputs: tuple[str, ...]  # the others: the arguments of its `__call__`

    def split(self, args: list[cst.Arg]) -> tuple[list[cst.Arg], list[cst.Arg]]:
        """A call's arguments as (constructor arguments, `__call__` arguments)."""
        params = [p.name.value for p in self.function.params.params]
        config: list[cst.Arg] = []
        inputs: list[cst.Arg] = []
        for index, arg in enumerate(args):  # positional ones keep their order within each part
            param = arg.keyword.value if arg.keyword is not None else params[index]
            (config if param in self.config else inputs).append(arg.with_changes(comma=cst.MaybeSentinel.DEFAULT))
        return config, inputs


def helper_as_class(helper: Helper, namespace: str) -> cst.ClassDef:
    """The function read as the Haiku module it stands for: its layers' arguments come to `__init__`,
    the rest to `__call__`, whose body is the function's own (its nodes, so notes keep their lines)."""
    params = {p.name.value: p for p in helper.function.params.params}

    def signature(names: tuple[str, ...]) -> cst.Parameters:
        return cst.Parameters([cst.Param(cst.Name("self")), *(params[n].with_changes(comma=cst.MaybeSentinel.DEFAULT) for n in names)])

    init = cst.FunctionDef(cst.Name("__init__"), signature(helper.config), cst.IndentedBlock([cst.parse_statement("super().__init__()")]))
    call = helper.function.with_changes(name=cst.Name("__call__"), params=signature(helper.inputs), leading_lines=[cst.EmptyLine(indent=False)])
    return cst.ClassDef(cst.Name(helper.class_name), cst.IndentedBlock([init, call]), bases=[cst.Arg(attr(namespace, "Module"))])


class _ParamReads(analysis.VariableWalker):
    """Which parameters a function reads in its layers' constructor arguments, and which elsewhere."""

    def __init__(self, params: set[str], constructor_args: set[int]) -> None:
        self.params = params
        self.constructor_args = constructor_args  # ids of the argument values of layer constructors
        self.depth = 0
        self.in_constructors: set[str] = set()
        self.elsewhere: set[str] = set()

    def visit_Arg(self, node: cst.Arg) -> bool:
        inside = id(node.value) in self.constructor_args
        self.depth += inside
        self.walk(node.value)
        self.depth -= inside
        return False

    def visit_Name(self, node: cst.Name) -> None:
        if node.value in self.params:
            (self.in_constructors if self.depth else self.elsewhere).add(node.value)


def _is_layer(ctx: Context, call: cst.Call, classes: dict[str, cst.ClassDef]) -> bool:
    api = ctx.names.haiku_api(call.func)
    local = isinstance(call.func, cst.Name) and call.func.value in classes
    return local or (api is not None and ctx.tables.get(api) is not None) or composite_api(ctx, call) is not None


def _read_helper(ctx: Context, function: cst.FunctionDef, classes: dict[str, cst.ClassDef], class_name: str) -> Helper | None:
    params = function.params
    if function.decorators or params.star_arg is not cst.MaybeSentinel.DEFAULT or params.kwonly_params or params.star_kwarg or params.posonly_params:
        return None
    constructors = [n for n in descendants(function.body) if isinstance(n, cst.Call) and _is_layer(ctx, n, classes)]
    if not constructors:
        return None
    names = {p.name.value for p in params.params}
    reads = _ParamReads(names, {id(a.value) for c in constructors for a in c.args})
    reads.walk(function.body)
    assigned = {n for s in descendants(function.body) if isinstance(s, cst.BaseStatement) for n in analysis.bound_names(s)}
    config = reads.in_constructors
    if config & (reads.elsewhere | assigned):  # read by the computation too, or rebound: not a plain constructor argument
        return None
    order = [p.name.value for p in params.params]
    inputs = tuple(n for n in order if n not in config)
    return Helper(function, class_name, tuple(n for n in order if n in config), inputs) if inputs else None


class _Uses(analysis.VariableWalker):
    """Which of the functions `params` names are read otherwise than called, with arguments that fit,
    from inside a module of the file (a method of a Haiku class, a transformed forward)."""

    def __init__(self, params: dict[str, list[str]], modules: set[str]) -> None:
        self.params = params
        self.modules = modules
        self.inside: list[bool] = [False]
        self.fitting: set[int] = set()  # ids of the Name nodes called from a module with arguments that fit
        self.other: set[str] = set()

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self.inside.append(node.name.value in self.modules)

    def leave_ClassDef(self, node: cst.ClassDef) -> None:
        self.inside.pop()

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        if len(self.inside) == 1:
            self.fitting.add(id(node.name))  # the definition itself
        self.inside.append(self.inside[-1] or (len(self.inside) == 1 and node.name.value in self.modules))

    def leave_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.inside.pop()

    def visit_Call(self, node: cst.Call) -> None:
        params = self.params.get(node.func.value) if isinstance(node.func, cst.Name) else None
        if params is None or not self.inside[-1] or any(a.star for a in node.args):
            return
        positional = [a for a in node.args if a.keyword is None]
        keywords = [a.keyword.value for a in node.args if a.keyword is not None]
        if len(positional) <= len(params) and set(keywords) <= set(params[len(positional) :]):
            self.fitting.add(id(node.func))

    def visit_Name(self, node: cst.Name) -> None:
        if node.value in self.params and id(node) not in self.fitting:
            self.other.add(node.value)


def _read_helpers(module: cst.Module, ctx: Context) -> dict[str, Helper]:
    if ctx.target != "nnx":  # Linen: layers built while a compact method runs belong to it
        return {}
    classes = analysis.haiku_module_classes(module, ctx.names)
    transforms = ctx.fact(TRANSFORMS)
    taken = analysis.module_level_names(module) | set(transforms.class_names.values())
    helpers: dict[str, Helper] = {}
    for statement in module.body:
        if isinstance(statement, cst.FunctionDef) and statement.name.value not in transforms.forwards:
            private = "_" if statement.name.value.startswith("_") else ""  # `_layer_norm` -> `_LayerNorm`: private stays private
            class_name = private + analysis.forward_class_name(statement.name.value, {n.removeprefix(private) for n in taken})
            helper = _read_helper(ctx, statement, classes, class_name)
            if helper is not None:
                helpers[statement.name.value] = helper
                taken.add(class_name)
    if not helpers:
        return {}
    uses = _Uses({name: [p.name.value for p in h.function.params.params] for name, h in helpers.items()}, {*classes, *transforms.forwards})
    uses.walk(module)
    return {name: helper for name, helper in helpers.items() if name not in uses.other}


HELPERS = FileFact(_read_helpers)


def _helper_key(ctx: Context, call: cst.Call) -> str | None:
    """The helper a call runs (`messages(x, self.n)`), if it is one."""
    return call.func.value if isinstance(call.func, cst.Name) and call.func.value in ctx.fact(HELPERS) else None


@NNX_CALLS.on_object(_helper_key, rule=RULE_HELPER_LAYERS)
def nnx_helper_call(room: NnxMethod, call: CallSite) -> cst.BaseExpression:
    """`messages(x, self.n)` -> `self.messages(x)`, with `self.messages = Messages(din, self.n, rngs=rngs)` in `__init__`."""
    helper = room.ctx.fact(HELPERS)[call.api]
    config, inputs = helper.split(list(call.updated.args))
    if room.in_nested_block(call.original, f"`{call.api}(...)`") or not room.can_hoist([a.value for a in config], call.original):
        return call.updated  # its layers would be built once for several calls, or from what `__init__` does not have
    constructor = cst.Call(cst.Name(helper.class_name), config)
    built = room.hoist(constructor, call.updated.with_changes(func=constructor, args=inputs))
    if built is None:  # `hoist` said why
        return call.updated
    room.converted(call.original, RULE_HELPER_LAYERS, f"{call.api}(...) -> {helper.class_name} built in __init__")
    return built


class _CallCounts(Walker):
    def __init__(self, names: set[str]) -> None:
        self.names = names
        self.counts: dict[str, int] = dict.fromkeys(names, 0)

    def visit_Call(self, node: cst.Call) -> None:
        if isinstance(node.func, cst.Name) and node.func.value in self.names:
            self.counts[node.func.value] += 1


def _read_repeated_functions(module: cst.Module, ctx: Context) -> set[int]:
    """Ids of the module-level functions the file calls at more than one place (forwards aside): a layer
    with a literal `name=` there is built twice in the calling module, which Linen refuses (Haiku numbers it)."""
    if not ctx.mentions("name="):
        return set()
    forwards = ctx.fact(TRANSFORMS).forwards
    functions = {s.name.value: s for s in module.body if isinstance(s, cst.FunctionDef) and s.name.value not in forwards}
    counts = _CallCounts(set(functions))
    counts.walk(module)
    return {id(functions[name]) for name, count in counts.counts.items() if count > 1}


REPEATED_FUNCTIONS = FileFact(_read_repeated_functions)
