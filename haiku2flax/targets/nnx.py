"""The NNX target: Haiku modules become eager `nnx.Module`s whose layers are built in `__init__`.

What it converts, and why:
- Layers Haiku creates inline in a method (`hk.Linear(10)(x)`) are hoisted into `__init__` as
  attributes named the way Haiku names them (`self.linear`, `self.linear_1`, `self.block`), so
  parameter paths stay recognisable; the call becomes `self.linear(x)`.
- NNX needs input sizes at construction, which Haiku inferred at the first call. They are inferred by
  dataflow through the method: the input's size is a new constructor argument `din`, a layer's
  output size is its `output_size`, element-wise functions keep the size, a concatenation sums the
  sizes, and a submodule's output size comes from its own class. What cannot be known becomes a
  constructor argument with a TODO saying what to pass: a number is never guessed.
- `rngs: nnx.Rngs` is threaded through the constructors that need it.
- `hk.dropout(hk.next_rng_key(), R if training else 0, x)` -> `self.dropout = nnx.Dropout(R, rngs=rngs)`
  and `self.dropout(x)`; a `training` flag that is then unused leaves the signature, and callers set
  the mode with `model.train()` / `model.eval()` (NNX layers start in training mode).
- `model = hk.transform(forward)` -> `model = Model(din, ..., rngs=nnx.Rngs(seed))` (the input size and
  seed are read from `model.init(key, sample_x)` where they are literal); `model.apply(params, rng, x,
  training=True)` -> `model.train()` then `model(x)`.

Example::

    class Block(hk.Module):                         class Block(nnx.Module):
      def __init__(self, features, name=None):        def __init__(self, din, features, *, rngs: nnx.Rngs):
        super().__init__(name=name)                     self.linear = nnx.Linear(din, features, rngs=rngs)
        self.features = features
      def __call__(self, x):                          def __call__(self, x):
        return hk.Linear(self.features)(x)              return self.linear(x)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst
import libcst.matchers as m

from ..codemods.dropout import NnxDropout
from ..codemods.rng import RngKeys
from ..codemods.transforms import RULE_INPUT_SIZE, NnxTransforms, drop_removed_args
from ..engine import analysis
from ..engine.calls import BoundCall, Unconvertible, convert_construct_call, convert_layer_call_args, keyword_arg
from ..engine.context import Context, attr
from ..engine.names import dotted_name
from . import RULE_LAYER, RULE_MODULE

INPUT_SIZE = "din"
STATE_VARIABLE = "BatchStat"  # the NNX variable type of what transform_with_state calls state

# Functions that keep the feature size of their first argument.
ELEMENTWISE = {
    "relu", "gelu", "silu", "swish", "sigmoid", "tanh", "elu", "selu", "celu", "softplus", "leaky_relu",
    "log_sigmoid", "softmax", "log_softmax", "exp", "log", "abs", "square", "sqrt", "normalize", "standardize",
    "hard_tanh", "relu6", "glu", "mish", "sin", "cos",
}


def _name(value: str) -> cst.Name:
    return cst.Name(value)


def _rngs_arg() -> cst.Arg:
    return keyword_arg("rngs", _name("rngs"))


@dataclass
class ClassInfo:
    """What callers of a converted class need to know."""

    ctor_params: list[str]  # positional constructor parameters, in order (`din` first when added)
    needs_din: bool
    needs_rngs: bool
    removed_call_params: dict[str, int]  # __call__ parameters removed (name -> original position)
    output_size: cst.BaseExpression | None  # in terms of ctor_params names


class _Substitute(cst.CSTTransformer):
    """Replace Names (not attribute names or keywords) by expressions."""

    def __init__(self, mapping: dict[str, cst.BaseExpression]) -> None:
        super().__init__()
        self.mapping = mapping

    def leave_Attribute(self, original: cst.Attribute, updated: cst.Attribute) -> cst.Attribute:
        return updated.with_changes(attr=original.attr)

    def leave_Arg(self, original: cst.Arg, updated: cst.Arg) -> cst.Arg:
        return updated.with_changes(keyword=original.keyword)

    def leave_Name(self, original: cst.Name, updated: cst.Name) -> cst.BaseExpression:
        return self.mapping.get(original.value, updated)


def substitute(node: cst.BaseExpression, mapping: dict[str, cst.BaseExpression]) -> cst.BaseExpression:
    return node.visit(_Substitute(mapping)) if mapping else node  # type: ignore[return-value]


class _SelfFieldsToParams(cst.CSTTransformer):
    """`self.features` -> `features` where the field is a plain copy of a constructor parameter."""

    def __init__(self, fields: set[str]) -> None:
        super().__init__()
        self.fields = fields

    def leave_Attribute(self, original: cst.Attribute, updated: cst.Attribute) -> cst.BaseExpression:
        name = analysis.self_attribute(original)
        return _name(name) if name in self.fields else updated


@dataclass
class _Hoisted:
    attribute: str
    constructor: cst.BaseExpression
    source: cst.CSTNode  # the Haiku node it came from, for notes


@dataclass
class _ClassState:
    """Shared by the methods of one class while it is converted."""

    classdef: cst.ClassDef
    locals_in_init: set[str]  # names the hoisted constructors may read (ctor params)
    hoisted: list[_Hoisted] = field(default_factory=list)
    used_attributes: set[str] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)
    needs_din: bool = False
    extra_params: list[tuple[str, str]] = field(default_factory=list)  # (name, what to pass)
    needs_rngs: bool = False

    def attribute_name(self, base: str, explicit: str | None) -> str:
        if explicit is not None and explicit not in self.used_attributes:
            self.used_attributes.add(explicit)
            return explicit
        index = self.counts.get(base, 0)
        while True:
            candidate = base if index == 0 else f"{base}_{index}"
            index += 1
            if candidate not in self.used_attributes:
                break
        self.counts[base] = index
        self.used_attributes.add(candidate)
        return candidate


class NnxMethodRewriter(NnxDropout, RngKeys):
    """Hoists the layers one method builds inline, tracking feature sizes statement by statement.

    Rule families plug in as mixins (see `haiku2flax.codemods`) and use its public API: `size_of` /
    `set_size` (feature sizes), `input_size` (a layer's input size, or a new constructor argument with a
    TODO), `can_hoist` / `in_nested_block` (may this be built in `__init__`?), `add_to_init` (build it
    there and get its attribute name), and `mode_flags` (flags that may become train/eval mode).
    """

    def __init__(self, converter: NnxConverter, state: _ClassState, method: cst.FunctionDef, is_call: bool) -> None:
        super().__init__(converter.ctx)
        self.converter = converter
        self.state = state
        self.sizes: dict[str, cst.BaseExpression | None] = {}
        self.node_sizes: dict[int, cst.BaseExpression | None] = {}
        self.method_locals = {p.name.value for p in [*method.params.params, *method.params.kwonly_params]}
        self.method_locals |= _assigned_names(method)
        self.mode_flags: set[str] = set()
        self.output_size: cst.BaseExpression | None = None
        self._block_depth = 0
        params = [p.name.value for p in method.params.params[1:]]
        if is_call and params:
            self.sizes[params[0]] = _name(INPUT_SIZE)

    # -- size tracking ------------------------------------------------------------------------------
    def size_of(self, node: cst.BaseExpression) -> cst.BaseExpression | None:
        if id(node) in self.node_sizes:
            return self.node_sizes[id(node)]
        if isinstance(node, cst.Name):
            return self.sizes.get(node.value)
        if isinstance(node, cst.Call) and len(node.args) >= 1:
            func = dotted_name(node.func) or ""
            last = func.rsplit(".", 1)[-1]
            if last in ELEMENTWISE and node.args[0].keyword is None:
                return self.size_of(node.args[0].value)
            if last in ("concatenate", "concat") and isinstance(node.args[0].value, cst.List | cst.Tuple):
                return self._concatenated(node)
        return None

    def _concatenated(self, node: cst.Call) -> cst.BaseExpression | None:
        axis = next((a.value for a in node.args[1:] if a.keyword is None or a.keyword.value == "axis"), None)
        if not (isinstance(axis, cst.UnaryOperation) and m.matches(axis, m.UnaryOperation(m.Minus(), m.Integer("1")))):
            return None
        total: cst.BaseExpression | None = None
        for element in node.args[0].value.elements:  # type: ignore[attr-defined]
            size = self.size_of(element.value)
            if size is None:
                return None
            total = size if total is None else cst.BinaryOperation(total, cst.Add(), size)
        return total

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
        self.node_sizes.clear()

    def leave_SimpleStatementLine(self, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine):
        for small in updated.body:
            if isinstance(small, cst.Assign) and len(small.targets) == 1 and isinstance(small.targets[0].target, cst.Name):
                self.sizes[small.targets[0].target.value] = self.size_of(small.value)
            elif isinstance(small, cst.Assign | cst.AugAssign | cst.AnnAssign):
                for name in _assigned_names(small):
                    self.sizes.pop(name, None)
            elif isinstance(small, cst.Return) and small.value is not None and self._block_depth == 1:
                self.output_size = self.size_of(small.value)
        return updated

    def visit_IndentedBlock(self, node: cst.IndentedBlock) -> None:
        self._block_depth += 1

    def leave_IndentedBlock(self, original: cst.IndentedBlock, updated: cst.IndentedBlock) -> cst.IndentedBlock:
        self._block_depth -= 1
        return updated

    # -- calls ----------------------------------------------------------------------------------------
    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        if isinstance(original.func, cst.Call):  # `Ctor(...)(inputs)`: a layer built inline
            hoisted = self._hoist(original.func, updated)
            if hoisted is not None:
                return hoisted
        return super().leave_Call(original, updated)

    def in_nested_block(self, node: cst.CSTNode, what: str) -> bool:
        if self._block_depth > 1:
            self.todo(node, RULE_LAYER, f"{what} is built inside a loop or condition; build it in `__init__` by hand (use `nnx.List` for lists of layers)")
            return True
        return False

    def can_hoist(self, expressions: list[cst.BaseExpression], node: cst.CSTNode) -> bool:
        used: set[str] = set()
        for expression in expressions:
            used |= analysis.Names.of(expression).used
        blocked = sorted((used & self.method_locals) - self.state.locals_in_init)
        if blocked:
            self.todo(node, RULE_LAYER, f"its arguments use {', '.join(blocked)}, which `__init__` does not have")
            return False
        return True

    def input_size(self, attribute: str, inputs: list[cst.Arg], node: cst.CSTNode) -> cst.BaseExpression:
        size = self.size_of(inputs[0].value) if inputs and inputs[0].keyword is None else None
        if size is None:
            name = f"{attribute}_in_features"
            self.state.extra_params.append((name, f"the input feature size of `{attribute}`"))
            self.todo(node, RULE_INPUT_SIZE, f"pass `{name}`: the input feature size of `{attribute}` could not be inferred")
            return _name(name)
        if m.matches(size, m.Name(INPUT_SIZE)):
            self.state.needs_din = True
        return size

    def _hoist(self, constructor: cst.Call, updated: cst.Call) -> cst.BaseExpression | None:
        api = self.ctx.names.haiku_api(constructor.func)
        construct = self.ctx.tables.get(api) if api is not None else None
        local = constructor.func.value if isinstance(constructor.func, cst.Name) else None
        info = self.converter.class_infos.get(local) if local is not None else None
        if construct is None and (local is None or local not in self.converter.classes):
            return None
        label = f"hk.{api}" if construct is not None else f"{local}(...)"
        if self.in_nested_block(constructor, label):
            return None
        explicit = _explicit_name(constructor)
        ctor_args = [a for a in constructor.args if not (a.keyword is not None and a.keyword.value == "name")]
        if not self.can_hoist([a.value for a in ctor_args], constructor):
            return None
        base = analysis.snake_case(construct.haiku.rsplit(".", 1)[-1] if construct is not None else local)  # type: ignore[arg-type]
        attribute = self.new_attribute(base, explicit)
        call_args = list(updated.args)
        if construct is not None:
            api_spec = construct.targets["nnx"]
            inputs = tuple(self.input_size(attribute, call_args, constructor) for _ in api_spec.inputs[:1])
            try:
                new = convert_construct_call(
                    constructor.with_changes(args=ctor_args), construct, "nnx", self.ctx.ns, inputs, {"rngs": _name("rngs")}
                )
                call_args = convert_layer_call_args(updated, construct, "nnx")
            except Unconvertible as reason:
                self.todo(constructor, RULE_LAYER, str(reason))
                return None
            self.mode_flags |= _negated_flags(call_args)
            output = inputs[0] if construct.keeps_size and inputs else construct_output_size(constructor, construct)
            self.converted(constructor, RULE_LAYER, f"hk.{api} -> nnx.{api_spec.api} (built in __init__)")
            self.state.needs_rngs = True  # every table layer takes rngs
        else:
            new, output, call_args = self._local_module(constructor, ctor_args, call_args, info, attribute)
        self.add_to_init(attribute, new, constructor)
        result = updated.with_changes(func=attr("self", attribute), args=_clean_commas(call_args))
        return self.set_size(result, output)

    def new_attribute(self, base: str, explicit: str | None = None) -> str:
        """A fresh attribute name the way Haiku names modules: `linear`, `linear_1`, or the given name."""
        return self.state.attribute_name(base, explicit)

    def add_to_init(self, attribute: str, constructor: cst.BaseExpression, source: cst.CSTNode, needs_rngs: bool = False) -> None:
        """Build `self.<attribute> = constructor` at the end of `__init__`."""
        self.ctx.need_target_import()
        self.state.hoisted.append(_Hoisted(attribute, constructor, source))
        self.state.needs_rngs |= needs_rngs

    def set_size(self, node: cst.BaseExpression, size: cst.BaseExpression | None) -> cst.BaseExpression:
        """Record the feature size of an expression this statement produced; returns the expression."""
        self.node_sizes[id(node)] = size
        return node

    def _local_module(
        self, constructor: cst.Call, ctor_args: list[cst.Arg], call_args: list[cst.Arg], info: ClassInfo | None, attribute: str
    ) -> tuple[cst.Call, cst.BaseExpression | None, list[cst.Arg]]:
        if info is None:  # a class converted later in the file, or not at all: sizes unknown
            self.todo(constructor, RULE_INPUT_SIZE, f"check the constructor arguments of `{attribute}`: its class was not converted before this use")
            return constructor.with_changes(args=ctor_args), None, call_args
        values: dict[str, cst.BaseExpression] = {}
        args: list[cst.Arg] = []
        if info.needs_din:
            din = self.input_size(attribute, call_args, constructor)
            args.append(cst.Arg(din))
            values[INPUT_SIZE] = din
        args.extend(a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in ctor_args)
        if info.needs_rngs:
            args.append(_rngs_arg())
            self.state.needs_rngs = True
        positional = [a for a in ctor_args if a.keyword is None]
        for param, arg in zip([p for p in info.ctor_params if p != INPUT_SIZE], positional):
            values[param] = arg.value
        for arg in ctor_args:
            if arg.keyword is not None:
                values[arg.keyword.value] = arg.value
        output = substitute(info.output_size, values) if info.output_size is not None else None
        if output is not None and not (analysis.Names.of(output).used <= set(values) | _names_in(values)):
            output = None
        kept = drop_removed_args(call_args, info.removed_call_params)
        self.converted(constructor, RULE_MODULE, f"{attribute} built in __init__")
        return cst.Call(func=constructor.func, args=args), output, kept



MODE_ARGS = ("deterministic", "use_running_average")  # what `model.train()` / `model.eval()` set


def _negated_flags(args: list[cst.Arg]) -> set[str]:
    """Flags passed as `<mode arg>=not flag`: candidates for becoming the module's train/eval mode."""
    return {
        a.value.expression.value  # type: ignore[attr-defined]
        for a in args
        if a.keyword is not None
        and a.keyword.value in MODE_ARGS
        and m.matches(a.value, m.UnaryOperation(m.Not(), m.Name()))
    }


