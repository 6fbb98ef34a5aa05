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
- A Haiku dataclass module (`@dataclasses.dataclass`, fields, no `__init__`) is read as the `__init__`
  the dataclass generates: its fields become `__init__` arguments, which NNX layers read there.
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

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TypeVar, cast

import libcst as cst

from ..codemods import load_all
from ..codemods.annotations import convert_types
from ..codemods.attention import constructor_args_from_call
from ..codemods.composites import build_nnx_composite, composite_api, nnx_call_args
from ..codemods.conditional_layers import RULE_CONDITIONAL_LAYER, ConditionalBranches, Guard, guarded_lines
from ..codemods.initializers import convert_bindings, initializer_bindings
from ..codemods.helper_layers import HELPERS, RULE_HELPER_LAYERS, helper_as_class
from ..codemods.pooling import convert_partial_pools
from ..codemods.layer_lists import read_layer_lists, resolve_layer_list
from ..codemods.parameters import nnx_init_parameter
from ..codemods.layer_subclasses import LayerSubclass, layer_subclasses
from ..codemods.recurrent import CELLS
from ..codemods.scopes import without_transparent
from ..codemods.sequential_elements import inline_sequential_elements
from ..codemods.interfaces import NNX_CALLS, NNX_FILE_CALLS, NNX_FILE_NODES, NNX_NODES, NnxMethod, Shape
from ..codemods.shape_probe import INPUT_SHAPE, probed_input_size
from ..codemods.shapes import REDUCTIONS, ShapeTracker, keeps_last_axis
from ..codemods.transforms import LOCAL_FORWARDS, OUTER_SELF, RULE_INPUT_SIZE, TRANSFORMS, drop_removed_args, factory_self_alias, forward_class, is_factory_forward, kept_local_forward, nnx_decorated_model, unknown_size_args
from ..engine import analysis
from ..engine import matchers as m
from ..engine.calls import Unconvertible, code, convert_construct_call, convert_layer_call_args, keyword_arg, output_size, parsed
from ..engine.context import Context, NodeT, add_todo_lines, attr
from ..engine.names import dotted_name
from ..engine.rewriter import Rewriter
from ..engine.tables import Construct
from ..engine.walk import Transformer, Walker, descendants
from . import RULE_LAYER, RULE_MODULE

load_all()  # every rule family registers its call rules

INPUT_SIZE = "din"

