"""`hk.transform` and friends, and the `init`/`apply` calls on what they return.

What it converts:
- `f = hk.transform(forward)` (also `hk.without_apply_rng(...)`, `hk.transform_with_state(...)`): a
  forward that only builds one module and calls it with its own arguments becomes that module; any
  other forward becomes a module of its own, named after the function.
- A module-level function decorated with `@hk.transform` (or `@hk.transform_with_state`, under an
  optional `@hk.without_apply_rng`) converts the same way: the function becomes the module class, and
  right after it `f = F()` (NNX: `f = F(din, rngs=nnx.Rngs(seed))`) binds the model to its old name.
  Other decorator stacks, and decorated functions that are not at module level, get a TODO.
- Linen: `f.init(rng, x)` returns variables, so the params are `f.init(rng, x)['params']`;
  `f.apply(params, rng, x)` -> `f.apply({'params': params}, x, rngs={'dropout': rng})`; with state,
  `params, state = f.init(...)` reads both collections and `out, state = f.apply(params, state, ...)`
  passes `mutable=['batch_stats']` and reads the updates back.
- NNX: the model is built eagerly where the transform was, `Model(din, ..., rngs=nnx.Rngs(seed))`,
  with the input size and seed read from `f.init(key, sample_x)` where they are literal;
  `f.init(...)` -> `nnx.state(model, nnx.Param[, nnx.BatchStat])`; `f.apply(params, rng, x,
  training=True)` -> `model.train()` then `model(x)` (a mode flag the model no longer takes becomes
  `model.train()` / `model.eval()`).

Why: Haiku's pure `init`/`apply` pair becomes Linen's variables dict and NNX's stateful object; the
rng of `apply` becomes Linen's named `'dropout'` stream, and NNX's model-owned `nnx.Rngs`.

Example (NNX)::

    model = hk.transform(forward)                  model = Model(784, 256, 10, rngs=nnx.Rngs(0))
    params = model.init(random.key(0), sample_x)   params = nnx.state(model, nnx.Param)
    y = model.apply(params, key, x, training=True) model.train()
                                                   y = model(x)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

import libcst as cst

from ..engine import analysis
from ..engine import matchers as m
from ..engine.analysis import Transformed
from ..engine.calls import Unconvertible, code, keyword_arg, respell_args
from ..engine.context import Context, FileFact, add_todo_lines, attr
from ..engine.names import dotted_name
from ..engine.registry import Status, register
from ..engine.rewriter import Rewriter
from ..engine.walk import Walker
from .parameters import LINEN_STATE_COLLECTION, NNX_STATE_CLASS, uses_haiku_state
from .rng import RULE_RNG

TRANSFORM_APIS = ("transform", "transform_with_state", "without_apply_rng", "multi_transform", "multi_transform_with_state")
RULE_TRANSFORM = register(
    "HK004", "transform", Status.CONVERTED, "hk.transform / transform_with_state / without_apply_rng and their init/apply calls", __name__,
    apis=TRANSFORM_APIS,
)
RULE_INPUT_SIZE = register("HK006", "input-size", Status.PARTIAL, "NNX input sizes: inferred by dataflow, else a constructor argument with a TODO", __name__)

AnyAssign = TypeVar("AnyAssign", cst.Assign, cst.AnnAssign)  # `f = hk.transform(...)` or `f: T = hk.transform(...)`

AFTER_CLASS = (cst.EmptyLine(indent=False),) * 2  # the blank lines above a statement that follows a class
STATE_COLLECTION = "batch_stats"  # where Linen keeps what Haiku's transform_with_state calls state
STATE_VARIABLE = "BatchStat"  # the NNX variable type of that state


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
    unconverted_decorations: dict[cst.CSTNode, str]  # decorated forwards left as they are (statement -> why)
    forwards: dict[str, Transformed]  # forward function name -> its transform
    state_collection: str  # where transform_with_state's state lives in Linen
    state_variable: cst.BaseExpression  # and its variable type in NNX
    module_functions: dict[str, cst.FunctionDef | cst.Lambda]  # module-level functions (and lambda forwards)
    multi: dict[str, analysis.MultiForward]  # multi_transform name -> its forward's methods
    apply_aliases: dict[str, tuple[Transformed, str]]  # `encode, decode = model.apply`: name -> (model, method)
    alias_statements: set[cst.CSTNode]
    train_state_model: Transformed | None  # the model whose `apply` a TrainState carries, when there is one


def _read_transforms(module: cst.Module, ctx: Context) -> FileTransforms:
    # Linen rewrites init/apply call by call; NNX's training rule follows params by dataflow at module level only
    transforms = analysis.module_transforms(module, ctx.names, in_functions=ctx.target == "linen")
    # the model of a decorated forward is built where the function was: the classes it uses must exist by then
    unconverted_decorations = {
        t.statement: f"its model would be built here, before `{late}` is defined: move this function below that class"
        for t in transforms.values()
        if isinstance(t.statement, cst.FunctionDef) and (late := _class_defined_below(t.statement, module)) is not None
    }
    transforms = {name: t for name, t in transforms.items() if t.statement not in unconverted_decorations}
    # hk.get_state / hk.set_state state lives in Linen's 'state' collection / the file's State variables
    hand_made_state = ctx.mentions("get_state", "set_state") and uses_haiku_state(module, ctx.names)
    module_functions: dict[str, cst.FunctionDef | cst.Lambda] = {s.name.value: s for s in module.body if isinstance(s, cst.FunctionDef)}
    module_functions.update({t.function: t.lambda_forward for t in transforms.values() if t.lambda_forward is not None})
    multi = {
        t.name: read
        for t in transforms.values()
        if t.multi and t.function in module_functions
        and (read := analysis.multi_forward(module_functions[t.function])) is not None
    }
    # `encode, decode = model.apply` (multi_transform): each name calls one method of the model
    apply_aliases: dict[str, tuple[Transformed, str]] = {}
    alias_statements: set[cst.CSTNode] = set()
    for statement in module.body:
        assign = analysis.simple_assign(statement)
        if assign is None or not m.matches(assign[1], m.Attribute(value=m.Name(), attr=m.Name("apply"))):
            continue
        forward = multi.get(assign[1].value.value)  # type: ignore[attr-defined]
        targets = assign[0].elements if isinstance(assign[0], cst.Tuple | cst.List) else ()
        if forward is None or len(targets) != len(forward.apply_methods) or not all(isinstance(e.value, cst.Name) for e in targets):
            continue
        transformed = transforms[assign[1].value.value]  # type: ignore[attr-defined]
        for element, method in zip(targets, forward.apply_methods, strict=True):
            apply_aliases[element.value.value] = (transformed, method)  # type: ignore[attr-defined]
        alias_statements.add(statement)
    finder = _TrainStateFinder(set(transforms))
    if transforms and ctx.mentions("apply_fn"):
        finder.walk(module)
    # the transformed model whose `apply` a TrainState carries, when there is exactly one
    train_state_model = transforms[finder.models.pop()] if len(finder.models) == 1 else None
    if ctx.mentions("@") and ctx.mentions("transform", "without_apply_rng"):  # a transform as a decorator
        decorations = _UnconvertedDecorations(ctx.names, module, {*unconverted_decorations, *(t.statement for t in transforms.values())})
        decorations.walk(module)
        unconverted_decorations.update(decorations.reasons)
    state_variable: cst.BaseExpression = cst.Name(NNX_STATE_CLASS) if hand_made_state else attr(ctx.ns, STATE_VARIABLE)
    return FileTransforms(
        transforms, unconverted_decorations, {t.function: t for t in transforms.values()},
        LINEN_STATE_COLLECTION if hand_made_state else STATE_COLLECTION, state_variable, module_functions, multi,
        apply_aliases, alias_statements, train_state_model,
    )


TRANSFORMS = FileFact(_read_transforms)


class _Transforms(Rewriter):
    """What both targets read: the file's transforms (`TRANSFORMS`), kept on the converter."""

    def init_transforms(self, module: cst.Module) -> None:
        read = self.ctx.fact(TRANSFORMS)
        self.transforms = read.transforms
        self.unconverted_decorations = read.unconverted_decorations
        self.forwards = read.forwards
        self.state_collection = read.state_collection
        self.state_variable = read.state_variable
        self.module_functions = read.module_functions
        self.multi = read.multi
        self.apply_aliases = read.apply_aliases
        self._alias_statements = read.alias_statements
        self.train_state_model = read.train_state_model

    def transform_call(self, call: cst.Call) -> TransformCall | None:
        """`f.init(...)`, `f.apply(...)`, a multi_transform apply alias `encode(...)`, or `state.apply_fn(...)`."""
        if isinstance(call.func, cst.Name) and call.func.value in self.apply_aliases:
            transformed, method = self.apply_aliases[call.func.value]
            return TransformCall(call, transformed, "apply", method)
        if self.train_state_model is not None and m.matches(call.func, m.Attribute(attr=m.Name("apply_fn"))):
            return TransformCall(call, self.train_state_model, "apply", through_train_state=True)
        if not m.matches(call.func, m.Attribute(value=m.Name(), attr=m.Name("init") | m.Name("apply"))):
            return None
        transformed = self.transforms.get(call.func.value.value)  # type: ignore[attr-defined]
        if transformed is None or (transformed.multi and call.func.attr.value == "apply"):  # type: ignore[attr-defined]
            return None
        multi = self.multi.get(transformed.name)
        module_method = multi.init_method if multi is not None else "__call__"
        return TransformCall(call, transformed, call.func.attr.value, module_method)  # type: ignore[attr-defined]

    def transformed_assignment(self, original: cst.Assign | cst.AnnAssign) -> Transformed | None:
        """The transform a module-level `f = hk.transform(...)` (or `f: hk.Transformed = ...`) statement defines."""
        targets = [t.target for t in original.targets] if isinstance(original, cst.Assign) else [original.target]
        if len(targets) != 1 or not isinstance(targets[0], cst.Name) or original.value is None:
            return None
        transformed = self.transforms.get(targets[0].value)
        if transformed is None or analysis.read_transform(original.value, self.ctx.names) is None:
            return None
        return transformed

    def leave_Assign(self, original: cst.Assign, updated: cst.Assign) -> cst.Assign:
        return self.convert_transformed(original, updated) or super().leave_Assign(original, updated)

    def leave_AnnAssign(self, original: cst.AnnAssign, updated: cst.AnnAssign) -> cst.AnnAssign:
        return self.convert_transformed(original, updated) or super().leave_AnnAssign(original, updated)

    def convert_transformed(self, original: AnyAssign, updated: AnyAssign) -> AnyAssign | None:
        """The target's model in place of `f = hk.transform(...)`; None for other assignments."""
        raise NotImplementedError

    def forward_module(self, transformed: Transformed) -> cst.Call | None:
        forward = self.module_functions.get(transformed.function)
        return analysis.forward_module(forward) if forward is not None else None

    def transformed_model(self, transformed: Transformed, node: cst.CSTNode) -> cst.BaseExpression | None:
        """The target's model standing for `transformed` (reported on `node`); None, with a TODO, when there is none."""
        raise NotImplementedError

    def decorated_model(self, function: cst.FunctionDef, leading_lines: Sequence[cst.EmptyLine] = AFTER_CLASS) -> cst.SimpleStatementLine | None:
        """`log_prob = LogProb()`: the model bound to the name of a `@hk.transform`-decorated function, with
        the TODOs its construction raises above it (not above the class the function becomes)."""
        self._statement_todos.append([])
        model = self.transformed_model(self.forwards[function.name.value], function)
        todos = self._statement_todos.pop()
        if model is None:
            self._statement_todos[-1].extend(todos)  # the function stays, under its TODOs
            return None
        line = cst.SimpleStatementLine([cst.Assign([cst.AssignTarget(function.name)], model)], leading_lines=leading_lines)
        return add_todo_lines(line, todos)  # type: ignore[return-value]

    def leave_FunctionDef(self, original: cst.FunctionDef, updated: cst.FunctionDef):
        reason = self.unconverted_decorations.get(original)
        if reason is not None:
            self.todo(original, RULE_TRANSFORM, reason)
        return super().leave_FunctionDef(original, updated)

    def leave_SimpleStatementLine(self, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine):
        if original in self._alias_statements:
            self.converted(original, RULE_TRANSFORM, "multi_transform apply functions become model methods")
            return cst.RemovalSentinel.REMOVE
        return super().leave_SimpleStatementLine(original, updated)


