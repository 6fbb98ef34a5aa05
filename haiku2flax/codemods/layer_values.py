"""A table layer's class handed as a value to a module class of the file: `Conv(base_convolution=hk.Conv1D)`,
or the default of one of its constructor arguments (`input_net=hk.Linear`).

What it converts (Linen): where every value the file hands such an argument is a table layer's class
(or `None`), and each call of the argument converts by their tables to one and the same Flax call, the
class values become the Flax class (`hk.Linear` -> `nn.Dense`) and the calls take the Flax arguments
(`self.input_net(output_size=8)` -> `self.input_net(features=8)`). Otherwise the class that builds the
layer gets a TODO at that call (`base_convolution(output_channels=..., kernel_shape=3)` may be a
`hk.Conv1D` or a `hk.Conv2D`, whose Flax kernels differ), and the values stay Haiku with the leftover TODO.

Why: the class calls the layer with Haiku's constructor arguments, which the Flax layer does not take
(`nn.Conv(features=..., kernel_size=...)`); converting the value alone, or the call alone, would look
finished and fail at that call. Only values seen in the file are known: a caller in another file that
passes another layer's class passes it as its own conversion writes it.

Example::

    class Head(hk.Module):                                class Head(nn.Module):
      def __init__(self, n, net=hk.Linear, name=None):      n: Any
        super().__init__(name=name)                         net: Any = nn.Dense
        self.project = net(n, with_bias=False)              def setup(self):
                                                                self.project = self.net(self.n, use_bias=False)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst

from ..engine import analysis
from ..engine import matchers as m
from ..engine.calls import Unconvertible, code, convert_construct_call
from ..engine.context import Context, FileFact, attr
from ..engine.unpacked import SUPER_INIT
from ..engine.walk import descendants
from ..targets import RULE_LAYER
from .interfaces import LINEN_NODES, LinenMethod

OTHER = "other"  # a value that is no table layer's class (nor None), or one that cannot be seen


@dataclass
class _Argument:
    """A constructor argument of a module class of the file: the values handed to it, and its calls."""

    layers: dict[str, list[cst.BaseExpression]] = field(default_factory=dict)  # Haiku API -> where its class is handed
    other: bool = False  # something else may be handed to it too
    calls: list[cst.Call] = field(default_factory=list)


@dataclass
class LayerValues:
    """What converts: each value's Flax class (by node id), each call's Haiku APIs; and why the other calls stay."""

    values: dict[int, str] = field(default_factory=dict)  # id of a `hk.Linear` value -> its Flax API
    calls: dict[cst.Call, tuple[str, ...]] = field(default_factory=dict)  # call -> the Haiku layers it may build
    todos: dict[cst.Call, str] = field(default_factory=dict)


def _read_layer_values(module: cst.Module, ctx: Context) -> LayerValues:
    classes = analysis.haiku_module_classes(module, ctx.names)
    arguments: dict[tuple[str, str], _Argument] = {}  # (class, parameter) -> what it is handed
    for name, classdef in classes.items():
        init = analysis.find_method(classdef, "__init__")
        for param in init.params.params[1:] if init is not None else ():
            argument = arguments.setdefault((name, param.name.value), _Argument())
            if param.default is not None:
                _hand(argument, param.default, ctx)
    for built, call in _constructions(module, classes):
        init = analysis.find_method(classes[built], "__init__")
        positional = [p.name.value for p in init.params.params[1:]] if init is not None else []
        unpacked = any(a.star for a in call.args)
        given = set()
        for index, arg in enumerate(call.args):
            parameter = arg.keyword.value if arg.keyword is not None else (positional[index] if index < len(positional) else None)
            if parameter is not None and not arg.star and (built, parameter) in arguments:
                _hand(arguments[(built, parameter)], arg.value, ctx)
                given.add(parameter)
        for (owner, parameter), argument in arguments.items():
            argument.other |= owner == built and unpacked and parameter not in given  # `**kwargs` may hold it
    for (name, parameter), argument in arguments.items():
        if argument.layers:
            argument.calls = [
                node for node in descendants(classes[name])
                if isinstance(node, cst.Call)
                and ((isinstance(node.func, cst.Name) and node.func.value == parameter) or analysis.self_attribute(node.func) == parameter)
            ]
    found = LayerValues()
    for (_, parameter), argument in arguments.items():
        if not argument.layers:
            continue
        why = _why_not(parameter, argument, ctx)
        if why is None:
            found.calls.update((call, tuple(argument.layers)) for call in argument.calls)
            found.values.update(
                (id(value), ctx.tables.constructs[api].targets["linen"].api) for api, values in argument.layers.items() for value in values
            )
        else:
            found.todos.update((call, why) for call in argument.calls)
    return found


def _hand(argument: _Argument, value: cst.BaseExpression, ctx: Context) -> None:
    api = ctx.names.haiku_api(value)
    if api is not None and ctx.tables.get(api) is not None:
        argument.layers.setdefault(api, []).append(value)
    elif not (isinstance(value, cst.Name) and value.value == "None"):
        argument.other = True


def _why_not(parameter: str, argument: _Argument, ctx: Context) -> str | None:
    """Why the argument's values and calls cannot convert, or None when they can."""
    layers = " or ".join(f"`{ctx.names.display(api)}`" for api in argument.layers)
    kind = "a Haiku layer class" if len(argument.layers) == 1 else "Haiku layer classes"
    held = f"`{parameter}` may hold {layers}, {kind}, and is called here with Haiku's arguments"
    if argument.other:
        return f"{held}, and other values too; pass the Flax layer and call it with its own arguments"
    if len({ctx.tables.constructs[api].targets["linen"].api for api in argument.layers}) > 1:
        return f"{held}, which are different Flax layers; pass the Flax layer and call it with its own arguments"
    for call in argument.calls:
        try:
            flax_call(call, tuple(argument.layers), ctx)
        except Unconvertible as reason:
            return f"{held}: {reason}"
    return None


