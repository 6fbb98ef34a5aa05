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
  `state = state.apply_gradients(grads=grads)` -> `state.update(model, grads)`.

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

from dataclasses import dataclass

import libcst as cst

from ..engine import analysis
from ..engine import matchers as m
from ..engine.calls import keyword_arg
from ..engine.context import attr
from ..engine.names import dotted_name
from ..engine.registry import Status, register
from ..engine.rewriter import Rewriter
from ..engine.walk import Walker
from .annotations import model_annotation
from .transforms import TRANSFORMS

RULE_TRAINING = register(
    "HK007", "training-step", Status.PARTIAL, "jax.grad/jax.jit training steps over params -> nnx.grad/nnx.jit over the model", __name__
)

GRADS = {"grad": "grad", "value_and_grad": "value_and_grad"}
OPTIMIZER_ATTRIBUTES = {"params", "apply_fn", "apply_gradients", "step", "opt_state", "tx", "update"}
TREE_MAPS = {"jax.tree_util.tree_map", "jax.tree.map", "tree_map", "jax.tree_map"}


def _grad_name(func: cst.BaseExpression) -> str | None:
    """`grad` for `jax.grad` / `grad`, `value_and_grad` likewise."""
    name = dotted_name(func) or ""
    head, _, last = name.rpartition(".")
    return GRADS.get(last) if head in ("", "jax") else None


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
        self.roles: dict[str, dict[int, tuple[str, int, str]]] = {"params": {}, "state": {}, "train_state": {}}
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
            if name in params and id(function) not in self.roles[role]:
                self.roles[role][id(function)] = (name, params.index(name), model)  # type: ignore[arg-type]
                self._changed = True

    def _arguments(self, call: cst.Call) -> list[tuple[cst.BaseExpression, str, str]]:
        """(expression, model, role) for what this call passes as Haiku params, state or train state."""
        model = None
        if m.matches(call.func, m.Attribute(value=m.Name(), attr=m.Name("apply"))) and call.func.value.value in self.models:  # type: ignore[attr-defined]
            model = call.func.value.value  # type: ignore[attr-defined]
        elif m.matches(call.func, m.Attribute(attr=m.Name("apply_fn"))) and self.train_state_model:
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
            if id(target) in functions:
                _, position, model = functions[id(target)]
                if position < len(positional):
                    found.append((positional[position].value, model, role))
        return found

    def of(self, role: str) -> dict[int, tuple[str, int, str]]:
        return self.roles[role]

    def run(self, module: cst.Module) -> None:
        while self._changed:
            self._changed = False
            self.walk(module)


def _train_state_params(node: cst.BaseExpression) -> str | None:
    """`state` for `state.params`."""
    if m.matches(node, m.Attribute(value=m.Name(), attr=m.Name("params"))):
        return node.value.value  # type: ignore[attr-defined]
    return None