class _StatefulLayers(Walker):
    """Whether a file builds a table layer that keeps state (BatchNorm)."""

    def __init__(self, ctx) -> None:
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

    def __init__(self, names, module: cst.Module, known: set[cst.CSTNode]) -> None:
        self.names = names
        self.module_level = set(module.body)
        self.known = known  # read as transforms, or given their reason already
        self.reasons: dict[cst.CSTNode, str] = {}

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        apis = [self.names.haiku_api(d.decorator) for d in node.decorators]
        if node in self.known or not set(apis) & set(TRANSFORM_APIS):
            return
        if node not in self.module_level:
            reason = "only a module-level transformed function becomes a Flax module: move this one to module level, or write it as a module class (what it closes over as fields)"
        elif "without_apply_rng" in apis and apis.index("without_apply_rng") > min(i for i, a in enumerate(apis) if a in TRANSFORM_APIS):
            reason = "`@hk.without_apply_rng` takes the transformed object (Haiku raises here): put it above `@hk.transform`"
        else:
            reason = "only `@hk.transform` / `@hk.transform_with_state`, under an optional `@hk.without_apply_rng`, convert: rewrite the other decorators by hand"
        self.reasons[node] = reason


class _TrainStateFinder(Walker):
    """`TrainState.create(apply_fn=f.apply, ...)`: the models whose `apply` a train state carries."""

    def __init__(self, transforms: set[str]) -> None:
        self.transforms = transforms
        self.models: set[str] = set()

    def visit_Arg(self, node: cst.Arg) -> None:
        if (
            m.matches(node, m.Arg(keyword=m.Name("apply_fn"), value=m.Attribute(value=m.Name(), attr=m.Name("apply"))))
            and node.value.value.value in self.transforms  # type: ignore[attr-defined]
        ):
            self.models.add(node.value.value.value)  # type: ignore[attr-defined]


