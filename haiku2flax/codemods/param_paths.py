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
from ..engine.context import Context, attr
from ..engine.registry import Status, register
from ..engine.rewriter import Rewriter
from ..engine.tables import Construct
from ..engine.walk import Walker

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
    for statement in init.body.body if init is not None and isinstance(init.body, cst.IndentedBlock) else ():
        assign = analysis.simple_assign(statement)
        attribute = analysis.self_attribute(assign[0]) if assign is not None else None
        construct, local = _constructor(ctx, assign[1], classes) if assign is not None else (None, None)
        if attribute is None or (construct is None and local is None):
            continue
        base = analysis.snake_case((construct.haiku if construct else local).rsplit(".", 1)[-1])  # type: ignore[union-attr]
        name = haiku_name(base, analysis.explicit_name(assign[1]))  # type: ignore[index, arg-type]
        children[f"~/{name}"] = _Child(name, attribute, attribute, construct, local)
    for statement in classdef.body.body:
        if not isinstance(statement, cst.FunctionDef) or statement is init:
            continue
        finder = _InlineConstructors()
        finder.walk(statement)
        for call in finder.found:
            construct, local = _constructor(ctx, call, classes)
            if construct is None and local is None:
                continue
            base = analysis.snake_case((construct.haiku if construct else local).rsplit(".", 1)[-1])  # type: ignore[union-attr]
            explicit = analysis.explicit_name(call)
            name = haiku_name(base, explicit)
            linen_class = construct.targets["linen"].api if construct else local
            index = linen_counts.get(linen_class, 0)  # type: ignore[arg-type]
            linen_counts[linen_class] = index + 1  # type: ignore[index]
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


class _ParamPaths(Rewriter):
    """Shared: resolve `'model/block/linear'` + `'w'` through the file's module tree."""

    def init_param_paths(self, module: cst.Module) -> None:
        classes = analysis.haiku_module_classes(module, self.ctx.names)
        self.module_tree = _ModuleTree.read(self.ctx, classes)
        self.roots: dict[str, tuple[str, str]] = {}  # Haiku root name -> (class, model variable)
        for transformed in self.transforms.values():  # type: ignore[attr-defined]
            forward = self.module_functions.get(transformed.function)  # type: ignore[attr-defined]
            call = analysis.forward_module(forward) if forward is not None else None
            if call is not None and isinstance(call.func, cst.Name) and call.func.value in classes:
                root = analysis.explicit_name(call) or analysis.snake_case(call.func.value)
                self.roots[root] = (call.func.value, transformed.name)

    def resolve(self, path: str, leaf: str) -> tuple[list[_Child], str, str] | None:
        """(the chain of submodules, the Flax leaf name, the model variable), or None."""
        parts = path.split("/")
        root = self.roots.get(parts[0])
        if root is None:
            return None
        class_name, model = root
        chain: list[_Child] = []
        parts = parts[1:]
        while parts:
            step = parts.pop(0)
            if step == "~":
                step = f"~/{parts.pop(0)}" if parts else ""
            child = self.module_tree.children.get(class_name, {}).get(step) if class_name else None  # type: ignore[arg-type]
            if child is None:
                return None
            chain.append(child)
            class_name = child.class_name  # type: ignore[assignment]
        if not chain:
            return None
        construct = chain[-1].construct
        if construct is not None:
            mapped = construct.params.get(leaf)
            if mapped is None:
                return None
            leaf = mapped.name
        return chain, leaf, model

    def leave_Subscript(self, original: cst.Subscript, updated: cst.Subscript) -> cst.BaseExpression:
        inner = original.value
        leaf = _string_key(original)
        path = _string_key(inner) if isinstance(inner, cst.Subscript) else None
        if leaf is None or path is None or path.split("/")[0] not in self.roots or not self.ctx.enabled(RULE_PARAM_PATH):
            return super().leave_Subscript(original, updated)
        resolved = self.resolve(path, leaf)
        if resolved is None:
            self.todo(original, RULE_PARAM_PATH, f"no statically known Flax path for Haiku parameter {path!r}/{leaf!r}")
            return super().leave_Subscript(original, updated)
        self.converted(original, RULE_PARAM_PATH, f"{path}/{leaf} -> Flax path")
        return self.flax_path(inner.value, *resolved)  # type: ignore[attr-defined]

    def flax_path(self, base: cst.BaseExpression, chain: list[_Child], leaf: str, model: str) -> cst.BaseExpression:
        """The target's spelling of the parameter (each target mixin defines it)."""
        raise NotImplementedError


class LinenParamPaths(_ParamPaths):
    def flax_path(self, base: cst.BaseExpression, chain: list[_Child], leaf: str, model: str) -> cst.BaseExpression:
        keys = [child.linen for child in chain] + [leaf]
        node: cst.BaseExpression = base
        for key in keys:
            node = cst.Subscript(node, [_key(key)])
        return node


class NnxParamPaths(_ParamPaths):
    def flax_path(self, base: cst.BaseExpression, chain: list[_Child], leaf: str, model: str) -> cst.BaseExpression:
        node = attr(model, ".".join([child.nnx for child in chain] + [leaf]))
        return cst.Subscript(node, [cst.SubscriptElement(cst.Index(cst.Ellipsis()))])
