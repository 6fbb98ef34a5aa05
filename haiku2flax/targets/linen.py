"""The Linen target: Haiku modules become `nn.Module` dataclasses with `@nn.compact` methods.

What it converts, and why each shape was chosen:
- `class M(hk.Module)`: constructor arguments become dataclass fields (Linen modules are dataclasses);
  submodules built in `__init__` move to `setup()`; a method that builds layers inline gets
  `@nn.compact`, so Haiku's inline style survives unchanged. A field is frozen: a value `__init__`
  derives from an argument lives in `self._<argument>` (see `haiku2flax.codemods.fields`).
- Layers from the rule tables (`hk.Linear` -> `nn.Dense`, ...), with renamed arguments. A layer stored
  in a local keeps its place (`bn = nn.BatchNorm(...)`, called with Flax's call arguments), unless it
  needs its input size (`hk.DepthwiseConv2D`) and is called once: then it is built at that call.
- Dropout and transforms: see `haiku2flax.codemods.dropout` and `haiku2flax.codemods.transforms`.

Example::

    class Block(hk.Module):                      class Block(nn.Module):
      def __init__(self, features, name=None):     features: int
        super().__init__(name=name)
        self.features = features                   @nn.compact
      def __call__(self, x):                       def __call__(self, x):
        return hk.Linear(self.features)(x)           return nn.Dense(self.features)(x)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import libcst as cst

from ..codemods import fields, load_all
from ..codemods.helper_layers import REPEATED_FUNCTIONS
from ..codemods.interfaces import LINEN_CALLS, LINEN_NODES, Shape
from ..codemods.initializers import initializer_values
from ..codemods.layer_subclasses import LayerSubclass, converted_call, fixed_arguments, keyword_defaults, layer_subclasses
from ..codemods.shapes import ShapeTracker
from ..codemods.transforms import LOCAL_FORWARDS, TRANSFORMS, factory_self_alias, forward_class, is_factory_forward, kept_local_forward, linen_decorated_model
from ..engine import analysis
from ..engine.called_once import CalledOnce, locals_called_once
from ..engine.calls import Unconvertible, call_input_size, code, convert_construct_call, convert_layer_call_args, keyword_arg, without_args
from ..engine.context import Context, add_todo_lines, attr
from ..engine.names import PARTIAL, dotted_name
from ..engine.rewriter import Rewriter
from ..engine.tables import Construct
from ..engine.walk import descendants
from . import RULE_LAYER, RULE_MODULE

load_all()  # every rule family registers its call rules

PROPERTIES = ("property", "cached_property", "functools.cached_property")


@dataclass
class _Scope:
    """A class or function being visited."""

    haiku_class: bool = False
    compact_candidate: bool = False  # a Haiku module method or a transformed forward
    builds_layers: bool = False  # builds a layer inline: needs @nn.compact
    stored_layers: dict[str, Construct] = field(default_factory=dict)  # `bn` / `self.bn` -> the layer built there
    function: cst.FunctionDef | None = None
    called_once: list[CalledOnce] | None = None  # its locals built and called once, once asked for


@dataclass
class _BuiltAtCall:
    """A local layer that needs its input size (`hk.DepthwiseConv2D`) and is called once: built at that call."""

    construct: Construct
    found: CalledOnce
    built: cst.Call | None = None  # its constructor as the other rules left it


class LinenConverter(Rewriter):
    node_rules = LINEN_NODES

    def __init__(self, ctx: Context, module: cst.Module) -> None:
        super().__init__(ctx)
        values = initializer_values(module, ctx.names, ctx.tables) if ctx.mentions("initializers", "_init=") else None
        ctx.initializer_bindings = values.sources if values is not None else {}
        ctx.passed_on_initializers = values.passed_on if values is not None else frozenset()
        self.classes = analysis.haiku_module_classes(module, ctx.names)
        self.layer_subclasses, self.haiku_subclasses = layer_subclasses(module, ctx) if ctx.enabled(RULE_LAYER) else ({}, {})
        self.forwards = ctx.fact(TRANSFORMS).forwards  # transformed forward functions: they become modules
        self._scopes: list[_Scope] = []  # the classes and functions being visited
        self._called_inline: set[cst.Call] = set()  # constructor calls that are called right away
        self._loop_depth = 0  # loops around the statement being visited: a layer built there is built per iteration
        self._built_at_call: dict[cst.CSTNode, _BuiltAtCall] = {}  # its statement, constructor and call -> the layer
        self._calls: list[cst.Call] = []  # the calls being visited, innermost last
        self.shapes = ShapeTracker(ctx)
        self._file_names = {n for s in module.body for n in analysis.bound_names(s)}  # module-level functions and variables
        self._partial_layers: dict[cst.Call, Construct] = {}  # `partial(bn, ...)` rebinding the layer it binds arguments of
        self._renames: dict[str, dict[str, str]] = {}  # Haiku class -> its attributes renamed in Linen (`codemods.fields`)

    # -- functions and classes ---------------------------------------------------------------------
    def visit_ClassDef(self, node: cst.ClassDef) -> bool | None:
        self._scopes.append(_Scope(haiku_class=node.name.value in self.classes))
        return super().visit_ClassDef(node)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool | None:
        # a method of a Haiku module, or a transformed forward (it becomes a module's __call__)
        method = bool(self._scopes) and self._scopes[-1].haiku_class
        forward = (not self._scopes and node.name.value in self.forwards) or self._factory_forward(node)
        # a forward calling a function of the file may build its layers there: they need the compact scope
        helpers = forward and any(isinstance(d, cst.Call) and code(d.func) in self._file_names for d in descendants(node.body))
        self._scopes.append(_Scope(compact_candidate=method or forward, builds_layers=helpers, function=node))
        self.shapes.reset()
        if id(node) in self.ctx.fact(LOCAL_FORWARDS):
            return False  # stays Haiku, like the transform it is passed to
        return super().visit_FunctionDef(node)

    def _build_at_call(self, constructor: cst.Call, construct: Construct) -> None:
        """A local layer Linen can only build where it is called (the size of its input is read there):
        `dw = hk.DepthwiseConv2D(...)`, `out = dw(x)` -> `out = nn.Conv(x.shape[-1], ...)(x)`."""
        scope = self._scopes[-1]
        if scope.function is None or not self.ctx.enabled(RULE_LAYER) or self._converts(constructor, construct):
            return  # converts where it is stored: it stays there
        if scope.called_once is None:
            scope.called_once = locals_called_once(scope.function)
        found = next((found for found in scope.called_once if found.constructor is constructor), None)
        if found is None or not self._converts(constructor, construct, call_input_size(found.call)):
            return  # the TODO stays
        layer = _BuiltAtCall(construct, found)
        for node in (found.statement, found.constructor, found.call):
            self._built_at_call[node] = layer

    def _converts(self, constructor: cst.Call, construct: Construct, inputs: tuple[cst.BaseExpression, ...] = ()) -> bool:
        try:
            convert_construct_call(constructor, construct, "linen", self.ctx.ns, inputs, ctx=self.ctx)
        except Unconvertible:
            return False
        return True

    def leave_FunctionDef(
        self, original: cst.FunctionDef, updated: cst.FunctionDef
    ) -> cst.BaseStatement | cst.FlattenSentinel[cst.BaseStatement] | cst.RemovalSentinel:
        scope = self._scopes.pop()
        if scope.compact_candidate and scope.builds_layers and any(dotted_name(d.decorator) in PROPERTIES for d in original.decorators):
            self.todo(original, RULE_MODULE, "a property cannot be `@nn.compact`: make it a method (and call it), or build what it builds in `setup`")
        elif scope.compact_candidate and scope.builds_layers:
            updated = updated.with_changes(
                decorators=[cst.Decorator(decorator=attr(self.ctx.ns, "compact")), *updated.decorators]
            )
        if (not self._scopes and original.name.value in self.forwards) or self._factory_forward(original):
            return self._forward_to_module(original, updated)
        if id(original) in self.ctx.fact(LOCAL_FORWARDS):
            return kept_local_forward(self, updated, self.classes)
        return super().leave_FunctionDef(original, updated)

    def _factory_forward(self, node: cst.FunctionDef) -> bool:
        """`node` is the forward nested in a factory, `hk.transform(factory(...))` (`analysis.factory_forward`)."""
        return len(self._scopes) == 1 and is_factory_forward(self.ctx, node, self._scopes[0].function)

    def mark_builds_layer(self) -> None:
        """A layer is built inline here: the enclosing method needs `@nn.compact`."""
        for scope in reversed(self._scopes):
            if scope.compact_candidate:
                scope.builds_layers = True
                return

    def leave_ClassDef(self, original: cst.ClassDef, updated: cst.ClassDef) -> cst.ClassDef | cst.FunctionDef:
        self._scopes.pop()
        subclass = self.layer_subclasses.get(original.name.value)
        if subclass is not None:
            assert subclass.converted is not None  # kept only once converted
            self.converted(original, RULE_LAYER, f"{original.name.value}({subclass.construct.display}) -> nn.{subclass.construct.targets['linen'].api} subclass")
            return subclass.converted
        if original.name.value not in self.classes:
            return updated
        self.ctx.need_target_import()
        parent = original.bases[0].value if len(original.bases) == 1 else None
        if isinstance(parent, cst.Name) and parent.value in self.classes and analysis.super_init_args(analysis.read_init(analysis.find_method(original, "__init__"))):
            return self._parent_factory(original, updated, parent)
        bases = [
            base.with_changes(value=attr(self.ctx.ns, "Module"))
            if self.ctx.names.haiku_api(base.value) == "Module"
            else base
            for base in updated.bases
        ]
        if not isinstance(updated.body, cst.IndentedBlock):  # `class M(hk.Module): pass`: only its bases change
            self.converted(original, RULE_MODULE, f"hk.Module subclass {original.name.value} -> nn.Module")
            return updated.with_changes(bases=bases)
        init_def = analysis.find_method(updated, "__init__")
        init = analysis.read_init(init_def)
        inherited = {k: v for base in original.bases if isinstance(base.value, cst.Name) for k, v in self._renames.get(base.value.value, {}).items()}
        plan = fields.plan_setup(init, inherited, fields.names_in_use(updated))
        self._renames[original.name.value] = plan.renames
        for clash, why in fields.clashing_fields(init, self.ctx.ns).items():
            self.todo(original, RULE_MODULE, f"the argument `{clash}` becomes a field, and {why}: rename it, here and where `{original.name.value}` is built")
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
        if init.star_kwargs is not None:
            body.append(self._kwargs_field(init.star_kwargs.name.value))
        if init.star_args is not None:
            self.todo(original, RULE_MODULE, f"Linen fields are named one by one and `*{init.star_args.name.value}` has no field: "
                      f"declare the extra positional arguments as fields, and pass them by keyword where `{original.name.value}` is built")
        field_names = [p.name.value for p in init.params] + ([init.star_kwargs.name.value] if init.star_kwargs else [])
        setup_reads = [*field_names, "name"] if init.has_name_param else field_names  # Haiku's `name` is the module's `self.name`
        class_doc = [s for s in updated.body.body[:1] if analysis.is_docstring(s)]
        methods = [
            analysis.rename_self_attributes(s, plan.renames)
            for s in updated.body.body
            if s is not init_def and not any(s is d for d in class_doc) and not fields.is_haiku_name_field(s)
        ]
        if plan.statements:
            setup = cst.FunctionDef(
                name=cst.Name("setup"),
                params=cst.Parameters([cst.Param(cst.Name("self"))]),
                body=cst.IndentedBlock(
                    [self._setup_statement(s) for s in fields.built_in_place(fields.setup_body(plan.statements, setup_reads, plan.renames))]
                ),
                leading_lines=[cst.EmptyLine(indent=False)] if body else [],
            )
            methods.insert(0, setup)
        if class_doc and body:  # a blank line between the class docstring and the fields
            body[0] = body[0].with_changes(leading_lines=[cst.EmptyLine(indent=False)])
        if body and methods and not analysis.leading_lines(methods[0]):
            methods[0] = methods[0].with_changes(leading_lines=[cst.EmptyLine(indent=False)])
        if not (class_doc or body or methods):
            body = [cst.SimpleStatementLine([cst.Pass()])]
        self.converted(original, RULE_MODULE, f"hk.Module subclass {original.name.value} -> nn.Module")
        return updated.with_changes(bases=bases, body=updated.body.with_changes(body=[*class_doc, *body, *methods]))

    def _parent_factory(self, original: cst.ClassDef, updated: cst.ClassDef, parent: cst.Name) -> cst.ClassDef | cst.FunctionDef:
        """A subclass that only passes constructor arguments to its parent (`super().__init__(n, depth=18)`)
        becomes a function building the parent with them: Linen fields are declared, never passed to a
        parent class. Anything more in the subclass is left to do by hand."""
        init_def = analysis.find_method(updated, "__init__")
        assert init_def is not None and isinstance(init_def.body, cst.IndentedBlock)
        docs = [s for s in updated.body.body[:1] if analysis.is_docstring(s)] or [s for s in init_def.body.body[:1] if analysis.is_docstring(s)]
        others = [s for s in updated.body.body if s is not init_def and not any(s is d for d in docs)]
        init_others = [s for i, s in enumerate(init_def.body.body) if not analysis.is_super_init(s) and not (i == 0 and analysis.is_docstring(s))]
        if others or init_others:
            self.todo(original, RULE_MODULE, f"`super().__init__` passes constructor arguments to the parent of `{original.name.value}`, "
                      "and Linen fields are declared, not passed: declare them in this class (or build the parent in a function) by hand")
            return updated
        super_call = analysis.read_init(analysis.find_method(original, "__init__")).super_init
        converted_super = analysis.read_init(init_def).super_init  # its arguments as the rules converted them
        assert super_call is not None and converted_super is not None
        built, todo = self._local_module_call(cst.Call(parent, converted_super.args), self.classes[parent.value])
        returned = cst.SimpleStatementLine([cst.Return(built)])
        if todo is not None:
            self.ctx.notes.todo(super_call, RULE_MODULE, todo)
            returned = add_todo_lines(returned, [(RULE_MODULE, todo)])
        params = init_def.params.with_changes(params=init_def.params.params[1:])
        self_comma = init_def.params.params[0].comma
        multiline = isinstance(self_comma, cst.Comma) and isinstance(self_comma.whitespace_after, cst.ParenthesizedWhitespace)
        self.converted(original, RULE_MODULE, f"{original.name.value}({parent.value}) -> a function building {parent.value}")
        return cst.FunctionDef(
            name=original.name, params=params, leading_lines=original.leading_lines,
            whitespace_before_params=self_comma.whitespace_after if isinstance(self_comma, cst.Comma) and multiline else init_def.whitespace_before_params,
            body=cst.IndentedBlock([*(d for d in docs if isinstance(d, cst.BaseStatement)), returned]),
        )

    def _kwargs_field(self, name: str) -> cst.SimpleStatementLine:
        """`**kwargs` the constructor keeps: a field holding them as a (hashable) mapping, as Linen fields
        are declared one by one; callers of this file pass their extra keywords there."""
        self.ctx.needed_imports.update({("typing", "Any", None), ("collections.abc", "Mapping", None), ("flax.core", "FrozenDict", None)})
        return cst.SimpleStatementLine([cst.AnnAssign(
            target=cst.Name(name), annotation=cst.Annotation(cst.parse_expression("Mapping[str, Any]")), value=cst.parse_expression("FrozenDict()")
        )])

    def _local_module_call(self, updated: cst.Call, classdef: cst.ClassDef) -> tuple[cst.Call, str | None]:
        """A call of a module class of this file: `name` by keyword, keywords its fields do not declare
        gathered into its `**kwargs` field (`Block(8, "b", eps=1e-3)` -> `Block(8, name="b", norm_kwargs=FrozenDict(eps=1e-3))`);
        and what is left to do, if anything."""
        init_def = analysis.find_method(classdef, "__init__")
        call = analysis.name_by_keyword(updated, init_def)
        init = analysis.read_init(init_def)
        if init.star_kwargs is None:
            return call, None
        declared = {p.name.value for p in init.params}
        extra = [a for a in call.args if a.keyword is not None and a.keyword.value not in declared | {"name"}]
        unpacked = [a for a in call.args if a.star == "**"]
        positional = [p.name.value for p in init_def.params.params[1:]] if init_def is not None else []
        given = {a.keyword.value for a in call.args if a.keyword is not None} | set(positional[: len([a for a in call.args if not a.keyword and not a.star])])
        todo = None
        if unpacked and not declared <= given:  # it may fill fields too
            todo = (f"`**{code(unpacked[0].value)}` may hold fields of `{classdef.name.value}` and keywords for its "
                    f"`{init.star_kwargs.name.value}`: pass the latter as `{init.star_kwargs.name.value}=FrozenDict(...)`")
        elif unpacked:  # every field is given: it holds keywords for `**kwargs` only
            extra += unpacked
        if not extra:
            return call, todo
        gathered = cst.Call(cst.Name("FrozenDict"), [a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in extra])
        self.ctx.needed_imports.add(("flax.core", "FrozenDict", None))
        kept = [a for a in call.args if not any(a is e for e in extra)]
        return call.with_changes(args=[*kept, keyword_arg(init.star_kwargs.name.value, gathered)]), todo

    def _setup_statement(self, statement: cst.BaseStatement) -> cst.BaseStatement:
        """An `__init__` statement moved to `setup()` (see `codemods.fields`), its submodules unnamed.

        Linen names a submodule assigned in `setup` after its attribute and refuses `name=` there.
        """
        original = statement
        assign = analysis.simple_assign(statement)
        attribute = analysis.self_attribute(assign[0]) if assign is not None else None
        if assign is None or attribute is None or not isinstance(assign[1], cst.Call):
            return statement
        call = assign[1]
        named = [a for a in call.args if a.keyword is not None and a.keyword.value == "name"]
        if not named:
            return statement
        if not (isinstance(named[0].value, cst.SimpleString) and named[0].value.evaluated_value == attribute):
            self.warn(original, RULE_MODULE, f"setup names this submodule `{attribute}` after its attribute")
        return cast(cst.BaseStatement, statement.deep_replace(call, without_args(call, named)))  # `call` is inside the statement

    def _forward_to_module(
        self, original: cst.FunctionDef, updated: cst.FunctionDef
    ) -> cst.BaseStatement | cst.FlattenSentinel[cst.BaseStatement] | cst.RemovalSentinel:
        """The module class of a transformed forward (none when it only builds one module); a decorated
        forward also leaves its model, bound to its name, where it was."""
        transformed = self.forwards[original.name.value]
        decorated = transformed.decorated
        if transformed.factory is not None:  # nested in its factory: the model is bound to the function's name there
            classdef = self._forward_class(original, updated, updated.decorators)
            model = cst.SimpleStatementLine([cst.Assign([cst.AssignTarget(original.name)], cst.Call(classdef.name))])
            return cst.FlattenSentinel([*factory_self_alias(original), classdef, model])
        if analysis.forward_module(original) is not None:
            return linen_decorated_model(self, original, original.leading_lines) if decorated else cst.RemovalSentinel.REMOVE
        compact = updated.decorators[: len(updated.decorators) - len(original.decorators)] if decorated else updated.decorators
        classdef = self._forward_class(original, updated, compact)
        return cst.FlattenSentinel([classdef, linen_decorated_model(self, original)]) if decorated else classdef

    def _forward_class(self, original: cst.FunctionDef, updated: cst.FunctionDef, decorators: Sequence[cst.Decorator]) -> cst.ClassDef:
        """`class Forward(nn.Module)` with the forward as its `__call__`."""
        self.ctx.need_target_import()
        method = updated.with_changes(name=cst.Name("__call__"), params=updated.params.with_changes(
            params=[cst.Param(cst.Name("self")), *updated.params.params]), decorators=decorators, leading_lines=[])
        return cst.ClassDef(
            name=cst.Name(forward_class(self.ctx, original.name.value)),
            bases=[cst.Arg(attr(self.ctx.ns, "Module"))],
            body=cst.IndentedBlock([method]),
            leading_lines=updated.leading_lines,
        )

    # -- calls ------------------------------------------------------------------------------------
    def visit_Assign(self, node: cst.Assign) -> bool | None:
        """Remember a layer stored in `bn` or `self.bn`: calling it later needs Flax's call arguments."""
        if len(node.targets) == 1 and self._scopes:
            target = node.targets[0].target
            key = dotted_name(target) if isinstance(target, cst.Name) or analysis.self_attribute(target) else None
            if key is not None:
                partial_of = self._partial_layer(node.value)  # `bn = partial(bn, ...)`: read before `bn` is rebound
                if partial_of is not None and isinstance(node.value, cst.Call):
                    self._partial_layers[node.value] = partial_of
                api = self.ctx.names.haiku_api(node.value.func) if isinstance(node.value, cst.Call) else None
                construct = self.ctx.tables.get(api) if api is not None else None
                scope = self._layer_scope(key)
                if construct is not None and construct.haiku_call_args:
                    scope.stored_layers[key] = construct
                    if isinstance(target, cst.Name) and isinstance(node.value, cst.Call):  # (a table layer is a call)
                        self._build_at_call(node.value, construct)
                else:
                    scope.stored_layers.pop(key, None)
        return super().visit_Assign(node)

    def _layer_scope(self, key: str) -> _Scope:
        """Where a stored layer lives: `self.bn` in its class, `bn` in the innermost function."""
        if key.startswith("self."):
            return next((scope for scope in reversed(self._scopes) if scope.haiku_class), self._scopes[-1])
        return self._scopes[-1]

    def _stored_layer(self, func: cst.BaseExpression) -> Construct | None:
        key = dotted_name(func) if isinstance(func, cst.Name) or analysis.self_attribute(func) else None
        if key is None or not self._scopes:
            return None
        return self._layer_scope(key).stored_layers.get(key)

    def visit_Call(self, node: cst.Call) -> None:
        if isinstance(node.func, cst.Call):
            self._called_inline.add(node.func)
        self._calls.append(node)
        super().visit_Call(node)

    def convert_copy(self, node: cst.Call) -> cst.BaseExpression:
        converted = node.deep_clone().visit(self)  # a clone: the original is marked as called inline
        assert isinstance(converted, cst.BaseExpression)
        return converted

    def called_at_once(self, call: cst.Call) -> bool:
        return call in self._called_inline

    def enclosing_call(self) -> cst.Call | None:
        return self._calls[-1] if self._calls else None

    @property
    def function(self) -> cst.FunctionDef | None:
        return next((scope.function for scope in reversed(self._scopes) if scope.function is not None), None)

    def static_shape(self, node: cst.BaseExpression) -> Shape:
        return self.shapes.static_shape(node)

    def leave_SimpleStatementLine(
        self, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine
    ) -> cst.BaseStatement | cst.FlattenSentinel[cst.BaseStatement] | cst.RemovalSentinel:
        result = super().leave_SimpleStatementLine(original, updated)
        self.shapes.track(original)
        return cst.RemovalSentinel.REMOVE if original in self._built_at_call else result  # built at its call

    def leave_IndentedBlock(self, original: cst.IndentedBlock, updated: cst.IndentedBlock) -> cst.IndentedBlock:
        first = updated.body[0] if updated.body else None
        if original.body[0] in self._built_at_call and first is not None and not any(line.comment for line in analysis.leading_lines(first)):
            updated = updated.with_changes(body=[first.with_changes(leading_lines=[]), *updated.body[1:]])  # no blank line on top
        return updated

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        while self._calls.pop() is not original:  # a call a node rule replaced was not popped
            pass
        at_call = self._built_at_call.get(original)
        if at_call is not None:
            if original is at_call.found.constructor:
                at_call.built = updated
                return updated
            return self._layer(original, updated.with_changes(func=at_call.built), at_call.construct, called=True)
        stored = self._stored_layer(original.func)
        if stored is not None:
            try:
                return updated.with_changes(args=convert_layer_call_args(updated, stored, "linen"))
            except Unconvertible as reason:
                self.todo(original, RULE_LAYER, str(reason))
                return updated
        partial_of = self._partial_layers.pop(original, None) or self._partial_layer(original)
        if partial_of is not None:
            return self._partial_of_layer(original, updated, partial_of)
        if isinstance(original.func, cst.Call) and original.func in self._called_inline:
            api = self.ctx.names.haiku_api(original.func.func)
            construct = self.ctx.tables.get(api) if api is not None else None
            if construct is not None and construct.haiku_call_args:
                return self._layer(original, updated, construct, called=True)
        api = self.ctx.names.haiku_api(original.func)
        construct = self.ctx.tables.get(api) if api is not None else None
        if construct is not None:
            if original in self._called_inline and construct.haiku_call_args:
                return updated  # converted with its call, in one piece
            return self._layer(original, updated, construct)
        subclass = self.layer_subclasses.get(original.func.value) if isinstance(original.func, cst.Name) else None
        if subclass is not None:
            return self._subclass_layer(original, updated, subclass)
        if isinstance(original.func, cst.Name) and original.func.value in self.haiku_subclasses:
            self.todo(original, RULE_LAYER, self.haiku_subclasses[original.func.value])
        if isinstance(original.func, cst.Name) and original.func.value in self.classes:
            self.mark_builds_layer()
            updated, todo = self._local_module_call(updated, self.classes[original.func.value])
            if todo is not None:
                self.todo(original, RULE_MODULE, todo)
        converted = LINEN_CALLS.dispatch(self, original, updated)
        return converted if converted is not None else super().leave_Call(original, updated)

    def _partial_layer(self, node: cst.BaseExpression) -> Construct | None:
        """The stored layer `partial(bn, ...)` binds call arguments of."""
        if isinstance(node, cst.Call) and dotted_name(node.func) in PARTIAL and node.args:
            return self._stored_layer(node.args[0].value)
        return None

    def _partial_of_layer(self, original: cst.Call, updated: cst.Call, stored: Construct) -> cst.BaseExpression:
        """`partial(bn, is_training=t)` over a stored layer: the keywords are its call's, in Flax's words
        (`partial(bn, use_running_average=not t)`)."""
        layer, *keywords = updated.args
        try:
            if any(arg.keyword is None for arg in keywords):
                raise Unconvertible(f"`{code(original)}` binds the call's arguments by position: bind them by keyword")
            converted = convert_layer_call_args(cst.Call(cst.Name("_"), [cst.Arg(cst.Name("_")), *keywords]), stored, "linen")
        except Unconvertible as reason:
            self.todo(original, RULE_LAYER, str(reason))
            return updated
        return updated.with_changes(args=[layer, *converted[1:]])

    def _subclass_layer(self, original: cst.Call, updated: cst.Call, subclass: LayerSubclass) -> cst.BaseExpression:
        """`NearZeroLinear(16)`: the parent's call it stands for, converted, less the keywords the class fixes."""
        try:
            layer = keyword_defaults(converted_call(subclass, updated, "linen", self.ctx), fixed_arguments(subclass, "linen", self.ctx))
        except Unconvertible as reason:
            self.todo(original, RULE_LAYER, str(reason))
            return updated
        self.mark_builds_layer()
        self.converted(original, RULE_LAYER, f"{code(original.func)}(...) through {subclass.construct.display}")
        return layer

    def _layer(self, original: cst.Call, updated: cst.Call, construct: Construct, called: bool = False) -> cst.BaseExpression:
        """`hk.Linear(...)`; with `called`, `hk.BatchNorm(...)(x, is_training)`, whose layer and call
        arguments convert together."""
        if not self.ctx.enabled(RULE_LAYER):
            return updated
        constructor = updated.func if called else updated
        assert isinstance(constructor, cst.Call)  # `called`: `hk.BatchNorm(...)(x)`, called where it is built
        channels_first = called and _channels_first_arg(constructor, construct)
        if channels_first:  # `hk.Conv2D(..., data_format="NCHW")(x)`: Flax convolves channels-last
            constructor = without_args(constructor, [channels_first])
            updated = updated.with_changes(func=constructor, args=_moved_first_arg(updated.args, "1", "-1"))
        try:
            inputs = call_input_size(updated) if called else ()
            layer = convert_construct_call(constructor, construct, "linen", self.ctx.ns, inputs, ctx=self.ctx)
            args = convert_layer_call_args(updated, construct, "linen") if called else None
        except Unconvertible as reason:
            self.todo(original, RULE_LAYER, str(reason))
            return updated if not channels_first else original
        if channels_first:
            self.ctx.needed_imports.add(("jax.numpy", None, "jnp"))
            moved = _moveaxis(updated.with_changes(func=layer, args=args), "-1", "1")
            self.ctx.need_target_import()
            self.mark_builds_layer()
            self.converted(original, RULE_LAYER, f"{construct.display} (channels first) -> nn.{construct.targets['linen'].api} between moveaxis")
            return moved
        self.ctx.need_target_import()
        self.mark_builds_layer()
        self.converted(original, RULE_LAYER, f"{construct.display} -> nn.{construct.targets['linen'].api}")
        if isinstance(layer, cst.Call) and any(_is_literal_name(a) for a in layer.args) and (self._loop_depth or self._in_repeated_function()):
            layer = without_args(layer, [a for a in layer.args if _is_literal_name(a)])
            where = "in a loop" if self._loop_depth else f"in `{self.function.name.value if self.function else ''}`, which is called more than once"
            self.warn(original, RULE_LAYER, f"a literal `name=` dropped {where}: Haiku numbers repeated names (`x_1`), Linen refuses them")
        return updated.with_changes(func=layer, args=args) if called else layer

    def _in_repeated_function(self) -> bool:
        """The layer is built in a module-level function the file calls at more than one place."""
        return any(id(scope.function) in self.ctx.fact(REPEATED_FUNCTIONS) for scope in self._scopes if scope.function is not None)

    def visit_For(self, node: cst.For) -> bool | None:
        self._loop_depth += 1
        return super().visit_For(node)

    def leave_For(self, original: cst.For, updated: cst.For) -> cst.BaseStatement | cst.FlattenSentinel[cst.BaseStatement] | cst.RemovalSentinel:
        self._loop_depth -= 1
        return super().leave_For(original, updated)

    def visit_While(self, node: cst.While) -> bool | None:
        self._loop_depth += 1
        return super().visit_While(node)

    def leave_While(self, original: cst.While, updated: cst.While) -> cst.BaseStatement | cst.FlattenSentinel[cst.BaseStatement] | cst.RemovalSentinel:
        self._loop_depth -= 1
        return super().leave_While(original, updated)


