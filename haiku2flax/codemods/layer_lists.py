"""NNX: lists of layers built in `__init__` and applied in a `for` loop.

What it converts: a list of layers that a Haiku `__init__` builds as a comprehension
(`self.layers = [hk.Linear(n) for n in sizes]`), a literal list or tuple (`[hk.Linear(8), hk.Linear(4)]`),
or by appending in a loop to a local list stored afterwards (`self.layers = tuple(layers)`, as in
`hk.nets.MLP`) -> `nnx.List` (NNX 0.12 refuses a plain list of modules as an attribute). NNX needs each
layer's input size, read from the loop that applies them, `for layer in self.layers:` (also through
`enumerate(...)` or `zip(...)`):
- chained, `x = layer(x)` (element-wise functions and dropout between the calls are fine, under an `if`
  too when its branches agree): the first layer takes the size of `x` before the loop, each next one the
  output size of the one before, and what `__init__` builds after the list reads the last one's;
- side by side, `outs.append(head(x))` with `x` unchanged: every layer takes the size of `x`.
Comprehensions that chain become a loop carrying the input size::

    self.layers = [hk.Linear(n) for n in sizes]     self.layers = nnx.List()
                                                    in_features = din
                                                    for n in sizes:
                                                      self.layers.append(nnx.Linear(in_features, n, rngs=rngs))
                                                      in_features = n

Why: Haiku created each layer's parameters at its first call; NNX builds them in `__init__`, so the sizes
the calls would have seen must be worked out from the dataflow of the loop.

Not converted: where the loop neither chains nor keeps its input (a residual `x = x + layer(x)` whose
layer width is not known, a loop this rule cannot read, no loop at all), each layer's input size is `...`
with a TODO (HK006) saying to pass it; lists of anything but layers (pools, functions, nested lists), and
lists built any other way, are left to the generic TODO.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import libcst as cst

from ..engine import analysis
from ..engine.calls import code
from ..engine.context import add_todo_lines, attr
from ..engine.names import dotted_name
from ..engine.registry import Status, register
from ..engine.walk import Walker, descendants
from .interfaces import NNX_NODES, NnxClass, NnxMethod
from .transforms import RULE_INPUT_SIZE

RULE_LAYER_LIST = register(
    "HK601", "layer-list", Status.PARTIAL, "NNX: a list of layers built in __init__ -> nnx.List, input sizes chained from the loop that applies it",
    __name__,
)

CHAINED, SIDE_BY_SIDE = "chained", "side by side"
IsLayer = Callable[[cst.Call], bool]  # is this a layer's constructor?
IN_FEATURES = "in_features"


@dataclass
class LayerList:
    """`self.<attribute>`: a list of layers a Haiku `__init__` builds, and its NNX statements once resolved."""

    attribute: str
    constructors: list[cst.Call]  # one for a comprehension or loop, each element's for a literal list
    statement: cst.BaseStatement  # `self.<attribute> = ...`
    comprehension: cst.ListComp | None = None
    loop: cst.For | None = None  # the loop appending to a local list
    append: cst.SimpleStatementLine | None = None  # the `<local>.append(...)` statement in that loop
    replacements: dict[cst.BaseStatement, list[cst.BaseStatement]] | None = None  # original statement -> NNX statements
    output_size: cst.BaseExpression | None = None  # after applying the whole list, chained


def read_layer_lists(statements: list[cst.BaseStatement], is_layer: IsLayer) -> dict[str, LayerList]:
    """The lists of layers among a Haiku `__init__`'s statements."""
    found: dict[str, LayerList] = {}
    for index, statement in enumerate(statements):
        assign = analysis.simple_assign(statement)
        attribute = analysis.self_attribute(assign[0]) if assign is not None else None
        if assign is None or attribute is None:
            continue
        value = assign[1]
        if isinstance(value, cst.ListComp) and _single_for(value) and isinstance(value.elt, cst.Call) and is_layer(value.elt):
            found[attribute] = LayerList(attribute, [value.elt], statement, comprehension=value)
        elif isinstance(value, cst.List | cst.Tuple) and value.elements and all(
            isinstance(e, cst.Element) and isinstance(e.value, cst.Call) and is_layer(e.value) for e in value.elements
        ):
            found[attribute] = LayerList(attribute, [e.value for e in value.elements if isinstance(e.value, cst.Call)], statement)
        else:
            appended = _appended_list(statements[:index], statement, value, is_layer)
            if appended is not None:
                loop, append, constructor = appended
                found[attribute] = LayerList(attribute, [constructor], statement, loop=loop, append=append)
    return found


