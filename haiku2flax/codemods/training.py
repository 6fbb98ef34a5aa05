"""Training steps: functions that take Haiku params and differentiate a loss calling `apply`.

What it converts (NNX; Linen needs nothing beyond the `apply` rewrite, since its params are a pytree
just as Haiku's are):
- a function whose parameter `params` reaches `model.apply(params, ...)` (directly, through
  `jax.grad(loss_fn)(params)`, or through another such function) takes the model instead: the
  parameter is renamed to the model, `jax.grad` / `jax.value_and_grad` become `nnx.grad` /
  `nnx.value_and_grad`, and `@jax.jit` becomes `@nnx.jit` (NNX transforms take modules as arguments);
- the SGD update `params = jax.tree_util.tree_map(f, params, grads)` reads the model's parameters with
  `nnx.state(model, nnx.Param)` and writes them back with `nnx.update(model, params)`;
- with optax: `opt_state = optimizer.init(params)` -> `opt_state = nnx.Optimizer(model, optimizer,
  wrt=nnx.Param)`; in the step, `updates, opt_state = optimizer.update(grads, opt_state, params)` ->
  `opt_state.update(model, grads)`, and `params = optax.apply_updates(params, updates)` reads the
  updated parameters back with `nnx.state(model, nnx.Param)`;
- callers pass the model where they passed the params: `train_step(key, params, x, y)` ->
  `train_step(key, model, x, y)`;
- a Flax `TrainState.create(apply_fn=model.apply, params=params, tx=tx)` becomes
  `nnx.Optimizer(model, tx, wrt=nnx.Param)`; a step taking the train state gets the model as a new
  argument before it (NNX transforms only update modules passed in), differentiates with respect to it
  (`jax.grad(loss_fn)(state.params)` -> `nnx.grad(loss_fn)(model)`), and
  `state = state.apply_gradients(grads=grads)` -> `state.update(model, grads)` (which updates both in
  place; `return state.apply_gradients(grads=grads)` -> that update, then `return state`).

Why: in NNX the parameters live in the model object; gradients are taken with respect to the model's
`nnx.Param` state, which is exactly the tree Haiku differentiated.

Example::

    @jax.jit                                        @nnx.jit
    def train_step(key, params, x, y):              def train_step(key, model, x, y):
      def loss_fn(params):                            def loss_fn(model):
        logits = model.apply(params, key, x,            model.train()
                             training=True)             logits = model(x)
        ...                                             ...
      grads = jax.grad(loss_fn)(params)               grads = nnx.grad(loss_fn)(model)
      params = jax.tree_util.tree_map(                params = jax.tree_util.tree_map(
          sgd, params, grads)                             sgd, nnx.state(model, nnx.Param), grads)
                                                      nnx.update(model, params)
      return params                                   return params
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst

from ..engine import analysis
from ..engine import matchers as m
from ..engine.calls import code, keyword_arg
from ..engine.context import Context, FileFact, attr
from ..engine.names import dotted_name
from ..engine.registry import Status, register
from ..engine.walk import Walker
from .annotations import model_annotation
from .interfaces import NNX_FILE_NODES, FileRoom, NnxFile
from .transforms import LOADED_WEIGHTS, TRANSFORMS, load_weights, passes_loaded

RULE_TRAINING = register(
    "HK007", "training-step", Status.PARTIAL, "jax.grad/jax.jit training steps over params -> nnx.grad/nnx.jit over the model", __name__
)

GRADS = {"grad": "grad", "value_and_grad": "value_and_grad"}
OPTIMIZER_ATTRIBUTES = {"params", "apply_fn", "apply_gradients", "step", "opt_state", "tx", "update"}
TREE_MAPS = {"jax.tree_util.tree_map", "jax.tree.map", "tree_map", "jax.tree_map"}

Carrier = tuple[str, int, str]  # a function's parameter that carries params (or state): (name, position, model)


def _grad_name(func: cst.BaseExpression) -> str | None:
    """`grad` for `jax.grad` / `grad`, `value_and_grad` likewise."""
    name = dotted_name(func) or ""
    head, _, last = name.rpartition(".")
    return GRADS.get(last) if head in ("", "jax") else None


def _receiver(node: cst.BaseExpression, method: str) -> str | None:
    """`name` for a call `name.method(...)`, else None."""
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and isinstance(node.func.value, cst.Name) and node.func.attr.value == method:
        return node.func.value.value
    return None


class _ParamsFlow(Walker):
    """Finds, to a fixpoint, which function parameters carry Haiku params (or state) into `apply`.

    Roles: "params" (the Haiku params tree: becomes the model), "state" (transform_with_state's state:
    lives in the model, so the parameter goes), "train_state" (a Flax TrainState: becomes an
    nnx.Optimizer, with the model passed beside it).
    """

    def __init__(self, models: set[str], stateful: set[str], train_state_model: str | None) -> None:
        self.models = models  # names of transformed objects (`model`)
        self.stateful = stateful  # those made by transform_with_state
        self.train_state_model = train_state_model  # the model whose `apply` a TrainState carries
        self.functions: dict[str, cst.FunctionDef] = {}
        self.roles: dict[str, dict[cst.CSTNode, Carrier]] = {"params": {}, "state": {}, "train_state": {}}
        self._stack: list[cst.FunctionDef] = []
        self._changed = True

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.functions[node.name.value] = node
        self._stack.append(node)

    def leave_FunctionDef(self, original_node: cst.FunctionDef) -> None:
        self._stack.pop()

    def visit_Call(self, node: cst.Call) -> None:
        if not self._stack:
            return
        function = self._stack[-1]
        params = [p.name.value for p in function.params.params]
        for argument, model, role in self._arguments(node):
            name = argument.value if isinstance(argument, cst.Name) else None
            if role == "params" and name is None:  # `state.params` of a train state parameter
                name, role = _train_state_params(argument), "train_state"
            if name is not None and name in params and function not in self.roles[role]:
                self.roles[role][function] = (name, params.index(name), model)
                self._changed = True

    def _arguments(self, call: cst.Call) -> list[tuple[cst.BaseExpression, str, str]]:
        """(expression, model, role) for what this call passes as Haiku params, state or train state."""
        model = _receiver(call, "apply")
        if model not in self.models:
            model = None
        if model is None and m.matches(call.func, m.Attribute(attr=m.Name("apply_fn"))):
            model = self.train_state_model
        if model is not None:
            roles = ["params", "state"] if model in self.stateful else ["params"]
            return [(arg.value, model, role) for arg, role in zip(call.args, roles, strict=False) if arg.keyword is None]
        callee = call.func
        if isinstance(callee, cst.Call) and _grad_name(callee.func) and callee.args:  # jax.grad(f)(params)
            callee = callee.args[0].value
        target = self.functions.get(callee.value) if isinstance(callee, cst.Name) else None
        if target is None:
            return []
        positional = [a for a in call.args if a.keyword is None]
        found = []
        for role, functions in self.roles.items():
            if target in functions:
                _, position, carried = functions[target]
                if position < len(positional):
                    found.append((positional[position].value, carried, role))
        return found

    def run(self, module: cst.Module) -> None:
        while self._changed:
            self._changed = False
            self.walk(module)


def _train_state_params(node: cst.BaseExpression) -> str | None:
    """`state` for `state.params`."""
    if isinstance(node, cst.Attribute) and isinstance(node.value, cst.Name) and node.attr.value == "params":
        return node.value.value
    return None


def _params_target(target: cst.BaseExpression, with_state: bool) -> str | None:
    """`params` of `params = f.init(...)`, or of `params, state = f.init(...)` for transform_with_state."""
    if with_state and isinstance(target, cst.Tuple) and len(target.elements) == 2:
        target = target.elements[0].value
    return target.value if isinstance(target, cst.Name) else None


def _initialised_params(node: cst.BaseExpression, params_variables: dict[str, str], models: set[str]) -> str | None:
    """`params` for `optimizer.init(params)` on module-level params of a model's `init`, else None."""
    if not (isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute) and node.func.attr.value == "init" and len(node.args) == 1):
        return None
    if isinstance(node.func.value, cst.Name) and node.func.value.value in models:  # the model's own init
        return None
    arg = node.args[0]
    return arg.value.value if arg.keyword is None and isinstance(arg.value, cst.Name) and arg.value.value in params_variables else None


