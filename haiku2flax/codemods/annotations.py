"""Haiku types in annotations (`hk.Params`, `hk.State`, `hk.Transformed`, ...) -> the Flax types.

What it converts: every reference to a type of the `[[type]]` tables (`rules/types.toml`) inside an
annotation. Linen keeps parameters and state as nested dicts (`flax.typing.VariableDict`); NNX keeps
them in the model, and `nnx.state(model, ...)` returns an `nnx.State`; a parameter that the training
rule (HK007) turns into the model is annotated `nnx.Module`. Transformed functions become modules.

Why: annotations are code too: an `hk.Params` left behind keeps `import haiku` alive, and type checkers
would read the wrong type.

Example::

    def loss_fn(params: hk.Params, x) -> jax.Array:        # Haiku
    def loss_fn(params: VariableDict, x) -> jax.Array:     # Linen (from flax.typing import VariableDict)
    def loss_fn(model: nnx.Module, x) -> jax.Array:        # NNX (params became the model)
"""

from __future__ import annotations

from typing import TypeVar, cast

import libcst as cst

from ..engine.context import Context, attr
from ..engine.registry import Status, register
from ..engine.rewriter import Rewriter
from ..engine.walk import descendants
from .interfaces import NNX_FILE_NODES, FileRoom, on_leave

RULE_TYPES = register("HK030", "type-annotation", Status.CONVERTED, "hk.Params / hk.State / hk.Transformed / ... in annotations -> Flax types (rules/types.toml)", __name__)

TARGET_NAMESPACES = ("nn", "nnx")
Node = TypeVar("Node", bound=cst.CSTNode)


class _FlaxTypes(Rewriter):
    """Converts the Haiku types in the annotations of the tree it visits."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._annotations = 0  # annotations being visited
        self.converted_any = False

    def visit_Annotation(self, node: cst.Annotation) -> bool | None:
        self._annotations += 1
        return super().visit_Annotation(node)

    def leave_Annotation(self, original: cst.Annotation, updated: cst.Annotation) -> cst.Annotation:
        self._annotations -= 1
        return super().leave_Annotation(original, updated)

    def leave_Attribute(self, original: cst.Attribute, updated: cst.Attribute) -> cst.BaseExpression:
        return self._flax_type(original) or super().leave_Attribute(original, updated)

    def leave_Name(self, original: cst.Name, updated: cst.Name) -> cst.BaseExpression:
        return self._flax_type(original) or super().leave_Name(original, updated)

    def _flax_type(self, node: cst.Attribute | cst.Name) -> cst.BaseExpression | None:
        if not self._annotations:
            return None
        api = self.ctx.names.haiku_api(node)
        typename = self.ctx.tables.types.get(api) if api is not None else None
        if typename is None:
            return None
        dotted = typename.flax[self.ctx.target]
        self.converted(node, RULE_TYPES, f"hk.{api} -> {dotted}")
        self.converted_any = True
        if typename.imports:  # a type expression
            self.ctx.needed_imports.update((module, None, None) for module in typename.imports)
            return cst.parse_expression(dotted)
        namespace, _, name = dotted.partition(".")
        if namespace in TARGET_NAMESPACES:
            self.ctx.need_target_import()
            return attr(self.ctx.ns, name)
        module, _, name = dotted.rpartition(".")
        self.ctx.needed_imports.add((module, name, None))
        return cst.Name(name)


def convert_types(node: Node, ctx: Context) -> Node:
    """`node` with its annotations converted: for signatures a target rebuilds rather than visits
    (`node` itself when it has none: a pass would copy each of its nodes for nothing)."""
    if not any(type(n) is cst.Annotation for n in descendants(node)):
        return node
    return cast(Node, node.visit(_FlaxTypes(ctx)))  # an annotation stays an annotation


@NNX_FILE_NODES.on_leave(cst.Annotation, rule=RULE_TYPES)
@on_leave(cst.Annotation, rule=RULE_TYPES)
def flax_annotation(room: FileRoom, original: cst.Annotation, updated: cst.Annotation) -> cst.Annotation | None:
    """An annotation naming Haiku types, converted from the original as a whole (None: it names none)."""
    types = _FlaxTypes(room.ctx)
    converted = original.visit(types)
    return cast(cst.Annotation, converted) if types.converted_any else None


def model_annotation(ns: str, annotation: cst.Annotation | None) -> cst.Annotation | None:
    """The annotation of a parameter that held params and now holds the model (NNX)."""
    return annotation and annotation.with_changes(annotation=attr(ns, "Module"))