def _single_for(comprehension: cst.ListComp) -> bool:
    return comprehension.for_in.inner_for_in is None and not comprehension.for_in.ifs and comprehension.for_in.asynchronous is None


def _appended_list(
    before: list[cst.BaseStatement], statement: cst.BaseStatement, value: cst.BaseExpression, is_layer: IsLayer
) -> tuple[cst.For, cst.SimpleStatementLine, cst.Call] | None:
    """(loop, append statement, constructor) for `L = []; for ...: L.append(hk.X(...)); self.attr = tuple(L)`."""
    if isinstance(value, cst.Call) and dotted_name(value.func) in ("tuple", "list") and len(value.args) == 1:
        value = value.args[0].value
    if not isinstance(value, cst.Name):
        return None
    local = value.value
    starts = [s for s in before if m_assign_empty_list(s, local)]
    loops = [(s, s.body) for s in before if isinstance(s, cst.For) and isinstance(s.body, cst.IndentedBlock)]
    for loop, block in loops:
        appends = [(s, call) for s in block.body if (call := _appended(s, local)) is not None and isinstance(s, cst.SimpleStatementLine)]
        if len(appends) != 1 or not starts:
            continue
        append, constructor = appends[0]
        uses = sum(_count_name(s, local) for s in [*before, statement])
        if is_layer(constructor) and uses == 3:  # `L = []`, `L.append(...)`, `self.attr = tuple(L)`
            return loop, append, constructor
    return None


def m_assign_empty_list(statement: cst.BaseStatement, local: str) -> bool:
    assign = analysis.simple_assign(statement)
    return assign is not None and isinstance(assign[0], cst.Name) and assign[0].value == local and isinstance(assign[1], cst.List) and not assign[1].elements


def _appended(statement: cst.BaseStatement, local: str) -> cst.Call | None:
    if not (isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1 and isinstance(statement.body[0], cst.Expr)):
        return None
    call = statement.body[0].value
    if (
        isinstance(call, cst.Call)
        and isinstance(call.func, cst.Attribute)
        and m_name(call.func.value, local)
        and call.func.attr.value == "append"
        and len(call.args) == 1
        and isinstance(call.args[0].value, cst.Call)
    ):
        return call.args[0].value
    return None


def m_name(node: cst.BaseExpression, name: str) -> bool:
    return isinstance(node, cst.Name) and node.value == name


class _Count(Walker):
    def __init__(self, name: str) -> None:
        self.name = name
        self.count = 0

    def visit_Name(self, node: cst.Name) -> None:
        self.count += node.value == self.name

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        self.walk(node.value)  # `self.layers` does not use a local `layers`
        return False


def _count_name(node: cst.CSTNode, name: str) -> int:
    walker = _Count(name)
    walker.walk(node)
    return walker.count