@dataclass(frozen=True)
class TrainingFlow:
    """Where the file's Haiku params flow (`TRAINING`): the functions that take them, by id and by name."""

    models: set[str]  # the transformed objects
    train_state_model: str | None  # the model whose `apply` a TrainState carries
    params_of: dict[cst.CSTNode, Carrier]
    state_of: dict[cst.CSTNode, Carrier]
    train_state_of: dict[cst.CSTNode, Carrier]
    params_functions: dict[str, Carrier]  # callers' arguments: params become the model,
    state_functions: dict[str, Carrier]  # state goes,
    train_state_functions: dict[str, Carrier]  # a train state gets the model before it
    params_variables: dict[str, str]  # module-level `params = model.init(...)`: params -> model
    creates_optimizers: bool  # a module-level `opt_state = optimizer.init(params)` becomes an nnx.Optimizer


def _read_training(module: cst.Module, ctx: Context) -> TrainingFlow:
    transforms = ctx.fact(TRANSFORMS)
    train_state = transforms.train_state_model.name if transforms.train_state_model is not None else None
    models = set(transforms.transforms)
    flow = _ParamsFlow(models, {name for name, t in transforms.transforms.items() if t.with_state}, train_state)
    if flow.models or train_state is not None:  # else no call carries params into `apply`
        flow.run(module)
    by_name = {f.name.value: f for f in flow.functions.values()}
    params_of, state_of, train_state_of = flow.roles["params"], flow.roles["state"], flow.roles["train_state"]
    # module-level `params = model.init(...)` (`params, state = ...` with state): optimizer states
    # initialised from them become nnx.Optimizers
    params_variables = {}
    for statement in module.body:
        assign = analysis.simple_assign(statement)
        model = _receiver(assign[1], "init") if assign is not None else None
        if assign is not None and model is not None and model in models:
            target = _params_target(assign[0], model in flow.stateful)
            if target is not None:
                params_variables[target] = model
    return TrainingFlow(
        models, train_state, params_of, state_of, train_state_of,
        {name: params_of[f] for name, f in by_name.items() if f in params_of},
        {name: state_of[f] for name, f in by_name.items() if f in state_of},
        {name: train_state_of[f] for name, f in by_name.items() if f in train_state_of},
        params_variables,
        any(
            _initialised_params(assign[1], params_variables, models) is not None
            for statement in module.body
            if (assign := analysis.simple_assign(statement)) is not None
        ),
    )