class LinenTransforms(_Transforms):
    """Linen: the transformed function becomes a module; init/apply speak in variables dicts."""

    def init_transforms(self, module: cst.Module) -> None:
        super().init_transforms(module)
        self._state_statements: set[cst.CSTNode] = set()  # with_state init/apply calls rewritten as statements
        self._module = module
        self._shows_state: bool | None = None  # read by the first with_state init/apply that needs it

    def convert_transformed(self, original: AnyAssign, updated: AnyAssign) -> AnyAssign | None:
        transformed = self.transformed_assignment(original)
        if transformed is None:
            return None
        return updated.with_changes(value=self.transformed_model(transformed, original))

    def transformed_model(self, transformed: Transformed, node: cst.CSTNode) -> cst.BaseExpression:
        inner = self.forward_module(transformed)
        model: cst.BaseExpression
        if inner is not None:
            model = inner.deep_clone().visit(self)  # type: ignore[assignment]  # (a clone: the original is marked as called inline)
        else:
            model = cst.Call(func=cst.Name(analysis.camel_case(transformed.function)))
        self.converted(node, RULE_TRANSFORM, f"hk.transform({transformed.function}) -> Linen module")
        return model

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        call = self.transform_call(original)
        if call is None:
            return super().leave_Call(original, updated)
        return self._transform_call(call, updated)

    def _transform_call(self, call: TransformCall, updated: cst.Call) -> cst.BaseExpression:
        if call.transformed.with_state and call.node not in self._state_statements:
            self.todo(call.node, RULE_TRANSFORM, "use the result as `out, state = ...`, or pass `mutable=['batch_stats']` by hand")
            return updated
        if call.method == "init":
            if call.transformed.with_state:
                return updated  # the statement is rewritten whole, in leave_SimpleStatementLine
            self.converted(call.node, RULE_TRANSFORM, "init returns variables: take ['params']")
            return _subscript(updated.with_changes(args=respell_args(updated, 0, [], _method_arg(call))), "params")
        try:
            apply = call.split_apply(updated)
        except Unconvertible as reason:
            self.todo(call.node, RULE_TRANSFORM, str(reason))
            return updated
        elements = [cst.DictElement(cst.SimpleString("'params'"), apply.params)]
        if apply.state is not None:
            elements.append(cst.DictElement(cst.SimpleString(f"'{self.state_collection}'"), apply.state))
        appended = []
        if apply.rng is not None:
            appended.append(keyword_arg("rngs", cst.Dict([cst.DictElement(cst.SimpleString("'dropout'"), apply.rng)])))
        if apply.state is not None:
            appended.append(keyword_arg("mutable", cst.List([cst.Element(cst.SimpleString(f"'{self.state_collection}'"))])))
        appended.extend(_method_arg(call))
        self.converted(call.node, RULE_TRANSFORM, "apply takes a variables dict" + (" and rngs=" if apply.rng is not None else ""))
        func = attr(call.transformed.name, "apply") if call.module_method != "__call__" else updated.func
        return updated.with_changes(func=func, args=respell_args(updated, apply.leading_count, [cst.Dict(elements)], appended))

    def _state_of(self, variables: cst.Name) -> cst.BaseExpression:
        """`variables['batch_stats']`; `variables.get('batch_stats', {})` when nothing in the file keeps state
        (Linen then has no such collection, where Haiku's state is an empty dict)."""
        if self._shows_state is None:
            stateful = _StatefulLayers(self.ctx)
            stateful.walk(self._module)
            self._shows_state = stateful.found or self.state_collection != STATE_COLLECTION
        if self._shows_state:
            return _subscript(variables, self.state_collection)
        key = cst.Arg(cst.SimpleString(f"'{self.state_collection}'"))
        return cst.Call(cst.Attribute(variables, cst.Name("get")), [key, cst.Arg(cst.Dict([]))])

    # -- transform_with_state: `params, state = f.init(...)`, `out, state = f.apply(...)` ----------
    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
        pair = _pair_assignment(node)
        if pair is not None and (call := self.transform_call(pair[2])) and call.transformed.with_state:
            self._state_statements.add(pair[2])
        super().visit_SimpleStatementLine(node)

    def leave_SimpleStatementLine(self, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine):
        pair = _pair_assignment(original)
        if pair is None or pair[2] not in self._state_statements:
            return super().leave_SimpleStatementLine(original, updated)
        first, second, call = pair
        new_value = updated.body[0].value  # type: ignore[attr-defined]
        if call.func.attr.value == "init":  # type: ignore[attr-defined]
            # variables = f.init(...); params, state = variables['params'], variables['batch_stats']
            holder, outputs = "variables", _bare_tuple(
                _subscript(cst.Name("variables"), "params"), self._state_of(cst.Name("variables"))
            )
            targets = _bare_tuple(first, second)
            head = cst.Assign([cst.AssignTarget(cst.Name(holder))], new_value)
            self.converted(call, RULE_TRANSFORM, f"init returns variables: params and {self.state_collection}")
        else:
            # out, updates = f.apply(..., mutable=['batch_stats']); state = updates['batch_stats']
            if not isinstance(new_value, cst.Call) or new_value is call:
                return updated
            holder = "updates"
            head = cst.Assign([cst.AssignTarget(_bare_tuple(first, cst.Name(holder)))], new_value)
            targets, outputs = second, self._state_of(cst.Name(holder))
        tail = cst.SimpleStatementLine([cst.Assign([cst.AssignTarget(targets)], outputs)])
        return cst.FlattenSentinel([updated.with_changes(body=[head]), tail])


