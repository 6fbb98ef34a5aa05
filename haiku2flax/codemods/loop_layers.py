"""NNX: layers a method builds inside a `for` loop, one per iteration.

What it converts: a layer built in a loop of a method, inline (`for _ in range(n): x = hk.Linear(w)(x)`)
or stored in a local and called in the same iteration (`block = Block(self.channels[i]); out =
block(out)`, as in `hk.nets.MobileNetV1`), where the loop's iterable reads only what `__init__` has and
the constructor arguments only that and the loop variable. Haiku builds a NEW layer at every iteration
(its own parameters); NNX builds them all in `__init__` as an `nnx.List`, over the same iterable, and the
loop applies them in turn::

    for i in range(len(self.channels)):           # __init__
      block = Block(self.channels[i])             self.blocks = nnx.List()
      x = block(x)                                in_features = din
                                                  for i in range(len(channels)):
                                                    self.blocks.append(Block(in_features, channels[i], rngs=rngs))
                                                    in_features = channels[i]
                                                  # __call__
                                                  for block in self.blocks:
                                                    x = block(x)

Input sizes chain as Haiku's calls saw them: when an iteration changes the size of what the next one
reads, `__init__` carries it in `in_features`; when it keeps it, every layer takes the size before the
loop (a comprehension, `nnx.List([... for _ in range(n)])`). The loop iterates the list when the loop
variable is not otherwise needed, indexes it (`self.blocks[i]`) over a `range(n)`, and zips it with the
iterable otherwise. A layer built before the loop and called inside it is one layer, shared by every
iteration: it stays a single attribute (see the stored layers of `haiku2flax.targets.nnx`).

Why: NNX builds every layer eagerly in `__init__`, and Haiku created each iteration's layer when the
iteration ran; the same loop over the same constructor state builds the same layers.

Not converted (a TODO says why): a loop over a call argument or a value computed in the method (the
number of layers must be known in `__init__`: pass it to the constructor), a `break` or `return` in the
loop or a `continue` before the layer (how many layers Haiku builds depends on the run), a loop nested
in another loop, constructor arguments that read values computed in the method. A layer built under an
`if` inside the loop, or stored and used other than called in its iteration, keeps the generic TODO.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import libcst as cst

from ..engine import analysis
from ..engine.calls import code
from ..engine.context import add_todo_lines, attr
from ..engine.names import dotted_name
from ..engine.registry import Status, register
from ..engine.walk import Transformer, Walker
from .interfaces import NNX_NODES, InitLayer, NnxMethod
from .layer_lists import IN_FEATURES, IsLayer, _assigned, _calls_of, _count_name, without_unused_index
from .transforms import RULE_INPUT_SIZE

RULE_LOOP_LAYERS = register(
    "HK602", "loop-built-layers", Status.PARTIAL,
    "NNX: layers built in a `for` loop of a method -> an nnx.List built in __init__ over the same iterable", __name__,
)


@dataclass
class _LoopLayer:
    """One layer a loop builds per iteration, and its NNX list once built."""

    constructor: cst.Call
    element: str  # the name of one layer of the list in the loop (the local it was stored in, or a fresh one)
    stored: bool  # stored in `element` (`block = Block(...)`) rather than built and called at once
    refused: str | None = None  # why it stays as it is (a TODO reason)
    built: _BuiltList | None = None
    failed: bool = False


@dataclass
class _BuiltList:
    """The `nnx.List` of a loop's layer: its attribute, the NNX constructor of one layer, its output size."""

    attribute: str
    constructor: cst.BaseExpression
    output: cst.BaseExpression | None


@dataclass
class _Chain:
    """A variable the loop carries, whose size `__init__` follows in a variable of its own."""

    name: str  # the `__init__` variable (`in_features`)
    before: cst.BaseExpression | None  # its size before the loop (None: not known)


@dataclass
class _Loop:
    node: cst.For
    layers: list[_LoopLayer] = field(default_factory=list)
    chains: dict[str, _Chain] = field(default_factory=dict)  # by the carried variable
    hoisted_before: int = 0  # how many layers `__init__` built before the loop
    unresolved: list[InitLayer] = field(default_factory=list)  # `__init__` layers whose input size was not known before the loop