TRAINING = FileFact(_read_training)


@dataclass
class _Functions:
    """The functions being visited, innermost last: the params each renames, the train state each takes."""

    renames: list[_Rename | None] = field(default_factory=list)
    train_states: list[Carrier | None] = field(default_factory=list)
    kept_names: set[cst.CSTNode] = field(default_factory=set)  # Name nodes that are not the params variable

    def rename(self) -> _Rename | None:
        rename = self.renames[-1] if self.renames else None
        return rename if rename is not None and not rename.updated else None

    def train_state(self) -> Carrier | None:
        return self.train_states[-1] if self.train_states else None


@NNX_FILE_NODES.on_visit(cst.FunctionDef, rule=RULE_TRAINING)
def enter_function(room: FileRoom, node: cst.FunctionDef) -> None:
    flow, functions = room.ctx.fact(TRAINING), room.family(_Functions)
    found = flow.params_of.get(node)
    functions.renames.append(_Rename(found[0], found[2]) if found else None)
    functions.train_states.append(flow.train_state_of.get(node))


@NNX_FILE_NODES.on_leave(cst.FunctionDef, rule=RULE_TRAINING, after=True)
def take_model(room: FileRoom, original: cst.FunctionDef, result: object) -> cst.FunctionDef | None:
    """The step's signature: the model for its params, beside its train state, without its state; `@nnx.jit`."""
    functions = room.family(_Functions)
    rename, train_state = functions.renames.pop(), functions.train_states.pop()
    state = room.ctx.fact(TRAINING).state_of.get(original)
    if (rename is None and train_state is None and state is None) or not isinstance(result, cst.FunctionDef):
        return None
    ns = room.ctx.ns
    params = list(result.params.params)
    if state is not None:  # transform_with_state's state lives in the model now
        params = [p for p in params if p.name.value != state[0]]
        params = [p.with_changes(comma=cst.MaybeSentinel.DEFAULT) for p in params]
    if rename is not None:
        params = [
            p.with_changes(name=cst.Name(rename.model), annotation=model_annotation(ns, p.annotation))
            if p.name.value in (rename.params, rename.model)  # the name may be renamed already
            else p
            for p in params
        ]
        room.converted(original, RULE_TRAINING, f"{original.name.value} takes the model instead of its params")
    if train_state is not None:
        params.insert(train_state[1], cst.Param(cst.Name(train_state[2])))
        params = [p.with_changes(comma=cst.MaybeSentinel.DEFAULT) for p in params]
        room.converted(original, RULE_TRAINING, f"{original.name.value} takes the model beside its train state")
    decorators = [d.with_changes(decorator=attr(ns, "jit")) if dotted_name(d.decorator) == "jax.jit" else d for d in result.decorators]
    return result.with_changes(params=result.params.with_changes(params=params), decorators=decorators)