class NnxTraining(Rewriter):
    """A mixin of `NnxConverter`: training steps take the model where Haiku took its params."""

    def init_training(self, module: cst.Module) -> None:
        transforms = self.ctx.fact(TRANSFORMS)
        self.transforms, self.train_state_model = transforms.transforms, transforms.train_state_model
        train_state = self.train_state_model.name if self.train_state_model is not None else None  # type: ignore[attr-defined]
        stateful = {name for name, t in self.transforms.items() if t.with_state}  # type: ignore[attr-defined]
        flow = _ParamsFlow(set(self.transforms), stateful, train_state)  # type: ignore[attr-defined]
        if flow.models or train_state is not None:  # else no call carries params into `apply`
            flow.run(module)
        self.params_of, self.state_of, self.train_state_of = flow.of("params"), flow.of("state"), flow.of("train_state")
        # callers' arguments: params become the model, state goes, a train state gets the model before it
        by_name = {f.name.value: id(f) for f in flow.functions.values()}
        self.params_functions = {name: self.params_of[i] for name, i in by_name.items() if i in self.params_of}
        self.state_functions = {name: self.state_of[i] for name, i in by_name.items() if i in self.state_of}
        self.train_state_functions = {name: self.train_state_of[i] for name, i in by_name.items() if i in self.train_state_of}
        self._renames: list[_Rename | None] = []  # per function being visited
        self._train_states: list[tuple[str, int, str] | None] = []  # per function being visited
        self._kept_names: set[int] = set()  # Name nodes that are not the params variable
        # module-level `params = model.init(...)`: optimizer states initialised from them become nnx.Optimizers
        self.params_variables = {
            assign[0].value: assign[1].func.value.value  # type: ignore[union-attr, attr-defined]
            for statement in module.body
            if (assign := analysis.simple_assign(statement)) is not None
            and isinstance(assign[0], cst.Name)
            and m.matches(assign[1], m.Call(func=m.Attribute(value=m.Name(), attr=m.Name("init"))))
            and assign[1].func.value.value in self.transforms  # type: ignore[attr-defined]
        }
        # a module-level `opt_state = optimizer.init(params)` that becomes an nnx.Optimizer (else steps get a TODO)
        self._creates_optimizers = any(
            m.matches(assign[1], m.Call(func=m.Attribute(value=m.Name(), attr=m.Name("init")), args=[m.Arg(value=m.Name(), keyword=None)]))
            and assign[1].args[0].value.value in self.params_variables  # type: ignore[attr-defined]
            and assign[1].func.value.value not in self.transforms  # type: ignore[attr-defined]
            for statement in module.body
            if (assign := analysis.simple_assign(statement)) is not None
        )

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool | None:
        found = self.params_of.get(id(node))
        self._renames.append(_Rename(found[0], found[2]) if found else None)
        self._train_states.append(self.train_state_of.get(id(node)))
        return super().visit_FunctionDef(node)

    def leave_FunctionDef(self, original: cst.FunctionDef, updated: cst.FunctionDef):
        rename = self._renames.pop()
        train_state = self._train_states.pop()
        state = self.state_of.get(id(original))
        if (rename is None and train_state is None and state is None) or not isinstance(updated, cst.FunctionDef):
            return super().leave_FunctionDef(original, updated)
        params = list(updated.params.params)
        if state is not None:  # transform_with_state's state lives in the model now
            params = [p for p in params if p.name.value != state[0]]
            params = [p.with_changes(comma=cst.MaybeSentinel.DEFAULT) for p in params]
        if rename is not None:
            params = [
                p.with_changes(name=cst.Name(rename.model), annotation=model_annotation(self.ctx.ns, p.annotation))
                if p.name.value in (rename.params, rename.model)  # the name may be renamed already
                else p
                for p in params
            ]
            self.converted(original, RULE_TRAINING, f"{original.name.value} takes the model instead of its params")
        if train_state is not None:
            params.insert(train_state[1], cst.Param(cst.Name(train_state[2])))
            params = [p.with_changes(comma=cst.MaybeSentinel.DEFAULT) for p in params]
            self.converted(original, RULE_TRAINING, f"{original.name.value} takes the model beside its train state")
        decorators = [
            d.with_changes(decorator=attr(self.ctx.ns, "jit")) if dotted_name(d.decorator) == "jax.jit" else d for d in updated.decorators
        ]
        updated = updated.with_changes(params=updated.params.with_changes(params=params), decorators=decorators)
        return super().leave_FunctionDef(original, updated)

    def _current_train_state(self) -> tuple[str, int, str] | None:
        return self._train_states[-1] if self._train_states else None

    def _current_rename(self) -> _Rename | None:
        rename = self._renames[-1] if self._renames else None
        return rename if rename is not None and not rename.updated else None

    def visit_Attribute(self, node: cst.Attribute) -> bool | None:
        self._kept_names.add(id(node.attr))  # `state.params` is no variable
        return super().visit_Attribute(node)

    def visit_Arg(self, node: cst.Arg) -> bool | None:
        if node.keyword is not None:
            self._kept_names.add(id(node.keyword))
        return super().visit_Arg(node)

    def leave_Name(self, original: cst.Name, updated: cst.Name) -> cst.BaseExpression:
        rename = self._current_rename()
        if rename is not None and original.value == rename.params and id(original) not in self._kept_names:
            return updated.with_changes(value=rename.model)
        return super().leave_Name(original, updated)

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
        rename = self._current_rename()
        update = _param_update(node, rename.params) if rename is not None else None
        if update is not None:
            self._kept_names.add(id(update[0]))  # the updated params keep their name: they are a State now
        super().visit_SimpleStatementLine(node)

    def leave_SimpleStatementLine(self, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine):
        rename = self._current_rename()
        update = _param_update(original, rename.params) if rename is not None else None
        if rename is not None and update is not None:
            rename.updated = True  # later reads of the params name mean the updated State
            assign: cst.Assign = updated.body[0]  # type: ignore[assignment]
            state = self._param_state(rename.model)
            if update[1] == "apply_updates":  # the optimizer already wrote the model: read its parameters
                self.converted(original, RULE_TRAINING, "optax.apply_updates: nnx.Optimizer.update wrote the model")
                return super().leave_SimpleStatementLine(original, updated.with_changes(body=[assign.with_changes(value=state)]))
            tree_map: cst.Call = assign.value  # type: ignore[assignment]
            args = [a.with_changes(value=state) if m.matches(a.value, m.Name(rename.model)) else a for a in tree_map.args]
            new_assign = assign.with_changes(value=tree_map.with_changes(args=args))
            write_back = _call_line(attr(self.ctx.ns, "update"), cst.Name(rename.model), cst.Name(rename.params))
            self.converted(original, RULE_TRAINING, "SGD update reads nnx.state(model, nnx.Param) and writes back with nnx.update")
            return cst.FlattenSentinel([updated.with_changes(body=[new_assign]), write_back])
        train_state = self._current_train_state()
        if train_state is not None and _replaces_fields(original, train_state[0]):
            self.converted(original, RULE_TRAINING, "the train state's extra fields live in the NNX model")
            return cst.RemovalSentinel.REMOVE
        for field in _fields_read(updated, train_state[0]) - OPTIMIZER_ATTRIBUTES if train_state is not None else ():
            self.todo(original, RULE_TRAINING, f"`{train_state[0]}.{field}`: an nnx.Optimizer has no such field; state such as batch statistics lives in the NNX model")  # type: ignore[index]
        gradients = _apply_gradients(updated, train_state[0]) if train_state is not None else None
        if gradients is not None:  # state = state.apply_gradients(grads=grads) -> state.update(model, grads)
            line = _call_line(cst.Attribute(cst.Name(train_state[0]), cst.Name("update")), cst.Name(train_state[2]), gradients)  # type: ignore[index]
            self.converted(original, RULE_TRAINING, "TrainState.apply_gradients -> nnx.Optimizer.update(model, grads)")
            return super().leave_SimpleStatementLine(original, line.with_changes(leading_lines=updated.leading_lines))
        optimizer_update = _optimizer_update(updated) if rename is not None else None
        if optimizer_update is not None and not self._creates_optimizers:
            self.todo(original, RULE_TRAINING, "the optimizer state does not come from a module-level `optimizer.init(params)` this "
                      "rule turns into an `nnx.Optimizer`: build `nnx.Optimizer(model, tx, wrt=nnx.Param)` and call "
                      "`.update(model, grads)` by hand")
        elif optimizer_update is not None:
            grads, opt_state, new_name = optimizer_update
            lines = [_call_line(cst.Attribute(opt_state, cst.Name("update")), cst.Name(rename.model), grads)]  # type: ignore[union-attr]
            if not m.matches(new_name, m.Name(opt_state.value)):  # type: ignore[attr-defined]
                lines.append(cst.SimpleStatementLine([cst.Assign([cst.AssignTarget(new_name)], opt_state)]))
            self.converted(original, RULE_TRAINING, "optimizer.update -> nnx.Optimizer.update(model, grads)")
            lines[0] = lines[0].with_changes(leading_lines=updated.leading_lines)
            return cst.FlattenSentinel(lines)
        return super().leave_SimpleStatementLine(original, updated)

    def _creates_train_state(self, call: cst.Call) -> bool:
        if self.train_state_model is None or not m.matches(call.func, m.Attribute(attr=m.Name("create"))):  # type: ignore[attr-defined]
            return False
        keywords = {a.keyword.value: a.value for a in call.args if a.keyword is not None}
        apply_fn = keywords.get("apply_fn")
        return "tx" in keywords and m.matches(apply_fn, m.Attribute(value=m.Name(self.train_state_model.name), attr=m.Name("apply")))  # type: ignore[attr-defined, arg-type]

    def _param_state(self, model: str) -> cst.Call:
        return cst.Call(attr(self.ctx.ns, "state"), [cst.Arg(cst.Name(model)), cst.Arg(attr(self.ctx.ns, "Param"))])

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        if (
            m.matches(original, m.Call(func=m.Attribute(attr=m.Name("init")), args=[m.Arg(value=m.Name(), keyword=None)]))
            and original.args[0].value.value in self.params_variables  # type: ignore[attr-defined]
            and original.func.value.value not in self.transforms  # type: ignore[attr-defined]
        ):  # `opt_state = optimizer.init(params)`
            model = self.params_variables[original.args[0].value.value]  # type: ignore[attr-defined]
            optimizer = [cst.Arg(cst.Name(model)), cst.Arg(updated.func.value), keyword_arg("wrt", attr(self.ctx.ns, "Param"))]  # type: ignore[attr-defined]
            self.converted(original, RULE_TRAINING, "optax state -> nnx.Optimizer(model, tx, wrt=nnx.Param)")
            return super().leave_Call(original, cst.Call(attr(self.ctx.ns, "Optimizer"), optimizer))
        if self._creates_train_state(original):  # TrainState.create(apply_fn=model.apply, params=..., tx=...)
            tx = next(a.value for a in updated.args if a.keyword is not None and a.keyword.value == "tx")
            model = self.train_state_model.name  # type: ignore[attr-defined]
            optimizer = [cst.Arg(cst.Name(model)), cst.Arg(tx), keyword_arg("wrt", attr(self.ctx.ns, "Param"))]
            self.converted(original, RULE_TRAINING, "TrainState -> nnx.Optimizer(model, tx, wrt=nnx.Param)")
            return super().leave_Call(original, cst.Call(attr(self.ctx.ns, "Optimizer"), optimizer))
        train_state = self._current_train_state()
        if train_state is not None and isinstance(original.func, cst.Call) and _grad_name(original.func.func):
            args = [a.with_changes(value=cst.Name(train_state[2])) if _train_state_params(a.value) == train_state[0] else a for a in updated.args]
            updated = updated.with_changes(args=args)  # jax.grad(loss_fn)(state.params) -> (model)
        callee = original.func.args[0].value if isinstance(original.func, cst.Call) and _grad_name(original.func.func) and original.func.args else original.func
        if isinstance(callee, cst.Name) and callee.value in self.state_functions:
            position = self.state_functions[callee.value][1]
            positional = [i for i, a in enumerate(updated.args) if a.keyword is None]
            if position < len(positional):
                args = [a for i, a in enumerate(updated.args) if i != positional[position]]
                updated = updated.with_changes(args=[*args[:-1], args[-1].with_changes(comma=cst.MaybeSentinel.DEFAULT)] if args else [])
        grad = _grad_name(original.func)
        if grad is not None and (self._current_rename() is not None or train_state is not None):
            return super().leave_Call(original, updated.with_changes(func=attr(self.ctx.ns, grad)))
        if isinstance(original.func, cst.Name) and original.func.value in self.train_state_functions:
            _, position, model = self.train_state_functions[original.func.value]
            args = list(updated.args)
            positional = [i for i, a in enumerate(args) if a.keyword is None]
            if position <= len(positional):
                index = positional[position] if position < len(positional) else len(args)
                args.insert(index, cst.Arg(cst.Name(model), comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))))
                self.converted(original, RULE_TRAINING, f"{original.func.value} is passed the model")
                return super().leave_Call(original, updated.with_changes(args=args))
        if isinstance(original.func, cst.Name) and original.func.value in self.params_functions:
            _, position, model = self.params_functions[original.func.value]
            args = list(updated.args)
            positional = [i for i, a in enumerate(args) if a.keyword is None]
            if position < len(positional):
                index = positional[position]
                args[index] = args[index].with_changes(value=cst.Name(model))
                self.converted(original, RULE_TRAINING, f"{original.func.value} is passed the model")
                updated = updated.with_changes(args=args)
        return super().leave_Call(original, updated)