@dataclass
class _MethodLoops:
    """The `for` loops around the statement being converted, innermost last, and the calls their layers own."""

    loops: list[_Loop] = field(default_factory=list)
    calls: dict[cst.CSTNode, tuple[str, _LoopLayer]] = field(default_factory=dict)  # original call -> ("constructor" | "call", layer)


# -- reading a loop -------------------------------------------------------------------------------------
@NNX_NODES.on_visit(cst.For, rule=RULE_LOOP_LAYERS)
def enter_loop(room: NnxMethod, node: cst.For) -> None:
    """The layers the loop builds, and whether `__init__` can build them all (else why not)."""
    state = room.family(_MethodLoops)
    loop = _Loop(node, _layers_built_in(room, node, state))
    refusal = _loop_refusal(room, node, state) if loop.layers else None
    if loop.layers and refusal is None and room.in_loop_or_condition():
        loop.layers = []  # inside an `if` on call arguments or a `with`: the generic TODO says so
    for layer in loop.layers:
        layer.refused = refusal or layer.refused
    if any(layer.refused is None for layer in loop.layers):
        _start_chains(room, loop)
    state.loops.append(loop)


def _layers_built_in(room: NnxMethod, node: cst.For, state: _MethodLoops) -> list[_LoopLayer]:
    """The layers built in the statements of the loop's own block, in order."""
    statements = list(getattr(node.body, "body", ()))
    layers: list[_LoopLayer] = []
    taken = analysis.Names.of(room.function).used
    targets = analysis.Names.of(node.target).used
    is_layer = room.conversion.is_module_constructor
    for index, statement in enumerate(statements):
        if not isinstance(statement, cst.SimpleStatementLine):
            continue
        skipped = _continue_refusal(statements[:index])
        stored = _stored_in_loop(room, statement, statements[index + 1 :])
        if stored is not None:
            name, constructor, calls = stored
            layer = _LoopLayer(constructor, name, True, _argument_refusal(room, constructor, targets) or skipped)
            state.calls[constructor] = ("constructor", layer)
            state.calls.update({call: ("call", layer) for call in calls})
            layers.append(layer)
            continue
        for call in _built_and_called(statement, is_layer):
            assert isinstance(call.func, cst.Call)  # `_built_and_called` finds `Layer(...)(x)`
            base = analysis.explicit_name(call.func) or _module_name(call.func, room.ctx.names.haiku_api(call.func.func))
            element = analysis.free_name(base, taken)
            taken.add(element)
            layer = _LoopLayer(call.func, element, False, _argument_refusal(room, call.func, targets) or skipped)
            state.calls[call.func] = ("constructor", layer)
            state.calls[call] = ("call", layer)
            layers.append(layer)
    return layers


def _stored_in_loop(
    room: NnxMethod, statement: cst.SimpleStatementLine, later: Sequence[cst.BaseStatement]
) -> tuple[str, cst.Call, list[cst.Call]] | None:
    """(name, constructor, calls) for `name = Layer(...)` only called in the loop's later statements."""
    assign = analysis.simple_assign(statement)
    if not (
        assign is not None
        and isinstance(assign[0], cst.Name)
        and isinstance(assign[1], cst.Call)
        and not any(line.comment for line in statement.leading_lines)  # its comments would have nowhere to go
        and room.conversion.is_module_constructor(assign[1])
    ):
        return None
    name = assign[0].value
    calls = [call for s in later if isinstance(s, cst.SimpleStatementLine) for call in _calls_of(s, name)]
    if not calls or _count_name(room.function, name) != 1 + len(calls):
        return None
    return name, assign[1], calls


def _argument_refusal(room: NnxMethod, constructor: cst.Call, targets: set[str]) -> str | None:
    used = analysis.Names.of(constructor).used
    blocked = sorted((used & room.method_locals) - room.conversion.locals_in_init - targets)
    if blocked:
        return (f"its arguments use {_listed(blocked)}, computed in the method: NNX builds one layer per iteration in "
                "`__init__`, from the loop variable and constructor state only; compute them there")
    return None