@NNX_FILE_NODES.on_visit(cst.Attribute, rule=RULE_TRAINING)
def keep_attribute_name(room: FileRoom, node: cst.Attribute) -> None:
    room.family(_Functions).kept_names.add(node.attr)  # `state.params` is no variable


@NNX_FILE_NODES.on_visit(cst.Arg, rule=RULE_TRAINING)
def keep_keyword(room: FileRoom, node: cst.Arg) -> None:
    if node.keyword is not None:
        room.family(_Functions).kept_names.add(node.keyword)


@NNX_FILE_NODES.on_leave(cst.Name, rule=RULE_TRAINING)
def rename_params(room: FileRoom, original: cst.Name, updated: cst.Name) -> cst.Name | None:
    """The params variable of a step -> the model."""
    functions = room.family(_Functions)
    rename = functions.rename()
    if rename is not None and original.value == rename.params and original not in functions.kept_names:
        return updated.with_changes(value=rename.model)
    return None


@NNX_FILE_NODES.on_visit(cst.SimpleStatementLine, rule=RULE_TRAINING)
def keep_updated_params(room: FileRoom, node: cst.SimpleStatementLine) -> None:
    functions = room.family(_Functions)
    rename = functions.rename()
    update = _param_update(node, rename.params) if rename is not None else None
    if update is not None:
        functions.kept_names.add(update[0])  # the updated params keep their name: they are a State now


@NNX_FILE_NODES.on_leave(cst.SimpleStatementLine, rule=RULE_TRAINING)
def update_statement(
    room: FileRoom, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine
) -> cst.SimpleStatementLine | cst.FlattenSentinel[cst.SimpleStatementLine] | cst.RemovalSentinel | None:
    """The parameter updates of a step: SGD, a TrainState's, optax."""
    functions = room.family(_Functions)
    rename = functions.rename()
    update = _param_update(original, rename.params) if rename is not None else None
    if rename is not None and update is not None:
        return _model_update(room, rename, update[1], original, updated)
    train_state = functions.train_state()
    replaced = _train_state_update(room, train_state, original, updated) if train_state is not None else None
    if replaced is not None:
        return replaced
    optimizer_update = _optimizer_update(updated) if rename is not None else None
    if rename is not None and optimizer_update is not None:
        return _optimizer_step(room, rename, optimizer_update, original, updated)
    return None