class NnxTransforms(_Transforms):
    """NNX: the model is built eagerly; init reads its state; apply calls it, with train/eval modes."""

    def init_transforms(self, module: cst.Module) -> None:
        super().init_transforms(module)
        self.forward_info: dict[str, tuple[cst.Call, object]] = {}  # transformed name -> (ctor, ClassInfo)
        self.module = module
        self._init_calls: dict[str, cst.Call | None] = {}  # transformed name -> its first `init` call

    def convert_transformed(self, original: AnyAssign, updated: AnyAssign) -> AnyAssign | None:
        transformed = self.transformed_assignment(original)
        if transformed is None:
            return None
        model = self.transformed_model(transformed, original)
        return updated if model is None else updated.with_changes(value=model)

    def transformed_model(self, transformed: Transformed, node: cst.CSTNode) -> cst.Call | None:
        name = transformed.name
        inner = self.forward_module(transformed)
        forward = transformed.function if transformed.lambda_forward is None else _lambda_code(transformed.lambda_forward)
        if inner is not None and isinstance(inner.func, cst.Name) and inner.func.value in self.classes:  # type: ignore[attr-defined]
            ctor, info = self.name_by_keyword(inner), self.class_infos.get(inner.func.value)  # type: ignore[attr-defined]
        elif transformed.lambda_forward is not None:  # a lambda building a module of another file
            ctor, info = inner, None
        else:
            ctor = cst.Call(cst.Name(analysis.camel_case(transformed.function)))
            info = self.class_infos.get(analysis.camel_case(transformed.function))
        self.forward_info[name] = (ctor, info)  # type: ignore[assignment]
        if info is None:
            self.todo(node, RULE_TRANSFORM, f"`{forward}` builds no module this file converts; construct the NNX model by hand")
            return None
        args: list[cst.Arg] = []
        if info.needs_din:
            args.append(cst.Arg(self._example_input_size(name, node)))
        args.extend(unknown_size_args(info, self, node))
        # NNX modules take no `name=`: Haiku's only named the root of the parameter tree
        args.extend(a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in ctor.args if not m.matches(a, m.Arg(keyword=m.Name("name"))))
        if info.needs_rngs:
            args.append(keyword_arg("rngs", cst.Call(attr(self.ctx.ns, "Rngs"), [cst.Arg(self._seed(name, node))])))
        self.converted(node, RULE_TRANSFORM, f"hk.transform({transformed.function}) -> eager NNX model")
        return cst.Call(ctor.func, args)

    def _init_call(self, name: str) -> cst.Call | None:
        if name not in self._init_calls:
            finder = _InitCallFinder(name)
            if self.ctx.mentions(f"{name}.init"):
                finder.walk(self.module)
            self._init_calls[name] = finder.found
        return self._init_calls[name]

    def _example_input_size(self, name: str, node: cst.CSTNode) -> cst.BaseExpression:
        call = self._init_call(name)
        rng_leading = 1
        sample = call.args[rng_leading].value if call is not None and len(call.args) > rng_leading else None
        size = _literal_last_dim(sample, self.module) if sample is not None else None
        if size is None:
            self.todo(node, RULE_INPUT_SIZE, "pass the model's input feature size (the last dimension of its input) in place of `...`")
            return cst.Ellipsis()
        return size

    def _seed(self, name: str, node: cst.CSTNode) -> cst.BaseExpression:
        call = self._init_call(name)
        key = call.args[0].value if call is not None and call.args else None
        if isinstance(key, cst.Call) and (dotted_name(key.func) or "").rsplit(".", 1)[-1] in ("key", "PRNGKey") and key.args:
            seed = key.args[0].value
            if isinstance(seed, cst.Integer):
                return seed
        self.warn(node, RULE_TRANSFORM, "initialisation seed not found: nnx.Rngs(0) used (Haiku and Flax inits never agree bitwise anyway)")
        return cst.Integer("0")

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        call = self.transform_call(original)
        if call is None:
            return super().leave_Call(original, updated)
        model = call.model
        with_state = call.transformed.with_state
        if call.method == "init":
            filters = [cst.Arg(attr(self.ctx.ns, "Param"))]
            if with_state:
                filters.append(cst.Arg(self.state_variable))
            self.converted(original, RULE_TRANSFORM, "init: the NNX model is built eagerly; nnx.state reads its variables")
            return cst.Call(attr(self.ctx.ns, "state"), [cst.Arg(model), *filters])
        try:
            apply = call.split_apply(updated)
        except Unconvertible as reason:
            self.todo(original, RULE_TRANSFORM, str(reason))
            return updated
        info = self.forward_info.get(call.transformed.name, (None, None))[1]
        removed = info.removed_call_params if info is not None else {}
        for arg in apply.rest:
            if arg.keyword is not None and arg.keyword.value in removed:
                self._set_mode(model, arg.value)
        positional = [a for a in apply.rest if a.keyword is None]
        for index in removed.values():
            if index < len(positional):
                self._set_mode(model, positional[index].value)
        if apply.rng is not None:
            self.warn(original, RULE_RNG, "the apply rng is dropped: NNX layers draw from the model's nnx.Rngs")
        self.converted(original, RULE_TRANSFORM, "apply -> calling the NNX model")
        method = model if call.module_method == "__call__" else cst.Attribute(model, cst.Name(call.module_method))
        forward = updated.with_changes(func=method, args=_kept_args(apply.rest, drop_removed_args(apply.rest, removed)))
        if not with_state:
            return forward
        state = cst.Call(attr(self.ctx.ns, "state"), [cst.Arg(model), cst.Arg(self.state_variable)])
        return cst.Tuple([cst.Element(forward), cst.Element(state)])

    def _set_mode(self, model: cst.BaseExpression, flag: cst.BaseExpression) -> None:
        train = cst.Call(cst.Attribute(model, cst.Name("train")))
        evaluate = cst.Call(cst.Attribute(model, cst.Name("eval")))
        if m.matches(flag, m.Name("True")):
            expression: cst.BaseExpression = train
        elif m.matches(flag, m.Name("False")):
            expression = evaluate
        else:
            expression = cst.IfExp(test=flag, body=train, orelse=evaluate)
        self.insert_before_statement(cst.SimpleStatementLine([cst.Expr(expression)]))