# -- building the NNX list ------------------------------------------------------------------------
def resolve_layer_list(
    conversion: NnxClass, layers: LayerList, flow: str | None, first: cst.BaseExpression | None, rewriter: NnxMethod | None, node: cst.CSTNode
) -> None:
    """Write the NNX statements of a list of layers, applied `flow` (CHAINED, SIDE_BY_SIDE, or None: not
    known) to an input of size `first`."""
    todos: list[tuple[str, str]] = []  # for the list's statement in `__init__`
    if flow is None:
        todos.append((RULE_INPUT_SIZE, f"pass each layer's input feature size in place of `...`: how `self.{layers.attribute}` is applied does not tell"))
        sizes: list[cst.BaseExpression] = [cst.Ellipsis()] * len(layers.constructors)
    else:
        sizes = [conversion.input_size(layers.attribute, first, rewriter, node)]
    repeated = layers.comprehension is not None or layers.loop is not None
    chain = _free_name(conversion.init_def, IN_FEATURES, conversion.init_locals) if flow == CHAINED and repeated else None
    built = []
    for index, constructor in enumerate(layers.constructors):
        size = sizes[index] if flow is None else (cst.Name(chain) if chain else sizes[-1])
        result = conversion.build(constructor, layers.attribute, [], rewriter, node, known_size=size)
        if result is None:  # the element cannot convert (its TODO says why): the list stays as it was
            layers.replacements = {}
            return
        built.append(result)
        if flow == CHAINED and not repeated:
            sizes.append(result[1] if result[1] is not None else cst.Ellipsis())
    inputs = sizes[: len(layers.constructors)] if not repeated else [cst.Ellipsis()] if built[-1][1] is None else []
    if flow == CHAINED and any(isinstance(s, cst.Ellipsis) for s in inputs):
        todos.append((RULE_INPUT_SIZE, f"pass the input feature sizes of the layers of `self.{layers.attribute}` in place of `...`: "
                      "a layer's output size is not known"))
    for rule, reason in todos:
        conversion.ctx.notes.todo(layers.statement, rule, reason)
    ns = conversion.ctx.ns
    target = attr("self", layers.attribute)
    nnx_list = attr(ns, "List")
    conversion.converter.converted(layers.statement, RULE_LAYER_LIST, f"self.{layers.attribute} -> {ns}.List")
    if not repeated:
        elements = [cst.Element(new) for new, _ in built]
        layers.replacements = {layers.statement: [_line(cst.Assign([cst.AssignTarget(target)], cst.Call(nnx_list, [cst.Arg(cst.List(elements))])))]}
        layers.output_size = sizes[-1] if flow == CHAINED and not isinstance(sizes[-1], cst.Ellipsis) else None
        _add_todos(layers, todos)
        return
    new, output = built[0]
    if chain:
        layers.output_size = cst.Name(chain) if output is not None and _read_after(conversion, layers) else None
        conversion.init_locals.add(chain)
    carried = [_line(cst.Assign([cst.AssignTarget(cst.Name(chain))], output if output is not None else cst.Ellipsis()))] if chain else []
    start = [_line(cst.Assign([cst.AssignTarget(cst.Name(chain))], sizes[0]))] if chain else []
    if layers.comprehension is not None:
        for_in = layers.comprehension.for_in
        if not chain:
            element, iterable = without_unused_index(for_in.target, for_in.iter, new)
            listed = layers.comprehension.with_changes(elt=new, for_in=for_in.with_changes(target=element, iter=iterable))
            layers.replacements = {layers.statement: [_line(cst.Assign([cst.AssignTarget(target)], cst.Call(nnx_list, [cst.Arg(listed)])))]}
            _add_todos(layers, todos)
            return
        append_line = _line(cst.Expr(cst.Call(cst.Attribute(target, cst.Name("append")), [cst.Arg(new)])))
        block = cst.IndentedBlock([append_line, *carried])
        loop = cst.For(*without_unused_index(for_in.target, for_in.iter, block), block)
        empty = _line(cst.Assign([cst.AssignTarget(target)], cst.Call(nnx_list, [])))
        layers.replacements = {layers.statement: [empty, *start, loop]}
        _add_todos(layers, todos)
        return
    appending_loop, append = layers.loop, layers.append
    assert appending_loop is not None and append is not None and isinstance(appending_loop.body, cst.IndentedBlock)
    appending = append.body[0]
    assert isinstance(appending, cst.Expr) and isinstance(appending.value, cst.Call) and isinstance(appending.value.func, cst.Attribute)
    local = appending.value.func.value  # read by `_appended`
    new_append = append.with_changes(body=[cst.Expr(cst.Call(cst.Attribute(local, cst.Name("append")), [cst.Arg(new)]))])
    body: list[cst.BaseStatement] = []
    for statement in appending_loop.body.body:
        body.extend([new_append, *carried] if statement is append else [statement])
    stored = _line(cst.Assign([cst.AssignTarget(target)], cst.Call(nnx_list, [cst.Arg(local)])), layers.statement)
    first_line = [s.with_changes(leading_lines=appending_loop.leading_lines) for s in start]
    new_loop = appending_loop.with_changes(body=appending_loop.body.with_changes(body=body), leading_lines=[] if start else appending_loop.leading_lines)
    layers.replacements = {appending_loop: [*first_line, new_loop], layers.statement: [stored]}
    _add_todos(layers, todos)