@dataclass
class _Rename:
    params: str  # the function's params variable
    model: str  # the model that replaces it
    updated: bool = False  # past the SGD update: the name now holds the new parameter State


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
    if function in ("optax.apply_updates", "apply_updates") and value.args and m.matches(value.args[0].value, m.Name(params)):
        return target, "apply_updates"
    return None


def _optimizer_update(statement: cst.SimpleStatementLine) -> tuple[cst.BaseExpression, cst.Name, cst.BaseExpression] | None:
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
    if any(a.keyword is not None for a in call.args[:2]) or not isinstance(call.args[1].value, cst.Name):
        return None
    return call.args[0].value, call.args[1].value, target.elements[1].value


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


def _apply_gradients(statement: cst.SimpleStatementLine, state: str) -> cst.BaseExpression | None:
    """The gradients of `state = state.apply_gradients(grads=grads)`."""
    if len(statement.body) != 1 or not isinstance(statement.body[0], cst.Assign):
        return None
    assign = statement.body[0]
    call = assign.value
    if not (len(assign.targets) == 1 and m.matches(assign.targets[0].target, m.Name(state)) and isinstance(call, cst.Call)):
        return None
    if not m.matches(call.func, m.Attribute(value=m.Name(state), attr=m.Name("apply_gradients"))):
        return None
    grads = [a.value for a in call.args if a.keyword is not None and a.keyword.value == "grads"]
    return grads[0] if len(grads) == 1 and len(call.args) == 1 else None


def _call_line(func: cst.BaseExpression, *args: cst.BaseExpression) -> cst.SimpleStatementLine:
    return cst.SimpleStatementLine([cst.Expr(cst.Call(func, [cst.Arg(a) for a in args]))])
