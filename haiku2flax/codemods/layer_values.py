"""A table layer's class handed as a value to a module class of the file: `Conv(base_convolution=hk.Conv1D)`,
or the default of one of its constructor arguments (`input_net=hk.Linear`).

What it does (Linen): the argument keeps the TODO the leftovers rule puts where it is passed, and the
class that builds the layer from it gets one too, at that call (`base_convolution(output_channels=...,
kernel_shape=...)` in `__init__`, or `self.base_convolution(...)` in a method).

Why: the class calls the layer with Haiku's constructor arguments, which the Flax layer does not take
(`nn.Conv(features=..., kernel_size=...)`), so the converted class would look finished and fail at that
call. The failing statement carries the TODO, naming the layer and where it was passed.
"""

from __future__ import annotations

import libcst as cst

from ..engine import analysis
from ..engine import matchers as m
from ..engine.context import Context, FileFact
from ..engine.walk import descendants
from ..targets import RULE_LAYER
from .interfaces import LINEN_NODES, LinenMethod


def _read_layer_calls(module: cst.Module, ctx: Context) -> dict[cst.Call, str]:
    """The calls, in the file's module classes, of a constructor argument given a table layer's class: why each fails."""
    classes = analysis.haiku_module_classes(module, ctx.names)
    if not classes:
        return {}
    given: dict[tuple[str, str], str] = {}  # (class, parameter) -> the Haiku layer it defaults to or a caller passed
    for name, classdef in classes.items():
        init = analysis.find_method(classdef, "__init__")
        for param in init.params.params if init is not None else ():
            api = ctx.names.haiku_api(param.default) if param.default is not None else None
            if api is not None and ctx.tables.get(api) is not None:
                given[(name, param.name.value)] = ctx.names.display(api)
    for built, call in _constructions(module, classes):
        init = analysis.find_method(classes[built], "__init__")
        positional = [p.name.value for p in init.params.params[1:]] if init is not None else []
        for index, arg in enumerate(call.args):
            api = ctx.names.haiku_api(arg.value)
            parameter = arg.keyword.value if arg.keyword is not None else (positional[index] if index < len(positional) else None)
            if api is not None and ctx.tables.get(api) is not None and parameter is not None and not arg.star:
                given[(built, parameter)] = ctx.names.display(api)
    found: dict[cst.Call, str] = {}
    for (name, parameter), layer in given.items():
        for node in descendants(classes[name]):
            if isinstance(node, cst.Call) and (
                (isinstance(node.func, cst.Name) and node.func.value == parameter) or analysis.self_attribute(node.func) == parameter
            ):
                found[node] = (
                    f"`{parameter}` may hold `{layer}`, a Haiku layer class, and is called here with Haiku's arguments; "
                    "pass the Flax layer and call it with its own arguments"
                )
    return found


def _constructions(module: cst.Module, classes: dict[str, cst.ClassDef]) -> list[tuple[str, cst.Call]]:
    """(class, call) for each `Conv(...)` of a module class of the file, and each `super().__init__(...)` of
    a subclass of one."""
    found = [(n.func.value, n) for n in descendants(module) if isinstance(n, cst.Call) and isinstance(n.func, cst.Name) and n.func.value in classes]
    for classdef in classes.values():
        parent = next((b.value.value for b in classdef.bases if isinstance(b.value, cst.Name) and b.value.value in classes), None)
        if parent is not None:
            found += [(parent, n) for n in descendants(classdef) if isinstance(n, cst.Call) and m.matches(n.func, SUPER_INIT)]
    return found


SUPER_INIT = m.Attribute(value=m.Call(func=m.Name("super")), attr=m.Name("__init__"))
LAYER_CALLS = FileFact(_read_layer_calls)


@LINEN_NODES.on_leave(cst.Call, rule=RULE_LAYER)
def _layer_value_call(room: LinenMethod, original: cst.Call, updated: cst.Call) -> None:
    why = room.ctx.fact(LAYER_CALLS).get(original)
    if why is not None:
        room.todo(original, RULE_LAYER, why)