def without_unused_index(
    target: cst.BaseAssignTargetExpression, iterable: cst.BaseExpression, body: cst.CSTNode
) -> tuple[cst.BaseAssignTargetExpression, cst.BaseExpression]:
    """`for w in widths` for `for i, w in enumerate(widths)` whose `i` only named the Haiku modules
    (`name=f"block_{i}"`, dropped in NNX): the loop `__init__` runs, as it would be written by hand."""
    if not (
        isinstance(iterable, cst.Call) and dotted_name(iterable.func) == "enumerate" and len(iterable.args) == 1
        and iterable.args[0].keyword is None and isinstance(target, cst.Tuple) and len(target.elements) == 2
        and isinstance(target.elements[0].value, cst.Name) and isinstance(target.elements[1].value, cst.Name)
    ):
        return target, iterable
    index, element = target.elements[0].value, target.elements[1].value
    if index.value in analysis.Names.of(body).used:
        return target, iterable
    return element, iterable.args[0].value


def _add_todos(layers: LayerList, todos: list[tuple[str, str]]) -> None:
    """The TODOs above the first NNX statement of the list."""
    if todos and layers.replacements:
        first = next(iter(layers.replacements.values()))
        first[0] = add_todo_lines(first[0], todos)


def _line(small: cst.BaseSmallStatement, like: cst.BaseStatement | None = None) -> cst.SimpleStatementLine:
    line = cst.SimpleStatementLine([small])
    if isinstance(like, cst.SimpleStatementLine | cst.BaseCompoundStatement):
        return line.with_changes(leading_lines=like.leading_lines)
    return line


def _read_after(conversion: NnxClass, layers: LayerList) -> bool:
    """May what `__init__` builds from here on read the list's output size in its carried variable? Not
    when a layer or list written before the list's statements still waits for its input size: a size
    resolved now would be read there, before the variable is set."""
    init = conversion.init_def
    statements = list(getattr(init.body, "body", ())) if init is not None else []
    first = layers.loop or layers.statement
    if first not in statements:
        return False
    waiting = [layer.statement for layer in conversion.init_layers.values() if layer.resolved is None]
    waiting += [other.loop or other.statement for other in conversion.layer_lists.values() if other.replacements is None and other is not layers]
    before = {node for statement in statements[: statements.index(first)] for node in descendants(statement)}  # under an `if` too
    return not before.intersection(waiting)


def _free_name(init: cst.FunctionDef | None, name: str, taken: set[str]) -> str:
    """`name`, or with `_` appended, unused in `__init__` and not `taken` by another of its carried sizes."""
    used = (analysis.Names.of(init).used if init is not None else set()) | taken
    while name in used:
        name += "_"
    return name


# -- reading the loop that applies the list -------------------------------------------------------
ENTRY, ELEMENT = "entry", "element"


def loop_flow(body: cst.BaseSuite, element: str, elementwise: set[str]) -> tuple[str | None, str | None]:
    """How a loop body applies `element` (a layer of the list): CHAINED when the value it is called on
    comes back as the layer's output (up to element-wise functions), SIDE_BY_SIDE when that value is
    the same at every iteration, None otherwise (or when the body is more than simple statements); and
    the variable carrying that value."""
    states: dict[str, State] = {}
    carried = None
    for statement in getattr(body, "body", ()):
        calls = _calls_of(statement, element)
        if not isinstance(statement, cst.SimpleStatementLine):
            if calls or _count_name(statement, element):
                return None, None
            _assign_states(statement, states, element, elementwise)
            continue
        for call in calls:
            if carried is not None or not call.args or call.args[0].keyword is not None:
                return None, None
            state = _state(call.args[0].value, states, element, elementwise)
            if not (isinstance(state, tuple) and state[0] == ENTRY):
                return None, None
            carried = state[1]
        _assign_states(statement, states, element, elementwise)
    if carried is None:
        return None, None
    end = states.get(carried, (ENTRY, carried))
    return (CHAINED if end == ELEMENT else SIDE_BY_SIDE if end == (ENTRY, carried) else None), carried


