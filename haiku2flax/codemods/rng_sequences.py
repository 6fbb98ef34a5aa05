"""`hk.PRNGSequence` outside transforms (training scripts): a key sequence becomes the target's idiom.

What it converts, where `seq = hk.PRNGSequence(seed)` is assigned once and only drawn from
(`next(seq)`, `seq.take(n)`):
- NNX: `seq = nnx.Rngs(seed)` (an int seed or a key, as Haiku takes), `next(seq)` -> `seq()`,
  `seq.take(n)` -> `jax.random.split(seq(), n)` (n keys; unpacks and indexes like Haiku's tuple).
- Linen: the plain `jax.random` split chain: `seq = jax.random.key(seed)`, `k = next(seq)` ->
  `seq, k = jax.random.split(seq)`, `a, b = seq.take(2)` -> `seq, a, b = jax.random.split(seq, 3)`.
  A split rebinds `seq`, so each draw must be a statement of its own (`k = next(seq)`), in the scope
  that created the sequence; the seed must be an int literal or a `jax.random` key.

Why this is sound: Haiku's keys come from its own split chain (raw uint32 keys); NNX folds a counter
into a typed key; so the keys never agree bitwise with Haiku's, whatever the rewrite. Where they seed
initialisation or dropout, as keys in training scripts do, any fresh independent keys serve: the
models agree on the same (converted) weights, which is what the harness checks.

Not converted (TODO, rule HK021, with what to write): a sequence used otherwise (passed to a function,
iterated, reassigned, drawn inside an expression or another function under Linen), and under Linen a
seed that may be a key or an int.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import libcst as cst

from ..engine import matchers as m
from ..engine.calls import literal
from ..engine.context import Context, FileFact
from ..engine.registry import Status, register
from ..engine.walk import Walker
from .interfaces import LINEN_CALLS, LINEN_NODES, NNX_FILE_CALLS, NNX_FILE_NODES, CallSite, FileRoom, LinenMethod

RULE_SEQUENCE = register("HK020", "prng-sequence", Status.CONVERTED, "hk.PRNGSequence -> nnx.Rngs / jax.random.split", __name__, apis=("PRNGSequence",))
RULE_SEQUENCE_TODO = register(
    "HK021", "prng-sequence-use", Status.NOT_CONVERTED, "hk.PRNGSequence used otherwise than drawn from: TODO", __name__
)

ADVICE = {
    "linen": "hold a key and split it where keys are drawn (`seq, k = jax.random.split(seq)`)",
    "nnx": "use `nnx.Rngs(seed)` and draw keys with `rngs()`",
}
JAX_KEYS = {"jax.random.key", "jax.random.PRNGKey", "random.key", "random.PRNGKey"}


@dataclass
class _Sequence:
    """One `name = hk.PRNGSequence(seed)`, and how it is used."""

    name: str
    scope: cst.CSTNode | None  # the function that creates it, None at module level
    seed: cst.BaseExpression
    uses: int = 0  # every reference but the assignment
    draws: int = 0  # `next(name)` / `name.take(n)` anywhere
    statement_draws: int = 0  # `k = next(name)` / `a, b = name.take(n)` in the creating scope
    problems: list[str] = field(default_factory=list)


def _draw(node: cst.BaseExpression, name: str) -> str | None:
    """"next" for `next(name)`, "take" for `name.take(n)`, else None."""
    if m.matches(node, m.Call(func=m.Name("next"), args=[m.Arg(value=m.Name(name), keyword=None)])):
        return "next"
    if m.matches(node, m.Call(func=m.Attribute(value=m.Name(name), attr=m.Name("take")), args=[m.Arg(keyword=None)])):
        return "take"
    return None


def _names(target: cst.BaseExpression) -> list[cst.Name] | None:
    """The names `a` or `a, b` (parenthesised or not) assign, else None."""
    if isinstance(target, cst.Name):
        return [target]
    if isinstance(target, cst.Tuple | cst.List) and all(isinstance(e, cst.Element) and isinstance(e.value, cst.Name) for e in target.elements):
        return [e.value for e in target.elements if isinstance(e.value, cst.Name)]
    return None


def _statement_draw(statement: cst.BaseSmallStatement, name: str) -> tuple[str, list[cst.Name]] | None:
    """(kind, assigned names) for `k = next(name)` / `a, b = name.take(n)`."""
    if not (isinstance(statement, cst.Assign) and len(statement.targets) == 1):
        return None
    kind = _draw(statement.value, name)
    names = _names(statement.targets[0].target)
    if kind is None or names is None or (kind == "next" and not isinstance(statement.targets[0].target, cst.Name)):
        return None
    return kind, names


class _Uses(Walker):
    """Find `name = hk.PRNGSequence(seed)` assignments and classify every reference to their names."""

    def __init__(self, is_sequence: Callable[[cst.Call], bool]) -> None:
        self.is_sequence = is_sequence
        self.sequences: dict[str, _Sequence] = {}
        self.rebound: set[str] = set()
        self.scopes: list[cst.CSTNode | None] = [None]
        self.skip: set[cst.CSTNode] = set()  # Name nodes that are not references (attributes, keywords, the assignment)
        self.draw_names: dict[cst.CSTNode, str] = {}  # the Name inside a draw -> the sequence

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.scopes.append(node)

    def leave_FunctionDef(self, node: cst.FunctionDef) -> None:
        self.scopes.pop()

    def visit_Assign(self, node: cst.Assign) -> None:
        value = node.value
        if len(node.targets) == 1 and isinstance(node.targets[0].target, cst.Name) and isinstance(value, cst.Call) and self.is_sequence(value):
            name = node.targets[0].target.value
            if name in self.sequences or not value.args or value.args[0].keyword is not None:
                self.rebound.add(name)
            else:
                self.sequences[name] = _Sequence(name, self.scopes[-1], value.args[0].value)
            self.skip.add(node.targets[0].target)

    def visit_Attribute(self, node: cst.Attribute) -> None:
        self.skip.add(node.attr)

    def visit_Arg(self, node: cst.Arg) -> None:
        if node.keyword is not None:
            self.skip.add(node.keyword)

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
        for small in node.body:
            for sequence in self.sequences.values():
                if self.scopes[-1] is sequence.scope and _statement_draw(small, sequence.name) is not None:
                    sequence.statement_draws += 1

    def visit_Call(self, node: cst.Call) -> None:
        for sequence in self.sequences.values():
            if _draw(node, sequence.name) is not None:
                sequence.draws += 1

    def visit_Name(self, node: cst.Name) -> None:
        sequence = self.sequences.get(node.value)
        if sequence is not None and node not in self.skip:
            sequence.uses += 1


def read_sequences(module: cst.Module, is_sequence: Callable[[cst.Call], bool], target: str) -> dict[str, _Sequence]:
    """The module's key sequences, each with the problems that keep it from converting (empty: convert)."""
    walker = _Uses(is_sequence)
    walker.walk(module)
    for sequence in walker.sequences.values():
        if sequence.name in walker.rebound:
            sequence.problems.append(f"`{sequence.name}` is assigned more than once")
        if sequence.uses != sequence.draws:
            sequence.problems.append(f"`{sequence.name}` is used otherwise than by `next({sequence.name})` / `{sequence.name}.take(n)`")
        if target == "linen":
            if sequence.draws != sequence.statement_draws:
                sequence.problems.append(
                    f"a draw is not a statement of its own (`k = next({sequence.name})`) in the scope that creates `{sequence.name}`"
                )
            if _linen_key(sequence.seed) is None:
                sequence.problems.append("the seed is neither an int literal nor a `jax.random` key")
    return walker.sequences