# Functions that keep the feature size of their first argument.
ELEMENTWISE = {
    "relu", "gelu", "silu", "swish", "sigmoid", "tanh", "elu", "selu", "celu", "softplus", "leaky_relu",
    "log_sigmoid", "softmax", "log_softmax", "exp", "log", "abs", "square", "sqrt", "normalize", "standardize",
    "hard_tanh", "relu6", "mish", "sin", "cos",
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
    defaults: dict[str, cst.BaseExpression]  # constructor parameters' default values
    unknown_sizes: list[str]  # constructor parameters for input sizes nobody could infer (after `din`)
    needs_input_shape: bool = False  # takes the input's shape (`input_shape`) where others take `din`: sizes were probed


class _SelfFieldsToParams(Transformer):
    """`self.features` -> `features` where the field is a plain copy of a constructor parameter."""

    def __init__(self, fields: set[str]) -> None:
        super().__init__()
        self.fields = fields

    def leave_Attribute(self, original: cst.Attribute, updated: cst.Attribute) -> cst.BaseExpression:
        name = analysis.self_attribute(original)
        return _name(name) if name in self.fields else updated

    def changes(self, node: cst.CSTNode) -> bool:
        return type(node) is cst.Attribute and analysis.self_attribute(node) in self.fields


@dataclass
class _Hoisted:
    attribute: str
    constructor: cst.BaseExpression
    source: cst.CSTNode  # the Haiku node it came from, for notes
    guard: Guard = ()  # the `if` branches on constructor state it is built under
    lines: list[cst.BaseStatement] | None = None  # the statements building it, when not `self.<attribute> = constructor`


@dataclass
class _InitLayer:
    """`self.attr = hk.Linear(...)` in a Haiku `__init__`: NNX needs its input size, known at its first use."""

    attribute: str
    constructor: cst.Call  # the Haiku constructor call
    statement: cst.BaseStatement
    resolved: cst.BaseExpression | None = None  # the NNX constructor, once the input size is known
    output_size: cst.BaseExpression | None = None


@dataclass
class _MethodResult:
    method: cst.FunctionDef
    removed: dict[str, int]  # parameters that left the signature (name -> position after self)
    output_size: cst.BaseExpression | None


class _ClassConversion:
    """One Haiku class on its way to NNX, shared by the rewriters of its methods.

    Methods are converted on demand, `__call__` first, so a method called as `self.encode(x)` learns the
    size of `x` from its caller; layers built in `__init__` get their input size at their first use.
    """

    def __init__(self, converter: NnxConverter, classdef: cst.ClassDef) -> None:
        self.converter = converter
        self.ctx = converter.ctx
        self.classdef = classdef
        self.init_def = analysis.find_method(classdef, "__init__")
        self.init = analysis.read_init(self.init_def)
        self.locals_in_init = {p.name.value for p in self.init.params} | {"self"}
        self.hoisted: list[_Hoisted] = []
        self.used_attributes: set[str] = set(self.init.fields) | _self_assigned(classdef)
        self.counts: dict[str, int] = {}
        self.needs_din = False
        self.needs_input_shape = False
        self.needs_rngs = False
        self.extra_params: list[str] = []
        self.methods = {
            s.name.value: s for s in classdef.body.body if isinstance(s, cst.FunctionDef) and s is not self.init_def
        }
        self.results: dict[str, _MethodResult] = {}
        self.init_layers = self._read_init_layers()
        self.layer_lists = read_layer_lists(self.init.other_statements, converter.is_module_constructor)
        self.init_todos: list[tuple[str, str]] = []  # TODOs for the `__init__` signature itself
        self.construction_todos: dict[str, list[tuple[str, str]]] = {}  # by attribute: TODOs for the line building it
        self.init_locals: set[str] = set()  # variables the hoisted statements assign in `__init__`
        self.modes_passed_on: dict[cst.FunctionDef, dict[str, str]] = {}  # by method: flag -> the submodule that took it as its mode

    def _read_init_layers(self) -> dict[str, _InitLayer]:
        layers: dict[str, _InitLayer] = {}
        twice: set[str] = set()  # built in both branches of an `if`: which one a call uses depends on the run
        for statement in _under_ifs(self.init.other_statements):
            assign = analysis.simple_assign(statement)
            if assign is None or not isinstance(assign[1], cst.Call):
                continue
            attribute = analysis.self_attribute(assign[0])
            if attribute is not None and self.converter.is_module_constructor(assign[1]):
                twice.update({attribute} & layers.keys())
                layers[attribute] = _InitLayer(attribute, assign[1], statement)
        return {attribute: layer for attribute, layer in layers.items() if attribute not in twice}  # one layer per attribute

    def built_in_init(self) -> list[tuple[str, cst.CSTNode]]:
        return [(hoisted.attribute, hoisted.source) for hoisted in self.hoisted]

    def is_module_constructor(self, call: cst.Call) -> bool:
        return self.converter.is_module_constructor(call)

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

    def method(self, name: str, arg_sizes: dict[str, cst.BaseExpression | None]) -> _MethodResult | None:
        """The converted method, converting it now (with these argument sizes) if not done yet."""
        if name in self.results:
            return self.results[name]
        function = self.methods.get(name)
        if function is None:
            return None
        method_locals = {p.name.value for p in [*function.params.params, *function.params.kwonly_params]} | _assigned_names(function)
        rewriter = NnxMethodRewriter(self, inline_sequential_elements(function, self.ctx, _negated_flag, method_locals), arg_sizes)
        self.results[name] = _MethodResult(function, {}, None)  # guards recursion
        new_body = _visited(rewriter.method.body, rewriter)
        before = analysis.Names.of(function.body).used  # the original's: a flag only a layer's dropped `partial` bound leaves
        stripped = _StripModeArgs(rewriter.mode_flags).applied(new_body) if rewriter.mode_flags else new_body
        after = analysis.Names.of(stripped).used
        positional = [p.name.value for p in function.params.params]
        removed = {n: positional.index(n) - 1 for n in positional[1:] if n in before and n not in after}
        if removed:
            new_body = stripped
        params = function.params.with_changes(params=_clean_params([p for p in function.params.params if p.name.value not in removed]))
        signature = {"params": convert_types(params, self.ctx), "returns": function.returns and convert_types(function.returns, self.ctx)}
        converted = self._mode_todos(function, function.with_changes(body=new_body, **signature), removed)
        result = _MethodResult(converted, removed, rewriter.output_size)
        self.results[name] = result
        return result

    def _mode_todos(self, function: cst.FunctionDef, converted: cst.FunctionDef, removed: dict[str, int]) -> cst.FunctionDef:
        """A TODO on a method that keeps a flag it passes to a submodule taking that flag as its train/eval
        mode now: callers passing the flag no longer set that mode (`model.train()` / `model.eval()` do)."""
        todos = []
        for flag, submodule in self.modes_passed_on.get(function, {}).items():
            if flag in removed or flag not in {p.name.value for p in function.params.params}:
                continue
            reason = (f"`{submodule}` takes `{flag}` as its train/eval mode now, while this method still takes `{flag}`: "
                      f"call `model.train()` or `model.eval()` to match the `{flag}` it is given")
            self.ctx.notes.todo(function, RULE_LAYER, reason)
            todos.append((RULE_LAYER, reason))
        return add_todo_lines(converted, todos)

    def run(self) -> tuple[cst.ClassDef, ClassInfo]:
        self.ctx.need_target_import()
        first_params = [p.name.value for p in self.methods["__call__"].params.params[1:2]] if "__call__" in self.methods else []
        self.method("__call__", {name: _name(INPUT_SIZE) for name in first_params})
        for name in self.methods:
            self.method(name, {})
        for layer in self.init_layers.values():
            if layer.resolved is None:
                self.resolve_init_layer(layer, None, layer.constructor)
        for layers in self.layer_lists.values():
            if layers.replacements is None:  # no loop over it tells its input sizes
                resolve_layer_list(self, layers, None, None, None, layers.statement)
        list_lines = {k: v for layers in self.layer_lists.values() for k, v in (layers.replacements or {}).items()}  # (all set now)
        fields = set(self.init.fields)
        to_params = _SelfFieldsToParams(fields)
        body: list[cst.BaseStatement | cst.BaseSmallStatement] = [
            self.results[s.name.value].method if isinstance(s, cst.FunctionDef) and s in self.methods.values() else s
            for s in self.classdef.body.body
            if s is not self.init_def
        ]
        hoisted_lines = guarded_lines(
            [(h.guard, to_params.applied(line)) for h in self.hoisted for line in (h.lines if h.lines is not None else [_assign_line(h.attribute, h.constructor)])],
            to_params.applied,
        )
        init_layer_lines = {layer.statement: layer for layer in self.init_layers.values()}
        init_parameters = {s: line for s in self.init.other_statements if (line := nnx_init_parameter(s, self)) is not None}
        parent = self._parent_init()
        other_lines = [
            line
            for s in self.init.other_statements
            for line in (
                [_init_layer_line(init_layer_lines[s], to_params)]
                if s in init_layer_lines
                else [convert_bindings(_visited(s, _InitLayerLines(init_layer_lines, to_params)), self.ctx)]
                if isinstance(s, cst.If) and any(line in init_layer_lines for line in _under_ifs([s]))
                else [to_params.applied(new) for new in list_lines[s]]
                if s in list_lines
                else [to_params.applied(init_parameters[s])]
                if s in init_parameters
                else [convert_partial_pools(convert_bindings(s, self.ctx), self.ctx)]
            )
        ]
        # a field stays an attribute where the methods or the rest of `__init__` still read it as one
        still_read = {n for n in fields if any(_reads_self_attribute(s, n) for s in [*body, *other_lines, *hoisted_lines])}
        init_body = [
            *([self.init.docstring] if self.init.docstring else []),
            *([parent[0]] if parent else []),
            *[s for s, name in zip(self.init.field_statements, self.init.fields) if name in still_read],
            *other_lines,
            *hoisted_lines,
        ]
        if self.needs_input_shape:  # the probes take the whole shape: `din` is its last axis
            init_body = [analysis.substitute(s, {INPUT_SIZE: parsed(f"{INPUT_SHAPE}[-1]")}) for s in init_body]
        init_body = self._with_construction_todos(init_body)
        new_init, ctor_params = self._constructor(init_body)
        if new_init is not None:
            new_init = add_todo_lines(new_init, self.init_todos)
            insert_at = next((i for i, s in enumerate(self.classdef.body.body) if s is self.init_def), 0)
            if self.init_def is None and insert_at < len(body) and analysis.is_docstring(body[0]):
                insert_at = 1
                new_init = new_init.with_changes(leading_lines=[cst.EmptyLine(indent=False), *new_init.leading_lines])
            if self.init_def is None and insert_at < len(body) and not analysis.leading_lines(body[insert_at]):
                body[insert_at] = body[insert_at].with_changes(leading_lines=[cst.EmptyLine(indent=False)])
            body.insert(insert_at, new_init)
        bases = [
            b.with_changes(value=attr(self.ctx.ns, "Module")) if self.ctx.names.haiku_api(b.value) == "Module" else b
            for b in self.classdef.bases
        ]
        call = self.results.get("__call__")
        output = to_params.applied(call.output_size) if call is not None and call.output_size is not None else None
        removed = call.removed if call is not None else {}
        if call is None and parent is not None:  # the parent's `__call__`
            output, removed = parent[1], parent[2].removed_call_params
        if output is not None and not analysis.Names.of(output).used <= {*ctor_params, INPUT_SIZE}:  # `din`: the input's, as it passes through
            output = None
        self.converter.converted(self.classdef, RULE_MODULE, f"hk.Module subclass {self.classdef.name.value} -> nnx.Module")
        defaults = {p.name.value: p.default for p in self.init.params if p.default is not None}
        info = ClassInfo(
            ctor_params, self.needs_din and not self.needs_input_shape, self.needs_rngs, removed, output, defaults, list(self.extra_params),
            self.needs_input_shape,
        )
        inherited = self._parent_info() if new_init is None and self.init_def is None else None
        if inherited is not None:  # no `__init__` of its own: callers pass what the parent's takes (sizes, rngs)
            info = replace(inherited, removed_call_params=removed, output_size=output)
        return self.classdef.with_changes(bases=bases, body=self.classdef.body.with_changes(body=body)), info

    def _parent_info(self) -> ClassInfo | None:
        """What callers know of the converted class of this file this one subclasses, if it does."""
        parent = self.classdef.bases[0].value if len(self.classdef.bases) == 1 else None
        return self.converter.class_infos.get(parent.value) if isinstance(parent, cst.Name) else None

    def _parent_init(self) -> tuple[cst.SimpleStatementLine, cst.BaseExpression | None, ClassInfo] | None:
        """`super().__init__(...)` passing a parent class of this file its constructor arguments, as NNX
        calls it (input size and `rngs` added, `name` dropped), its output size and the parent's info."""
        args = analysis.super_init_args(self.init)
        parent = self.classdef.bases[0].value if len(self.classdef.bases) == 1 else None
        info = self.converter.class_infos.get(parent.value) if isinstance(parent, cst.Name) and args else None
        if parent is None or info is None or self.init.super_init is None:
            return None
        source = self.init.super_init
        built = self.build(cst.Call(parent, args), "super().__init__", [], None, source, _name(INPUT_SIZE) if info.needs_din else None)
        if built is None:
            return None
        new, output = built
        assert isinstance(new, cst.Call)  # `build` rewrites the constructor call it is given
        return cst.SimpleStatementLine([cst.Expr(source.with_changes(args=new.args))]), output, info

    def _with_construction_todos(self, init_body: list[cst.BaseStatement]) -> list[cst.BaseStatement]:
        """`init_body` with each submodule's construction TODOs above the line building it, where it fails;
        those of a line not found go on `__init__` itself."""
        if not self.construction_todos:
            return init_body
        placer = _ConstructionTodos(self.construction_todos)
        placed = [_visited(statement, placer) for statement in init_body]
        self.init_todos.extend(todo for attribute, todos in self.construction_todos.items() if attribute not in placer.placed for todo in todos)
        return placed

    def _constructor(self, init_body: list[cst.BaseStatement]) -> tuple[cst.FunctionDef | None, list[str]]:
        """The NNX `__init__`: `(self, din, <Haiku's arguments but name>, *, rngs)`, and its positional names."""
        new_params = [cst.Param(_name("self"))]
        if self.needs_input_shape:
            new_params.append(cst.Param(_name(INPUT_SHAPE), cst.Annotation(parsed("tuple[int, ...]"))))
        added = ([INPUT_SIZE] if self.needs_din and not self.needs_input_shape else []) + self.extra_params
        new_params.extend(cst.Param(_name(name), cst.Annotation(_name("int"))) for name in added)
        signature = convert_types(self.init_def.params, self.ctx) if self.init_def else cst.Parameters()
        original = [p for p in signature.params[1:] if p.name.value != "name"]
        new_params.extend(p.with_changes(comma=cst.MaybeSentinel.DEFAULT) for p in original)
        kwonly = [p for p in signature.kwonly_params if p.name.value != "name"]
        if self.needs_rngs:
            kwonly.append(cst.Param(_name("rngs"), cst.Annotation(attr(self.ctx.ns, "Rngs"))))
        ctor_params = [INPUT_SHAPE] * self.needs_input_shape + added + [p.name.value for p in original]
        read = analysis.Names.of(cst.IndentedBlock(body=init_body)).used
        star_kwarg = signature.star_kwarg if isinstance(signature.star_kwarg, cst.Param) and signature.star_kwarg.name.value in read else None
        # `*args` the body reads: extra positional arguments, still passed after the named ones
        star_arg = signature.star_arg if isinstance(signature.star_arg, cst.Param) and signature.star_arg.name.value in read else None
        if not (init_body or len(new_params) > 1 or kwonly or star_kwarg or star_arg):
            return None, ctor_params
        params = cst.Parameters(
            params=new_params,
            kwonly_params=[p.with_changes(comma=cst.MaybeSentinel.DEFAULT) for p in kwonly],
            star_arg=star_arg or (cst.ParamStar() if kwonly else cst.MaybeSentinel.DEFAULT),
            star_kwarg=star_kwarg,
        )
        template = self.init_def or cst.FunctionDef(_name("__init__"), cst.Parameters(), cst.IndentedBlock([]))
        body = cst.IndentedBlock(init_body or [cst.SimpleStatementLine([cst.Pass()])])
        return template.with_changes(params=params, body=body), ctor_params

    def resolve_init_layer(
        self, layer: _InitLayer, rewriter: NnxMethod | None, node: cst.CSTNode, call_args: list[cst.Arg] | None = None
    ) -> None:
        """Write the NNX constructor of a layer built in `__init__`, now that its input size is known (or not)."""
        built = self.build(layer.constructor, layer.attribute, call_args or [], rewriter, node)
        layer.resolved, layer.output_size = built if built is not None else (layer.constructor, None)

    def input_size(
        self, attribute: str, size: cst.BaseExpression | None, rewriter: NnxMethod | None, node: cst.CSTNode,
        value: cst.BaseExpression | None = None,
    ) -> cst.BaseExpression:
        """`size`; when it is unknown, a shape probe of the input `value` at construction, else a new
        constructor argument with a TODO saying what to pass."""
        if size is None and rewriter is not None and value is not None and attribute not in self.init_layers:
            size = probed_input_size(rewriter, attribute, value, node)
            self.needs_input_shape |= size is not None
        if size is None:
            name = f"{attribute}_in_features"
            self.extra_params.append(name)
            reason = f"pass `{name}`: the input feature size of `{attribute}` could not be inferred"
            if rewriter is not None:
                rewriter.todo(node, RULE_INPUT_SIZE, reason)
            else:
                self.ctx.notes.todo(node, RULE_INPUT_SIZE, reason)
                self.init_todos.append((RULE_INPUT_SIZE, reason))
            return _name(name)
        if INPUT_SIZE in analysis.Names.of(size).used:  # `din`, or a sum such as `hidden_size + din`
            self.needs_din = True
        return size

    def _input_shape(self, attribute: str, rewriter: NnxMethod | None, node: cst.CSTNode, value: cst.BaseExpression | None) -> cst.BaseExpression:
        """The input shape a submodule that probes its sizes takes: probed from this class's own, else `...` with a TODO."""
        # a layer the Haiku `__init__` builds stands before the probes (hoisted to the end): as in `input_size`, none for it
        shape = (
            probed_input_size(rewriter, attribute, value, node, whole_shape=True)
            if rewriter is not None and value is not None and attribute not in self.init_layers
            else None
        )
        if shape is None:
            reason = f"pass the input shape of `{attribute}` (without the batch axis) in place of `...`"
            (rewriter or self.converter).todo(node, RULE_INPUT_SIZE, reason)
            self.construction_todos.setdefault(attribute, []).append((RULE_INPUT_SIZE, reason))  # where the `...` fails
            return cst.Ellipsis()
        self.needs_input_shape = True
        return shape

    def call_args_for(
        self, constructor: cst.Call, call_args: list[cst.Arg], rewriter: NnxMethod, node: cst.CSTNode
    ) -> list[cst.Arg] | None:
        """The arguments of calling the NNX layer (`is_training` -> mode), or None with a TODO."""
        if composite_api(self.ctx, constructor) is not None:
            return nnx_call_args(constructor, call_args, rewriter, node)
        construct = self.converter.construct_of(constructor)
        if construct is None:
            info = self.converter.class_info(constructor)
            if info is None:
                return call_args
            kept = drop_removed_args(call_args, info.removed_call_params)
            for arg in call_args:
                if arg not in kept and isinstance(arg.value, cst.Name):
                    self.modes_passed_on.setdefault(rewriter.method, {}).setdefault(arg.value.value, code(constructor.func))
            return kept
        try:
            args = convert_layer_call_args(cst.Call(cst.Name("_"), call_args), construct, "nnx")
        except Unconvertible as reason:
            rewriter.todo(node, RULE_LAYER, str(reason))
            return None
        rewriter.mode_flags |= _negated_flags(args)
        return args

    def build(
        self,
        constructor: cst.Call,
        attribute: str,
        call_args: list[cst.Arg],
        rewriter: NnxMethod | None,
        node: cst.CSTNode,
        known_size: cst.BaseExpression | None = None,
    ) -> tuple[cst.BaseExpression, cst.BaseExpression | None] | None:
        """(NNX constructor, output size) for a Haiku module constructor called on `call_args` (or on an
        input of size `known_size`)."""
        size = known_size
        value = call_args[0].value if call_args and call_args[0].keyword is None else None
        constructor = self.converter.name_by_keyword(constructor)
        if size is None and rewriter is not None and call_args and call_args[0].keyword is None:
            size = rewriter.size_of(call_args[0].value)
        if composite_api(self.ctx, constructor) is not None:
            return build_nnx_composite(self, constructor, attribute, size, rewriter, node, value)
        ctor_args = [a for a in constructor.args if not _is_name_arg(a)]
        construct = self.converter.construct_of(constructor)
        report = rewriter if rewriter is not None else self.converter
        if construct is not None:
            api = construct.targets["nnx"]
            # convert first, so a layer left as it was adds no constructor argument for its input size
            guessed = tuple(size if size is not None else _name(f"{attribute}_in_features") for _ in api.inputs[:1])
            try:
                from_call = constructor_args_from_call(rewriter, construct, call_args) if rewriter is not None else {}
                new = convert_construct_call(
                    constructor.with_changes(args=ctor_args), construct, "nnx", self.ctx.ns, guessed, {**from_call, "rngs": _name("rngs")}, ctx=self.ctx
                )
            except Unconvertible as reason:
                report.todo(node, RULE_LAYER, str(reason))
                return None
            if isinstance(constructor.func, cst.Name) and constructor.func.value in self.converter.layer_subclasses:  # keeps its name
                new = new.with_changes(func=constructor.func)
            inputs = tuple(self.input_size(attribute, size, rewriter, node, value) for _ in api.inputs[:1])
            self.needs_rngs = True  # every table layer takes rngs
            self.ctx.need_target_import()
            report.converted(constructor, RULE_LAYER, f"{construct.display} -> nnx.{api.api} (built in __init__)")
            output = output_size(constructor, construct, inputs)
            return new, output
        info = self.converter.class_info(constructor)
        if info is None:  # a class defined later in the file: its constructor is not known yet
            report.todo(node, RULE_INPUT_SIZE, f"check the constructor arguments of `{attribute}`: its class is converted after this use")
            return constructor.with_changes(args=ctor_args), None
        values: dict[str, cst.BaseExpression] = {}
        args: list[cst.Arg] = []
        if info.needs_din:
            din = self.input_size(attribute, size, rewriter, node, value)
            args.append(cst.Arg(din))
            values[INPUT_SIZE] = din
        if info.needs_input_shape:
            args.append(cst.Arg(self._input_shape(attribute, rewriter, node, value)))
        args.extend(unknown_size_args(info, report, node))
        # the constructor runs in `__init__`, where the placeholders fail: its TODO says so on the line building it
        self.construction_todos.setdefault(attribute, []).extend(
            (RULE_INPUT_SIZE, f"`{attribute}` is built with `...` for `{name}`: pass that input feature size") for name in info.unknown_sizes
        )
        args.extend(a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in ctor_args)
        if info.needs_rngs:
            args.append(_rngs_arg())
            self.needs_rngs = True
        if size is not None:  # an output size may be the input's when the class takes none (`return x`)
            values.setdefault(INPUT_SIZE, size)
        values.update(info.defaults)
        positional = [a for a in ctor_args if a.keyword is None]
        for param, arg in zip([p for p in info.ctor_params if p != INPUT_SIZE], positional, strict=False):
            values[param] = arg.value
        values.update({a.keyword.value: a.value for a in ctor_args if a.keyword is not None})
        output = analysis.substitute(info.output_size, values) if info.output_size is not None else None
        if output is not None and not analysis.Names.of(output).used <= set(values) | _names_in(values):
            output = None
        report.converted(constructor, RULE_MODULE, f"{attribute} built in __init__")
        return cst.Call(func=constructor.func, args=args), output


_Comprehension = TypeVar("_Comprehension", bound=cst.BaseComp)


class NnxMethodRewriter(Rewriter):
    """Hoists the layers one method builds inline, tracking feature sizes statement by statement.

    Rules (see `haiku2flax.codemods`) are registered on `NNX_CALLS` / `NNX_NODES` and get this rewriter
    as their `NnxMethod` room (`haiku2flax.codemods.interfaces`): `size_of` / `set_size` (feature sizes),
    `input_size` (a layer's input size, or a new constructor argument with a TODO), `can_hoist` /
    `in_nested_block` (may this be built in `__init__`?), `hoist` (build a layer called here in
    `__init__`), `add_to_init` (build anything there and get its attribute name), and `mode_flags`
    (flags that may become train/eval mode).
    """

    node_rules = NNX_NODES

    def __init__(self, conversion: _ClassConversion, method: cst.FunctionDef, arg_sizes: dict[str, cst.BaseExpression | None]) -> None:
        super().__init__(conversion.ctx)
        self.state = conversion
        self.sizes: dict[str, cst.BaseExpression | None] = dict(arg_sizes)
        self.node_sizes: dict[cst.BaseExpression, cst.BaseExpression | None] = {}
        self.method_locals = {p.name.value for p in [*method.params.params, *method.params.kwonly_params]}
        self.method_locals |= _assigned_names(method)
        self.method = method
        self.mode_flags: set[str] = set()
        self.carried_sizes: set[str] = set()
        self.output_size: cst.BaseExpression | None = None
        self._block_depth = 0
        self._comprehensions = 0  # comprehensions around the node being visited: they run their element once per item
        self.inline_blocks: set[cst.BaseSuite] = set()  # blocks that run once, as part of the block around them (a name scope's)
        self._outer_sizes: list[tuple[dict[str, cst.BaseExpression | None], cst.BaseExpression | None]] = []  # around nested functions
        self.branches = ConditionalBranches(self, self.sizes)
        self.stored_layers = _stored_layers(method, self.branches.read(method.body), conversion.converter)
        self._stored_uses: dict[str, tuple[str, cst.BaseExpression | None] | None] = {}  # name -> (attribute, output size); None: failed
        self._stored_lines: dict[cst.BaseStatement, str] = {}  # statement (as rewritten) -> the stored layer it builds
        self._called_inline: set[cst.Call] = set()  # constructor calls called right away: `Block(...)(x)`
        self._statement: cst.SimpleStatementLine | None = None  # the innermost statement line visited
        self._calls: list[cst.Call] = []  # the calls being visited, innermost last
        self.shapes = ShapeTracker(conversion.ctx)
        self._sizes_after_statement: dict[str, cst.BaseExpression | None] = {}  # names the statement assigns

    @property
    def conversion(self) -> _ClassConversion:
        return self.state

    @property
    def function(self) -> cst.FunctionDef:
        return self.method

    def set_variable_size(self, name: str, size: cst.BaseExpression | None) -> None:
        self.sizes[name] = size

    def variable_size(self, name: str) -> cst.BaseExpression | None:
        return self.sizes.get(name)

    def set_size_after_statement(self, name: str, size: cst.BaseExpression | None) -> None:
        self._sizes_after_statement[name] = size

    # -- size tracking ------------------------------------------------------------------------------
    def size_of(self, node: cst.BaseExpression) -> cst.BaseExpression | None:
        if node in self.node_sizes:
            return self.node_sizes[node]
        if isinstance(node, cst.Name):
            return self.sizes.get(node.value)
        if isinstance(node, cst.BinaryOperation):  # `0.01 * x + 1.0`, `x + h` (sizes agree): the size stays
            sizes = [self.size_of(side) for side in (node.left, node.right) if not _is_number(side)]
            if len(sizes) == 1 or (len(sizes) == 2 and sizes[0] is not None and sizes[1] is not None and code(sizes[0]) == code(sizes[1])):
                return sizes[0]
            return self._carried_size(sizes) if len(sizes) == 2 else None
        if isinstance(node, cst.IfExp):  # `dropout(x) if training else x`: the size both arms agree on
            body, orelse = self.size_of(node.body), self.size_of(node.orelse)
            return body if body is not None and orelse is not None and code(body) == code(orelse) else None
        if isinstance(node, cst.Call) and len(node.args) >= 1:
            func = dotted_name(node.func) or ""
            last = func.rsplit(".", 1)[-1]
            if last in ELEMENTWISE and node.args[0].keyword is None:
                return self.size_of(node.args[0].value)
            if last in REDUCTIONS and node.args[0].keyword is None and keeps_last_axis(node, self.static_shape(node.args[0].value)):
                return self.size_of(node.args[0].value)
            if last in ("concatenate", "concat") and isinstance(node.args[0].value, cst.List | cst.Tuple):
                return self._concatenated(node, node.args[0].value)
        return None

    def _carried_size(self, sizes: list[cst.BaseExpression | None]) -> cst.BaseExpression | None:
        """`x + layer(x)` in a loop, where `x`'s size is what the iteration was handed: the two agree (as
        they must, to add), so the size stays the one handed on."""
        handed = [s for s in sizes if isinstance(s, cst.Name) and s.value in self.carried_sizes]
        return handed[0] if len(handed) == 1 and all(s is not None for s in sizes) else None

    def _concatenated(self, node: cst.Call, parts: cst.List | cst.Tuple) -> cst.BaseExpression | None:
        axis = next((a.value for a in node.args[1:] if a.keyword is None or a.keyword.value == "axis"), None)
        if not (isinstance(axis, cst.UnaryOperation) and m.matches(axis, m.UnaryOperation(m.Minus(), m.Integer("1")))):
            return None
        total: cst.BaseExpression | None = None
        for element in parts.elements:
            size = self.size_of(element.value)
            if size is None:
                return None
            total = size if total is None else cst.BinaryOperation(total, cst.Add(), size)
        return total

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
        self.node_sizes.clear()
        self._statement = node
        super().visit_SimpleStatementLine(node)

    def leave_SimpleStatementLine(
        self, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine
    ) -> cst.BaseStatement | cst.FlattenSentinel[cst.BaseStatement] | cst.RemovalSentinel:
        stored = next((name for name, (_, line, _) in self.stored_layers.items() if line is original), None)
        if stored is not None:
            self._stored_lines[updated] = stored
            return updated
        for small in updated.body:
            if isinstance(small, cst.Assign) and len(small.targets) == 1 and isinstance(small.targets[0].target, cst.Name):
                self.sizes[small.targets[0].target.value] = self.size_of(small.value)
            elif isinstance(small, cst.Assign | cst.AugAssign | cst.AnnAssign):
                for name in _assigned_names(small):
                    self.sizes.pop(name, None)
            elif isinstance(small, cst.Return) and small.value is not None and self._block_depth == 1:
                self.output_size = self.branches.returned(self.size_of(small.value))
        result = super().leave_SimpleStatementLine(original, updated)
        self.sizes.update(self._sizes_after_statement)
        self._sizes_after_statement.clear()
        self.shapes.track(original)
        return result

    def inline_block(self, block: cst.BaseSuite) -> None:
        self.inline_blocks.add(block)

    def enter_function(self) -> None:
        self._outer_sizes.append((dict(self.sizes), self.output_size))

    def leave_function(self) -> cst.BaseExpression | None:
        returned = self.output_size
        sizes, self.output_size = self._outer_sizes.pop()
        self.sizes.clear()  # the same dict the conditional branches read
        self.sizes.update(sizes)
        return returned

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool | None:
        self.shapes.reset()
        return super().visit_FunctionDef(node)

    def static_shape(self, node: cst.BaseExpression) -> Shape:
        return self.shapes.static_shape(node)

    def visit_If(self, node: cst.If) -> bool | None:
        self.branches.visit_if(node)
        return super().visit_If(node)

    def leave_If(self, original: cst.If, updated: cst.If) -> cst.BaseStatement | cst.FlattenSentinel[cst.BaseStatement] | cst.RemovalSentinel:
        self.branches.leave_if(original)
        return super().leave_If(original, updated)

    def visit_IndentedBlock(self, node: cst.IndentedBlock) -> None:
        self._block_depth += node not in self.inline_blocks
        self.branches.enter_block(node)
        super().visit_IndentedBlock(node)

    def leave_IndentedBlock(self, original: cst.IndentedBlock, updated: cst.IndentedBlock) -> cst.IndentedBlock:
        self._block_depth -= original not in self.inline_blocks
        self.branches.leave_block(original)
        if self._stored_lines:  # stored layers now built in `__init__`: drop their lines
            hoisted = {name for name, use in self._stored_uses.items() if use is not None}
            body = [s for s in updated.body if self._stored_lines.get(s) not in hoisted]
            if body and body[0] is not updated.body[0] and not any(line.comment for line in analysis.leading_lines(body[0])):
                body[0] = body[0].with_changes(leading_lines=[])  # no blank line left at the top of the block
            updated = updated.with_changes(body=body or [cst.SimpleStatementLine([cst.Pass()])])
        return updated

    def visit_SimpleStatementSuite(self, node: cst.SimpleStatementSuite) -> None:
        self._block_depth += node not in self.inline_blocks
        self.branches.enter_block(node)
        super().visit_SimpleStatementSuite(node)

    def leave_SimpleStatementSuite(self, original: cst.SimpleStatementSuite, updated: cst.SimpleStatementSuite) -> cst.BaseSuite:
        self._block_depth -= original not in self.inline_blocks
        self.branches.leave_block(original)
        return super().leave_SimpleStatementSuite(original, updated)

    # -- calls ----------------------------------------------------------------------------------------
    def visit_Call(self, node: cst.Call) -> None:
        if isinstance(node.func, cst.Call):
            self._called_inline.add(node.func)
        self._calls.append(node)
        super().visit_Call(node)

    def called_at_once(self, call: cst.Call) -> bool:
        return call in self._called_inline

    def enclosing_call(self) -> cst.Call | None:
        return self._calls[-1] if self._calls else None

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        while self._calls.pop() is not original:  # a call a node rule replaced was not popped
            pass
        still_haiku = self.state.converter.haiku_subclasses.get(original.func.value) if isinstance(original.func, cst.Name) else None
        if still_haiku is not None:
            self.todo(original, RULE_LAYER, still_haiku)
            return updated
        if isinstance(original.func, cst.Name) and original.func.value in self.stored_layers:
            return self._call_stored(original.func.value, updated)
        if self._builds_class_elsewhere(original):
            self.todo(original, RULE_MODULE, f"`{dotted_name(original.func)}` is built in a loop or condition; "
                      "build it in `__init__` by hand (an `nnx.List` for one per iteration)")
            return updated
        if self._passes_class_on(original):
            self.todo(original, RULE_MODULE, f"`{dotted_name(original.func)}` is built here and passed on, not called: build it "
                      "in `__init__` by hand (with its input size and `rngs`) and pass it there")
            return updated
        if isinstance(original.func, cst.Call):  # `Ctor(...)(inputs)`: a layer built inline
            hoisted = self.hoist(original.func, updated)
            if hoisted is not None:
                return hoisted
        attribute = analysis.self_attribute(original.func)
        if attribute in self.state.init_layers:
            return self._use_init_layer(self.state.init_layers[attribute], original, updated)
        if attribute in self.state.methods:
            return self._call_method(attribute, updated)
        converted = NNX_CALLS.dispatch(self, original, updated)
        return converted if converted is not None else super().leave_Call(original, updated)

    def _use_init_layer(self, layer: _InitLayer, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        """`self.encoder(x)` on a layer built in `__init__`: its first use tells its input size."""
        if layer.resolved is None:
            self.state.resolve_init_layer(layer, self, original, list(updated.args))
        args = self.state.call_args_for(layer.constructor, list(updated.args), self, original)
        if args is None:
            return updated
        return self.set_size(updated.with_changes(args=_clean_commas(args)), layer.output_size)

    def _call_method(self, name: str, updated: cst.Call) -> cst.BaseExpression:
        """`self.encode(x)`: convert `encode` knowing the sizes of its arguments, then use its output size."""
        function = self.state.methods[name]
        params = [p.name.value for p in function.params.params[1:]]
        sizes: dict[str, cst.BaseExpression | None] = {}
        positional = [a for a in updated.args if a.keyword is None and not a.star]
        for param, arg in zip(params, positional, strict=False):
            sizes[param] = self.size_of(arg.value)
        for arg in updated.args:
            if arg.keyword is not None:
                sizes[arg.keyword.value] = self.size_of(arg.value)
        result = self.state.method(name, sizes)
        if result is None:
            return updated
        args = drop_removed_args(list(updated.args), result.removed)
        return self.set_size(updated.with_changes(args=_clean_commas(args)), result.output_size)

    def in_loop_or_condition(self) -> bool:
        return self._block_depth > 1

    def reads_constructor_state(self, expression: cst.BaseExpression) -> bool:
        return self.branches.is_constructor_condition(expression)

    def visit_comprehension(self, node: cst.BaseComp) -> None:
        self._comprehensions += 1

    def leave_comprehension(self, original_node: _Comprehension, updated_node: _Comprehension) -> _Comprehension:
        self._comprehensions -= 1
        return updated_node

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = visit_comprehension
    leave_ListComp = leave_SetComp = leave_DictComp = leave_GeneratorExp = leave_comprehension

    def in_nested_block(self, node: cst.CSTNode, what: str) -> bool:
        if self._block_depth > 1 or self._comprehensions:
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
        """The input feature size of `attribute` called on `inputs`, or a new constructor argument + TODO."""
        value = inputs[0].value if inputs and inputs[0].keyword is None else None
        return self.state.input_size(attribute, self.size_of(value) if value is not None else None, self, node, value)

    def _builds_class_elsewhere(self, call: cst.Call) -> bool:
        """A module class of this file built in a loop or condition and not called there and then
        (`Block(...)(x)` is hoisted, or refused with its own TODO)."""
        return (
            self._block_depth > 1
            and isinstance(call.func, cst.Name)
            and call.func.value in self.state.converter.classes
            and call not in self._called_inline
        )

    def _passes_class_on(self, call: cst.Call) -> bool:
        """`transformer = Transformer(...)`, a module class of this file bound to a local that the method
        passes to the constructor of another (`LanguageModel(transformer=transformer)`): nothing builds it
        in `__init__`."""
        assign = analysis.simple_assign(self._statement) if self._statement is not None else None
        classes = self.state.converter.classes
        if assign is None or assign[1] is not call or not isinstance(assign[0], cst.Name) or not (isinstance(call.func, cst.Name) and call.func.value in classes):
            return False
        local = assign[0].value
        return any(
            isinstance(node, cst.Call) and isinstance(node.func, cst.Name) and node.func.value in classes
            and any(m.matches(arg.value, m.Name(local)) for arg in node.args)
            for node in descendants(self.function.body)
        )

    def _call_stored(self, name: str, updated: cst.Call) -> cst.BaseExpression:
        """`bn(x, is_training)` on a layer stored by `bn = hk.BatchNorm(...)`: the first call builds it in `__init__`."""
        constructor = self.stored_layers[name][0]
        if name not in self._stored_uses:
            hoisted = self.hoist(constructor, updated, stored_as=name, guard=self.stored_layers[name][2])
            attribute = analysis.self_attribute(hoisted.func) if isinstance(hoisted, cst.Call) else None  # `self.<attribute>(...)`
            self._stored_uses[name] = None if attribute is None or hoisted is None else (attribute, self.node_sizes.get(hoisted))
            return updated if hoisted is None else hoisted
        use = self._stored_uses[name]
        call_args = self.state.call_args_for(constructor, list(updated.args), self, constructor) if use is not None else None
        if use is None or call_args is None:
            self._stored_uses[name] = None
            return updated
        return self.set_size(updated.with_changes(func=attr("self", use[0]), args=_clean_commas(call_args)), use[1])

    def hoist(
        self, constructor: cst.Call, updated: cst.Call, stored_as: str | None = None, guard: Guard | None = None
    ) -> cst.BaseExpression | None:
        """`self.<attribute>(...)` for a layer built in `__init__`; `stored_as`: the local it was stored in,
        at the method's top level or in a branch on constructor state (so it is built once even when called
        in a loop), `guard` that branch."""
        if not self.state.converter.is_module_constructor(constructor):
            return None
        api = self.ctx.names.haiku_api(constructor.func)
        if stored_as is None and self.in_nested_block(constructor, f"hk.{api}" if api else f"{dotted_name(constructor.func)}(...)"):
            return None
        if not self.can_hoist([a.value for a in constructor.args if not _is_name_arg(a)], constructor):
            return None
        call_args = self.state.call_args_for(constructor, list(updated.args), self, constructor)
        if call_args is None:
            return None
        named = self.state.converter.name_by_keyword(constructor)
        attribute = self.new_attribute(stored_as or _haiku_module_name(constructor, api), analysis.explicit_name(named))
        built = self.state.build(constructor, attribute, list(updated.args), self, constructor)
        if built is None:
            return None
        new, output = built
        self.add_to_init(attribute, convert_bindings(new, self.ctx), constructor, guard=guard)
        result = updated.with_changes(func=attr("self", attribute), args=_clean_commas(call_args))
        return self.set_size(result, output)

    def new_attribute(self, base: str, explicit: str | None = None) -> str:
        """A fresh attribute name the way Haiku names modules: `linear`, `linear_1`, or the given name."""
        return self.state.attribute_name(base, explicit)

    def add_to_init(
        self,
        attribute: str,
        constructor: cst.BaseExpression,
        source: cst.CSTNode,
        needs_rngs: bool = False,
        guard: Guard | None = None,
        lines: list[cst.BaseStatement] | None = None,
    ) -> None:
        """Build `self.<attribute> = constructor` (or run `lines`, which build it) at the end of `__init__`,
        under the `if` branches of `guard` (by default those on constructor state around the current statement)."""
        self.ctx.need_target_import()
        guard = self.branches.layer_guard if guard is None else guard
        if guard:
            self.converted(source, RULE_CONDITIONAL_LAYER, f"{attribute} built in __init__ under the same condition")
        self.state.hoisted.append(_Hoisted(attribute, constructor, source, guard, lines))
        self.state.needs_rngs |= needs_rngs

    def set_size(self, node: cst.BaseExpression, size: cst.BaseExpression | None) -> cst.BaseExpression:
        """Record the feature size of an expression this statement produced; returns the expression."""
        self.node_sizes[node] = size
        return node

    def without_mode_args(self, statement: cst.BaseStatement) -> cst.BaseStatement:
        return _visited(statement, _StripModeArgs(self.mode_flags))


MODE_ARGS = ("deterministic", "use_running_average")  # what `model.train()` / `model.eval()` set


def _negated_flags(args: list[cst.Arg]) -> set[str]:
    """Flags passed as `<mode arg>=not flag`: candidates for becoming the module's train/eval mode."""
    return {flag for a in args if (flag := _negated_flag(a)) is not None}


def _negated_flag(arg: cst.Arg) -> str | None:
    """`flag` for a `<mode arg>=not flag` argument, else None."""
    value = arg.value
    if arg.keyword is None or arg.keyword.value not in MODE_ARGS or not isinstance(value, cst.UnaryOperation):
        return None
    return value.expression.value if isinstance(value.operator, cst.Not) and isinstance(value.expression, cst.Name) else None


def _is_number(node: cst.BaseExpression) -> bool:
    return m.matches(node, m.Integer() | m.Float() | m.UnaryOperation(m.Minus(), m.Integer() | m.Float()))


def _is_name_arg(arg: cst.Arg) -> bool:
    return arg.keyword is not None and arg.keyword.value == "name"


class _NameUses(Walker):
    """How often each of some names is read, assigned, and called (`name(...)`) in a subtree."""

    def __init__(self, names: set[str]) -> None:
        self.names = names
        self.reads: dict[str, int] = dict.fromkeys(names, 0)
        self.assigned: dict[str, int] = dict.fromkeys(names, 0)
        self.calls: dict[str, int] = dict.fromkeys(names, 0)

    def visit_Name(self, node: cst.Name) -> None:
        if node.value in self.names:
            self.reads[node.value] += 1

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        self.walk(node.value)  # `x.bn` does not read `bn`
        return False

    def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
        if isinstance(node.target, cst.Name) and node.target.value in self.names:
            self.assigned[node.target.value] += 1

    def visit_Call(self, node: cst.Call) -> None:
        if isinstance(node.func, cst.Name) and node.func.value in self.names:
            self.calls[node.func.value] += 1


RECURRENT_CORES = frozenset({*CELLS, "DeepRNN"})


def _stored_layers(
    method: cst.FunctionDef, blocks: list[tuple[cst.BaseSuite, Guard]], converter: NnxConverter
) -> dict[str, tuple[cst.Call, cst.BaseStatement, Guard]]:
    """Layers a method stores in a local and only ever calls, in the same block: `bn = hk.BatchNorm(...)`,
    `bn(x, t)`, at its top level or in a branch on constructor state (`blocks`, with their guards).

    They can be built in `__init__` as `self.bn`; a local used any other way (passed on, rebound) cannot.
    """
    candidates = {}
    for block, guard in blocks:
        for statement in getattr(block, "body", ()):
            assign = analysis.simple_assign(statement)
            if (
                assign is not None
                and isinstance(assign[0], cst.Name)
                and isinstance(assign[1], cst.Call)
                and not any(line.comment for line in statement.leading_lines)  # its comments would have nowhere to go
                and converter.is_module_constructor(assign[1])
                and converter.ctx.names.haiku_api(assign[1].func) not in RECURRENT_CORES  # the recurrent rule builds those
            ):
                candidates[assign[0].value] = (assign[1], statement, guard, block)
    if not candidates:
        return {}
    uses = _NameUses(set(candidates))
    uses.walk(method.body)
    in_block = {}
    for name, (_, _, _, block) in candidates.items():
        in_block[name] = _NameUses({name})
        in_block[name].walk(block)
    return {
        name: (constructor, statement, guard)
        for name, (constructor, statement, guard, _) in candidates.items()
        if uses.assigned[name] == 1
        and uses.calls[name] >= 1
        and uses.reads[name] == uses.assigned[name] + uses.calls[name]
        and in_block[name].reads[name] == uses.reads[name]
    }


def _haiku_module_name(constructor: cst.Call, api: str | None) -> str:
    """Haiku's default module name: the class name in snake_case (`hk.Linear` -> `linear`)."""
    return analysis.snake_case((api or dotted_name(constructor.func) or "module").rsplit(".", 1)[-1])


def _assign_line(attribute: str, value: cst.BaseExpression, like: cst.BaseStatement | None = None) -> cst.SimpleStatementLine:
    """`self.attribute = value`, keeping the comments above `like` when it replaces a statement."""
    line = cst.SimpleStatementLine([cst.Assign([cst.AssignTarget(attr("self", attribute))], value)])
    return line.with_changes(leading_lines=analysis.leading_lines(like)) if like is not None else line


def _names_in(values: dict[str, cst.BaseExpression]) -> set[str]:
    names: set[str] = set()
    for value in values.values():
        names |= analysis.Names.of(value).used
    return names


def _clean_commas(args: list[cst.Arg]) -> list[cst.Arg]:
    return [a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in args]


class _AssignedNames(Walker):
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
    collector.walk(node)
    return collector.names


class _StripModeArgs(Transformer):
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
            if _negated_flag(a) not in self.flags
        ]
        return updated.with_changes(args=_clean_commas(args)) if len(args) != len(updated.args) else updated

    def changes(self, node: cst.CSTNode) -> bool:
        return type(node) is cst.Call and analysis.self_attribute(node.func) is not None and any(_negated_flag(a) in self.flags for a in node.args)


class NnxConverter(Rewriter):
    node_rules = NNX_FILE_NODES

    def __init__(self, ctx: Context, module: cst.Module) -> None:
        super().__init__(ctx)
        ctx.initializer_bindings = initializer_bindings(module, ctx.names, ctx.tables) if ctx.mentions("initializers") else {}
        self.classes = analysis.haiku_module_classes(module, ctx.names)
        self.layer_subclasses, self.haiku_subclasses = layer_subclasses(module, ctx, INPUT_SIZE) if ctx.enabled(RULE_LAYER) else ({}, {})
        self.forwards = ctx.fact(TRANSFORMS).forwards  # transformed forward functions: they become modules
        self.helpers = ctx.fact(HELPERS) if ctx.enabled(RULE_HELPER_LAYERS) else {}  # functions building layers: they become modules too
        self.helper_classes = {helper.class_name: name for name, helper in self.helpers.items()}
        self._converted_helpers: dict[str, cst.ClassDef] = {}
        self.class_infos: dict[str, ClassInfo] = dict(ctx.tree.classes)  # module classes of other files of the tree, then this file's
        self._depth = 0
        self._module_function: cst.FunctionDef | None = None  # the module-level function being visited

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        converted = NNX_FILE_CALLS.dispatch(self, original, updated)
        return converted if converted is not None else super().leave_Call(original, updated)

    def construct_of(self, call: cst.Call) -> Construct | None:
        """The table entry a layer call converts through: its own, or its parent's for a subclass that
        keeps Haiku's constructor (`class Readout(hk.Linear)`)."""
        subclass = self.layer_subclasses.get(call.func.value) if isinstance(call.func, cst.Name) else None
        if subclass is not None:  # with its own `__init__`, it is a class of this file
            return subclass.construct if subclass.init is None else None
        api = self.ctx.names.haiku_api(call.func)
        return self.ctx.tables.get(api) if api is not None else None

    def name_by_keyword(self, call: cst.Call) -> cst.Call:
        """A call of a module class of this file with `name` by keyword (NNX constructors take none)."""
        if isinstance(call.func, cst.Name) and call.func.value in self.classes:
            return analysis.name_by_keyword(call, analysis.find_method(self.classes[call.func.value], "__init__"))
        return call

    def class_info(self, call: cst.Call) -> ClassInfo | None:
        """What callers need to know of the class of this file `call` builds, once it is converted (a
        function that becomes a class is converted at its first use)."""
        if not isinstance(call.func, cst.Name):
            return None
        if call.func.value in self.helper_classes:
            self._helper_class(self.helper_classes[call.func.value])
        return self.class_infos.get(call.func.value)

    def _helper_class(self, name: str) -> cst.ClassDef:
        """The NNX class the function `name` becomes (`helper_layers`), converted once."""
        if name not in self._converted_helpers:
            helper = self.helpers[name]
            converted, info = _ClassConversion(self, helper_as_class(helper, self.ctx.ns)).run()
            self.class_infos[helper.class_name] = self.ctx.module_classes[helper.class_name] = info
            self._converted_helpers[name] = converted.with_changes(leading_lines=helper.function.leading_lines)
        return self._converted_helpers[name]

    def is_module_constructor(self, call: cst.Call) -> bool:
        """A table layer, an MLP or Sequential, or a Haiku module class of this file or of another file of the tree."""
        local = isinstance(call.func, cst.Name) and (
            call.func.value in self.classes or call.func.value in self.layer_subclasses or call.func.value in self.ctx.tree.classes
            or call.func.value in self.helper_classes
        )
        return self.construct_of(call) is not None or composite_api(self.ctx, call) is not None or local

    # -- module-level structure ---------------------------------------------------------------------
    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        return node.name.value not in self.classes and node.name.value not in self.layer_subclasses

    def leave_ClassDef(self, original: cst.ClassDef, updated: cst.ClassDef) -> cst.ClassDef:
        subclass = self.layer_subclasses.get(original.name.value)
        if subclass is not None:
            return self._layer_subclass(subclass)
        if original.name.value not in self.classes:
            return updated
        converted, info = _ClassConversion(self, analysis.with_dataclass_init(original)).run()
        self.class_infos[original.name.value] = self.ctx.module_classes[original.name.value] = info
        return without_transparent(self, converted)

    def _layer_subclass(self, subclass: LayerSubclass) -> cst.ClassDef:
        """The NNX class of a table layer's subclass; one with its own constructor is then built as a
        class of this file (its `__init__` takes the input size first, and `rngs`)."""
        original = subclass.classdef
        if subclass.init is not None and subclass.super_call is not None:
            api = subclass.construct.targets["nnx"]
            inputs = tuple(_name(INPUT_SIZE) for _ in api.inputs[:1])
            params = [p.name.value for p in subclass.params if p in subclass.init.params.params]
            output = output_size(subclass.super_call, subclass.construct, inputs)
            if output is not None and not analysis.Names.of(output).used <= {*params, INPUT_SIZE}:
                output = None
            defaults = {p.name.value: p.default for p in subclass.params if p.default is not None}
            self.class_infos[original.name.value] = ClassInfo([*(INPUT_SIZE for _ in inputs), *params], bool(inputs), True, {}, output, defaults, [])
        self.converted(original, RULE_LAYER, f"{original.name.value}({subclass.construct.display}) -> nnx.{subclass.construct.targets['nnx'].api} subclass")
        assert subclass.converted is not None  # kept only once converted
        return subclass.converted

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        self._depth += 1
        self._module_function = node if self._depth == 1 else self._module_function
        visit_children = super().visit_FunctionDef(node) is not False
        kept = id(node) in self.ctx.fact(LOCAL_FORWARDS)  # stays Haiku, like the transform it is passed to
        forward = (self._depth == 1 and node.name.value in {*self.forwards, *self.helpers}) or self._factory_forward(node, self._depth - 1)
        return visit_children and not kept and not forward

    def _factory_forward(self, node: cst.FunctionDef, depth: int) -> bool:
        """`node`, at `depth` 1, is the forward of a factory, `hk.transform(factory(...))` (`analysis.factory_forward`)."""
        return depth == 1 and is_factory_forward(self.ctx, node, self._module_function)

    def leave_FunctionDef(
        self, original: cst.FunctionDef, updated: cst.FunctionDef
    ) -> cst.BaseStatement | cst.FlattenSentinel[cst.BaseStatement] | cst.RemovalSentinel:
        self._depth -= 1
        if self._factory_forward(original, self._depth):  # its class, bound to its name: callers build it
            classdef, _ = self._forward_class(original)
            bind = cst.SimpleStatementLine([cst.Assign([cst.AssignTarget(original.name)], classdef.name)])
            alias = factory_self_alias(original)  # takes the function's leading lines
            return cst.FlattenSentinel([*alias, classdef.with_changes(leading_lines=[] if alias else original.leading_lines), bind])
        if id(original) in self.ctx.fact(LOCAL_FORWARDS):
            return kept_local_forward(self, updated, self.classes)
        if self._depth == 0 and original.name.value in self.helpers:
            return self._helper_class(original.name.value)
        if self._depth != 0 or original.name.value not in self.forwards:
            return super().leave_FunctionDef(original, updated)
        decorated = self.forwards[original.name.value].decorated
        module = analysis.forward_module(original)
        if module is not None and isinstance(module.func, cst.Name) and module.func.value in self.classes:
            if decorated:  # its model stands where it was, or it stays under a TODO
                return nnx_decorated_model(self, original, original.leading_lines) or updated
            return cst.RemovalSentinel.REMOVE  # the transform builds that module directly
        converted, info = self._forward_class(original.with_changes(decorators=[]) if decorated else original)
        self.ctx.module_classes[converted.name.value] = info
        converted = converted.with_changes(leading_lines=original.leading_lines)
        model = nnx_decorated_model(self, original) if decorated else None
        return cst.FlattenSentinel([converted, model]) if model is not None else converted

    def _forward_class(self, forward: cst.FunctionDef) -> tuple[cst.ClassDef, ClassInfo]:
        """The NNX class of a transformed forward, known to this file's callers (a factory's forward reads
        the factory's `self` as `outer_self`, in `__init__` and `__call__` alike)."""
        if analysis.outer_self(forward):
            forward = forward.with_changes(body=analysis.substitute(forward.body, {"self": cst.Name(OUTER_SELF)}))
        converted, info = _ClassConversion(self, _forward_as_class(forward, forward_class(self.ctx, forward.name.value), self.ctx.ns)).run()
        self.class_infos[converted.name.value] = info
        return converted, info


def _visited(node: NodeT, transformer: cst.CSTTransformer) -> NodeT:
    """`node` through `transformer`, which removes nothing here and replaces an expression by an
    expression, a statement by a statement."""
    return cast(NodeT, node.visit(transformer))


def _under_ifs(statements: Sequence[cst.BaseStatement]) -> Iterator[cst.BaseStatement]:
    """`statements` and, for an `if` among them, those of its branches (what `__init__` builds under a
    condition on its arguments is built in NNX under the same `if`)."""
    for statement in statements:
        yield statement
        node: cst.BaseStatement | cst.Else | None = statement
        while isinstance(node, cst.If | cst.Else):
            if isinstance(node.body, cst.IndentedBlock):
                yield from _under_ifs(node.body.body)
            node = node.orelse if isinstance(node, cst.If) else None


class _InitLayerLines(Transformer):
    """An `if` of `__init__` with the Haiku layers its branches build replaced by their NNX lines."""

    def __init__(self, lines: dict[cst.BaseStatement, _InitLayer], to_params: _SelfFieldsToParams) -> None:
        super().__init__()
        self.lines = lines
        self.to_params = to_params

    def leave_SimpleStatementLine(self, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine) -> cst.SimpleStatementLine:
        return _init_layer_line(self.lines[original], self.to_params) if original in self.lines else updated

    def leave_If(self, original: cst.If, updated: cst.If) -> cst.If:
        return updated.with_changes(test=_visited(updated.test, self.to_params))


class _ConstructionTodos(Transformer):
    """Puts TODOs above the lines of `__init__` building an attribute (`self.net = Net(...)`, or
    `super().__init__(...)` for the parent's), recording which attributes it found."""

    def __init__(self, todos: dict[str, list[tuple[str, str]]]) -> None:
        super().__init__()
        self.todos = todos
        self.placed: set[str] = set()

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> bool:
        return False  # the line is what gets a TODO: nothing in it does

    def leave_SimpleStatementLine(self, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine) -> cst.SimpleStatementLine:
        built = _built_attribute(updated)
        if built not in self.todos:
            return updated
        self.placed.add(built)
        return add_todo_lines(updated, self.todos[built])


def _built_attribute(line: cst.SimpleStatementLine) -> str | None:
    """`net` for `self.net = ...`, `super().__init__` for that call, else None."""
    statement = line.body[0] if len(line.body) == 1 else None
    if isinstance(statement, cst.Assign) and len(statement.targets) == 1:
        return analysis.self_attribute(statement.targets[0].target)
    if isinstance(statement, cst.Expr) and isinstance(statement.value, cst.Call) and code(statement.value.func) == "super().__init__":
        return "super().__init__"
    return None


def _init_layer_line(layer: _InitLayer, to_params: _SelfFieldsToParams) -> cst.SimpleStatementLine:
    """`self.<attribute> = <NNX constructor>` in place of the Haiku `__init__` line that built the layer."""
    assert layer.resolved is not None  # `run` resolves every layer before writing `__init__`
    return _assign_line(layer.attribute, to_params.applied(layer.resolved), layer.statement)


def _self_assigned(classdef: cst.ClassDef) -> set[str]:
    names = set()
    for node in _walk_assign_targets(classdef):
        attribute = analysis.self_attribute(node)
        if attribute is not None:
            names.add(attribute)
    return names


class _TargetCollector(Walker):
    def __init__(self) -> None:
        self.targets: list[cst.BaseExpression] = []

    def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
        self.targets.append(node.target)


def _walk_assign_targets(node: cst.CSTNode) -> list[cst.BaseExpression]:
    collector = _TargetCollector()
    collector.walk(node)
    return collector.targets


class _SelfAttributeReads(Walker):
    def __init__(self, name: str) -> None:
        self.name = name
        self.found = False

    def visit_Attribute(self, node: cst.Attribute) -> None:
        if analysis.self_attribute(node) == self.name:
            self.found = True


def _reads_self_attribute(node: cst.CSTNode, name: str) -> bool:
    visitor = _SelfAttributeReads(name)
    visitor.walk(node)
    return visitor.found


def _clean_params(params: list[cst.Param]) -> list[cst.Param]:
    return [p.with_changes(comma=cst.MaybeSentinel.DEFAULT) for p in params]


def _forward_as_class(function: cst.FunctionDef, name: str, names: str) -> cst.ClassDef:
    """A transformed forward function read as the `__call__` of a Haiku module `name` with no config."""
    method = function.with_changes(
        name=_name("__call__"),
        params=function.params.with_changes(params=[cst.Param(_name("self")), *function.params.params]),
        leading_lines=[],
    )
    return cst.ClassDef(name=_name(name), bases=[cst.Arg(attr(names, "Module"))], body=cst.IndentedBlock([method]))
