"""The Linen target: Haiku modules become `nn.Module` dataclasses with `@nn.compact` methods.

What it converts, and why each shape was chosen:
- `class M(hk.Module)`: constructor arguments become dataclass fields (Linen modules are dataclasses);
  submodules built in `__init__` move to `setup()`; a method that builds layers inline gets
  `@nn.compact`, so Haiku's inline style survives unchanged.
- Layers from the rule tables (`hk.Linear` -> `nn.Dense`, ...), with renamed arguments.
- `hk.dropout(hk.next_rng_key(), rate, x)` -> `nn.Dropout(rate, deterministic=...)(x)`: the key comes
  from the `'dropout'` stream; `R if training else 0` becomes `deterministic=not training`.
- `f = hk.transform(forward)`: a forward that only builds and calls one module becomes that module;
  any other forward becomes a compact module of its own. `f.init(...)` returns variables, so the
  params are `['params']`; `f.apply(params, rng, ...)` -> `f.apply({'params': params}, ...,
  rngs={'dropout': rng})`.

Example::

    class Block(hk.Module):                      class Block(nn.Module):
      def __init__(self, features, name=None):     features: int
        super().__init__(name=name)
        self.features = features                   @nn.compact
      def __call__(self, x):                       def __call__(self, x):
        return hk.Linear(self.features)(x)           return nn.Dense(self.features)(x)
"""

from __future__ import annotations

import libcst as cst

from ..engine import analysis
from ..engine.calls import Unconvertible, convert_construct_call, convert_layer_call_args, respell_args
from ..engine.context import Context, attr
from ..engine.rewriter import Rewriter
from .common import DropoutCall, ParamsToSelf, TransformCall, read_dropout

RULE_MODULE = "HK001"
RULE_LAYER = "HK002"
RULE_DROPOUT = "HK003"
RULE_TRANSFORM = "HK004"
RULE_RNG = "HK005"

STATE_COLLECTION = "batch_stats"  # where Linen keeps what Haiku's transform_with_state calls state


