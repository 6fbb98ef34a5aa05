"""`hk.transform` and friends, and the `init`/`apply` calls on what they return.

What it converts:
- `f = hk.transform(forward)` (also `hk.without_apply_rng(...)`, `hk.transform_with_state(...)`): a
  forward that only builds one module and calls it with its own arguments becomes that module; any
  other forward becomes a module of its own, named after the function.
- A module-level function decorated with `@hk.transform` (or `@hk.transform_with_state`, under an
  optional `@hk.without_apply_rng`) converts the same way: the function becomes the module class, and
  right after it `f = F()` (NNX: `f = F(din, rngs=nnx.Rngs(seed))`) binds the model to its old name.
  Other decorator stacks, and decorated functions that are not at module level, get a TODO.
- `f = hk.transform(make_forward(...))`, `make_forward` a function of the file whose returns name one
  function nested in it (`return forward`, `return Agent(network=forward)`): the forward becomes a
  module class inside the factory, still reading the factory's arguments as closures, and is bound to
  its name there: Linen `forward = Forward()` and `f = make_forward(...)`; NNX `forward = Forward`
  and `f = make_forward(...)(din, rngs=nnx.Rngs(0))`. A forward reading the factory's `self` reads it
  as `outer_self` (`outer_self = self` above the class), in Linen's method and NNX's `__init__` alike.
- A module-level function that builds modules and that nothing in its file names is transformed by
  its callers: it converts like a decorated one in Linen (`forward = Forward()`), and in NNX becomes
  a class and its factory `make_forward(sample, *, rngs)`. The class takes the forward's name in
  CamelCase, or `<Name>Model` where the file binds that name already.
- A forward defined and transformed inside a function stays Haiku with its transform (TODO), with a
  TODO where it uses a class of the file, which is a Flax module now.
- Linen: `f.init(rng, x)` returns variables, so the params are `f.init(rng, x)['params']`;
  `f.apply(params, rng, x)` -> `f.apply({'params': params}, x, rngs={'dropout': rng})`; with state,
  `params, state = f.init(...)` reads both collections and `out, state = f.apply(params, state, ...)`
  passes `mutable=['batch_stats']` and reads the updates back.
- NNX: the model is built eagerly where the transform was, `Model(din, ..., rngs=nnx.Rngs(seed))`,
  with the input size and seed read from `f.init(key, sample_x)` where they are literal. Where the
  size shows only at run time (`f.init(key, batch)` in a function), or `init` is in another file of
  the tree or nowhere, the transform becomes a factory, `def make_f(sample, *, rngs)`, and the code
  holding `init` builds the model there: `f = make_f(batch, rngs=nnx.Rngs(key))` (a file importing
  `f` imports `make_f`);
  `f.init(...)` -> `nnx.state(model, nnx.Param[, nnx.BatchStat])`; `f.apply(params, rng, x,
  training=True)` -> `model.train()` then `model(x)` (a mode flag the model no longer takes becomes
  `model.train()` / `model.eval()`).
- Weights `init` did not make (`params = pickle.load(f)`, a checkpoint restore, a helper's result)
  stay the weights the converted code computes with: Linen passes them as its variables; NNX loads them
  into the model first, `nnx.update(model, params[, state])`, building the model there from the input
  they are applied to where its callers build it (`model = make_model(x, rngs=nnx.Rngs(0))`). The same
  holds where they are passed to a function that applies them (`evaluate(params, x)`, NNX: the model is
  passed). The report says to convert the checkpoint once, `haiku2flax convert-params ... --out
  converted.pkl`, which writes them in the converted structure. Where no input shows to build the model
  from, the call stays with a TODO.

Why: Haiku's pure `init`/`apply` pair becomes Linen's variables dict and NNX's stateful object; the
rng of `apply` becomes Linen's named `'dropout'` stream, and NNX's model-owned `nnx.Rngs`.

Example (NNX)::

    model = hk.transform(forward)                  model = Model(784, 256, 10, rngs=nnx.Rngs(0))
    params = model.init(random.key(0), sample_x)   params = nnx.state(model, nnx.Param)
    y = model.apply(params, key, x, training=True) model.train()
                                                   y = model(x)
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import libcst as cst

from ..engine import analysis
from ..engine import matchers as m
from ..engine.analysis import Transformed
from ..engine.calls import Unconvertible, code, keyword_arg, respell_args
from ..engine.context import Context, FileFact, add_todo_lines, attr
from ..engine.names import ImportedNames, dotted_name
from ..engine.tree import TreeTransform, factory_name
from ..engine.registry import Status, register
from ..engine.walk import Transformer, Walker, descendants
from .composites import composite_api
from .interfaces import LINEN_CALLS, LINEN_NODES, NNX_FILE_CALLS, NNX_FILE_NODES, CallSite, FileRoom, LinenMethod, NnxFile
from .parameters import LINEN_STATE_COLLECTION, NNX_STATE_CLASS, uses_haiku_state
from .rng import RULE_RNG

if TYPE_CHECKING:
    from ..targets.nnx import ClassInfo

TRANSFORM_APIS = ("transform", "transform_with_state", "without_apply_rng", "multi_transform", "multi_transform_with_state")
RULE_TRANSFORM = register(
    "HK004", "transform", Status.CONVERTED, "hk.transform / transform_with_state / without_apply_rng and their init/apply calls", __name__,
    apis=TRANSFORM_APIS,
)
RULE_INPUT_SIZE = register("HK006", "input-size", Status.PARTIAL, "NNX input sizes: inferred by dataflow, else a constructor argument with a TODO", __name__)

AnyAssign = TypeVar("AnyAssign", cst.Assign, cst.AnnAssign)  # `f = hk.transform(...)` or `f: T = hk.transform(...)`
Room = TypeVar("Room", bound=FileRoom)

AFTER_CLASS = (cst.EmptyLine(indent=False),) * 2  # the blank lines above a statement that follows a class
STATE_COLLECTION = "batch_stats"  # where Linen keeps what Haiku's transform_with_state calls state
STATE_VARIABLE = "BatchStat"  # the NNX variable type of that state
RNGS = "rngs"
FACTORY_SAMPLE = "sample"  # the factory's parameter: an input like the one `init` would see


@dataclass(frozen=True)
class TransformCall:
    """`f.init(...)` or `f.apply(...)` on a module-level `f = hk.transform(...)`."""

    node: cst.Call
    transformed: Transformed
    method: str  # "init" or "apply"
    module_method: str = "__call__"  # the model method this call runs (multi_transform)
    through_train_state: bool = False  # `state.apply_fn(...)` of a TrainState created with `f.apply`

    @property
    def model(self) -> cst.BaseExpression:
        return cst.Name(self.transformed.name)

    def split_apply(self, call: cst.Call) -> ApplyArgs:
        """An `apply` call's params, state, rng and the model's own arguments."""
        names = ["params", *(["state"] if self.transformed.with_state else []), *(["rng"] if self.transformed.apply_rng else [])]
        leading = call.args[: len(names)]
        if len(leading) < len(names) or any(a.star or a.keyword is not None for a in leading):
            raise Unconvertible(f"`apply` is called without its {'/'.join(names)} arguments spelled out")
        values = {name: arg.value for name, arg in zip(names, leading)}
        rng = values.get("rng")
        if rng is not None and m.matches(rng, m.Name("None")):
            rng = None
        return ApplyArgs(values["params"], values.get("state"), rng, list(call.args[len(names) :]), len(names))


@dataclass(frozen=True)
class ApplyArgs:
    params: cst.BaseExpression
    state: cst.BaseExpression | None
    rng: cst.BaseExpression | None
    rest: list[cst.Arg]
    leading_count: int  # how many arguments precede the model's own




@dataclass
class FileTransforms:
    """The transforms of a file, their forwards, and multi_transform aliases: what both targets read."""

    transforms: dict[str, Transformed]  # transformed object name -> how it was made
    unconverted_decorations: dict[int, str]  # decorated forwards left as they are (statement id -> why)
    forwards: dict[str, Transformed]  # forward function name -> its transform
    state_collection: str  # where transform_with_state's state lives in Linen
    state_variable: cst.BaseExpression  # and its variable type in NNX
    module_functions: dict[str, cst.FunctionDef]  # module-level functions (and lambda forwards, as functions)
    multi: dict[str, analysis.MultiForward]  # multi_transform name -> its forward's methods
    apply_aliases: dict[str, tuple[Transformed, str]]  # `encode, decode = model.apply`: name -> (model, method)
    alias_statements: set[int]
    train_state_model: Transformed | None  # the model whose `apply` a TrainState carries, when there is one
    imported: dict[str, TreeTransform]  # transforms of other files of the tree, by the name this file imports them as
    state_module: str | None  # NNX: the file of the tree whose `State` variable type `state_variable` is, when another one
    class_names: dict[str, str]  # forward function -> the module class it becomes (`analysis.forward_class_name`)
    unread_multi: set[str]  # multi_transforms left as they are: their forward is not one module and its methods


def _read_transforms(module: cst.Module, ctx: Context) -> FileTransforms:
    # Linen rewrites init/apply call by call; NNX's training rule follows params by dataflow at module level only
    transforms = analysis.module_transforms(module, ctx.names, in_functions=ctx.target == "linen", factories=True)
    # the model of a decorated forward is built where the function was: the classes it uses must exist by then
    unconverted_decorations = {
        id(t.statement): f"its model would be built here, before `{late}` is defined: move this function below that class"
        for t in transforms.values()
        if isinstance(t.statement, cst.FunctionDef) and (late := _class_defined_below(t.statement, module)) is not None
    }
    transforms = {name: t for name, t in transforms.items() if id(t.statement) not in unconverted_decorations}
    # a multi_transform whose forward is not one module with its init and apply methods stays Haiku (TODO):
    # its functions are not a module's methods
    functions = {s.name.value: s for s in module.body if isinstance(s, cst.FunctionDef)}
    unread_multi = {
        name for name, t in transforms.items()
        if t.multi and (t.function not in functions or analysis.multi_forward(functions[t.function]) is None)
    }
    transforms = {name: t for name, t in transforms.items() if name not in unread_multi}
    forwards = {t.function: t for t in transforms.values()}
    forwards.update(_transformed_by_callers(module, ctx, set(forwards)))
    taken = analysis.module_level_names(module)
    class_names = {function: analysis.forward_class_name(function, taken) for function in {*forwards, *(t.function for t in transforms.values())}}
    imported = {name: made for name, made in ctx.tree.imported.items() if name not in transforms}
    transforms.update(_imported_transforms(module, imported))
    # hk.get_state / hk.set_state state lives in Linen's 'state' collection / the file's State variables
    hand_made_state = ctx.mentions("get_state", "set_state") and uses_haiku_state(module, ctx.names)
    # a model of another file keeps its state where that file's conversion puts it
    state_module = next(
        (
            made.module
            for made in imported.values()
            if made.with_state and ctx.provider(made.module).fact(TRANSFORMS).state_collection == LINEN_STATE_COLLECTION
        ),
        None,
    )
    hand_made_state = hand_made_state or state_module is not None
    module_functions = {s.name.value: s for s in module.body if isinstance(s, cst.FunctionDef)}
    module_functions.update({t.function: t.lambda_forward for t in transforms.values() if t.lambda_forward is not None})
    multi = {
        t.name: read
        for t in transforms.values()
        if t.multi and t.function in module_functions
        and (read := analysis.multi_forward(module_functions[t.function])) is not None
    }
    for local, made in imported.items():  # a multi_transform of another file: its methods are read there
        provider = ctx.provider(made.module).fact(TRANSFORMS).multi if made.multi else {}
        if made.name in provider:
            multi[local] = provider[made.name]
    # `encode, decode = model.apply` (multi_transform): each name calls one method of the model
    apply_aliases: dict[str, tuple[Transformed, str]] = {}
    alias_statements: set[int] = set()
    for statement in module.body:
        assign = analysis.simple_assign(statement)
        model = _applied_model(assign[1]) if assign is not None else None
        if assign is None or model is None or model not in multi:
            continue
        forward = multi[model]
        targets = [e.value for e in assign[0].elements] if isinstance(assign[0], cst.Tuple | cst.List) else []
        names = [t.value for t in targets if isinstance(t, cst.Name)]
        if len(names) != len(targets) or len(names) != len(forward.apply_methods):
            continue
        for name, method in zip(names, forward.apply_methods, strict=True):
            apply_aliases[name] = (transforms[model], method)
        alias_statements.add(id(statement))
    finder = _TrainStateFinder(set(transforms))
    if transforms and ctx.mentions("apply_fn"):
        finder.walk(module)
    # the transformed model whose `apply` a TrainState carries, when there is exactly one
    train_state_model = transforms[finder.models.pop()] if len(finder.models) == 1 else None
    if ctx.mentions("@") and ctx.mentions("transform", "without_apply_rng"):  # a transform as a decorator
        decorations = _UnconvertedDecorations(ctx.names, module, {*unconverted_decorations, *(id(t.statement) for t in transforms.values())})
        decorations.walk(module)
        unconverted_decorations.update(decorations.reasons)
    state_variable: cst.BaseExpression = cst.Name(NNX_STATE_CLASS) if hand_made_state else attr(ctx.ns, STATE_VARIABLE)
    return FileTransforms(
        transforms, unconverted_decorations, forwards,
        LINEN_STATE_COLLECTION if hand_made_state else STATE_COLLECTION, state_variable, module_functions, multi,
        apply_aliases, alias_statements, train_state_model, imported, state_module, class_names, unread_multi,
    )


TRANSFORMS = FileFact(_read_transforms)


def _imported_transforms(module: cst.Module, imported: dict[str, TreeTransform]) -> dict[str, Transformed]:
    """The transforms a module-level `from model import net` binds, read as if the file had made them."""
    found = {}
    for statement in module.body:
        if not isinstance(statement, cst.SimpleStatementLine):
            continue
        for small in statement.body:
            if not isinstance(small, cst.ImportFrom) or isinstance(small.names, cst.ImportStar):
                continue
            for alias in small.names:
                name = alias.evaluated_alias or alias.evaluated_name
                made = imported.get(name)
                if made is not None:
                    origin = f"<{made.module}.{made.name}>"
                    found[name] = Transformed(name, origin, made.with_state, made.apply_rng, statement, made.multi)
    return found


def _applied_model(node: cst.BaseExpression) -> str | None:
    """`f` for `f.apply`."""
    if isinstance(node, cst.Attribute) and isinstance(node.value, cst.Name) and node.attr.value == "apply":
        return node.value.value
    return None


def transform_call(ctx: Context, call: cst.Call) -> TransformCall | None:
    """`f.init(...)`, `f.apply(...)`, a multi_transform apply alias `encode(...)`, or `state.apply_fn(...)`."""
    read = ctx.fact(TRANSFORMS)
    func = call.func
    if isinstance(func, cst.Name) and func.value in read.apply_aliases:
        transformed, method = read.apply_aliases[func.value]
        return TransformCall(call, transformed, "apply", method)
    if not isinstance(func, cst.Attribute):
        return None
    if read.train_state_model is not None and func.attr.value == "apply_fn":
        return TransformCall(call, read.train_state_model, "apply", through_train_state=True)
    if not isinstance(func.value, cst.Name) or func.attr.value not in ("init", "apply"):
        return None
    made = read.transforms.get(func.value.value)
    if made is None or (made.multi and func.attr.value == "apply"):
        return None
    multi = read.multi.get(made.name)
    return TransformCall(call, made, func.attr.value, multi.init_method if multi is not None else "__call__")


def _transform_method(ctx: Context, call: cst.Call) -> str | None:
    """`transform.init` / `transform.apply` for a call on a transformed object of the file (the call rules' key)."""
    found = transform_call(ctx, call)
    return f"transform.{found.method}" if found is not None else None


def transformed_assignment(ctx: Context, original: cst.Assign | cst.AnnAssign) -> Transformed | None:
    """The transform a module-level `f = hk.transform(...)` (or `f: hk.Transformed = ...`) statement defines."""
    targets = [t.target for t in original.targets] if isinstance(original, cst.Assign) else [original.target]
    if len(targets) != 1 or not isinstance(targets[0], cst.Name) or original.value is None:
        return None
    transformed = ctx.fact(TRANSFORMS).transforms.get(targets[0].value)
    if transformed is None:
        return None
    if transformed.factory is not None:  # the transform of a factory's forward is that one statement of the file
        statement = transformed.statement
        return transformed if isinstance(statement, cst.SimpleStatementLine) and any(s is original for s in statement.body) else None
    return transformed if analysis.read_transform(original.value, ctx.names) is not None else None


def _unread_multi_transform(room: FileRoom, original: cst.Assign | cst.AnnAssign) -> None:
    """A TODO at `f = hk.multi_transform(forward)` whose forward the model's methods cannot be read from."""
    targets = [t.target for t in original.targets] if isinstance(original, cst.Assign) else [original.target]
    if len(targets) == 1 and isinstance(targets[0], cst.Name) and targets[0].value in room.ctx.fact(TRANSFORMS).unread_multi:
        room.todo(
            original, RULE_TRANSFORM,
            "a multi_transform converts where its forward builds one module and returns an init function and a "
            "tuple of that module's methods (`return init, (module.encode, module.decode)`); make the other "
            "functions methods of the module, or convert this by hand",
        )


def forward_class(ctx: Context, function: str) -> str:
    """The name of the module class the forward `function` becomes."""
    return ctx.fact(TRANSFORMS).class_names[function]


def forward_module(ctx: Context, transformed: Transformed) -> cst.Call | None:
    """The module a forward only builds and calls with its own arguments, if it does only that."""
    forward = ctx.fact(TRANSFORMS).module_functions.get(transformed.function)
    return analysis.forward_module(forward) if forward is not None else None


def _decorated_model(
    room: Room,
    function: cst.FunctionDef,
    build: Callable[[Room, Transformed, cst.CSTNode], cst.BaseExpression | None],
    leading_lines: Sequence[cst.EmptyLine],
) -> cst.SimpleStatementLine | None:
    """`log_prob = LogProb()`: the model bound to the name of a `@hk.transform`-decorated function, with
    the TODOs its construction raises above it (not above the class the function becomes)."""
    transformed = room.ctx.fact(TRANSFORMS).forwards[function.name.value]
    model, todos = room.todos_apart(lambda: build(room, transformed, function))
    if model is None:
        return None  # the function stays, under its TODOs
    line = cst.SimpleStatementLine([cst.Assign([cst.AssignTarget(function.name)], model)], leading_lines=leading_lines)
    return add_todo_lines(line, todos)


def _unconverted_decoration(room: FileRoom, original: cst.FunctionDef, updated: cst.FunctionDef) -> None:
    reason = room.ctx.fact(TRANSFORMS).unconverted_decorations.get(id(original))
    if reason is not None:
        room.todo(original, RULE_TRANSFORM, reason)


def _apply_aliases(room: FileRoom, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine) -> cst.RemovalSentinel | None:
    """`encode, decode = model.apply` goes: the functions are methods of the model now."""
    if id(original) not in room.ctx.fact(TRANSFORMS).alias_statements:
        return None
    room.converted(original, RULE_TRANSFORM, "multi_transform apply functions become model methods")
    return cst.RemovalSentinel.REMOVE


for _nodes in (LINEN_NODES, NNX_FILE_NODES):
    _nodes.on_leave(cst.FunctionDef, rule=RULE_TRANSFORM)(_unconverted_decoration)


def _transformed_by_callers(module: cst.Module, ctx: Context, forwards: set[str]) -> dict[str, Transformed]:
    """Module-level functions that build Haiku modules and that nothing else in the file names: code
    elsewhere transforms them (Haiku runs modules only under a transform), so each becomes a model too."""
    functions = [s for s in module.body if isinstance(s, cst.FunctionDef) and not s.decorators and s.name.value not in forwards]
    if not functions:
        return {}
    named: set[str] = set()
    for statement in module.body:
        if not isinstance(statement, cst.FunctionDef) or statement not in functions:
            named |= analysis.Names.of(statement).used
    for function in functions:
        named |= analysis.Names.of(function).used - {function.name.value}
    classes = set(analysis.haiku_module_classes(module, ctx.names))
    found = {}
    for function in functions:
        name = function.name.value
        builds = _BuildsModules(ctx, classes)
        builds.walk(function.body)
        if name not in named and builds.found and not builds.transforms:
            found[name] = Transformed(name, name, with_state=False, apply_rng=True, statement=function, by_callers=True)
    return found


class _BuildsModules(Walker):
    """Whether a function builds and runs a Haiku module (in its body or in the functions it defines
    there, as for `hk.remat(block)`), and whether it makes a transform. A function that only returns
    modules it builds (`def make(): return hk.Linear(2)`) is a factory, not a forward."""

    def __init__(self, ctx: Context, classes: set[str]) -> None:
        self.ctx = ctx
        self.classes = classes
        self.found = False
        self.transforms = False
        self.built: set[str] = set()  # locals bound to a module built here (`net = Net()`)

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        return False

    def visit_Decorator(self, node: cst.Decorator) -> None:
        self.transforms |= self.ctx.names.haiku_api(node.decorator) in TRANSFORM_APIS

    def visit_Assign(self, node: cst.Assign) -> None:
        if isinstance(node.value, cst.Call) and self._builds(node.value):
            self.built |= {t.target.value for t in node.targets if isinstance(t.target, cst.Name)}

    def visit_Call(self, node: cst.Call) -> None:
        self.transforms |= self.ctx.names.haiku_api(node.func) in TRANSFORM_APIS
        called = isinstance(node.func, cst.Call) and self._builds(node.func)
        self.found |= called or (isinstance(node.func, cst.Name) and node.func.value in self.built)

    def _builds(self, call: cst.Call) -> bool:
        api = self.ctx.names.haiku_api(call.func)
        layer = api is not None and self.ctx.tables.get(api) is not None
        local = isinstance(call.func, cst.Name) and call.func.value in self.classes
        return local or layer or composite_api(self.ctx, call) is not None


def _read_local_forwards(module: cst.Module, ctx: Context) -> frozenset[int]:
    """Functions defined in a function and transformed there (`def make_model(): def forward(x): ...;
    return hk.transform(forward)`): such a transform stays Haiku under its TODO, so its forward stays
    Haiku too (Flax layers inside a Haiku transform fail, far from that TODO)."""
    if not ctx.mentions(*TRANSFORM_APIS):
        return frozenset()
    finder = _LocalForwards(ctx.names, set(ctx.fact(FACTORY_RETURNS).keys()))
    finder.walk(module)
    return frozenset(finder.found)


LOCAL_FORWARDS = FileFact(_read_local_forwards)


def kept_local_forward(room: FileRoom, function: cst.FunctionDef, classes: Collection[str]) -> cst.FunctionDef:
    """A forward that stays Haiku (`LOCAL_FORWARDS`), with a TODO at each statement building a module
    class of the file: that class is a Flax module now, which the Haiku transform cannot run."""
    kept = function.visit(_FlaxClassesUnderHaiku(room.ctx, set(classes)))
    assert isinstance(kept, cst.FunctionDef)  # statements get comments, nothing else changes
    return kept


class _FlaxClassesUnderHaiku(Transformer):
    def __init__(self, ctx: Context, classes: set[str]) -> None:
        super().__init__()
        self.ctx = ctx
        self.classes = classes
        self.instances: dict[str, str] = {}  # `net = Net()`: a local holding a module of such a class -> the class

    def leave_SimpleStatementLine(self, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine) -> cst.SimpleStatementLine:
        built = [node.func.value for node in descendants(original) if isinstance(node, cst.Call) and isinstance(node.func, cst.Name) and node.func.value in self.classes]
        built += [self.instances[name] for name in sorted(analysis.Names.of(original).used & set(self.instances))]
        if not built:
            return updated
        assign = analysis.simple_assign(original)
        if assign is not None and isinstance(assign[0], cst.Name):
            self.instances[assign[0].value] = built[0]
        reason = (
            f"`{built[0]}` is a Flax module now, but this function stays Haiku with the `hk.transform` it is passed to "
            "(only a module-level transform converts): move that transform to module level, or build the model here by hand"
        )
        self.ctx.notes.todo(original, RULE_TRANSFORM, reason)
        return add_todo_lines(updated, [(RULE_TRANSFORM, reason)])


class _LocalForwards(Walker):
    def __init__(self, names: ImportedNames, factory_returns: set[int]) -> None:
        self.names = names
        self.factory_returns = factory_returns  # a factory returning its transform converts (`FACTORY_RETURNS`)
        self.found: set[int] = set()

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        nested = {s.name.value: s for s in node.body.body if isinstance(s, cst.FunctionDef)} if isinstance(node.body, cst.IndentedBlock) else {}
        if not nested or any(id(returned) in self.factory_returns for returned in descendants(node.body)):
            return
        for call in descendants(node.body):
            read = analysis.read_transform(call, self.names) if isinstance(call, cst.Call) else None
            if read is not None and read[0] in nested:
                self.found.add(id(nested[read[0]]))


class _StatefulLayers(Walker):
    """Whether a file builds a table layer that keeps state (BatchNorm)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.found = False

    def visit_Call(self, node: cst.Call) -> None:
        api = self.ctx.names.haiku_api(node.func)
        construct = self.ctx.tables.get(api) if api is not None else None
        self.found |= construct is not None and bool(construct.state)


def _class_defined_below(function: cst.FunctionDef, module: cst.Module) -> str | None:
    """The first module-level class that `function` uses and that is defined below it."""
    position = next(i for i, statement in enumerate(module.body) if statement is function)
    used = analysis.Names.of(function).used
    below = (s.name.value for s in module.body[position + 1 :] if isinstance(s, cst.ClassDef))
    return next((name for name in below if name in used), None)


class _UnconvertedDecorations(Walker):
    """Functions decorated with transforms that `analysis.module_transforms` does not read, with the reason."""

    def __init__(self, names: ImportedNames, module: cst.Module, known: set[int]) -> None:
        self.names = names
        self.module_level = {id(s) for s in module.body}
        self.known = known  # read as transforms, or given their reason already
        self.reasons: dict[int, str] = {}

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        apis = [self.names.haiku_api(d.decorator) for d in node.decorators]
        if id(node) in self.known or not set(apis) & set(TRANSFORM_APIS):
            return
        if id(node) not in self.module_level:
            reason = "only a module-level transformed function becomes a Flax module: move this one to module level, or write it as a module class (what it closes over as fields)"
        elif "without_apply_rng" in apis and apis.index("without_apply_rng") > min(i for i, a in enumerate(apis) if a in TRANSFORM_APIS):
            reason = "`@hk.without_apply_rng` takes the transformed object (Haiku raises here): put it above `@hk.transform`"
        else:
            reason = "only `@hk.transform` / `@hk.transform_with_state`, under an optional `@hk.without_apply_rng`, convert: rewrite the other decorators by hand"
        self.reasons[id(node)] = reason


class _TrainStateFinder(Walker):
    """`TrainState.create(apply_fn=f.apply, ...)`: the models whose `apply` a train state carries."""

    def __init__(self, transforms: set[str]) -> None:
        self.transforms = transforms
        self.models: set[str] = set()

    def visit_Arg(self, node: cst.Arg) -> None:
        model = _applied_model(node.value) if node.keyword is not None and node.keyword.value == "apply_fn" else None
        if model is not None and model in self.transforms:
            self.models.add(model)


# -- Linen: the transformed function becomes a module; init/apply speak in variables dicts ---------
def linen_model(room: LinenMethod, transformed: Transformed, node: cst.CSTNode) -> cst.BaseExpression:
    """The Linen module standing for `transformed` (reported on `node`)."""
    if transformed.factory is not None:  # the factory returns the module its forward became
        room.converted(node, RULE_TRANSFORM, f"hk.transform({code(transformed.factory)}) -> the Linen module it returns")
        return room.convert_copy(transformed.factory)
    inner = forward_module(room.ctx, transformed)
    model = room.convert_copy(inner) if inner is not None else cst.Call(cst.Name(forward_class(room.ctx, transformed.function)))
    room.converted(node, RULE_TRANSFORM, f"hk.transform({transformed.function}) -> Linen module")
    return model


OUTER_SELF = "outer_self"  # the `self` of a factory, as its forward, now a module's method, reads it


def factory_self_alias(forward: cst.FunctionDef) -> list[cst.SimpleStatementLine]:
    """`outer_self = self` before the module class of a factory's forward that reads the factory's `self`."""
    if not analysis.outer_self(forward):
        return []
    return [cst.SimpleStatementLine([cst.Assign([cst.AssignTarget(cst.Name(OUTER_SELF))], cst.Name("self"))], leading_lines=forward.leading_lines)]


@LINEN_NODES.on_leave(cst.Attribute, rule=RULE_TRANSFORM)
def _read_outer_self(room: LinenMethod, original: cst.Attribute, updated: cst.Attribute) -> cst.Attribute | None:
    """`self.env` in a factory's forward reads the factory's `self`: `outer_self.env` in the module's method."""
    function = room.function
    if function is None or analysis.self_attribute(original) is None:
        return None
    made = room.ctx.fact(TRANSFORMS).forwards.get(function.name.value)
    if made is None or not made.outer_self or not analysis.outer_self(function):
        return None
    return updated.with_changes(value=cst.Name(OUTER_SELF))


def is_factory_forward(ctx: Context, function: cst.FunctionDef, outer: cst.FunctionDef | None) -> bool:
    """`function`, defined in the module-level function `outer`, is the forward of `hk.transform(outer(...))`."""
    made = ctx.fact(TRANSFORMS).forwards.get(function.name.value)
    return made is not None and made.factory is not None and outer is not None and outer.name.value == code(made.factory.func)


def linen_decorated_model(room: LinenMethod, function: cst.FunctionDef, leading_lines: Sequence[cst.EmptyLine] = AFTER_CLASS) -> cst.SimpleStatementLine:
    line = _decorated_model(room, function, linen_model, leading_lines)
    assert line is not None  # a Linen model is always built
    return line


def _read_factory_returns(module: cst.Module, ctx: Context) -> dict[int, str]:
    """`return hk.transform(forward)` ending a factory that `model = make_model()` calls: the returned
    expression (by id) -> the forward, which the factory returns in its place (its module, or class)."""
    functions = ctx.fact(TRANSFORMS).module_functions
    returns = {}
    for transformed in ctx.fact(TRANSFORMS).transforms.values():
        factory = functions.get(code(transformed.factory.func)) if transformed.factory is not None else None
        returned = analysis.factory_returned_transform(factory, ctx.names) if factory is not None else None
        if returned is not None:
            returns[id(returned)] = transformed.function
    return returns


FACTORY_RETURNS = FileFact(_read_factory_returns)


def _factory_return(room: FileRoom, original: cst.Return, updated: cst.Return) -> cst.Return | None:
    """`return hk.transform(forward)` in a factory -> `return forward`: the forward is the model now."""
    forward = room.ctx.fact(FACTORY_RETURNS).get(id(original.value)) if original.value is not None else None
    if forward is None:
        return None
    room.converted(original, RULE_TRANSFORM, f"the factory returns the model `{forward}` became")
    return updated.with_changes(value=cst.Name(forward))


LINEN_NODES.on_leave(cst.Return, rule=RULE_TRANSFORM)(_factory_return)
NNX_FILE_NODES.on_leave(cst.Return, rule=RULE_TRANSFORM)(_factory_return)


@LINEN_NODES.on_leave(cst.Assign, rule=RULE_TRANSFORM)
@LINEN_NODES.on_leave(cst.AnnAssign, rule=RULE_TRANSFORM)
def _linen_transformed(room: LinenMethod, original: AnyAssign, updated: AnyAssign) -> AnyAssign | None:
    transformed = transformed_assignment(room.ctx, original)
    if transformed is None:
        _unread_multi_transform(room, original)
    return None if transformed is None else updated.with_changes(value=linen_model(room, transformed, original))


@LINEN_CALLS.on_object(_transform_method, rule=RULE_TRANSFORM)
def _linen_transform_call(room: LinenMethod, site: CallSite) -> cst.BaseExpression | None:
    call = transform_call(room.ctx, site.original)
    if call is None:
        return None
    updated = site.updated
    read = room.ctx.fact(TRANSFORMS)
    if call.transformed.with_state and id(call.node) not in room.ctx.fact(STATE_PAIRS):
        room.todo(call.node, RULE_TRANSFORM, "use the result as `out, state = ...`, or pass `mutable=['batch_stats']` by hand")
        return updated
    if call.method == "init":
        if call.transformed.with_state:
            return updated  # the statement is rewritten whole, in _linen_state_pair
        room.converted(call.node, RULE_TRANSFORM, "init returns variables: take ['params']")
        return _params_of(room.ctx, updated.with_changes(args=respell_args(updated, 0, [], _method_arg(call))))
    try:
        apply = call.split_apply(updated)
    except Unconvertible as reason:
        room.todo(call.node, RULE_TRANSFORM, str(reason))
        return updated
    elements = [cst.DictElement(cst.SimpleString("'params'"), apply.params)]
    if apply.state is not None:
        elements.append(cst.DictElement(cst.SimpleString(f"'{read.state_collection}'"), apply.state))
    appended = []
    if apply.rng is not None:
        appended.append(keyword_arg("rngs", cst.Dict([cst.DictElement(cst.SimpleString("'dropout'"), apply.rng)])))
    if apply.state is not None:
        appended.append(keyword_arg("mutable", cst.List([cst.Element(cst.SimpleString(f"'{read.state_collection}'"))])))
    appended.extend(_method_arg(call))
    room.converted(call.node, RULE_TRANSFORM, "apply takes a variables dict" + (" and rngs=" if apply.rng is not None else ""))
    func = attr(call.transformed.name, "apply") if call.module_method != "__call__" else updated.func
    return updated.with_changes(func=func, args=respell_args(updated, apply.leading_count, [cst.Dict(elements)], appended))


def _read_state_pairs(module: cst.Module, ctx: Context) -> set[int]:
    """The transform_with_state `init`/`apply` calls a statement unpacks: `params, state = f.init(...)`."""
    if not any(t.with_state for t in ctx.fact(TRANSFORMS).transforms.values()):
        return set()
    pairs = _StatePairs(ctx)
    pairs.walk(module)
    return pairs.calls


class _StatePairs(Walker):
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.calls: set[int] = set()

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
        pair = _pair_assignment(node)
        if pair is not None and (call := transform_call(self.ctx, pair[2])) is not None and call.transformed.with_state:
            self.calls.add(id(pair[2]))


# Haiku APIs that make no parameter: a file using none but these has a model Linen's `init` gives no
# 'params' collection (a positional encoding computed in `__init__`)
_PARAMETERLESS_APIS = frozenset({
    "Module", "transform", "transform_with_state", "without_apply_rng", "get_state", "set_state", "next_rng_key", "maybe_next_rng_key",
    "dropout", "Flatten", "Reshape", "max_pool", "avg_pool", "MaxPool", "AvgPool",
})  # fmt: skip


class _ParameterUses(Walker):
    """Whether a file uses a Haiku API that may make parameters (a layer, `get_parameter`, a house API)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.found = False

    def visit_Attribute(self, node: cst.Attribute) -> None:
        self._read(node)

    def visit_Name(self, node: cst.Name) -> None:
        self._read(node)

    def _read(self, node: cst.BaseExpression) -> None:
        api = self.ctx.names.haiku_api(node)
        self.found |= api is not None and api not in _PARAMETERLESS_APIS


def _read_shows_params(module: cst.Module, ctx: Context) -> bool:
    """Whether Linen's `init` may return a 'params' collection: the file, or a class or transform it
    imports from another file of the tree, may make parameters."""
    uses = _ParameterUses(ctx)
    uses.walk(module)
    return uses.found or bool(ctx.tree.class_imports) or bool(ctx.tree.imported)


def _read_shows_state(module: cst.Module, ctx: Context) -> bool:
    """Whether Linen has the state collection: a table layer keeps state (BatchNorm), or the file's own state does."""
    stateful = _StatefulLayers(ctx)
    stateful.walk(module)
    return stateful.found or ctx.fact(TRANSFORMS).state_collection != STATE_COLLECTION


STATE_PAIRS = FileFact(_read_state_pairs)
SHOWS_STATE = FileFact(_read_shows_state)
SHOWS_PARAMS = FileFact(_read_shows_params)



def _state_of(ctx: Context, variables: cst.BaseExpression) -> cst.BaseExpression:
    """`variables['batch_stats']`; `variables.get('batch_stats', {})` when nothing in the file keeps state
    (Linen then has no such collection, where Haiku's state is an empty dict)."""
    return _collection(variables, ctx.fact(TRANSFORMS).state_collection, ctx.fact(SHOWS_STATE))


def _params_of(ctx: Context, variables: cst.BaseExpression) -> cst.BaseExpression:
    """`variables['params']`; `variables.get('params', {})` when nothing in the file makes parameters
    (Linen then has no such collection, where Haiku's params are an empty dict)."""
    return _collection(variables, "params", ctx.fact(SHOWS_PARAMS))


def _collection(variables: cst.BaseExpression, collection: str, shown: bool) -> cst.BaseExpression:
    if shown:
        return _subscript(variables, collection)
    return _get_or_empty(variables, collection)


def _get_or_empty(variables: cst.BaseExpression, collection: str) -> cst.Call:
    """`variables.get('collection', {})`."""
    key = cst.Arg(cst.SimpleString(f"'{collection}'"))
    return cst.Call(cst.Attribute(variables, cst.Name("get")), [key, cst.Arg(cst.Dict([]))])


@LINEN_NODES.on_leave(cst.SimpleStatementLine, rule=RULE_TRANSFORM)
def _linen_statement(
    room: LinenMethod, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine
) -> cst.RemovalSentinel | cst.FlattenSentinel[cst.SimpleStatementLine] | None:
    """Apply aliases go; transform_with_state's `params, state = f.init(...)` and `out, state = f.apply(...)`
    unpack Linen's variables."""
    removed = _apply_aliases(room, original, updated)
    if removed is not None:
        return removed
    pair = _pair_assignment(original)
    if pair is None or id(pair[2]) not in room.ctx.fact(STATE_PAIRS):
        return None
    first, second, call = pair
    assign = updated.body[0]
    if not isinstance(assign, cst.Assign):
        return None
    new_value = assign.value
    collection = room.ctx.fact(TRANSFORMS).state_collection
    head: cst.Assign
    if call.func.attr.value == "init" if isinstance(call.func, cst.Attribute) else False:
        # variables = f.init(...); params, state = variables['params'], variables['batch_stats']
        outputs: cst.BaseExpression = _bare_tuple(_params_of(room.ctx, cst.Name("variables")), _state_of(room.ctx, cst.Name("variables")))
        targets: cst.BaseAssignTargetExpression = _bare_tuple(first, second)
        head = cst.Assign([cst.AssignTarget(cst.Name("variables"))], new_value)
        room.converted(call, RULE_TRANSFORM, f"init returns variables: params and {collection}")
    else:
        # out, updates = f.apply(..., mutable=['batch_stats']); state = updates['batch_stats']
        if not isinstance(new_value, cst.Call) or new_value is call:
            return None
        head = cst.Assign([cst.AssignTarget(_bare_tuple(first, cst.Name("updates")))], new_value)
        targets, outputs = second, _state_of(room.ctx, cst.Name("updates"))
    tail = cst.SimpleStatementLine([cst.Assign([cst.AssignTarget(targets)], outputs)])
    return cst.FlattenSentinel([updated.with_changes(body=[head]), tail])


# -- NNX: the model is built eagerly; init reads its state; apply calls it, with train/eval modes ----
def _model_class(room: NnxFile, transformed: Transformed) -> tuple[cst.Call | None, ClassInfo | None]:
    """The constructor call a transform's model is built with, and what the file converted of its class."""
    inner = forward_module(room.ctx, transformed)
    if inner is not None and isinstance(inner.func, cst.Name) and inner.func.value in room.class_infos:
        classdef = room.classes.get(inner.func.value)
        init = analysis.find_method(classdef, "__init__") if classdef is not None else None
        return analysis.name_by_keyword(inner, init), room.class_infos.get(inner.func.value)
    if transformed.name in room.ctx.fact(TRANSFORMS).imported:  # its model is a class of another file of the tree
        return None, room.ctx.tree.models.get(transformed.name)
    if transformed.lambda_forward is not None:  # a lambda building a module of another file
        return inner, None
    if transformed.factory is not None:  # the factory returns the class: `make_forward(n)(din, rngs=...)`
        return cst.Call(transformed.factory), room.class_infos.get(analysis.camel_case(transformed.function))
    name = forward_class(room.ctx, transformed.function)
    return cst.Call(cst.Name(name)), room.class_infos.get(name)


def nnx_model(room: NnxFile, transformed: Transformed, node: cst.CSTNode, sample: cst.Name | None = None) -> cst.Call | None:
    """The eager NNX model standing for `transformed` (reported on `node`); None, with a TODO, when there is none.

    With `sample`, the model of a factory: sized from that input, seeded from the `rngs` it is given."""
    ctor, info = _model_class(room, transformed)
    if ctor is None or info is None:
        forward = transformed.function if transformed.lambda_forward is None else _lambda_code(transformed.lambda_forward)
        room.todo(node, RULE_TRANSFORM, f"`{forward}` builds no module this file converts; construct the NNX model by hand")
        return None
    name = transformed.name
    args: list[cst.Arg] = []
    if info.needs_din or info.needs_input_shape:
        args.append(cst.Arg(_model_input(room, info, name, node, sample)))
    args.extend(unknown_size_args(info, room, node))
    # NNX modules take no `name=`: Haiku's only named the root of the parameter tree
    args.extend(a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in ctor.args if not m.matches(a, m.Arg(keyword=m.Name("name"))))
    if info.needs_rngs:
        rngs = cst.Name(RNGS) if sample is not None else cst.Call(attr(room.ctx.ns, "Rngs"), [cst.Arg(_seed(room, name, node))])
        args.append(keyword_arg(RNGS, rngs))
    room.converted(node, RULE_TRANSFORM, f"hk.transform({transformed.function}) -> eager NNX model")
    return cst.Call(ctor.func, args)


def _model_input(room: NnxFile, info: ClassInfo, name: str, node: cst.CSTNode, sample: cst.Name | None) -> cst.BaseExpression:
    """What the constructor takes of the model's input: its last axis (`din`), or its shape without the
    batch axis where sizes are probed; read off `sample`, else off the literal input of `init`, else `...`."""
    if sample is not None:
        return cst.parse_expression(f"{code(sample)}.shape[1:]" if info.needs_input_shape else f"{code(sample)}.shape[-1]")
    call = room.ctx.fact(INIT_CALLS).get(name)
    example = call.args[1].value if call is not None and len(call.args) > 1 else None
    read = _literal_input_shape if info.needs_input_shape else _literal_last_dim
    known = read(example, room.ctx.module) if example is not None else None
    if known is None:
        what = "input shape (without the batch axis)" if info.needs_input_shape else "input feature size (the last dimension of its input)"
        room.todo(node, RULE_INPUT_SIZE, f"pass the model's {what} in place of `...`")
        return cst.Ellipsis()
    return known


def _built_by_callers(room: NnxFile, transformed: Transformed) -> bool:
    """The model is built where `init` is called, by a factory: nothing in the transform's own file
    initialises or applies it, the file initialises it on an input whose size shows only at run time, or
    it only applies it to loaded weights."""
    name = transformed.name
    if transformed.decorated or transformed.name in room.ctx.fact(TRANSFORMS).imported:
        return False
    if not room.ctx.mentions(f"{name}.init", f"{name}.apply"):
        return True
    init = room.ctx.fact(INIT_CALLS).get(name)
    if init is None and name in _loaded_models(room.ctx):  # built where the weights are loaded
        return True
    info = _model_class(room, transformed)[1]
    inputs = _init_inputs(init) if init is not None else None
    if inputs is None or info is None:
        return False
    if info.needs_input_shape:
        return _literal_input_shape(inputs[1], room.ctx.module) is None
    return info.needs_din and _literal_last_dim(inputs[1], room.ctx.module) is None


def _init_inputs(call: cst.Call, first_input: str | None = None) -> tuple[cst.BaseExpression, cst.BaseExpression] | None:
    """(key, first input) of `net.init(key, x, ...)`: by position, or by keyword (`rng=`, and `first_input`,
    the forward's first parameter, when known)."""
    positional = [a.value for a in call.args if a.keyword is None and not a.star]
    keywords = {a.keyword.value: a.value for a in call.args if a.keyword is not None}
    key = positional.pop(0) if positional else keywords.get("rng")
    sample = positional[0] if positional else keywords.get(first_input or "")
    return None if key is None or sample is None else (key, sample)


def _factory(
    room: NnxFile, transformed: Transformed, statement: cst.SimpleStatementLine | cst.FunctionDef, leading_lines: Sequence[cst.EmptyLine]
) -> cst.FunctionDef | None:
    """`def make_net(sample, *, rngs)`, returning the model built for inputs like `sample`: Haiku sized the
    model from the input of `init`, which is in a caller (a function, another file, or none yet)."""
    factory = factory_name(transformed.name)
    if factory in analysis.module_level_names(room.ctx.module) - {transformed.function}:  # (the forward becomes a class)
        room.todo(statement, RULE_TRANSFORM, f"the model's factory would be `{factory}`, a name this file binds already: "
                  f"rename that, or build `{transformed.name}` by hand where its input shows")
        return None
    sample = cst.Name(FACTORY_SAMPLE)
    model, todos = room.todos_apart(lambda: nnx_model(room, transformed, statement, sample))
    if model is None:
        return None
    init = f"hk.transform({transformed.name}).init" if transformed.by_callers else f"{transformed.name}.init"
    doc = f'"""`{transformed.name}` for inputs like `{FACTORY_SAMPLE}`: Haiku sized the model from the input of `{init}`."""'
    built = add_todo_lines(cst.SimpleStatementLine([cst.Return(model)]), todos)  # above the `...` they are about
    body = [cst.SimpleStatementLine([cst.Expr(cst.SimpleString(doc))]), built]
    params = cst.Parameters([cst.Param(sample)], kwonly_params=[cst.Param(cst.Name(RNGS), cst.Annotation(attr(room.ctx.ns, "Rngs")))])
    room.converted(statement, RULE_TRANSFORM, f"{transformed.name} is built by its callers: {factory}(sample, rngs=...)")
    room.ctx.module_classes[factory] = transformed.name  # what the files importing the transform build its model with
    return cst.FunctionDef(cst.Name(factory), params, cst.IndentedBlock(body), leading_lines=leading_lines)


def nnx_decorated_model(
    room: NnxFile, function: cst.FunctionDef, leading_lines: Sequence[cst.EmptyLine] = AFTER_CLASS
) -> cst.SimpleStatementLine | cst.FunctionDef | None:
    """What stands where a forward function was: its model bound to its name when it was decorated, the
    model's factory when its callers transform it (they hold `init`, so the input size)."""
    transformed = room.ctx.fact(TRANSFORMS).forwards[function.name.value]
    if transformed.by_callers:
        return _factory(room, transformed, function, leading_lines)
    return _decorated_model(room, function, nnx_model, leading_lines)


@NNX_FILE_NODES.on_leave(cst.Assign, rule=RULE_TRANSFORM)
@NNX_FILE_NODES.on_leave(cst.AnnAssign, rule=RULE_TRANSFORM)
def _nnx_transformed(room: NnxFile, original: AnyAssign, updated: AnyAssign) -> AnyAssign | None:
    transformed = transformed_assignment(room.ctx, original)
    if transformed is None:
        _unread_multi_transform(room, original)
    if transformed is None or _built_by_callers(room, transformed):
        return None  # (a factory replaces the whole statement: `_nnx_statement`)
    model = nnx_model(room, transformed, original)
    return updated if model is None else updated.with_changes(value=model)


@NNX_FILE_NODES.on_leave(cst.SimpleStatementLine, rule=RULE_TRANSFORM)
def _nnx_statement(
    room: NnxFile, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine
) -> cst.RemovalSentinel | cst.FunctionDef | None:
    """Apply aliases go; a transform its callers build becomes its factory."""
    removed = _apply_aliases(room, original, updated)
    if removed is not None or len(original.body) != 1 or not isinstance(original.body[0], cst.Assign | cst.AnnAssign):
        return removed
    transformed = transformed_assignment(room.ctx, original.body[0])
    if transformed is None or not _built_by_callers(room, transformed):
        return None
    return _factory(room, transformed, original, original.leading_lines or AFTER_CLASS)


@NNX_FILE_NODES.on_leave(cst.ImportFrom, rule=RULE_TRANSFORM)
def _import_factories(room: NnxFile, original: cst.ImportFrom, updated: cst.ImportFrom) -> cst.ImportFrom | None:
    """`from model import net` -> `from model import make_net`, where this file builds the model (and
    `State`, the variable type of its hand-made state)."""
    read = room.ctx.fact(TRANSFORMS)
    imported = read.imported
    if not imported or isinstance(updated.names, cst.ImportStar):
        return None
    names = []
    for alias in updated.names:
        made = imported.get(alias.evaluated_alias or alias.evaluated_name)
        if made is not None and made.with_state and made.module == read.state_module:
            names.append(cst.ImportAlias(cst.Name(NNX_STATE_CLASS)))
        if made is None or made.used_in_file:
            names.append(alias)
        elif (name := alias.evaluated_alias or alias.evaluated_name) not in room.ctx.fact(INIT_CALLS) and name not in _loaded_models(room.ctx):
            room.todo(original, RULE_TRANSFORM, f"`{made.name}` is a factory now: build the model here with `{factory_name(made.name)}(sample, rngs=nnx.Rngs(0))`")
            names.append(alias)
        else:
            names.append(alias.with_changes(name=cst.Name(factory_name(made.name)), asname=None))
    return updated.with_changes(names=names)


def _read_init_calls(module: cst.Module, ctx: Context) -> dict[str, cst.Call]:
    """Each transformed object's first `init` call in the file."""
    finder = _InitCalls(set(ctx.fact(TRANSFORMS).transforms))
    if ctx.mentions(".init"):
        finder.walk(module)
    return finder.found


class _InitCalls(Walker):
    def __init__(self, names: set[str]) -> None:
        self.names = names
        self.found: dict[str, cst.Call] = {}

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.attr.value == "init" and func.value.value in self.names:
            self.found.setdefault(func.value.value, node)


INIT_CALLS = FileFact(_read_init_calls)



@dataclass(frozen=True)
class Foreign:
    """What a call passes that `init` did not make, and the transforms `init` was called for where it is."""

    loaded: frozenset[str]  # the variables it passes holding such parameters
    initialised: frozenset[str]  # the transforms whose `init` its scopes call: NNX built their models there


def _read_foreign_params(module: cst.Module, ctx: Context) -> dict[cst.Call, Foreign]:
    """For an `apply` call, and a call of a function of the file, the variables it passes (by position)
    that hold parameters `init` did not make here: the variable, as its innermost scope binds it, holds
    a value such as `pickle.load(f)`, a checkpoint restore or a helper's result. Those calls must keep
    their weights, not the model's fresh ones. A value counts as the file's own when it holds a
    transform's `init` call, or reads the variable itself or a variable `init` bound there
    (`params = optax.apply_updates(params, updates)`); a function's own parameters are its callers'."""
    read = ctx.fact(TRANSFORMS)
    transforms = set(read.transforms)
    if not transforms or not ctx.mentions(".apply"):
        return {}
    scopes = _Scopes(transforms, set(read.module_functions))
    scopes.walk(module)
    foreign: dict[cst.Call, Foreign] = {}
    for call, names, chain in scopes.calls:
        made = {bound for scope in chain for bound, held in scope.items() if any(_inits(v, transforms) for v in held)}
        loaded = frozenset(
            name for name in names
            if any(
                not _inits(v, transforms) and not (analysis.Names.of(v).used & (made | {name}))
                for v in next((scope[name] for scope in reversed(chain) if name in scope), [])
            )
        )
        if loaded:
            initialised = frozenset(t for scope in chain for held in scope.values() for v in held for t in transforms if _inits(v, {t}))
            foreign[call] = Foreign(loaded, initialised)
    return foreign


def _inits(value: cst.BaseExpression, transforms: set[str]) -> bool:
    return any(
        isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value == "init"
        and isinstance(node.func.value, cst.Name) and node.func.value.value in transforms
        for node in descendants(value)
    )


class _Scopes(Walker):
    """Each function's (and the module's) assigned values by variable, and the calls that may pass
    parameters (`apply` on a variable, a call of one of the file's functions) with the variables they
    pass and the scopes they see (tuple targets get the whole value)."""

    def __init__(self, transforms: set[str], functions: set[str]) -> None:
        self.transforms = transforms
        self.functions = functions
        self.chain: list[dict[str, list[cst.BaseExpression]]] = [{}]
        self.calls: list[tuple[cst.Call, list[str], list[dict[str, list[cst.BaseExpression]]]]] = []

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.chain = [*self.chain, {}]

    def leave_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.chain = self.chain[:-1]

    def _bind(self, target: cst.BaseExpression, value: cst.BaseExpression) -> None:
        if isinstance(target, cst.Name):
            self.chain[-1].setdefault(target.value, []).append(value)
        elif isinstance(target, cst.Tuple | cst.List):
            for element in target.elements:
                self._bind(element.value, value)

    def visit_Assign(self, node: cst.Assign) -> None:
        for target in node.targets:
            self._bind(target.target, node.value)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        if node.value is not None:
            self._bind(node.target, node.value)

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        applies = (
            isinstance(func, cst.Attribute) and func.attr.value == "apply" and isinstance(func.value, cst.Name)
            and func.value.value in self.transforms
        )
        passed = [a.value.value for a in node.args if a.keyword is None and not a.star and isinstance(a.value, cst.Name)]
        if passed and (applies or (isinstance(func, cst.Name) and func.value in self.functions)):
            self.calls.append((node, passed, self.chain))


FOREIGN_PARAMS = FileFact(_read_foreign_params)


def passes_loaded(ctx: Context, call: cst.Call, argument: cst.BaseExpression) -> bool:
    """Whether `argument` of `call` is a variable holding parameters `init` did not make here."""
    foreign = ctx.fact(FOREIGN_PARAMS).get(call)
    return isinstance(argument, cst.Name) and foreign is not None and argument.value in foreign.loaded


@dataclass(frozen=True)
class LoadedWeights:
    """A call handing loaded parameters to a model: `net.apply(params, x)`, or `evaluate(params, x)` of a
    file function that applies the model to its parameter."""

    model: str
    weights: list[cst.BaseExpression]  # the params (and state) passed
    sample: cst.BaseExpression | None  # what the model's first input is, when the call shows it
    loaded: list[cst.BaseExpression]  # those of `weights` that `init` did not make


def _read_loaded_weights(module: cst.Module, ctx: Context) -> dict[cst.Call, LoadedWeights]:
    """The calls that hand loaded parameters to a model (see `LoadedWeights`)."""
    functions = ctx.fact(TRANSFORMS).module_functions
    found: dict[cst.Call, LoadedWeights] = {}
    for call in ctx.fact(FOREIGN_PARAMS):
        function = functions.get(call.func.value) if isinstance(call.func, cst.Name) else None
        applied = _applied_in(ctx, function) if function is not None else _applied(ctx, call)
        if applied is None:
            continue
        model, apply = applied[0].transformed.name, applied[1]
        # `evaluate(params, x)`: what the caller passes in place of each parameter of the function
        arguments = dict(zip((p.name.value for p in function.params.params), _positional(call.args))) if function is not None else None
        passed = [_passed(e, arguments) for e in (apply.params, apply.state) if e is not None]
        weights = [w for w in passed if w is not None]
        inputs = _positional(apply.rest)
        loaded = [w for w in weights if passes_loaded(ctx, call, w)]  # params, state, or both (the rest made by `init`)
        if len(weights) == len(passed) and loaded:
            found[call] = LoadedWeights(model, weights, _passed(inputs[0], arguments) if inputs else None, loaded)
    return found


def _passed(value: cst.BaseExpression, arguments: dict[str, cst.BaseExpression] | None) -> cst.BaseExpression | None:
    """`value` as the call site shows it: itself in a direct `apply`, else the argument passed for that parameter."""
    if arguments is None:
        return value
    return arguments.get(value.value) if isinstance(value, cst.Name) else None


def _applied(ctx: Context, call: cst.Call) -> tuple[TransformCall, ApplyArgs] | None:
    """`call` as an `apply` of a transform, with its arguments."""
    found = transform_call(ctx, call)
    if found is None or found.method != "apply":
        return None
    try:
        return found, found.split_apply(call)
    except Unconvertible:
        return None


def _applied_in(ctx: Context, function: cst.FunctionDef) -> tuple[TransformCall, ApplyArgs] | None:
    """The first `apply` a function makes, with its arguments."""
    calls = (_applied(ctx, node) for node in descendants(function.body) if isinstance(node, cst.Call))
    return next((found for found in calls if found is not None), None)


LOADED_WEIGHTS = FileFact(_read_loaded_weights)


def _loaded_models(ctx: Context) -> set[str]:
    """The transforms this file hands loaded weights to: it builds their models where it loads them."""
    return {loaded.model for loaded in ctx.fact(LOADED_WEIGHTS).values()}


def _positional(args: Sequence[cst.Arg]) -> list[cst.BaseExpression]:
    return [a.value for a in args if a.keyword is None and not a.star]


def _report_loaded(room: FileRoom, node: cst.CSTNode, loaded: LoadedWeights) -> None:
    """The one thing the code cannot do: the files it loads must hold the converted weights."""
    target = room.ctx.target
    state = " --state STATE.pkl --state-out CONVERTED_STATE.pkl" if len(loaded.weights) > 1 else ""
    room.warn(node, RULE_TRANSFORM, (
        f"{' and '.join(f'`{code(w)}`' for w in loaded.loaded)} are loaded, not made by `init`: convert the Haiku "
        f"checkpoint once with `haiku2flax convert-params FILE --to {target} --entry {loaded.model} --input SPEC "
        f"--params PARAMS.pkl{state} --out CONVERTED.pkl` and load the converted file in its place ({CONVERTED_HOLDS[target]})"
    ))


CONVERTED_HOLDS = {
    "linen": "the 'params' collection the code passes as `{'params': ...}`, and the state's collection",
    "nnx": "the model's nnx.Param state as a pure dict, and the rest of its state: what `nnx.update` takes",
}


@LINEN_NODES.on_leave(cst.Call, rule=RULE_TRANSFORM)
def _linen_loaded_weights(room: LinenMethod, original: cst.Call, updated: cst.Call) -> None:
    """Linen passes loaded weights on as they are (`{'params': params}`): the note says to convert the file."""
    loaded = room.ctx.fact(LOADED_WEIGHTS).get(original)
    if loaded is not None:
        _report_loaded(room, original, loaded)


def load_weights(room: NnxFile, call: cst.Call) -> bool:
    """`nnx.update(model, params[, state])` before a call that hands loaded weights to the model, so it
    computes with them; where its callers build the model (a factory) and no `init` of this scope built
    it, built first from the input the weights are applied to. False, with a TODO, when the call shows no such input."""
    loaded = room.ctx.fact(LOADED_WEIGHTS)[call]
    model, weights = loaded.model, loaded.weights
    factory = _factory_of(room, room.ctx.fact(TRANSFORMS).transforms[model])
    ns = room.ctx.ns
    if factory is not None and model not in room.ctx.fact(FOREIGN_PARAMS)[call].initialised:  # (else `init` built it here)
        if loaded.sample is None:
            room.todo(call, RULE_TRANSFORM, f"`{code(weights[0])}` are loaded, not made by `init`: build the model with "
                      f"`{model} = {factory}(sample, rngs=nnx.Rngs(0))` and load them with `nnx.update({model}, {code(weights[0])})`")
            return False
        build = cst.Call(cst.Name(factory), [cst.Arg(loaded.sample), keyword_arg(RNGS, cst.Call(attr(ns, "Rngs"), [cst.Arg(cst.Integer("0"))]))])
        room.insert_before_statement(cst.SimpleStatementLine([cst.Assign([cst.AssignTarget(cst.Name(model))], build)]))
    update = cst.Call(attr(ns, "update"), [cst.Arg(cst.Name(model)), *(cst.Arg(w) for w in weights)])
    room.insert_before_statement(cst.SimpleStatementLine([cst.Expr(update)]))
    room.converted(call, RULE_TRANSFORM, "loaded weights: nnx.update(model, weights) before calling the model")
    _report_loaded(room, call, loaded)
    return True


def _seed(room: NnxFile, name: str, node: cst.CSTNode) -> cst.BaseExpression:
    call = room.ctx.fact(INIT_CALLS).get(name)
    key = call.args[0].value if call is not None and call.args else None
    if isinstance(key, cst.Call) and (dotted_name(key.func) or "").rsplit(".", 1)[-1] in ("key", "PRNGKey") and key.args:
        seed = key.args[0].value
        if isinstance(seed, cst.Integer):
            return seed
    room.warn(node, RULE_TRANSFORM, "initialisation seed not found: nnx.Rngs(0) used (Haiku and Flax inits never agree bitwise anyway)")
    return cst.Integer("0")


@NNX_FILE_CALLS.on_object(_transform_method, rule=RULE_TRANSFORM)
def _nnx_transform_call(room: NnxFile, site: CallSite) -> cst.BaseExpression | None:
    call = transform_call(room.ctx, site.original)
    if call is None:
        return None
    original, updated = site.original, site.updated
    model = call.model
    ns = room.ctx.ns
    room.ctx.need_target_import()  # (a file that only uses a model of another file has no class that adds it)
    state_variable = room.ctx.fact(TRANSFORMS).state_variable
    with_state = call.transformed.with_state
    if call.method == "init":
        factory = _factory_of(room, call.transformed)
        if factory is not None:
            made = room.ctx.fact(TRANSFORMS).imported.get(call.transformed.name)
            built = _built_here(room, call, factory, made.first_input if made is not None else None)
            if built is None:
                return updated
            room.insert_before_statement(built)
        filters = [cst.Arg(attr(ns, "Param"))]
        if with_state:
            filters.append(cst.Arg(state_variable))
        room.converted(original, RULE_TRANSFORM, "init: the NNX model is built eagerly; nnx.state reads its variables")
        return cst.Call(attr(ns, "state"), [cst.Arg(model), *filters])
    try:
        apply = call.split_apply(updated)
    except Unconvertible as reason:
        room.todo(original, RULE_TRANSFORM, str(reason))
        return updated
    if original in room.ctx.fact(LOADED_WEIGHTS) and not load_weights(room, original):
        return updated
    info = _model_class(room, call.transformed)[1]
    removed = info.removed_call_params if info is not None else {}
    for arg in apply.rest:
        if arg.keyword is not None and arg.keyword.value in removed:
            _set_mode(room, model, arg.value)
    positional = [a for a in apply.rest if a.keyword is None]
    for index in removed.values():
        if index < len(positional):
            _set_mode(room, model, positional[index].value)
    if apply.rng is not None:
        room.warn(original, RULE_RNG, "the apply rng is dropped: NNX layers draw from the model's nnx.Rngs")
    room.converted(original, RULE_TRANSFORM, "apply -> calling the NNX model")
    method = model if call.module_method == "__call__" else cst.Attribute(model, cst.Name(call.module_method))
    forward = updated.with_changes(func=method, args=_kept_args(apply.rest, drop_removed_args(apply.rest, removed)))
    if not with_state:
        return forward
    state = cst.Call(attr(ns, "state"), [cst.Arg(model), cst.Arg(state_variable)])
    return cst.Tuple([cst.Element(forward), cst.Element(state)])


def _factory_of(room: NnxFile, transformed: Transformed) -> str | None:
    """`make_net` where the model of `net` is built by the code that initialises (or loads) it."""
    made = room.ctx.fact(TRANSFORMS).imported.get(transformed.name)
    if made is not None:
        return factory_name(made.name) if not made.used_in_file else None
    return factory_name(transformed.name) if _built_by_callers(room, transformed) else None


def _built_here(room: NnxFile, call: TransformCall, factory: str, first_input: str | None) -> cst.SimpleStatementLine | None:
    """`net = make_net(batch, rngs=nnx.Rngs(key))` for `net.init(key, batch)`: the model is built where
    Haiku initialised it, from the same input (None, with a TODO, when the call does not show them)."""
    inputs = _init_inputs(call.node, first_input)
    if inputs is None:
        room.todo(call.node, RULE_TRANSFORM, f"build the model here with `{factory}(sample, rngs=nnx.Rngs(key))` from the input `init` would see")
        return None
    key, sample = inputs
    rngs = keyword_arg(RNGS, cst.Call(attr(room.ctx.ns, "Rngs"), [cst.Arg(key)]))
    build = cst.Call(cst.Name(factory), [cst.Arg(sample), rngs])
    room.converted(call.node, RULE_TRANSFORM, f"the model is built here, from the input of init: {factory}(...)")
    return cst.SimpleStatementLine([cst.Assign([cst.AssignTarget(cst.Name(call.transformed.name))], build)])


def _set_mode(room: FileRoom, model: cst.BaseExpression, flag: cst.BaseExpression) -> None:
    """`model.train()` / `model.eval()` before the statement, for the mode flag the model no longer takes."""
    train = cst.Call(cst.Attribute(model, cst.Name("train")))
    evaluate = cst.Call(cst.Attribute(model, cst.Name("eval")))
    if m.matches(flag, m.Name("True")):
        expression: cst.BaseExpression = train
    elif m.matches(flag, m.Name("False")):
        expression = evaluate
    else:
        expression = cst.IfExp(test=flag, body=train, orelse=evaluate)
    room.insert_before_statement(cst.SimpleStatementLine([cst.Expr(expression)]))


def _literal_last_dim(sample: cst.BaseExpression, module: cst.Module) -> cst.BaseExpression | None:
    """784 for `jnp.ones((1, 784))`, directly or through a module-level `sample_x = ...`."""
    shape = _literal_shape(sample, module)
    last = shape[-1] if shape else None
    return last if isinstance(last, cst.Integer) else None


def _literal_input_shape(sample: cst.BaseExpression, module: cst.Module) -> cst.BaseExpression | None:
    """`(28, 28, 1)` for `jnp.ones((1, 28, 28, 1))`: the literal shape without the batch axis."""
    shape = _literal_shape(sample, module)
    if not shape or not all(isinstance(n, cst.Integer) for n in shape):
        return None
    return cst.Tuple([cst.Element(n) for n in shape[1:]])


def _literal_shape(sample: cst.BaseExpression, module: cst.Module) -> list[cst.BaseExpression] | None:
    """The dimensions of an array built from a literal shape (`jnp.ones((1, 784))`), directly or through a
    module-level `sample_x = ...`."""
    if isinstance(sample, cst.Name):
        name = sample.value
        for statement in module.body:
            assign = analysis.simple_assign(statement)
            if assign is not None and m.matches(assign[0], m.Name(name)):
                sample = assign[1]
    if not isinstance(sample, cst.Call) or not sample.args:
        return None
    func = (dotted_name(sample.func) or "").rsplit(".", 1)[-1]
    shape = next((a.value for a in sample.args if a.keyword is None or a.keyword.value == "shape"), None)
    if func in ("normal", "uniform") and len(sample.args) >= 2:
        shape = sample.args[1].value
    if func not in ("ones", "zeros", "empty", "full", "normal", "uniform") or not isinstance(shape, cst.Tuple | cst.List):
        return None
    return [e.value for e in shape.elements]


def _subscript(value: cst.BaseExpression, key: str) -> cst.Subscript:
    return cst.Subscript(value=value, slice=[cst.SubscriptElement(cst.Index(cst.SimpleString(f"'{key}'")))])


def _bare_tuple(*values: cst.BaseExpression) -> cst.Tuple:
    return cst.Tuple([cst.Element(v) for v in values], lpar=[], rpar=[])


def _pair_assignment(statement: cst.SimpleStatementLine) -> tuple[cst.BaseAssignTargetExpression, cst.BaseAssignTargetExpression, cst.Call] | None:
    """(a, b, call) for a statement `a, b = call(...)`."""
    if len(statement.body) != 1 or not isinstance(statement.body[0], cst.Assign):
        return None
    assign = statement.body[0]
    if len(assign.targets) != 1 or not isinstance(assign.value, cst.Call):
        return None
    target = assign.targets[0].target
    if not isinstance(target, cst.Tuple | cst.List) or len(target.elements) != 2:
        return None
    first, second = (e.value for e in target.elements)
    if any(isinstance(e, cst.StarredElement) for e in target.elements):
        return None
    if not isinstance(first, cst.BaseAssignTargetExpression) or not isinstance(second, cst.BaseAssignTargetExpression):
        return None
    return first, second, assign.value


def _method_arg(call: TransformCall) -> list[cst.Arg]:
    """Linen's `method='encode'` when the call runs another method than `__call__`."""
    if call.module_method == "__call__":
        return []
    return [keyword_arg("method", cst.SimpleString(f"'{call.module_method}'"))]


def unknown_size_args(info: ClassInfo, report: FileRoom, node: cst.CSTNode) -> list[cst.Arg]:
    """`...` placeholders, each with a TODO, for the input sizes an NNX constructor could not infer."""
    for name in info.unknown_sizes:
        report.todo(node, RULE_INPUT_SIZE, f"pass `{name}` in place of `...`: an input feature size that could not be inferred")
    return [cst.Arg(cst.Ellipsis()) for _ in info.unknown_sizes]


def drop_removed_args(args: list[cst.Arg], removed: dict[str, int]) -> list[cst.Arg]:
    """`args` without those passing a parameter the callee no longer has (by keyword or position)."""
    if not removed:
        return args
    positions = set(removed.values())
    kept = []
    position = 0
    for arg in args:
        if arg.keyword is None and not arg.star:
            position += 1
            if position - 1 in positions:
                continue
        elif arg.keyword is not None and arg.keyword.value in removed:
            continue
        kept.append(arg)
    return kept


def _kept_args(original: list[cst.Arg], kept: list[cst.Arg]) -> list[cst.Arg]:
    """`kept` (a subsequence of `original`) ending the way `original` ended (trailing comma, comment)."""
    if not kept or kept[-1] is original[-1]:
        return kept
    last = kept[-1].with_changes(comma=original[-1].comma, whitespace_after_arg=original[-1].whitespace_after_arg)
    if isinstance(last.comma, cst.Comma) and not isinstance(last.comma.whitespace_after, cst.ParenthesizedWhitespace):
        last = last.with_changes(comma=cst.MaybeSentinel.DEFAULT)
    return [*kept[:-1], last]


def _lambda_code(function: cst.FunctionDef) -> str:
    """The lambda a lambda forward (`def <lambda>(x): return Model()(x)`) was written as."""
    statement = function.body.body[0]
    assert isinstance(statement, cst.SimpleStatementLine) and isinstance(statement.body[0], cst.Return)
    assert statement.body[0].value is not None
    return f"lambda {code(function.params)}: {code(statement.body[0].value)}"
