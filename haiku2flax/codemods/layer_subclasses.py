"""Subclasses of table layers: `class Readout(hk.Linear)`, `class NearZeroLinear(hk.Linear)` whose
`__init__` only calls `super().__init__(output_size, w_init=...)`.

They convert through their parent's table entry: the class derives from the Flax layer (`nn.Dense`,
`nnx.Linear`) and keeps its other methods; Haiku attributes its methods read (`self.output_size`) take
the Flax names. The constructor arguments the subclass fixes become its defaults: Linen fields
(`kernel_init: Any = ...`), an NNX `__init__` calling `super().__init__`. A call of the subclass is the
parent's call it stands for (`NearZeroLinear(16)` is `hk.Linear(16, w_init=...)`), converted by the
table, under the subclass's name. Only layers called on their input alone are read this way (a
`hk.BatchNorm` subclass also takes `is_training`): any other subclass of a Haiku class stays Haiku, with
the leftover TODO on the class and one at each of its calls, where it fails.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import libcst as cst

from ..engine import analysis
from ..engine.calls import Unconvertible, convert_construct_call
from ..engine.context import Context
from ..engine.tables import Construct


@dataclass(frozen=True)
class LayerSubclass:
    """A module-level subclass of a table layer that converts through its parent's entry."""

    classdef: cst.ClassDef
    construct: Construct
    init: cst.FunctionDef | None  # None: Haiku's own constructor
    super_call: cst.Call | None  # the parent's call in the subclass's parameters: `hk.Linear(output_size, w_init=...)`
    converted: cst.ClassDef | None = None  # the Flax class

    @property
    def params(self) -> list[cst.Param]:
        """The subclass's constructor parameters but `self` and `name`."""
        init = self.init
        return [p for p in [*init.params.params[1:], *init.params.kwonly_params] if p.name.value != "name"] if init else []


def layer_subclasses(module: cst.Module, ctx: Context, din: str | None = None) -> tuple[dict[str, LayerSubclass], dict[str, str]]:
    """The module-level subclasses of table layers that convert, with their Flax class (NNX when `din`
    names the input size parameter, else Linen); and the TODO at a call of any other subclass of a
    Haiku class (it stays Haiku: besides the leftover TODO on the class, its calls fail)."""
    converted, still_haiku = {}, {}
    for statement in module.body:
        api = ctx.names.haiku_api(statement.bases[0].value) if isinstance(statement, cst.ClassDef) and len(statement.bases) == 1 else None
        if api is None or api in ("Module", "RNNCore"):  # (user cores get their own TODO)
            continue
        assert isinstance(statement, cst.ClassDef)
        construct = ctx.tables.get(api)
        subclass = _read(statement, construct) if construct is not None else "its parent is not a layer of the rule tables"
        try:
            if isinstance(subclass, LayerSubclass):
                flax = nnx_class(subclass, ctx, din) if din is not None else linen_class(subclass, ctx)
                converted[statement.name.value] = replace(subclass, converted=flax)
                continue
        except Unconvertible as reason:
            subclass = str(reason)
        parent = construct.display if construct is not None else f"hk.{api}"
        still_haiku[statement.name.value] = f"`{statement.name.value}` stays a `{parent}` subclass ({subclass}): convert the class, then this call, by hand"
    return converted, still_haiku


def _read(statement: cst.ClassDef, construct: Construct) -> LayerSubclass | str:
    """The subclass, or why it is not read as its parent with other defaults."""
    base = statement.bases[0].value
    if not _called_on_input_alone(construct):
        return "its call takes more than its input"
    init = analysis.find_method(statement, "__init__")
    read = analysis.read_init(init) if init is not None else None
    if read is not None and (read.other_statements or read.field_statements or read.super_init is None):
        return "its constructor does more than pass its parent arguments"
    super_call = cst.Call(base, analysis.super_init_args(read) if read is not None else [])
    return LayerSubclass(statement, construct, init, super_call if init is not None else None)


def _called_on_input_alone(construct: Construct) -> bool:
    """A layer whose call takes one input and nothing else required (not `hk.BatchNorm`'s `is_training`, an
    attention's `key` and `value`, a recurrent core's state), built without its input size in Linen."""
    call = construct.haiku_call_args
    return bool(call) and call[0] in ("inputs", "x", "ids") and "is_training" not in call and not construct.targets["linen"].inputs


def parent_call(subclass: LayerSubclass, call: cst.Call) -> cst.Call | None:
    """The parent's Haiku call a call of the subclass stands for, `name` kept; None when its arguments
    cannot be matched to the subclass's parameters (`*args`, `**kwargs`)."""
    base = subclass.classdef.bases[0].value
    if subclass.init is None or subclass.super_call is None:
        return call.with_changes(func=base)
    init = subclass.init
    if init.params.star_arg not in (None, cst.MaybeSentinel.DEFAULT) and not isinstance(init.params.star_arg, cst.ParamStar):
        return None
    if init.params.star_kwarg is not None or any(a.star for a in call.args):
        return None
    call = analysis.name_by_keyword(call, init)
    positional = [p.name.value for p in init.params.params[1:]]
    values: dict[str, cst.BaseExpression] = {p.name.value: p.default for p in subclass.params if p.default is not None}
    passed_name = [a for a in call.args if a.keyword is not None and a.keyword.value == "name"]
    for index, arg in enumerate(a for a in call.args if a.keyword is None):
        if index >= len(positional):
            return None
        values[positional[index]] = arg.value
    values.update({a.keyword.value: a.value for a in call.args if a.keyword is not None and a.keyword.value != "name"})
    if {p.name.value for p in subclass.params} - set(values):
        return None  # a required argument is missing: the call fails in Haiku too
    args = [a.with_changes(value=analysis.substitute(a.value, values)) for a in subclass.super_call.args]
    return cst.Call(base, [*args, *passed_name])