def _loop_refusal(room: NnxMethod, node: cst.For, state: _MethodLoops) -> str | None:
    """Why none of the loop's layers can be built in `__init__`, or None."""
    if state.loops:
        return ("it is built in a loop nested in another loop; build the layers in `__init__` by hand "
                "(an `nnx.List` of `nnx.List`s, or one flat list) and apply them in the same loops")
    if not all(isinstance(n, cst.Name) for n in _target_names(node.target)):
        return f"the loop target `{code(node.target)}` is not a name or a tuple of names; build the layers in `__init__` by hand"
    iterable = node.iter
    blocked = sorted((analysis.Names.of(iterable).used & room.method_locals) - room.conversion.locals_in_init)
    parameters = room.function.params
    params = {p.name.value for p in [*parameters.params, *parameters.kwonly_params]}
    if blocked:
        what = "a call argument" if set(blocked) <= params else "computed in the method"
        return (f"the loop runs over `{code(iterable)}`, which reads {_listed(blocked)} ({what}): NNX builds the layers "
                "in `__init__`, so it must know how many; pass what decides it to the constructor")
    if not room.reads_constructor_state(iterable):
        return (f"the loop runs over `{code(iterable)}`, which `__init__` cannot evaluate the same way (an attribute it "
                "does not set, a method call or Haiku state); build the layers in `__init__` by hand")
    exits = [e for e in _exits([node.body]) if e != "continue"]
    if exits:
        return (f"a `{exits[0]}` in the loop can end it before every iteration has built its layer, and NNX builds them "
                "all in `__init__`; build the layers there by hand")
    return None


def _start_chains(room: NnxMethod, loop: _Loop) -> None:
    """Sizes of the variables the loop carries (read, then assigned) become `__init__` variables, so each
    iteration's input sizes are in terms of what the previous one left."""
    loop_node, conversion = loop.node, room.conversion
    carried = sorted(_carried(loop_node.body) - analysis.Names.of(loop_node.target).used)
    taken = analysis.Names.of(conversion.init_def).used if conversion.init_def is not None else set()
    taken |= conversion.init_locals | analysis.Names.of(loop_node).used
    for variable in carried:
        name = analysis.free_name(IN_FEATURES, taken)
        taken.add(name)
        loop.chains[variable] = _Chain(name, room.variable_size(variable))
        room.set_variable_size(variable, cst.Name(name))
        room.carried_sizes.add(name)
    loop.hoisted_before = len(conversion.hoisted)
    loop.unresolved = [layer for layer in conversion.init_layers.values() if layer.resolved is None]


# -- the loop's calls -------------------------------------------------------------------------------------
@NNX_NODES.on_leave(cst.Call, rule=RULE_LOOP_LAYERS)
def loop_layer_call(room: NnxMethod, original: cst.Call, updated: cst.Call) -> cst.BaseExpression | None:
    """A loop layer's constructor stays (its statement goes once the list is built), its application calls
    one layer of the list (`block(x)`); None for other calls."""
    entry = room.family(_MethodLoops).calls.get(original)
    if entry is None:
        return None
    kind, layer = entry
    if kind == "constructor":
        if layer.refused is not None:
            room.todo(original, RULE_LOOP_LAYERS, layer.refused)
        return updated
    if layer.refused is not None or layer.failed:
        return updated
    args = room.conversion.call_args_for(layer.constructor, list(updated.args), room, original)
    if args is None:
        layer.failed = layer.built is None
        return updated
    if layer.built is None:
        attribute = room.new_attribute(_plural(layer.element))
        built = room.conversion.build(layer.constructor, attribute, list(updated.args), room, layer.constructor)
        if built is None:
            layer.failed = True
            return updated
        layer.built = _BuiltList(attribute, *built)
    applied = updated.with_changes(func=cst.Name(layer.element), args=[a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in args])
    return room.set_size(applied, layer.built.output)