def _linen_key(seed: cst.BaseExpression) -> cst.BaseExpression | None:
    """The key a Linen split chain starts from: `jax.random.key(seed)` for an int, a key as it is."""
    if isinstance(literal(seed), int):
        return cst.parse_expression(f"jax.random.key({cst.Module([]).code_for_node(seed)})")
    if isinstance(seed, cst.Call) and cst.Module([]).code_for_node(seed.func) in JAX_KEYS:
        return seed
    return None


def _split(name: str, count: cst.BaseExpression | None) -> cst.Call:
    """`jax.random.split(name)`, or `jax.random.split(name, count)`."""
    args = [cst.Arg(cst.Name(name))]
    if count is not None:
        args.append(cst.Arg(count))
    return cst.Call(cst.parse_expression("jax.random.split"), [a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in args])


SEQUENCES = FileFact(
    lambda module, ctx: read_sequences(module, lambda call: ctx.names.haiku_api(call.func) == "PRNGSequence", ctx.target)
    if ctx.mentions("PRNGSequence")
    else {}
)


def _convertible(ctx: Context, name: str) -> bool:
    sequence = ctx.fact(SEQUENCES).get(name)
    return sequence is not None and not sequence.problems and ctx.enabled(RULE_SEQUENCE)


def _clean_sequence(room: FileRoom, call: CallSite, summary: str) -> _Sequence | None:
    """The sequence `name = hk.PRNGSequence(seed)` creates, reported as converted; None with a TODO
    (the sequence stays) where it is used otherwise than drawn from."""
    original = call.original
    sequences = room.ctx.fact(SEQUENCES).values()
    sequence = next((s for s in sequences if s.seed is original.args[0].value), None) if original.args else None
    if sequence is None or sequence.problems:
        why = "; ".join(sequence.problems) if sequence is not None else "it is not assigned to a name"
        room.todo(original, RULE_SEQUENCE_TODO, f"{why}: {ADVICE[room.ctx.target]}")
        return None
    room.ctx.needed_imports.add(("jax", None, None))
    room.converted(original, RULE_SEQUENCE, f"hk.PRNGSequence -> {summary}")
    return sequence


