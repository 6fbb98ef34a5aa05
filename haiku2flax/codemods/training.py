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
  `train_step(key, model, x, y)`.

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
import libcst.matchers as m

from ..engine import analysis
from ..engine.calls import keyword_arg
from ..engine.context import attr
from ..engine.names import dotted_name
from ..engine.registry import Status, register
from ..engine.rewriter import Rewriter

RULE_TRAINING = register(
    "HK007", "training-step", Status.PARTIAL, "jax.grad/jax.jit training steps over params -> nnx.grad/nnx.jit over the model", __name__
)

GRADS = {"grad": "grad", "value_and_grad": "value_and_grad"}
TREE_MAPS = {"jax.tree_util.tree_map", "jax.tree.map", "tree_map", "jax.tree_map"}


def _grad_name(func: cst.BaseExpression) -> str | None:
    """`grad` for `jax.grad` / `grad`, `value_and_grad` likewise."""
    name = dotted_name(func) or ""
    head, _, last = name.rpartition(".")
    return GRADS.get(last) if head in ("", "jax") else None


class _ParamsFlow(cst.CSTVisitor):
    """Finds, to a fixpoint, which function parameters carry Haiku params into `apply`."""

    def __init__(self, models: set[str]) -> None:
        self.models = models  # names of transformed objects (`model`)
        self.functions: dict[str, cst.FunctionDef] = {}
        self.params_of: dict[int, tuple[str, int, str]] = {}  # id(function) -> (param, position, model)
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
        for argument, model in self._params_arguments(node):
            if isinstance(argument, cst.Name) and argument.value in params and id(function) not in self.params_of:
                self.params_of[id(function)] = (argument.value, params.index(argument.value), model)
                self._changed = True

    def _params_arguments(self, call: cst.Call) -> list[tuple[cst.BaseExpression, str]]:
        """Expressions this call uses as Haiku params, with the model they belong to."""
        if m.matches(call.func, m.Attribute(value=m.Name(), attr=m.Name("apply"))) and call.args:
            model = call.func.value.value  # type: ignore[attr-defined]
            return [(call.args[0].value, model)] if model in self.models else []
        callee = call.func
        if isinstance(callee, cst.Call) and _grad_name(callee.func) and callee.args:  # jax.grad(f)(params)
            callee = callee.args[0].value
        target = self.functions.get(callee.value) if isinstance(callee, cst.Name) else None
        if target is None or id(target) not in self.params_of:
            return []
        _, position, model = self.params_of[id(target)]
        positional = [a for a in call.args if a.keyword is None]
        return [(positional[position].value, model)] if position < len(positional) else []

    def run(self, module: cst.Module) -> dict[int, tuple[str, int, str]]:
        while self._changed:
            self._changed = False
            module.visit(self)
        return self.params_of


class NnxTraining(Rewriter):
    """A mixin of `NnxConverter`: training steps take the model where Haiku took its params."""

    def init_training(self, module: cst.Module) -> None:
        flow = _ParamsFlow(set(self.transforms))  # type: ignore[attr-defined]
        self.params_of = flow.run(module)
        self.params_functions = {f.name.value: self.params_of[id(f)] for f in flow.functions.values() if id(f) in self.params_of}
        self._renames: list[_Rename | None] = []  # per function being visited
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

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool | None:
        found = self.params_of.get(id(node))
        self._renames.append(_Rename(found[0], found[2]) if found else None)
        return super().visit_FunctionDef(node)

    def leave_FunctionDef(self, original: cst.FunctionDef, updated: cst.FunctionDef):
        rename = self._renames.pop()
        if rename is None or not isinstance(updated, cst.FunctionDef):
            return super().leave_FunctionDef(original, updated)
        params_name, model = rename.params, rename.model
        new_params = [
            p.with_changes(name=cst.Name(model)) if p.name.value == params_name else p for p in updated.params.params
        ]
        decorators = [
            d.with_changes(decorator=attr(self.ctx.ns, "jit")) if dotted_name(d.decorator) == "jax.jit" else d for d in updated.decorators
        ]
        self.converted(original, RULE_TRAINING, f"{original.name.value} takes the model instead of its params")
        updated = updated.with_changes(params=updated.params.with_changes(params=new_params), decorators=decorators)
        return super().leave_FunctionDef(original, updated)

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
        optimizer_update = _optimizer_update(updated) if rename is not None else None
        if optimizer_update is not None:
            grads, opt_state, new_name = optimizer_update
            lines = [_call_line(cst.Attribute(opt_state, cst.Name("update")), cst.Name(rename.model), grads)]  # type: ignore[union-attr]
            if not m.matches(new_name, m.Name(opt_state.value)):  # type: ignore[attr-defined]
                lines.append(cst.SimpleStatementLine([cst.Assign([cst.AssignTarget(new_name)], opt_state)]))
            self.converted(original, RULE_TRAINING, "optimizer.update -> nnx.Optimizer.update(model, grads)")
            lines[0] = lines[0].with_changes(leading_lines=updated.leading_lines)
            return cst.FlattenSentinel(lines)
        return super().leave_SimpleStatementLine(original, updated)

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
        grad = _grad_name(original.func)
        if grad is not None and self._current_rename() is not None:
            return super().leave_Call(original, updated.with_changes(func=attr(self.ctx.ns, grad)))
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


def _call_line(func: cst.BaseExpression, *args: cst.BaseExpression) -> cst.SimpleStatementLine:
    return cst.SimpleStatementLine([cst.Expr(cst.Call(func, [cst.Arg(a) for a in args]))])