# -- the loop, rewritten --------------------------------------------------------------------------------
@NNX_NODES.on_leave(cst.For, rule=RULE_LOOP_LAYERS)
def leave_loop(room: NnxMethod, original: cst.For, updated: cst.For) -> cst.For | None:
    """The loop applies the lists `__init__` now builds; None where it built none."""
    state = room.family(_MethodLoops)
    if not state.loops or state.loops[-1].node is not original:
        return None
    loop = state.loops.pop()
    room.carried_sizes.difference_update(chain.name for chain in loop.chains.values())
    built = [(layer, layer.built) for layer in loop.layers if layer.built is not None]
    ends = _end_chains(room, loop, [b for _, b in built]) if loop.chains else {}
    if not built:
        return None
    _build_in_init(room, loop, built, ends)
    listed = ", ".join(f"self.{b.attribute}" for _, b in built)
    room.converted(original, RULE_LOOP_LAYERS, f"{listed} built in __init__ as {room.ctx.ns}.List, one layer per iteration")
    return _applying_loop(original, updated, built)


def _end_chains(room: NnxMethod, loop: _Loop, built: list[_BuiltList]) -> dict[str, cst.BaseExpression | None]:
    """The carried sizes `__init__` must chain (`__init__` variable -> its value after an iteration, None:
    unknown); the others are the same at every iteration. Sets the sizes after the loop."""
    conversion = room.conversion
    hoisted = conversion.hoisted[loop.hoisted_before :]  # built once, first called in the loop
    once = [entry.constructor for entry in hoisted] + [layer.resolved for layer in loop.unresolved if layer.resolved is not None]
    referenced: set[str] = set().union(*(analysis.Names.of(n).used for n in [*(b.constructor for b in built), *once]))
    targets = analysis.Names.of(loop.node.target).used
    chain_names = {chain.name for chain in loop.chains.values()}
    foreign = (room.method_locals - conversion.locals_in_init) | targets
    kept: dict[str, cst.BaseExpression | None] = {}  # `__init__` variable -> the size before the loop
    ends: dict[str, cst.BaseExpression | None] = {}
    for variable, chain in loop.chains.items():
        end = room.variable_size(variable)
        if end is not None and analysis.Names.of(end).used & (foreign - targets) - chain_names:
            end = None
        if chain.name in referenced and built:  # the first layer's input size (a constructor argument where nobody knows it)
            chain.before = conversion.input_size(built[0].attribute, chain.before, room, loop.node)
        if end is not None and code(end) == chain.name:
            kept[chain.name] = chain.before
        elif chain.name in referenced:
            ends[chain.name] = end
    first = {chain.name: chain.before for chain in loop.chains.values() if chain.before is not None}
    known = {name: before for name, before in kept.items() if before is not None}
    for layer in built:
        layer.constructor = analysis.substitute(layer.constructor, known)
    for entry in hoisted:  # Haiku built them at the first iteration
        entry.constructor = analysis.substitute(entry.constructor, first)
    for init_layer in loop.unresolved:
        if init_layer.resolved is not None:
            init_layer.resolved = analysis.substitute(init_layer.resolved, first)
    for variable in _assigned(loop.node.body) | targets:
        name = loop.chains[variable].name if variable in loop.chains else None
        size = room.variable_size(variable)
        if name in ends:
            room.set_variable_size(variable, cst.Name(name) if ends[name] is not None and _init_statements_resolved(room) else None)
        elif name is not None:
            room.set_variable_size(variable, kept.get(name))
        elif size is not None:
            size = analysis.substitute(size, known)
            room.set_variable_size(variable, None if analysis.Names.of(size).used & (targets | chain_names) else size)
    loop.chains = {variable: chain for variable, chain in loop.chains.items() if chain.name in ends}
    return ends


def _init_statements_resolved(room: NnxMethod) -> bool:
    """Are the layers `__init__` itself builds all resolved? An `__init__` variable of the hoisted
    statements is not defined where they are, so no size of theirs may read one."""
    conversion = room.conversion
    return all(layer.resolved is not None for layer in conversion.init_layers.values()) and all(
        layers.replacements is not None for layers in conversion.layer_lists.values()
    )