@NNX_FILE_CALLS.on("PRNGSequence", rule=RULE_SEQUENCE)
def nnx_sequence(room: FileRoom, call: CallSite) -> cst.BaseExpression:
    """`hk.PRNGSequence(seed)` -> `nnx.Rngs(seed)`."""
    sequence = _clean_sequence(room, call, "nnx.Rngs")
    if sequence is None:
        return call.updated
    room.ctx.need_target_import()
    return cst.Call(cst.parse_expression(f"{room.ctx.ns}.Rngs"), [cst.Arg(sequence.seed)])


@NNX_FILE_NODES.on_leave(cst.Call, rule=RULE_SEQUENCE)
def nnx_draw(room: FileRoom, original: cst.Call, updated: cst.Call) -> cst.BaseExpression | None:
    """`next(seq)` -> `seq()`; `seq.take(n)` -> `jax.random.split(seq(), n)`."""
    for name in room.ctx.fact(SEQUENCES):
        kind = _draw(original, name)
        if kind is not None and _convertible(room.ctx, name):
            draw = cst.Call(cst.Name(name))
            if kind == "next":
                return draw
            return cst.Call(cst.parse_expression("jax.random.split"), [cst.Arg(draw, comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))), cst.Arg(updated.args[0].value)])
    return None


@LINEN_CALLS.on("PRNGSequence", rule=RULE_SEQUENCE)
def linen_sequence(room: LinenMethod, call: CallSite) -> cst.BaseExpression:
    """`hk.PRNGSequence(seed)` -> the key a split chain starts from."""
    sequence = _clean_sequence(room, call, "a jax.random split chain")
    key = _linen_key(sequence.seed) if sequence is not None else None
    return key if key is not None else call.updated


@LINEN_NODES.on_leave(cst.Assign, rule=RULE_SEQUENCE)
def linen_draw(room: LinenMethod, original: cst.Assign, updated: cst.Assign) -> cst.Assign | None:
    """`k = next(seq)` -> `seq, k = jax.random.split(seq)`; `a, b = seq.take(2)` -> `seq, a, b = jax.random.split(seq, 3)`."""
    for name in room.ctx.fact(SEQUENCES):
        drawn = _statement_draw(original, name)
        if drawn is None or not _convertible(room.ctx, name):
            continue
        kind, names = drawn
        assert isinstance(updated.value, cst.Call)  # a draw, as `_statement_draw` read it
        count = None if kind == "next" else updated.value.args[0].value
        listed = isinstance(original.targets[0].target, cst.Tuple | cst.List)
        if kind == "take":
            count = cst.Integer(str(len(names) + 1)) if listed else cst.BinaryOperation(updated.value.args[0].value, cst.Add(), cst.Integer("1"))
        targets = [cst.Name(name), *(names if kind == "next" or listed else [cst.StarredElement(names[0])])]
        elements = [t if isinstance(t, cst.StarredElement) else cst.Element(t) for t in targets]
        last = len(elements) - 1
        elements = [e.with_changes(comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")) if i < last else cst.MaybeSentinel.DEFAULT) for i, e in enumerate(elements)]
        target = cst.Tuple(elements, lpar=[], rpar=[])
        return updated.with_changes(targets=[cst.AssignTarget(target)], value=_split(name, count))
    return None