class LinenConverter(Rewriter):
    def __init__(self, ctx: Context, module: cst.Module) -> None:
        super().__init__(ctx)
        self.classes = analysis.haiku_module_classes(module, ctx.names)
        self.transforms = analysis.module_transforms(module, ctx.names)
        self.forwards = {t.function: t for t in self.transforms.values()}
        self._builds_inline: list[bool] = []  # per function being visited
        self._depth = 0
        self._rng_consumed: set[int] = set()
        self._called_inline: set[int] = set()  # constructor calls that are called right away
        self._state_statements: set[int] = set()  # with_state init/apply calls rewritten as statements

    # -- functions and classes ---------------------------------------------------------------------
    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self._builds_inline.append(False)
        self._depth += 1

    def leave_FunctionDef(self, original: cst.FunctionDef, updated: cst.FunctionDef) -> cst.BaseStatement | cst.RemovalSentinel:
        builds = self._builds_inline.pop()
        self._depth -= 1
        if builds:
            updated = updated.with_changes(
                decorators=[cst.Decorator(decorator=attr(self.ctx.ns, "compact")), *updated.decorators]
            )
        if self._depth == 0 and original.name.value in self.forwards:
            return self._forward_to_module(original, updated)
        return updated

    def _mark_inline(self) -> None:
        if self._builds_inline:
            self._builds_inline[-1] = True

    def leave_ClassDef(self, original: cst.ClassDef, updated: cst.ClassDef) -> cst.ClassDef:
        if original.name.value not in self.classes:
            return updated
        self.ctx.need_target_import()
        bases = [
            base.with_changes(value=attr(self.ctx.ns, "Module"))
            if self.ctx.names.haiku_api(base.value) == "Module"
            else base
            for base in updated.bases
        ]
        init_def = analysis.find_method(updated, "__init__")
        init = analysis.read_init(init_def)
        body: list[cst.BaseStatement] = []
        for param in init.params:
            annotation = param.annotation or cst.Annotation(cst.Name("Any"))
            if param.annotation is None:
                self.ctx.needed_imports.add(("typing", "Any", None))
            body.append(
                cst.SimpleStatementLine(
                    [cst.AnnAssign(target=cst.Name(param.name.value), annotation=annotation, value=param.default)]
                )
            )
        methods = [s for s in updated.body.body if s is not init_def]
        if init.other_statements:
            setup = cst.FunctionDef(
                name=cst.Name("setup"),
                params=cst.Parameters([cst.Param(cst.Name("self"))]),
                body=cst.IndentedBlock(
                    [s.visit(ParamsToSelf({p.name.value for p in init.params})) for s in init.other_statements]  # type: ignore[misc]
                ),
                leading_lines=[cst.EmptyLine()] if body else [],
            )
            methods.insert(0, setup)
        if body and methods and not methods[0].leading_lines:
            methods[0] = methods[0].with_changes(leading_lines=[cst.EmptyLine()])
        class_doc = [s for s in updated.body.body[:1] if analysis.is_docstring(s)]
        methods = [s for s in methods if s not in class_doc]
        if not (class_doc or body or methods):
            body = [cst.SimpleStatementLine([cst.Pass()])]
        self.converted(original, RULE_MODULE, f"hk.Module subclass {original.name.value} -> nn.Module")
        return updated.with_changes(bases=bases, body=updated.body.with_changes(body=[*class_doc, *body, *methods]))

    def _forward_to_module(self, original: cst.FunctionDef, updated: cst.FunctionDef) -> cst.BaseStatement | cst.RemovalSentinel:
        if analysis.trivial_forward(original) is not None:
            return cst.RemovalSentinel.REMOVE
        self.ctx.need_target_import()
        method = updated.with_changes(name=cst.Name("__call__"), params=updated.params.with_changes(
            params=[cst.Param(cst.Name("self")), *updated.params.params]), leading_lines=[])
        return cst.ClassDef(
            name=cst.Name(analysis.camel_case(original.name.value)),
            bases=[cst.Arg(attr(self.ctx.ns, "Module"))],
            body=cst.IndentedBlock([method]),
            leading_lines=updated.leading_lines,
        )

    # -- statements -------------------------------------------------------------------------------
    def leave_Assign(self, original: cst.Assign, updated: cst.Assign) -> cst.Assign:
        if len(original.targets) != 1 or not isinstance(original.targets[0].target, cst.Name):
            return updated
        transformed = self.transforms.get(original.targets[0].target.value)
        if transformed is None or analysis.read_transform(original.value, self.ctx.names) is None:
            return updated
        forward = self._forward_def(transformed.function)
        model: cst.BaseExpression
        if forward is not None and (inner := analysis.trivial_forward(forward)) is not None:
            model = inner.visit(self)  # type: ignore[assignment]
        else:
            model = cst.Call(func=cst.Name(analysis.camel_case(transformed.function)))
        self.converted(original, RULE_TRANSFORM, f"hk.transform({transformed.function}) -> Linen module")
        return updated.with_changes(value=model)

    def _forward_def(self, name: str) -> cst.FunctionDef | None:
        return self.module_functions.get(name)

    def visit_Module(self, node: cst.Module) -> None:
        self.module_functions = {s.name.value: s for s in node.body if isinstance(s, cst.FunctionDef)}

    # -- calls ------------------------------------------------------------------------------------
    def visit_Call(self, node: cst.Call) -> None:
        if self.ctx.names.haiku_api(node.func) == "dropout" and node.args:
            self._rng_consumed.add(id(node.args[0].value))  # dropout's own key: the layer draws it
        if isinstance(node.func, cst.Call):
            self._called_inline.add(id(node.func))

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        if isinstance(original.func, cst.Call) and id(original.func) in self._called_inline:
            api = self.ctx.names.haiku_api(original.func.func)
            construct = self.ctx.tables.get(api) if api is not None else None
            if construct is not None and construct.haiku_call_args:
                return self._layer_and_call(original, updated, construct)
        api = self.ctx.names.haiku_api(original.func)
        if api is not None:
            if id(original) in self._called_inline and (c := self.ctx.tables.get(api)) is not None and c.haiku_call_args:
                return updated  # converted with its call, in one piece
            return self._haiku_call(original, updated, api)
        if isinstance(original.func, cst.Name) and original.func.value in self.classes:
            self._mark_inline()
            return updated
        call = TransformCall.read(original, self.transforms)
        if call is not None:
            return self._transform_call(call, updated)
        return updated

    def _haiku_call(self, original: cst.Call, updated: cst.Call, api: str) -> cst.BaseExpression:
        construct = self.ctx.tables.get(api)
        if construct is not None and self.ctx.enabled(RULE_LAYER):
            try:
                new = convert_construct_call(updated, construct, "linen", self.ctx.ns)
            except Unconvertible as reason:
                self.todo(original, RULE_LAYER, str(reason))
                return updated
            self.ctx.need_target_import()
            self._mark_inline()
            self.converted(original, RULE_LAYER, f"hk.{api} -> nn.{construct.targets['linen'].api}")
            return new
        if api == "dropout" and self.ctx.enabled(RULE_DROPOUT):
            return self._dropout(original, updated)
        if api == "next_rng_key" and id(original) not in self._rng_consumed:
            self.todo(original, RULE_RNG, "draw keys with `self.make_rng('<stream>')` and pass `rngs={'<stream>': key}` to apply")
        return updated

    def _layer_and_call(self, original: cst.Call, updated: cst.Call, construct) -> cst.BaseExpression:
        """`hk.BatchNorm(...)(x, is_training)`: the layer and its call arguments convert together."""
        if not self.ctx.enabled(RULE_LAYER):
            return updated
        try:
            layer = convert_construct_call(updated.func, construct, "linen", self.ctx.ns)  # type: ignore[arg-type]
            args = convert_layer_call_args(updated, construct, "linen")
        except Unconvertible as reason:
            self.todo(original, RULE_LAYER, str(reason))
            return updated
        self.ctx.need_target_import()
        self._mark_inline()
        self.converted(original, RULE_LAYER, f"hk.{construct.haiku} -> nn.{construct.targets['linen'].api}")
        return updated.with_changes(func=layer, args=args)

    def _dropout(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        try:
            dropout: DropoutCall = read_dropout(updated, self.ctx.names)
        except Unconvertible as reason:
            self.todo(original, RULE_DROPOUT, str(reason))
            return updated
        self.ctx.need_target_import()
        self._mark_inline()
        layer_args = [cst.Arg(dropout.rate)]
        call_args = [cst.Arg(dropout.x)]
        deterministic = dropout.deterministic or cst.Name("False")
        layer_args.append(_kw("deterministic", deterministic))
        if dropout.broadcast_dims is not None:
            layer_args.append(_kw("broadcast_dims", dropout.broadcast_dims))
        if dropout.explicit_rng is not None:
            call_args.append(_kw("rng", dropout.explicit_rng))
        self.converted(original, RULE_DROPOUT, "hk.dropout -> nn.Dropout")
        return cst.Call(func=cst.Call(func=attr(self.ctx.ns, "Dropout"), args=layer_args), args=call_args)

    def _transform_call(self, call: TransformCall, updated: cst.Call) -> cst.BaseExpression:
        if call.transformed.with_state and id(call.node) not in self._state_statements:
            self.todo(call.node, RULE_TRANSFORM, "use the result as `out, state = ...`, or pass `mutable=['batch_stats']` by hand")
            return updated
        if call.method == "init":
            if call.transformed.with_state:
                return updated  # the statement is rewritten whole, in leave_SimpleStatementLine
            self.converted(call.node, RULE_TRANSFORM, "init returns variables: take ['params']")
            return _subscript(updated, "params")
        try:
            apply = call.split_apply(updated)
        except Unconvertible as reason:
            self.todo(call.node, RULE_TRANSFORM, str(reason))
            return updated
        elements = [cst.DictElement(cst.SimpleString("'params'"), apply.params)]
        if apply.state is not None:
            elements.append(cst.DictElement(cst.SimpleString(f"'{STATE_COLLECTION}'"), apply.state))
        appended = []
        if apply.rng is not None:
            appended.append(_kw("rngs", cst.Dict([cst.DictElement(cst.SimpleString("'dropout'"), apply.rng)])))
        if apply.state is not None:
            appended.append(_kw("mutable", cst.List([cst.Element(cst.SimpleString(f"'{STATE_COLLECTION}'"))])))
        self.converted(call.node, RULE_TRANSFORM, "apply takes a variables dict" + (" and rngs=" if apply.rng is not None else ""))
        return updated.with_changes(args=respell_args(updated, apply.leading_count, [cst.Dict(elements)], appended))

    # -- transform_with_state: `params, state = f.init(...)`, `out, state = f.apply(...)` ----------
    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
        pair = _pair_assignment(node)
        if pair is not None and (call := TransformCall.read(pair[2], self.transforms)) and call.transformed.with_state:
            self._state_statements.add(id(pair[2]))

    def leave_SimpleStatementLine(self, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine):
        pair = _pair_assignment(original)
        if pair is None or id(pair[2]) not in self._state_statements:
            return updated
        first, second, call = pair
        new_value = updated.body[0].value  # type: ignore[attr-defined]
        if call.func.attr.value == "init":  # type: ignore[attr-defined]
            # variables = f.init(...); params, state = variables['params'], variables['batch_stats']
            holder, outputs = "variables", _bare_tuple(
                _subscript(cst.Name("variables"), "params"), _subscript(cst.Name("variables"), STATE_COLLECTION)
            )
            targets = _bare_tuple(first, second)
            head = cst.Assign([cst.AssignTarget(cst.Name(holder))], new_value)
            self.converted(call, RULE_TRANSFORM, f"init returns variables: params and {STATE_COLLECTION}")
        else:
            # out, updates = f.apply(..., mutable=['batch_stats']); state = updates['batch_stats']
            if not isinstance(new_value, cst.Call) or new_value is call:
                return updated
            holder = "updates"
            head = cst.Assign([cst.AssignTarget(_bare_tuple(first, cst.Name(holder)))], new_value)
            targets, outputs = second, _subscript(cst.Name(holder), STATE_COLLECTION)
        tail = cst.SimpleStatementLine([cst.Assign([cst.AssignTarget(targets)], outputs)])
        return cst.FlattenSentinel([updated.with_changes(body=[head]), tail])

def _kw(name: str, value: cst.BaseExpression) -> cst.Arg:
    return cst.Arg(
        value=value,
        keyword=cst.Name(name),
        equal=cst.AssignEqual(whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace("")),
    )



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