def _train_state_update(
    room: FileRoom, train_state: Carrier, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine
) -> cst.SimpleStatementLine | cst.FlattenSentinel[cst.SimpleStatementLine] | cst.RemovalSentinel | None:
    """`state = state.apply_gradients(grads=grads)` -> `state.update(model, grads)`; its extra fields live in the model."""
    holder, _, model = train_state
    if _replaces_fields(original, holder):
        room.converted(original, RULE_TRAINING, "the train state's extra fields live in the NNX model")
        return cst.RemovalSentinel.REMOVE
    for field_name in _fields_read(updated, holder) - OPTIMIZER_ATTRIBUTES:
        room.todo(original, RULE_TRAINING, f"`{holder}.{field_name}`: an nnx.Optimizer has no such field; state such as batch statistics lives in the NNX model")
    applied = _apply_gradients(updated, holder)
    if applied is None:
        if "apply_gradients" in _fields_read(updated, holder):
            room.todo(original, RULE_TRAINING, f"an nnx.Optimizer has no `apply_gradients`: call `{holder}.update({model}, grads)`, which updates the model and `{holder}` in place, then use `{holder}`")
        return None
    gradients, result = applied
    line = _call_line(cst.Attribute(cst.Name(holder), cst.Name("update")), cst.Name(model), gradients)
    room.converted(original, RULE_TRAINING, "TrainState.apply_gradients -> nnx.Optimizer.update(model, grads)")
    line = line.with_changes(leading_lines=updated.leading_lines)
    return line if result is None else cst.FlattenSentinel([line, updated.with_changes(body=[result], leading_lines=[])])


def _model_update(
    room: FileRoom, rename: _Rename, kind: str, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine
) -> cst.SimpleStatementLine | cst.FlattenSentinel[cst.SimpleStatementLine] | None:
    """`params = tree_map(f, params, grads)` -> the same on `nnx.state(model, nnx.Param)`, then `nnx.update`;
    `params = optax.apply_updates(...)` -> the parameters the optimizer wrote into the model."""
    assign = updated.body[0]
    if not isinstance(assign, cst.Assign) or not isinstance(assign.value, cst.Call):
        return None
    rename.updated = True  # later reads of the params name mean the updated State
    ns = room.ctx.ns
    state = cst.Call(attr(ns, "state"), [cst.Arg(cst.Name(rename.model)), cst.Arg(attr(ns, "Param"))])
    if kind == "apply_updates":  # the optimizer already wrote the model: read its parameters
        room.converted(original, RULE_TRAINING, "optax.apply_updates: nnx.Optimizer.update wrote the model")
        return updated.with_changes(body=[assign.with_changes(value=state)])
    tree_map = assign.value
    args = [a.with_changes(value=state) if m.matches(a.value, m.Name(rename.model)) else a for a in tree_map.args]
    new_assign = assign.with_changes(value=tree_map.with_changes(args=args))
    write_back = _call_line(attr(ns, "update"), cst.Name(rename.model), cst.Name(rename.params))
    room.converted(original, RULE_TRAINING, "SGD update reads nnx.state(model, nnx.Param) and writes back with nnx.update")
    return cst.FlattenSentinel([updated.with_changes(body=[new_assign]), write_back])