def construct_output_size(constructor: cst.Call, construct) -> cst.BaseExpression | None:
    if construct.output_size is None:
        return None
    try:
        bound = BoundCall.bind(constructor, construct.haiku_args, construct.haiku).args
    except Unconvertible:
        return None
    return bound.get(construct.output_size)


def _explicit_name(call: cst.Call) -> str | None:
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == "name" and isinstance(arg.value, cst.SimpleString):
            value = arg.value.evaluated_value
            if isinstance(value, str) and value.isidentifier():
                return value
    return None


def _names_in(values: dict[str, cst.BaseExpression]) -> set[str]:
    names: set[str] = set()
    for value in values.values():
        names |= analysis.Names.of(value).used
    return names


def _clean_commas(args: list[cst.Arg]) -> list[cst.Arg]:
    return [a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in args]


class _AssignedNames(cst.CSTVisitor):
    def __init__(self) -> None:
        self.names: set[str] = set()

    def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
        self.names |= analysis.Names.of(node.target).used if not isinstance(node.target, cst.Attribute) else set()

    def visit_For(self, node: cst.For) -> None:
        self.names |= analysis.Names.of(node.target).used

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        if isinstance(node.target, cst.Name):
            self.names.add(node.target.value)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        if isinstance(node.target, cst.Name):
            self.names.add(node.target.value)