def _build_in_init(room: NnxMethod, loop: _Loop, built: list[tuple[_LoopLayer, _BuiltList]], ends: dict[str, cst.BaseExpression | None]) -> None:
    """`self.<list> = nnx.List([... for <target> in <iterable>])`, or, where sizes chain, a loop appending."""
    ns, node = room.ctx.ns, loop.node
    if not ends:
        lines: list[cst.BaseStatement] = [
            _assign(attr("self", b.attribute), cst.Call(attr(ns, "List"), [cst.Arg(cst.ListComp(b.constructor, cst.CompFor(*without_unused_index(node.target, node.iter, b.constructor))))]))
            for _, b in built
        ]
    else:
        appends = [_line(cst.Expr(cst.Call(cst.Attribute(attr("self", b.attribute), cst.Name("append")), [cst.Arg(b.constructor)]))) for _, b in built]
        body = cst.IndentedBlock([*appends, *(_assign(cst.Name(n), e if e is not None else cst.Ellipsis()) for n, e in ends.items())])
        lines = [
            *(_assign(attr("self", b.attribute), cst.Call(attr(ns, "List"), [])) for _, b in built),
            *(_assign(cst.Name(chain.name), chain.before if chain.before is not None else cst.Ellipsis()) for chain in loop.chains.values()),
            cst.For(*without_unused_index(node.target, node.iter, body), body),
        ]
        unknown = [name for name, end in ends.items() if end is None]
        if unknown:
            reason = (f"set `{unknown[0]}` to the feature size an iteration leaves, in place of `...`: the input size of "
                      f"the layers of `self.{built[0][1].attribute}` after the first is not known")
            room.ctx.notes.todo(node, RULE_INPUT_SIZE, reason)
            lines[0] = add_todo_lines(lines[0], [(RULE_INPUT_SIZE, reason)])
        room.conversion.init_locals |= set(ends)
    for index, (layer, b) in enumerate(built):
        room.add_to_init(b.attribute, b.constructor, layer.constructor, lines=lines if index == 0 else [])


def _applying_loop(original: cst.For, updated: cst.For, built: list[tuple[_LoopLayer, _BuiltList]]) -> cst.For:
    """The method's loop over the built lists: `for block in self.blocks:`, `self.blocks[i]` over a
    `range(n)` whose `i` is still read, or a `zip` with the iterable."""
    assert isinstance(updated.body, cst.IndentedBlock)  # `_layers_built_in` read its statements
    stored = {layer.element for layer, _ in built if layer.stored}
    body = [s for s in updated.body.body if not _stores(s, stored)]
    if body and body[0] is not updated.body.body[0] and not _has_comment(body[0]):
        body[0] = body[0].with_changes(leading_lines=[])
    block = updated.body.with_changes(body=body or [_line(cst.Pass())])
    lists: list[cst.BaseExpression] = [attr("self", b.attribute) for _, b in built]
    elements: list[cst.BaseExpression] = [cst.Name(layer.element) for layer, _ in built]
    if not analysis.Names.of(original.target).used & analysis.Names.of(block).used:
        if len(built) == 1:
            return updated.with_changes(target=elements[0], iter=lists[0], body=block)
        return updated.with_changes(target=_bare_tuple(elements), iter=_zip(lists), body=block)
    if isinstance(original.target, cst.Name) and _is_range(original.iter):
        return updated.with_changes(body=block.visit(_Indexed({layer.element: b.attribute for layer, b in built}, original.target)))
    target = updated.target if not isinstance(updated.target, cst.Tuple) else updated.target.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
    return updated.with_changes(target=_bare_tuple([target, *elements]), iter=_zip([updated.iter, *lists]), body=block)


def _stores(statement: cst.BaseStatement, names: set[str]) -> bool:
    """`block = Block(...)` of a built layer's local (the only assignment to it: `_stored_in_loop`); with a
    comment above it (a TODO), it stays."""
    assign = analysis.simple_assign(statement)
    return (
        assign is not None
        and isinstance(assign[0], cst.Name)
        and assign[0].value in names
        and not _has_comment(statement)
    )


def _has_comment(statement: cst.BaseStatement) -> bool:
    lines = statement.leading_lines if isinstance(statement, cst.SimpleStatementLine | cst.BaseCompoundStatement) else ()
    return any(line.comment for line in lines)


class _Indexed(Transformer):
    """`block(x)` -> `self.blocks[i](x)`."""

    def __init__(self, lists: dict[str, str], index: cst.Name) -> None:
        super().__init__()
        self.lists = lists
        self.index = index

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.Call:
        if isinstance(original.func, cst.Name) and original.func.value in self.lists:
            item = cst.Subscript(attr("self", self.lists[original.func.value]), [cst.SubscriptElement(cst.Index(self.index))])
            return updated.with_changes(func=item)
        return updated