def _optimizer_step(
    room: FileRoom,
    rename: _Rename,
    optimizer_update: tuple[cst.BaseExpression, cst.Name, cst.BaseAssignTargetExpression],
    original: cst.SimpleStatementLine,
    updated: cst.SimpleStatementLine,
) -> cst.FlattenSentinel[cst.SimpleStatementLine] | None:
    """`updates, opt_state = optimizer.update(grads, opt_state, params)` -> `opt_state.update(model, grads)`."""
    if not room.ctx.fact(TRAINING).creates_optimizers:
        room.todo(original, RULE_TRAINING, "the optimizer state does not come from a module-level `optimizer.init(params)` this "
                  "rule turns into an `nnx.Optimizer`: build `nnx.Optimizer(model, tx, wrt=nnx.Param)` and call "
                  "`.update(model, grads)` by hand")
        return None
    grads, opt_state, new_name = optimizer_update
    lines = [_call_line(cst.Attribute(opt_state, cst.Name("update")), cst.Name(rename.model), grads)]
    if not m.matches(new_name, m.Name(opt_state.value)):
        lines.append(cst.SimpleStatementLine([cst.Assign([cst.AssignTarget(new_name)], opt_state)]))
    rename.stepped = True
    room.converted(original, RULE_TRAINING, "optimizer.update -> nnx.Optimizer.update(model, grads)")
    lines[0] = lines[0].with_changes(leading_lines=updated.leading_lines)
    return cst.FlattenSentinel(lines)


def _creates_train_state(call: cst.Call, train_state_model: str | None) -> bool:
    """`TrainState.create(apply_fn=model.apply, params=..., tx=...)`."""
    if train_state_model is None or not m.matches(call.func, m.Attribute(attr=m.Name("create"))):
        return False
    keywords = {a.keyword.value: a.value for a in call.args if a.keyword is not None}
    apply_fn = keywords.get("apply_fn")
    return "tx" in keywords and apply_fn is not None and m.matches(apply_fn, m.Attribute(value=m.Name(train_state_model), attr=m.Name("apply")))


@NNX_FILE_NODES.on_leave(cst.Call, rule=RULE_TRAINING)
def step_call(room: NnxFile, original: cst.Call, updated: cst.Call) -> cst.Call | None:
    """Optimizers and train states become `nnx.Optimizer`s; `jax.grad` in a step `nnx.grad`; callers pass the model."""
    flow, ns = room.ctx.fact(TRAINING), room.ctx.ns
    params = _initialised_params(original, flow.params_variables, flow.models)
    if params is not None and isinstance(updated.func, cst.Attribute):  # `opt_state = optimizer.init(params)`
        optimizer = [cst.Arg(cst.Name(flow.params_variables[params])), cst.Arg(updated.func.value), keyword_arg("wrt", attr(ns, "Param"))]
        room.converted(original, RULE_TRAINING, "optax state -> nnx.Optimizer(model, tx, wrt=nnx.Param)")
        return cst.Call(attr(ns, "Optimizer"), optimizer)
    if flow.train_state_model is not None and _creates_train_state(original, flow.train_state_model):
        tx = next(a.value for a in updated.args if a.keyword is not None and a.keyword.value == "tx")
        optimizer = [cst.Arg(cst.Name(flow.train_state_model)), cst.Arg(tx), keyword_arg("wrt", attr(ns, "Param"))]
        room.converted(original, RULE_TRAINING, "TrainState -> nnx.Optimizer(model, tx, wrt=nnx.Param)")
        return cst.Call(attr(ns, "Optimizer"), optimizer)
    functions = room.family(_Functions)
    rename = functions.rename()
    if rename is not None and rename.stepped and _applies_updates(original, rename.params):  # `return optax.apply_updates(params, updates), ...`
        room.converted(original, RULE_TRAINING, "optax.apply_updates: nnx.Optimizer.update wrote the model")
        return cst.Call(attr(ns, "state"), [cst.Arg(cst.Name(rename.model)), cst.Arg(attr(ns, "Param"))])
    call = updated
    train_state = functions.train_state()
    if train_state is not None and isinstance(original.func, cst.Call) and _grad_name(original.func.func):
        args = [a.with_changes(value=cst.Name(train_state[2])) if _train_state_params(a.value) == train_state[0] else a for a in call.args]
        call = call.with_changes(args=args)  # jax.grad(loss_fn)(state.params) -> (model)
    grads_of = isinstance(original.func, cst.Call) and _grad_name(original.func.func) and original.func.args
    callee = original.func.args[0].value if isinstance(original.func, cst.Call) and grads_of else original.func
    if isinstance(original.func, cst.Name) and original.func.value in flow.params_functions and not _loads_passed_weights(room, original):
        return None  # (a TODO says how to load them)
    if isinstance(callee, cst.Name) and callee.value in flow.state_functions:
        position = flow.state_functions[callee.value][1]
        positional = [i for i, a in enumerate(call.args) if a.keyword is None]
        if position < len(positional):
            args = [a for i, a in enumerate(call.args) if i != positional[position]]
            call = call.with_changes(args=[*args[:-1], args[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)] if args else [])
    grad = _grad_name(original.func)
    if grad is not None and (functions.rename() is not None or train_state is not None):
        return call.with_changes(func=attr(ns, grad))
    if isinstance(original.func, cst.Name) and original.func.value in flow.train_state_functions:
        _, position, model = flow.train_state_functions[original.func.value]
        args = list(call.args)
        positional = [i for i, a in enumerate(args) if a.keyword is None]
        if position <= len(positional):
            index = positional[position] if position < len(positional) else len(args)
            args.insert(index, cst.Arg(cst.Name(model), comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))))
            room.converted(original, RULE_TRAINING, f"{original.func.value} is passed the model")
            return call.with_changes(args=args)
    if isinstance(original.func, cst.Name) and original.func.value in flow.params_functions:
        _, position, model = flow.params_functions[original.func.value]
        args = list(call.args)
        positional = [i for i, a in enumerate(args) if a.keyword is None]
        if position < len(positional):
            index = positional[position]
            args[index] = args[index].with_changes(value=cst.Name(model))
            room.converted(original, RULE_TRAINING, f"{original.func.value} is passed the model")
            call = call.with_changes(args=args)
    return call if call is not updated else None