def _assigned_names(node: cst.CSTNode) -> set[str]:
    collector = _AssignedNames()
    node.visit(collector)
    return collector.names


class _StripModeArgs(cst.CSTTransformer):
    """Drop `deterministic=not flag` / `use_running_average=not flag` from `self.<layer>(...)` calls.

    Once the flag is unused otherwise it leaves the signature, and the module's train/eval mode decides.
    """

    def __init__(self, flags: set[str]) -> None:
        super().__init__()
        self.flags = flags

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.Call:
        if analysis.self_attribute(original.func) is None:
            return updated
        args = [
            a
            for a in updated.args
            if not (
                a.keyword is not None
                and a.keyword.value in MODE_ARGS
                and m.matches(a.value, m.UnaryOperation(m.Not(), m.Name()))
                and a.value.expression.value in self.flags  # type: ignore[attr-defined]
            )
        ]
        return updated.with_changes(args=_clean_commas(args)) if len(args) != len(updated.args) else updated


class NnxConverter(NnxTransforms):
    def __init__(self, ctx: Context, module: cst.Module) -> None:
        super().__init__(ctx)
        self.classes = analysis.haiku_module_classes(module, ctx.names)
        self.init_transforms(module)
        self.class_infos: dict[str, ClassInfo] = {}
        self._depth = 0

    # -- module-level structure ---------------------------------------------------------------------
    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        return node.name.value not in self.classes

    def leave_ClassDef(self, original: cst.ClassDef, updated: cst.ClassDef) -> cst.ClassDef:
        if original.name.value not in self.classes:
            return updated
        converted, info = self._convert_class(original)
        self.class_infos[original.name.value] = info
        return converted

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        self._depth += 1
        return not (self._depth == 1 and node.name.value in self.forwards)

    def leave_FunctionDef(self, original: cst.FunctionDef, updated: cst.FunctionDef):
        self._depth -= 1
        if self._depth != 0 or original.name.value not in self.forwards:
            return updated
        if analysis.trivial_forward(original) is not None:
            return cst.RemovalSentinel.REMOVE
        classdef = _forward_as_class(original, self.ctx.ns)
        converted, info = self._convert_class(classdef)
        self.class_infos[classdef.name.value] = info
        return converted.with_changes(leading_lines=original.leading_lines)

    # -- classes ------------------------------------------------------------------------------------
    def _convert_class(self, classdef: cst.ClassDef) -> tuple[cst.ClassDef, ClassInfo]:
        self.ctx.need_target_import()
        init_def = analysis.find_method(classdef, "__init__")
        init = analysis.read_init(init_def)
        param_names = [p.name.value for p in init.params]
        state = _ClassState(classdef, set(param_names) | {"self"})
        state.used_attributes |= set(init.fields) | _self_assigned(classdef)
        methods: list[cst.BaseStatement] = []
        removed: dict[str, int] = {}
        output_size = None
        for statement in classdef.body.body:
            if statement is init_def or not isinstance(statement, cst.FunctionDef):
                methods.append(statement)
                continue
            method, method_removed, method_output = self._convert_method(statement, state)
            methods.append(method)
            if statement.name.value == "__call__":
                removed, output_size = method_removed, method_output
        fields = set(init.fields)
        to_params = _SelfFieldsToParams(fields)
        hoisted_lines = [
            cst.SimpleStatementLine([cst.Assign([cst.AssignTarget(attr("self", h.attribute))], h.constructor.visit(to_params))])  # type: ignore[arg-type]
            for h in state.hoisted
        ]
        methods_module = cst.Module(body=[s for s in methods if s is not init_def])
        still_read = {n for n in fields if _reads_self_attribute(methods_module, n)}
        init_body = [
            *([init.docstring] if init.docstring else []),
            *[s for s, name in zip(init.field_statements, init.fields) if name in still_read],
            *init.other_statements,
            *hoisted_lines,
        ]
        new_params = [cst.Param(_name("self"))]
        ctor_params = []
        if state.needs_din:
            new_params.append(cst.Param(_name(INPUT_SIZE), cst.Annotation(_name("int"))))
            ctor_params.append(INPUT_SIZE)
        for extra, _ in state.extra_params:
            new_params.append(cst.Param(_name(extra), cst.Annotation(_name("int"))))
            ctor_params.append(extra)
        original_params = list(init_def.params.params[1:]) if init_def is not None else []
        original_params = [p for p in original_params if p.name.value != "name"]
        new_params.extend(p.with_changes(comma=cst.MaybeSentinel.DEFAULT) for p in original_params)
        ctor_params.extend(p.name.value for p in original_params)
        kwonly = [p for p in (init_def.params.kwonly_params if init_def is not None else ()) if p.name.value != "name"]
        if state.needs_rngs:
            kwonly.append(cst.Param(_name("rngs"), cst.Annotation(attr(self.ctx.ns, "Rngs"))))
        params = cst.Parameters(
            params=new_params, kwonly_params=[p.with_changes(comma=cst.MaybeSentinel.DEFAULT) for p in kwonly],
            star_arg=cst.ParamStar() if kwonly else cst.MaybeSentinel.DEFAULT,
        )
        body_statements: list[cst.BaseStatement] = []
        if init_body or state.needs_din or state.needs_rngs or len(new_params) > 1:
            init_statements = init_body or [cst.SimpleStatementLine([cst.Pass()])]
            new_init = (init_def or cst.FunctionDef(_name("__init__"), cst.Parameters(), cst.IndentedBlock([]))).with_changes(
                params=params, body=cst.IndentedBlock(init_statements)
            )
            body_statements.append(new_init)
        for statement in methods:
            if statement is init_def:
                continue
            body_statements.append(statement)
        if init_def is None and body_statements and len(body_statements) > 1:
            body_statements[1] = body_statements[1].with_changes(leading_lines=[cst.EmptyLine(), *body_statements[1].leading_lines]) if not body_statements[1].leading_lines else body_statements[1]
        bases = [
            b.with_changes(value=attr(self.ctx.ns, "Module")) if self.ctx.names.haiku_api(b.value) == "Module" else b
            for b in classdef.bases
        ]
        output = substitute(output_size, {f: _name(f) for f in fields}) if output_size is not None else None
        if output is not None:
            output = output.visit(to_params)  # type: ignore[assignment]
            if not analysis.Names.of(output).used <= set(ctor_params):
                output = None
        self.converted(classdef, RULE_MODULE, f"hk.Module subclass {classdef.name.value} -> nnx.Module")
        info = ClassInfo(ctor_params, state.needs_din, state.needs_rngs, removed, output)
        return classdef.with_changes(bases=bases, body=classdef.body.with_changes(body=body_statements)), info

    def _convert_method(self, method: cst.FunctionDef, state: _ClassState) -> tuple[cst.FunctionDef, dict[str, int], cst.BaseExpression | None]:
        rewriter = NnxMethodRewriter(self, state, method, method.name.value == "__call__")
        new_body = method.body.visit(rewriter)
        before = analysis.Names.of(method.body).used
        stripped = new_body.visit(_StripModeArgs(rewriter.mode_flags)) if rewriter.mode_flags else new_body
        after = analysis.Names.of(stripped).used
        positional = [p.name.value for p in method.params.params]
        removed = {
            name: positional.index(name) - 1
            for name in positional[1:]
            if name in before and name not in after
        }
        if any(name in rewriter.mode_flags for name in removed) or removed:
            new_body = stripped
        else:
            removed = {}
        params = method.params.with_changes(
            params=_clean_params([p for p in method.params.params if p.name.value not in removed])
        )
        return method.with_changes(body=new_body, params=params), removed, rewriter.output_size