def _is_range(node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.Call) and dotted_name(node.func) == "range" and len(node.args) == 1 and node.args[0].keyword is None


def _bare_tuple(values: list[cst.BaseExpression]) -> cst.Tuple:
    return cst.Tuple([cst.Element(v) for v in values], lpar=[], rpar=[])


def _zip(values: list[cst.BaseExpression]) -> cst.Call:
    return cst.Call(cst.Name("zip"), [cst.Arg(v) for v in values])


def _line(small: cst.BaseSmallStatement) -> cst.SimpleStatementLine:
    return cst.SimpleStatementLine([small])


def _assign(target: cst.BaseAssignTargetExpression, value: cst.BaseExpression) -> cst.SimpleStatementLine:
    return _line(cst.Assign([cst.AssignTarget(target)], value))


class _BuiltAndCalled(Walker):
    def __init__(self, is_layer: IsLayer) -> None:
        self.is_layer = is_layer
        self.found: list[cst.Call] = []

    def visit_Call(self, node: cst.Call) -> None:
        if isinstance(node.func, cst.Call) and self.is_layer(node.func):
            self.found.append(node)


def _built_and_called(statement: cst.CSTNode, is_layer: IsLayer) -> list[cst.Call]:
    """`Layer(...)(x)` calls in a statement, outermost first."""
    walker = _BuiltAndCalled(is_layer)
    walker.walk(statement)
    return walker.found


class _Exits(Walker):
    """`break` / `continue` of this loop (not of a loop inside it) and `return`, in order."""

    def __init__(self) -> None:
        self.found: list[str] = []
        self._depth = 0

    def visit_Break(self, node: cst.Break) -> None:
        if not self._depth:
            self.found.append("break")

    def visit_Continue(self, node: cst.Continue) -> None:
        if not self._depth:
            self.found.append("continue")

    def visit_Return(self, node: cst.Return) -> None:
        self.found.append("return")

    def visit_For(self, node: cst.For) -> None:
        self._depth += 1

    def leave_For(self, node: cst.For) -> None:
        self._depth -= 1

    def visit_While(self, node: cst.While) -> None:
        self._depth += 1

    def leave_While(self, node: cst.While) -> None:
        self._depth -= 1

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        return False


def _exits(nodes: Sequence[cst.CSTNode]) -> list[str]:
    walker = _Exits()
    for node in nodes:
        walker.walk(node)
    return walker.found


def _continue_refusal(before: list[cst.BaseStatement]) -> str | None:
    if "continue" in _exits(before):
        return ("a `continue` before it skips building it in some iterations, and NNX builds one layer per iteration "
                "in `__init__`; build the layers there by hand")
    return None


def _carried(body: cst.BaseSuite) -> set[str]:
    """Variables an iteration reads before it assigns them: what one iteration hands the next."""
    written: set[str] = set()
    read_first: set[str] = set()
    for statement in getattr(body, "body", ()):
        smalls = statement.body if isinstance(statement, cst.SimpleStatementLine) else [statement]
        for small in smalls:
            if isinstance(small, cst.Assign):
                read_first |= analysis.Names.of(small.value).used - written
            elif not isinstance(small, cst.AnnAssign):  # `x += ...` reads `x`; a compound statement, all it uses
                read_first |= analysis.Names.of(small).used - written
            written |= _assigned(small)
    return read_first & written


def _target_names(target: cst.BaseExpression) -> list[cst.BaseExpression]:
    if isinstance(target, cst.Tuple | cst.List):
        return [n for element in target.elements for n in _target_names(element.value)]
    return [target]


def _module_name(constructor: cst.Call, api: str | None) -> str:
    """Haiku's default module name: the class name in snake_case (`hk.Linear` -> `linear`)."""
    return analysis.snake_case((api or dotted_name(constructor.func) or "layer").rsplit(".", 1)[-1])


def _plural(name: str) -> str:
    return name + ("es" if name.endswith(("s", "x", "sh", "ch")) else "s")


def _listed(names: list[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)