def _is_literal_name(arg: cst.Arg) -> bool:
    """`name="res"`: the same name at every iteration of a loop (a computed one may differ)."""
    return arg.keyword is not None and arg.keyword.value == "name" and isinstance(arg.value, cst.SimpleString)


def _channels_first_arg(constructor: cst.Call, construct: Construct) -> cst.Arg | None:
    """The `data_format="NCHW"` argument of a constructor whose table says channels first, else None."""
    if not construct.channels_first or "data_format" not in construct.haiku_args:
        return None
    keyword = [a for a in constructor.args if a.keyword is not None and a.keyword.value == "data_format"]
    if not keyword or not isinstance(keyword[0].value, cst.SimpleString) or code(keyword[0].value) not in construct.channels_first:
        return None  # (positionally, dropping it would shift the arguments after it: left to the table's TODO)
    return keyword[0]


def _moveaxis(value: cst.BaseExpression, source: str, destination: str) -> cst.Call:
    """`jnp.moveaxis(value, source, destination)`."""
    return cst.Call(cst.parse_expression("jnp.moveaxis"), [cst.Arg(value), cst.Arg(cst.parse_expression(source)), cst.Arg(cst.parse_expression(destination))])


def _moved_first_arg(args: Sequence[cst.Arg], source: str, destination: str) -> list[cst.Arg]:
    """The call's arguments with the input (the first) moved from axis `source` to `destination`."""
    first, *rest = args
    return [first.with_changes(value=_moveaxis(first.value, source, destination)), *rest]