def _self_assigned(classdef: cst.ClassDef) -> set[str]:
    names = set()
    for node in _walk_assign_targets(classdef):
        attribute = analysis.self_attribute(node)
        if attribute is not None:
            names.add(attribute)
    return names


class _TargetCollector(cst.CSTVisitor):
    def __init__(self) -> None:
        self.targets: list[cst.BaseExpression] = []

    def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
        self.targets.append(node.target)


def _walk_assign_targets(node: cst.CSTNode) -> list[cst.BaseExpression]:
    collector = _TargetCollector()
    node.visit(collector)
    return collector.targets


class _SelfAttributeReads(cst.CSTVisitor):
    def __init__(self, name: str) -> None:
        self.name = name
        self.found = False

    def visit_Attribute(self, node: cst.Attribute) -> None:
        if analysis.self_attribute(node) == self.name:
            self.found = True


def _reads_self_attribute(node: cst.CSTNode, name: str) -> bool:
    visitor = _SelfAttributeReads(name)
    node.visit(visitor)
    return visitor.found


def _clean_params(params: list[cst.Param]) -> list[cst.Param]:
    return [p.with_changes(comma=cst.MaybeSentinel.DEFAULT) for p in params]


def _forward_as_class(function: cst.FunctionDef, names: str) -> cst.ClassDef:
    """A transformed forward function read as the `__call__` of a Haiku module with no config."""
    method = function.with_changes(
        name=_name("__call__"),
        params=function.params.with_changes(params=[cst.Param(_name("self")), *function.params.params]),
        leading_lines=[],
    )
    return cst.ClassDef(name=_name(analysis.camel_case(function.name.value)), bases=[cst.Arg(attr(names, "Module"))], body=cst.IndentedBlock([method]))