def _loads_passed_weights(room: NnxFile, call: cst.Call) -> bool:
    """A call passing loaded params to a function that now takes the model: they are loaded into the
    model before it (`nnx.update`); False, with a TODO, where they cannot be."""
    if call in room.ctx.fact(LOADED_WEIGHTS):
        return load_weights(room, call)
    assert isinstance(call.func, cst.Name)
    _, position, model = room.ctx.fact(TRAINING).params_functions[call.func.value]
    positional = [a.value for a in call.args if a.keyword is None and not a.star]
    if position < len(positional) and passes_loaded(room.ctx, call, positional[position]):
        room.todo(call, RULE_TRAINING, f"`{code(positional[position])}` are loaded, not made by `init`, and reach the model through "
                  f"another function: load them with `nnx.update({model}, {code(positional[position])})` and pass `{model}`")
        return False
    return True


@dataclass
class _Rename:
    params: str  # the function's params variable
    model: str  # the model that replaces it
    updated: bool = False  # past the SGD update: the name now holds the new parameter State
    stepped: bool = False  # past `optimizer.update(...)`, which became `opt_state.update(model, grads)`: no `updates` left


def _param_update(statement: cst.SimpleStatementLine, params: str) -> tuple[cst.Name, str] | None:
    """(target, kind) of `params = jax.tree_util.tree_map(f, params, grads)` ("tree_map") or
    `params = optax.apply_updates(params, updates)` ("apply_updates")."""
    if len(statement.body) != 1 or not isinstance(statement.body[0], cst.Assign):
        return None
    assign = statement.body[0]
    target = assign.targets[0].target if len(assign.targets) == 1 else None
    value = assign.value
    if not (isinstance(target, cst.Name) and target.value == params and isinstance(value, cst.Call)):
        return None
    function = dotted_name(value.func)
    if function in TREE_MAPS and any(m.matches(a.value, m.Name(params)) for a in value.args[1:]):
        return target, "tree_map"
    if _applies_updates(value, params):
        return target, "apply_updates"
    return None