State = tuple[str, str] | str | None  # (ENTRY, name), ELEMENT, or None: not known
EXITS = (cst.Return, cst.Raise, cst.Break, cst.Continue)


def _assign_states(statement: cst.BaseStatement, states: dict[str, State], element: str, elementwise: set[str]) -> None:
    """What the variables a statement assigns are after it. An `if` keeps a variable's state where its
    branches agree (`if training: x = hk.dropout(k, r, x)` keeps `x`); other compound statements, and an
    `if` that leaves the iteration early, make what they assign unknown."""
    if isinstance(statement, cst.If) and not any(isinstance(n, EXITS) for n in descendants(statement)):
        branches = [_states_after(_statements(statement.body), states, element, elementwise)]
        orelse = statement.orelse
        branches.append(
            _states_after(_statements(orelse.body), states, element, elementwise) if isinstance(orelse, cst.Else)
            else _states_after([orelse], states, element, elementwise) if orelse is not None
            else dict(states)
        )
        for name in set().union(*branches):
            values = [branch.get(name, (ENTRY, name)) for branch in branches]
            states[name] = values[0] if all(v == values[0] for v in values) else None
    elif isinstance(statement, cst.SimpleStatementLine):
        for small in statement.body:
            if isinstance(small, cst.Assign) and len(small.targets) == 1 and isinstance(small.targets[0].target, cst.Name):
                states[small.targets[0].target.value] = _state(small.value, states, element, elementwise)
            elif isinstance(small, cst.Assign | cst.AugAssign | cst.AnnAssign):
                for name in _assigned(small):
                    states[name] = None
    else:
        for name in _assigned(statement):
            states[name] = None


def _statements(block: cst.BaseSuite) -> Sequence[cst.BaseStatement]:
    """A block's statements; a one-line suite's (`if t: x = f(x)`) as one line."""
    return block.body if isinstance(block, cst.IndentedBlock) else [cst.SimpleStatementLine(block.body)] if isinstance(block, cst.SimpleStatementSuite) else []


def _states_after(statements: Sequence[cst.BaseStatement], states: dict[str, State], element: str, elementwise: set[str]) -> dict[str, State]:
    after = dict(states)
    for statement in statements:
        _assign_states(statement, after, element, elementwise)
    return after


def _state(node: cst.BaseExpression, states: dict[str, State], element: str, elementwise: set[str]) -> State:
    """What a value is, in terms of one iteration: (ENTRY, name) (a variable as the iteration found it),
    ELEMENT (the layer's output), or None."""
    if isinstance(node, cst.Name):
        return states.get(node.value, (ENTRY, node.value))
    if isinstance(node, cst.Call):
        if m_name(node.func, element):
            return ELEMENT
        name = (dotted_name(node.func) or "").rsplit(".", 1)[-1]
        if name in elementwise and node.args and node.args[0].keyword is None:
            return _state(node.args[0].value, states, element, elementwise)
        if name == "dropout" and len(node.args) >= 3 and node.args[2].keyword is None:  # `hk.dropout(rng, rate, x)`
            return _state(node.args[2].value, states, element, elementwise)
        return None
    if isinstance(node, cst.BinaryOperation):
        sides = [_state(s, states, element, elementwise) for s in (node.left, node.right) if not isinstance(s, cst.Integer | cst.Float)]
        return sides[0] if len(sides) == 1 or (len(sides) == 2 and sides[0] == sides[1]) else None
    return None


class _CallsOf(Walker):
    def __init__(self, name: str) -> None:
        self.name = name
        self.found: list[cst.Call] = []

    def visit_Call(self, node: cst.Call) -> None:
        if m_name(node.func, self.name):
            self.found.append(node)


def _calls_of(node: cst.CSTNode, name: str) -> list[cst.Call]:
    walker = _CallsOf(name)
    walker.walk(node)
    return walker.found


class _Assigned(Walker):
    def __init__(self) -> None:
        self.names: set[str] = set()

    def visit_AssignTarget(self, node: cst.AssignTarget) -> None:
        self.names |= analysis.Names.of(node.target).used

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self.names |= analysis.Names.of(node.target).used

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        self.names |= analysis.Names.of(node.target).used

    def visit_For(self, node: cst.For) -> None:
        self.names |= analysis.Names.of(node.target).used