class _InitCallFinder(Walker):
    def __init__(self, name: str) -> None:
        self.name = name
        self.found: cst.Call | None = None

    def visit_Call(self, node: cst.Call) -> None:
        if self.found is None and m.matches(node.func, m.Attribute(value=m.Name(self.name), attr=m.Name("init"))):
            self.found = node


def _literal_last_dim(sample: cst.BaseExpression, module: cst.Module) -> cst.BaseExpression | None:
    """784 for `jnp.ones((1, 784))`, directly or through a module-level `sample_x = ...`."""
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
    last = shape.elements[-1].value if shape.elements else None
    return last if isinstance(last, cst.Integer) else None


def _subscript(value: cst.BaseExpression, key: str) -> cst.Subscript:
    return cst.Subscript(value=value, slice=[cst.SubscriptElement(cst.Index(cst.SimpleString(f"'{key}'")))])


def _bare_tuple(*values: cst.BaseExpression) -> cst.Tuple:
    return cst.Tuple([cst.Element(v) for v in values], lpar=[], rpar=[])


def _pair_assignment(statement: cst.SimpleStatementLine) -> tuple[cst.BaseExpression, cst.BaseExpression, cst.Call] | None:
    """(a, b, call) for a statement `a, b = call(...)`."""
    if len(statement.body) != 1 or not isinstance(statement.body[0], cst.Assign):
        return None
    assign = statement.body[0]
    if len(assign.targets) != 1 or not isinstance(assign.value, cst.Call):
        return None
    target = assign.targets[0].target
    if not isinstance(target, cst.Tuple | cst.List) or len(target.elements) != 2:
        return None
    if any(isinstance(e, cst.StarredElement) for e in target.elements):
        return None
    return target.elements[0].value, target.elements[1].value, assign.value


def _method_arg(call: TransformCall) -> list[cst.Arg]:
    """Linen's `method='encode'` when the call runs another method than `__call__`."""
    if call.module_method == "__call__":
        return []
    return [keyword_arg("method", cst.SimpleString(f"'{call.module_method}'"))]


def unknown_size_args(info, report: Rewriter, node: cst.CSTNode) -> list[cst.Arg]:
    """`...` placeholders, each with a TODO, for the input sizes an NNX constructor could not infer.

    `info` is the constructed class's `ClassInfo` (haiku2flax.targets.nnx).
    """
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
    return f"lambda {code(function.params)}: {code(statement.body[0].value)}"  # type: ignore[arg-type]
