"""Parameter access by Haiku path: `params['model/block/linear']['w']`.

What it converts: a subscript of a Haiku module path and a leaf name, where the path is known
statically (the transformed model's own modules, built inline or in `__init__`), becomes
- Linen: `params['Block_0']['Dense_0']['kernel']` (compact submodules are named `<Class>_<n>`,
  `setup` ones after their attribute; leaves renamed by the rule tables);
- NNX: `model.block.linear.kernel[...]` (the model's attributes, named the way Haiku names modules).
A path that looks like a Haiku path but cannot be resolved gets a TODO.

Why: Haiku flattens parameters into `'module/~/child'` keys; Linen nests dicts by its own submodule
names; NNX reaches parameters through attributes. Rewriting by hand is exactly where typos hide.

Example::

    params['model/linear']['b'].shape     # Haiku
    params['Dense_0']['bias'].shape       # Linen
    model.linear.bias[...].shape          # NNX
"""

from __future__ import annotations

from dataclasses import dataclass, field

import libcst as cst

from ..engine import analysis
from ..engine.context import Context, FileFact, attr
from ..engine.registry import Status, register
from ..engine.tables import Construct
from ..engine.walk import Walker
from .interfaces import LINEN_NODES, NNX_FILE_NODES, FileRoom, LinenMethod
from .transforms import TRANSFORMS

RULE_PARAM_PATH = register(
    "HK008", "param-path", Status.PARTIAL, "params['model/linear']['w'] -> Linen/NNX parameter paths where known statically", __name__
)


@dataclass
class _Child:
    haiku: str
    linen: str
    nnx: str
    construct: Construct | None
    class_name: str | None


@dataclass
class _ModuleTree:
    """For each Haiku class of the file, its submodules by Haiku name."""

    children: dict[str, dict[str, _Child]] = field(default_factory=dict)

    @classmethod
    def read(cls, ctx: Context, classes: dict[str, cst.ClassDef]) -> _ModuleTree:
        tree = cls()
        for name, classdef in classes.items():
            tree.children[name] = _children(ctx, classdef, classes)
        return tree


def _constructor(ctx: Context, call: cst.BaseExpression, classes: dict[str, cst.ClassDef]) -> tuple[Construct | None, str | None]:
    if not isinstance(call, cst.Call):
        return None, None
    api = ctx.names.haiku_api(call.func)
    construct = ctx.tables.get(api) if api is not None else None
    local = call.func.value if isinstance(call.func, cst.Name) and call.func.value in classes else None
    return construct, local


class _InlineConstructors(Walker):
    """`Ctor(...)(...)` calls in source order."""

    def __init__(self) -> None:
        self.found: list[cst.Call] = []

    def visit_Call(self, node: cst.Call) -> None:
        if isinstance(node.func, cst.Call):
            self.found.append(node.func)


def _children(ctx: Context, classdef: cst.ClassDef, classes: dict[str, cst.ClassDef]) -> dict[str, _Child]:
    children: dict[str, _Child] = {}
    haiku_counts: dict[str, int] = {}
    linen_counts: dict[str, int] = {}

    def haiku_name(base: str, explicit: str | None) -> str:
        name = explicit or base
        count = haiku_counts.get(name, 0)
        haiku_counts[name] = count + 1
        return name if count == 0 else f"{name}_{count}"

    init = analysis.find_method(classdef, "__init__")
    for line in init.body.body if init is not None and isinstance(init.body, cst.IndentedBlock) else ():
        assign = analysis.simple_assign(line)
        if assign is None or not isinstance(assign[1], cst.Call):
            continue
        attribute = analysis.self_attribute(assign[0])
        construct, local = _constructor(ctx, assign[1], classes)
        class_name = construct.haiku if construct else local
        if attribute is None or class_name is None:
            continue
        name = haiku_name(analysis.snake_case(class_name.rsplit(".", 1)[-1]), analysis.explicit_name(assign[1]))
        children[f"~/{name}"] = _Child(name, attribute, attribute, construct, local)
    for statement in classdef.body.body:
        if not isinstance(statement, cst.FunctionDef) or statement is init:
            continue
        finder = _InlineConstructors()
        finder.walk(statement)
        for call in finder.found:
            construct, local = _constructor(ctx, call, classes)
            class_name = construct.haiku if construct else local
            linen_class = construct.targets["linen"].api if construct else local
            if class_name is None or linen_class is None:
                continue
            explicit = analysis.explicit_name(call)
            name = haiku_name(analysis.snake_case(class_name.rsplit(".", 1)[-1]), explicit)
            index = linen_counts.get(linen_class, 0)
            linen_counts[linen_class] = index + 1
            children[name] = _Child(name, explicit or f"{linen_class}_{index}", name, construct, local)
    return children