def _applies_updates(call: cst.Call, params: str) -> bool:
    """`optax.apply_updates(params, updates)`."""
    return dotted_name(call.func) in ("optax.apply_updates", "apply_updates") and bool(call.args) and m.matches(call.args[0].value, m.Name(params))


def _optimizer_update(statement: cst.SimpleStatementLine) -> tuple[cst.BaseExpression, cst.Name, cst.BaseAssignTargetExpression] | None:
    """(grads, optimizer state, new state target) of `updates, opt_state = optimizer.update(grads, opt_state, ...)`."""
    if len(statement.body) != 1 or not isinstance(statement.body[0], cst.Assign):
        return None
    assign = statement.body[0]
    target = assign.targets[0].target if len(assign.targets) == 1 else None
    call = assign.value
    if not (isinstance(target, cst.Tuple) and len(target.elements) == 2 and isinstance(call, cst.Call)):
        return None
    if not m.matches(call.func, m.Attribute(attr=m.Name("update"))) or len(call.args) < 2:
        return None
    new_state = target.elements[1].value
    if any(a.keyword is not None for a in call.args[:2]) or not isinstance(call.args[1].value, cst.Name):
        return None
    if not isinstance(new_state, cst.BaseAssignTargetExpression):
        return None
    return call.args[0].value, call.args[1].value, new_state


class _FieldReads(Walker):
    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.fields: set[str] = set()

    def visit_Attribute(self, node: cst.Attribute) -> None:
        if m.matches(node.value, m.Name(self.owner)):
            self.fields.add(node.attr.value)


def _fields_read(statement: cst.CSTNode, owner: str) -> set[str]:
    """The attributes of `owner` that a statement reads (`state.batch_stats` -> {"batch_stats"})."""
    reads = _FieldReads(owner)
    reads.walk(statement)
    return reads.fields


def _replaces_fields(statement: cst.SimpleStatementLine, state: str) -> bool:
    """`state = state.replace(batch_stats=...)`: fields that NNX keeps in the model."""
    if len(statement.body) != 1 or not isinstance(statement.body[0], cst.Assign):
        return False
    assign = statement.body[0]
    return m.matches(assign.targets[0].target, m.Name(state)) and m.matches(
        assign.value, m.Call(func=m.Attribute(value=m.Name(state), attr=m.Name("replace")))
    )


def _apply_gradients(statement: cst.SimpleStatementLine, state: str) -> tuple[cst.BaseExpression, cst.BaseSmallStatement | None] | None:
    """(gradients, what follows the in-place update) of `state = state.apply_gradients(grads=grads)` (nothing),
    `return state.apply_gradients(grads=grads)` (`return state`) or `new = state.apply_gradients(...)` (`new = state`)."""
    if len(statement.body) != 1 or not isinstance(statement.body[0], cst.Assign | cst.Return):
        return None
    small = statement.body[0]
    call = small.value
    if isinstance(small, cst.Assign) and len(small.targets) != 1:
        return None
    if not (isinstance(call, cst.Call) and m.matches(call.func, m.Attribute(value=m.Name(state), attr=m.Name("apply_gradients")))):
        return None
    grads = [a.value for a in call.args if a.keyword is not None and a.keyword.value == "grads"]
    if len(grads) != 1 or len(call.args) != 1:
        return None
    if isinstance(small, cst.Assign) and m.matches(small.targets[0].target, m.Name(state)):
        return grads[0], None
    return grads[0], small.with_changes(value=cst.Name(state))


def _call_line(func: cst.BaseExpression, *args: cst.BaseExpression) -> cst.SimpleStatementLine:
    return cst.SimpleStatementLine([cst.Expr(cst.Call(func, [cst.Arg(a) for a in args]))])