def _assigned(node: cst.CSTNode) -> set[str]:
    walker = _Assigned()
    walker.walk(node)
    return walker.names


def _bound_lists(node: cst.For, lists: dict[str, LayerList]) -> dict[str, str]:
    """Loop variable -> list attribute, for `for l in self.x`, `for i, l in enumerate(self.x)` and
    `for a, b in zip(self.x, self.y)`."""
    iterable: cst.BaseExpression = node.iter
    target: cst.BaseExpression = node.target
    if isinstance(iterable, cst.Call) and dotted_name(iterable.func) == "enumerate" and len(iterable.args) == 1:
        if not (isinstance(target, cst.Tuple) and len(target.elements) == 2):
            return {}
        iterable, target = iterable.args[0].value, target.elements[1].value
    if isinstance(iterable, cst.Call) and dotted_name(iterable.func) == "zip" and isinstance(target, cst.Tuple):
        pairs = list(zip([a.value for a in iterable.args], [e.value for e in target.elements], strict=False))
    else:
        pairs = [(iterable, target)]
    bound = {}
    for source, name in pairs:
        attribute = analysis.self_attribute(source)
        if attribute in lists and isinstance(name, cst.Name):
            bound[name.value] = attribute
    return bound


@dataclass
class _Loop:
    node: cst.For
    bound: dict[str, str]  # loop variable -> list attribute
    first: dict[str, cst.BaseExpression | None] = field(default_factory=dict)  # loop variable -> input size at its call


class _ListLoops:
    """The loops over layer lists around the statement being converted, innermost last."""

    def __init__(self) -> None:
        self.loops: list[_Loop] = []


@NNX_NODES.on_visit(cst.For, rule=RULE_LAYER_LIST)
def enter_list_loop(room: NnxMethod, node: cst.For) -> None:
    """`for layer in self.layers:` over a list `__init__` builds: its calls tell the layers' input sizes."""
    bound = _bound_lists(node, room.conversion.layer_lists)
    if bound:
        room.family(_ListLoops).loops.append(_Loop(node, bound))


@NNX_NODES.on_leave(cst.Call, rule=RULE_LAYER_LIST)
def call_listed_layer(room: NnxMethod, original: cst.Call, updated: cst.Call) -> cst.BaseExpression | None:
    """`layer(x)` in such a loop: the NNX layers' call arguments, the same for every layer of the list."""
    loops = room.family(_ListLoops).loops
    loop = loops[-1] if loops else None
    if loop is None or not isinstance(original.func, cst.Name) or original.func.value not in loop.bound:
        return None
    name = original.func.value
    layers = room.conversion.layer_lists[loop.bound[name]]
    if name not in loop.first and updated.args and updated.args[0].keyword is None:
        loop.first[name] = room.size_of(updated.args[0].value)
    element_args = [room.conversion.call_args_for(constructor, list(updated.args), room, constructor) for constructor in layers.constructors]
    converted = {code(cst.Call(cst.Name("_"), args)) if args is not None else None: args for args in element_args}
    listed = next(iter(converted.values()))
    if len(converted) != 1 or listed is None:
        room.todo(original, RULE_LAYER_LIST, f"the layers of `self.{layers.attribute}` take different call arguments in Flax; call each by hand")
        return updated
    return updated.with_changes(args=[a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in listed])


@NNX_NODES.on_leave(cst.For, rule=RULE_LAYER_LIST)
def leave_list_loop(room: NnxMethod, original: cst.For, updated: cst.For) -> None:
    """After the loop: the list is built in `__init__`, with the input sizes its calls told."""
    loops = room.family(_ListLoops).loops
    if not loops or loops[-1].node is not original:
        return
    loop = loops.pop()
    from ..targets.nnx import ELEMENTWISE  # the targets import the codemods

    for name, attribute in loop.bound.items():
        layers = room.conversion.layer_lists[attribute]
        if layers.replacements is not None:  # an earlier loop resolved it
            continue
        flow, carried = loop_flow(original.body, name, ELEMENTWISE) if name in loop.first else (None, None)
        resolve_layer_list(room.conversion, layers, flow, loop.first.get(name), room, original)
        if flow == CHAINED and carried is not None:
            room.set_variable_size(carried, layers.output_size)