def _string_key(subscript: cst.Subscript) -> str | None:
    if len(subscript.slice) != 1 or not isinstance(subscript.slice[0].slice, cst.Index):
        return None
    value = subscript.slice[0].slice.value
    if isinstance(value, cst.SimpleString):
        evaluated = value.evaluated_value
        return evaluated if isinstance(evaluated, str) else None
    return None


def _key(value: str) -> cst.SubscriptElement:
    return cst.SubscriptElement(cst.Index(cst.SimpleString(repr(value))))


@dataclass
class _Roots:
    """The file's module tree, and the Haiku root names of its transformed models."""

    tree: _ModuleTree
    roots: dict[str, tuple[str, str]]  # Haiku root name -> (class, model variable)


def _read_roots(module: cst.Module, ctx: Context) -> _Roots:
    classes = analysis.haiku_module_classes(module, ctx.names)
    transforms = ctx.fact(TRANSFORMS)
    roots: dict[str, tuple[str, str]] = {}
    for transformed in transforms.transforms.values():
        forward = transforms.module_functions.get(transformed.function)
        call = analysis.forward_module(forward) if isinstance(forward, cst.FunctionDef) else None
        if call is not None and isinstance(call.func, cst.Name) and call.func.value in classes:
            root = analysis.explicit_name(call) or analysis.snake_case(call.func.value)
            roots[root] = (call.func.value, transformed.name)
    tree = _ModuleTree.read(ctx, classes)
    for local, made in transforms.imported.items():  # a model of another file: its modules are that file's
        provider = ctx.provider(made.module).fact(ROOTS)
        roots.update({root: (class_name, local) for root, (class_name, model) in provider.roots.items() if model == made.name})
        tree.children.update(provider.tree.children)
    return _Roots(tree, roots)


ROOTS = FileFact(_read_roots)


def _resolve(roots: _Roots, path: str, leaf: str) -> tuple[list[_Child], str, str] | None:
    """(the chain of submodules, the Flax leaf name, the model variable), or None."""
    parts = path.split("/")
    root = roots.roots.get(parts[0])
    if root is None:
        return None
    class_name: str | None
    class_name, model = root
    chain: list[_Child] = []
    parts = parts[1:]
    while parts:
        step = parts.pop(0)
        if step == "~":
            step = f"~/{parts.pop(0)}" if parts else ""
        child = roots.tree.children.get(class_name, {}).get(step) if class_name else None
        if child is None:
            return None
        chain.append(child)
        class_name = child.class_name
    if not chain:
        return None
    construct = chain[-1].construct
    if construct is not None:
        mapped = construct.params.get(leaf)
        if mapped is None:
            return None
        leaf = mapped.name
    return chain, leaf, model


def _resolved(room: FileRoom, original: cst.Subscript) -> tuple[cst.BaseExpression, list[_Child], str, str] | None:
    """`params['model/linear']['w']` resolved through the module tree: (`params`, chain, leaf, model);
    None for any other subscript, or with a TODO where the path is not known statically."""
    inner = original.value
    leaf = _string_key(original)
    path = _string_key(inner) if isinstance(inner, cst.Subscript) else None
    if leaf is None or path is None or not isinstance(inner, cst.Subscript):
        return None
    roots = room.ctx.fact(ROOTS)
    if path.split("/")[0] not in roots.roots:
        return None
    resolved = _resolve(roots, path, leaf)
    if resolved is None:
        room.todo(original, RULE_PARAM_PATH, f"no statically known Flax path for Haiku parameter {path!r}/{leaf!r}")
        return None
    room.converted(original, RULE_PARAM_PATH, f"{path}/{leaf} -> Flax path")
    return inner.value, *resolved


@LINEN_NODES.on_leave(cst.Subscript, rule=RULE_PARAM_PATH)
def linen_param_path(room: LinenMethod, original: cst.Subscript, updated: cst.Subscript) -> cst.BaseExpression | None:
    """`params['model/block/linear']['w']` -> `params['Block_0']['Dense_0']['kernel']`."""
    resolved = _resolved(room, original)
    if resolved is None:
        return None
    node, chain, leaf, _ = resolved
    for key in [child.linen for child in chain] + [leaf]:
        node = cst.Subscript(node, [_key(key)])
    return node


@NNX_FILE_NODES.on_leave(cst.Subscript, rule=RULE_PARAM_PATH)
def nnx_param_path(room: FileRoom, original: cst.Subscript, updated: cst.Subscript) -> cst.BaseExpression | None:
    """`params['model/block/linear']['w']` -> `model.block.linear.kernel[...]`."""
    resolved = _resolved(room, original)
    if resolved is None:
        return None
    _, chain, leaf, model = resolved
    node = attr(model, ".".join([child.nnx for child in chain] + [leaf]))
    return cst.Subscript(node, [cst.SubscriptElement(cst.Index(cst.Ellipsis()))])