def flax_call(call: cst.Call, layers: tuple[str, ...], ctx: Context) -> cst.Call:
    """`call` with the Flax arguments of the layers it may build, which must agree. Raises Unconvertible."""
    converted = [
        convert_construct_call(call, ctx.tables.constructs[api], "linen", ctx.ns, ctx=ctx).with_changes(func=call.func) for api in layers
    ]
    if len({code(c) for c in converted}) > 1:
        raise Unconvertible("their Flax arguments differ (" + ", ".join(f"`{code(c)}`" for c in converted) + ")")
    return converted[0]


def _constructions(module: cst.Module, classes: dict[str, cst.ClassDef]) -> list[tuple[str, cst.Call]]:
    """(class, call) for each `Conv(...)` of a module class of the file, and each `super().__init__(...)` of
    a subclass of one."""
    found = [(n.func.value, n) for n in descendants(module) if isinstance(n, cst.Call) and isinstance(n.func, cst.Name) and n.func.value in classes]
    for classdef in classes.values():
        parent = next((b.value.value for b in classdef.bases if isinstance(b.value, cst.Name) and b.value.value in classes), None)
        if parent is not None:
            found += [(parent, n) for n in descendants(classdef) if isinstance(n, cst.Call) and m.matches(n.func, SUPER_INIT)]
    return found


LAYER_VALUES = FileFact(_read_layer_values)


@LINEN_NODES.on_leave(cst.Call, rule=RULE_LAYER)
def _layer_value_call(room: LinenMethod, original: cst.Call, updated: cst.Call) -> cst.Call | None:
    found = room.ctx.fact(LAYER_VALUES)
    why = found.todos.get(original)
    if why is not None:
        room.todo(original, RULE_LAYER, why)
        return None
    layers = found.calls.get(original)
    if layers is None:
        return None
    try:
        converted = flax_call(updated, layers, room.ctx)
    except Unconvertible as reason:
        room.todo(original, RULE_LAYER, f"`{code(original.func)}` may hold a Haiku layer class: {reason}")
        return None
    if room.function is not None and room.function.name.value != "__init__":
        room.mark_builds_layer()  # built where it is called (`__init__` becomes `setup`)
    room.converted(original, RULE_LAYER, f"{code(original.func)}(...) -> the Flax arguments of its layer")
    return converted


def _layer_value(room: LinenMethod, original: cst.BaseExpression, updated: cst.BaseExpression) -> cst.BaseExpression | None:
    api = room.ctx.fact(LAYER_VALUES).values.get(id(original))
    if api is None:
        return None
    room.ctx.need_target_import()
    room.converted(original, RULE_LAYER, f"{code(original)} (a layer class handed as a value) -> {room.ctx.ns}.{api}")
    return attr(room.ctx.ns, api)


LINEN_NODES.on_leave(cst.Attribute, rule=RULE_LAYER)(_layer_value)  # `hk.Linear`
LINEN_NODES.on_leave(cst.Name, rule=RULE_LAYER)(_layer_value)  # `Linear` of `from haiku import Linear`