def converted_call(subclass: LayerSubclass, call: cst.Call, target: str, ctx: Context, inputs: tuple[cst.BaseExpression, ...] = (),
                   extra: dict[str, cst.BaseExpression] | None = None) -> cst.Call:
    """The Flax call of a call of the subclass: the parent's call converted by its table, under the
    subclass's name. Raises Unconvertible."""
    parent = parent_call(subclass, call)
    if parent is None:
        raise Unconvertible(f"`{subclass.classdef.name.value}(...)`: its arguments could not be matched to its constructor's")
    converted = convert_construct_call(parent, subclass.construct, target, ctx.ns, inputs, extra, ctx=ctx)
    return converted.with_changes(func=cst.Name(subclass.classdef.name.value))


def fixed_arguments(subclass: LayerSubclass, target: str, ctx: Context, inputs: tuple[cst.BaseExpression, ...] = ()) -> list[cst.Arg]:
    """The Flax keyword arguments the subclass fixes (no parameter of its own in them): its defaults.
    Raises Unconvertible."""
    if subclass.super_call is None:
        return []
    converted = convert_construct_call(without_name(subclass.super_call), subclass.construct, target, ctx.ns, inputs, ctx=ctx)
    own = {p.name.value for p in subclass.params}
    return [a for a in converted.args if a.keyword is not None and not analysis.Names.of(a.value).used & own]


def without_name(call: cst.Call) -> cst.Call:
    return call.with_changes(args=[a for a in call.args if a.keyword is None or a.keyword.value != "name"])


def flax_attributes(subclass: LayerSubclass, target: str, body: cst.IndentedBlock | cst.BaseSuite) -> cst.BaseSuite:
    """The class body with `self.<Haiku argument>` read under its Flax name (`self.output_size` -> `self.features`)."""
    renames = {haiku: flax for haiku, flax in subclass.construct.targets[target].args.items() if flax and flax != haiku}
    return analysis.rename_self_attributes(body, renames)


def linen_class(subclass: LayerSubclass, ctx: Context) -> cst.ClassDef:
    """`class NearZeroLinear(nn.Dense)` with the fixed arguments as field defaults, `__init__` gone."""
    api = subclass.construct.targets["linen"]
    fields = [
        cst.SimpleStatementLine([cst.AnnAssign(cst.Name(a.keyword.value), cst.Annotation(cst.Name("Any")), a.value)])
        for a in fixed_arguments(subclass, "linen", ctx)
        if a.keyword is not None
    ]
    if fields:
        ctx.needed_imports.add(("typing", "Any", None))
    return _flax_class(subclass, "linen", ctx, api.api, fields)


def nnx_class(subclass: LayerSubclass, ctx: Context, din: str) -> cst.ClassDef:
    """`class NearZeroLinear(nnx.Linear)` whose `__init__` passes the parent its fixed arguments."""
    api = subclass.construct.targets["nnx"]
    init: list[cst.BaseStatement] = []
    if subclass.init is not None and subclass.super_call is not None:
        inputs = tuple(cst.Name(din) for _ in api.inputs[:1])
        parent = convert_construct_call(without_name(subclass.super_call), subclass.construct, "nnx", ctx.ns, inputs, {"rngs": cst.Name("rngs")}, ctx=ctx)
        params = [cst.Param(cst.Name("self")), *(cst.Param(cst.Name(din), cst.Annotation(cst.Name("int"))) for _ in inputs)]
        params += [p.with_changes(comma=cst.MaybeSentinel.DEFAULT) for p in subclass.params]
        rngs = cst.Param(cst.Name("rngs"), cst.Annotation(cst.parse_expression(f"{ctx.ns}.Rngs")))
        statement = cst.SimpleStatementLine([cst.Expr(cst.Call(cst.parse_expression("super().__init__"), parent.args))])
        body = [s for s in _statements(subclass.init.body)[:1] if analysis.is_docstring(s)] + [statement]
        init = [subclass.init.with_changes(params=cst.Parameters(params, star_arg=cst.ParamStar(), kwonly_params=[rngs]), body=cst.IndentedBlock(body))]
    return _flax_class(subclass, "nnx", ctx, api.api, init)


def _statements(suite: cst.BaseSuite) -> list[cst.BaseStatement]:
    return list(suite.body) if isinstance(suite, cst.IndentedBlock) else []


def _flax_class(subclass: LayerSubclass, target: str, ctx: Context, api: str, head: Sequence[cst.BaseStatement]) -> cst.ClassDef:
    classdef = subclass.classdef
    ctx.need_target_import()
    docs = [s for s in _statements(classdef.body)[:1] if analysis.is_docstring(s)]
    if docs and head:
        head = [head[0].with_changes(leading_lines=[cst.EmptyLine(indent=False)]), *head[1:]]
    methods = [s for s in _statements(classdef.body) if s is not subclass.init and not any(s is d for d in docs)]
    body = [*docs, *head, *methods] or [cst.SimpleStatementLine([cst.Pass()])]
    renamed = flax_attributes(subclass, target, cst.IndentedBlock(body))
    base = cst.parse_expression(f"{ctx.ns}.{api}")
    return classdef.with_changes(bases=[cst.Arg(base)], body=renamed)


def keyword_defaults(call: cst.Call, fixed: list[cst.Arg]) -> cst.Call:
    """A converted call without the keywords the subclass fixes (they are its defaults)."""
    fixed_names = {a.keyword.value for a in fixed if a.keyword is not None}
    return call.with_changes(args=[a for a in call.args if a.keyword is None or a.keyword.value not in fixed_names])

