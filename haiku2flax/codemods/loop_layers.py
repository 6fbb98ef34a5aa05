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

from dataclasses import dataclass, field

import libcst as cst

from ..engine import analysis
from ..engine.calls import code
from ..engine.context import add_todo_lines, attr
from ..engine.names import dotted_name
from ..engine.registry import Status, register
from ..engine.rewriter import Rewriter
from ..engine.walk import Walker
from .layer_lists import IN_FEATURES, _assigned, _calls_of, _count_name
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
    stored: cst.BaseStatement | None  # `block = Block(...)`, None for a layer built and called at once
    refused: str | None = None  # why it stays as it is (a TODO reason)
    attribute: str | None = None
    built: cst.BaseExpression | None = None  # its NNX constructor
    output: cst.BaseExpression | None = None
    failed: bool = False


@dataclass
class _Loop:
    node: cst.For
    layers: list[_LoopLayer] = field(default_factory=list)
    chains: dict[str, tuple[str, cst.BaseExpression | None]] = field(default_factory=dict)  # carried variable -> (`__init__` variable, size before)
    hoisted_before: int = 0  # how many layers `__init__` built before the loop
    unresolved: list = field(default_factory=list)  # `__init__` layers whose input size was not known before the loop


class NnxLoopLayers(Rewriter):
    """Mixin of the NNX method rewriter: layers built in a `for` loop become an `nnx.List` (`loop_layer_call`
    is called first by the rewriter's `leave_Call`)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._loops: list[_Loop] = []
        self._loop_nodes: dict[int, tuple[str, _LoopLayer]] = {}  # original call -> ("constructor" | "call", layer)
        self._stored_results: dict[int, _LoopLayer] = {}  # rewritten stored line -> its layer

    # -- reading a loop -----------------------------------------------------------------------------
    def visit_For(self, node: cst.For) -> bool | None:
        loop = _Loop(node, self._layers_built_in(node))
        refusal = self._loop_refusal(node) if loop.layers else None
        if loop.layers and refusal is None and self._block_depth != 1:  # type: ignore[attr-defined]
            loop.layers = []  # inside an `if` on call arguments or a `with`: the generic TODO says so
        for layer in loop.layers:
            layer.refused = refusal or layer.refused
        if any(layer.refused is None for layer in loop.layers):
            self._start_chains(loop)
        self._loops.append(loop)
        return super().visit_For(node)

    def _layers_built_in(self, node: cst.For) -> list[_LoopLayer]:
        """The layers built in the statements of the loop's own block, in order."""
        statements = list(getattr(node.body, "body", ()))
        layers: list[_LoopLayer] = []
        taken = analysis.Names.of(self.method).used  # type: ignore[attr-defined]
        targets = analysis.Names.of(node.target).used
        for index, statement in enumerate(statements):
            if not isinstance(statement, cst.SimpleStatementLine):
                continue
            skipped = _continue_refusal(statements[:index])
            stored = self._stored_in_loop(statement, statements[index + 1 :])
            if stored is not None:
                name, constructor, calls = stored
                layer = _LoopLayer(constructor, name, statement, self._argument_refusal(constructor, targets) or skipped)
                self._loop_nodes[id(constructor)] = ("constructor", layer)
                self._loop_nodes.update({id(call): ("call", layer) for call in calls})
                layers.append(layer)
                continue
            for call in _built_and_called(statement, self.state.converter.is_module_constructor):  # type: ignore[attr-defined]
                base = analysis.explicit_name(call.func) or _module_name(call.func, self.ctx.names.haiku_api(call.func.func))  # type: ignore[arg-type]
                element = _free(base, taken)
                taken.add(element)
                layer = _LoopLayer(call.func, element, None, self._argument_refusal(call.func, targets) or skipped)  # type: ignore[arg-type]
                self._loop_nodes[id(call.func)] = ("constructor", layer)
                self._loop_nodes[id(call)] = ("call", layer)
                layers.append(layer)
        return layers

    def _stored_in_loop(self, statement: cst.SimpleStatementLine, later: list[cst.BaseStatement]):
        """(name, constructor, calls) for `name = Layer(...)` only called in the loop's later statements."""
        assign = analysis.simple_assign(statement)
        if not (
            assign is not None
            and isinstance(assign[0], cst.Name)
            and isinstance(assign[1], cst.Call)
            and not any(line.comment for line in statement.leading_lines)  # its comments would have nowhere to go
            and self.state.converter.is_module_constructor(assign[1])  # type: ignore[attr-defined]
        ):
            return None
        name = assign[0].value
        calls = [call for s in later if isinstance(s, cst.SimpleStatementLine) for call in _calls_of(s, name)]
        if not calls or _count_name(self.method, name) != 1 + len(calls):  # type: ignore[attr-defined]
            return None
        return name, assign[1], calls

    def _argument_refusal(self, constructor: cst.Call, targets: set[str]) -> str | None:
        used = analysis.Names.of(constructor).used
        blocked = sorted((used & self.method_locals) - self.state.locals_in_init - targets)  # type: ignore[attr-defined]
        if blocked:
            return (f"its arguments use {_listed(blocked)}, computed in the method: NNX builds one layer per iteration in "
                    "`__init__`, from the loop variable and constructor state only; compute them there")
        return None

    def _loop_refusal(self, node: cst.For) -> str | None:
        """Why none of the loop's layers can be built in `__init__`, or None."""
        if self._loops:
            return ("it is built in a loop nested in another loop; build the layers in `__init__` by hand "
                    "(an `nnx.List` of `nnx.List`s, or one flat list) and apply them in the same loops")
        if not all(isinstance(n, cst.Name) for n in _target_names(node.target)):
            return f"the loop target `{code(node.target)}` is not a name or a tuple of names; build the layers in `__init__` by hand"
        iterable = node.iter
        blocked = sorted((analysis.Names.of(iterable).used & self.method_locals) - self.state.locals_in_init)  # type: ignore[attr-defined]
        params = {p.name.value for p in [*self.method.params.params, *self.method.params.kwonly_params]}  # type: ignore[attr-defined]
        if blocked:
            what = "a call argument" if set(blocked) <= params else "computed in the method"
            return (f"the loop runs over `{code(iterable)}`, which reads {_listed(blocked)} ({what}): NNX builds the layers "
                    "in `__init__`, so it must know how many; pass what decides it to the constructor")
        if not self.branches.is_constructor_condition(iterable):  # type: ignore[attr-defined]
            return (f"the loop runs over `{code(iterable)}`, which `__init__` cannot evaluate the same way (an attribute it "
                    "does not set, a method call or Haiku state); build the layers in `__init__` by hand")
        exits = [e for e in _exits([node.body]) if e != "continue"]
        if exits:
            return (f"a `{exits[0]}` in the loop can end it before every iteration has built its layer, and NNX builds them "
                    "all in `__init__`; build the layers there by hand")
        return None

    def _start_chains(self, loop: _Loop) -> None:
        """Sizes of the variables the loop carries (read, then assigned) become `__init__` variables, so each
        iteration's input sizes are in terms of what the previous one left."""
        body = loop.node.body
        carried = sorted(_carried(body) - analysis.Names.of(loop.node.target).used)
        taken = analysis.Names.of(self.state.init_def).used if self.state.init_def is not None else set()  # type: ignore[attr-defined]
        taken |= self.state.init_locals | analysis.Names.of(loop.node).used  # type: ignore[attr-defined]
        for variable in carried:
            name = _free(IN_FEATURES, taken)
            taken.add(name)
            loop.chains[variable] = (name, self.sizes.get(variable))  # type: ignore[attr-defined]
            self.sizes[variable] = cst.Name(name)  # type: ignore[attr-defined]
        loop.hoisted_before = len(self.state.hoisted)  # type: ignore[attr-defined]
        loop.unresolved = [layer for layer in self.state.init_layers.values() if layer.resolved is None]  # type: ignore[attr-defined]

    def carried_size(self, sizes: list[cst.BaseExpression | None]) -> cst.BaseExpression | None:
        """`x + layer(x)` in a loop, where `x`'s size is what the iteration was handed: the two agree (as
        they must, to add), so the size stays the one handed on."""
        chains = {name for loop in self._loops for name, _ in loop.chains.values()}
        handed = [s for s in sizes if isinstance(s, cst.Name) and s.value in chains]
        return handed[0] if len(handed) == 1 and all(s is not None for s in sizes) else None

    # -- the loop's calls -----------------------------------------------------------------------------
    def loop_layer_call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression | None:
        """The NNX form of a call this rule owns (a loop layer's constructor or its application), or None."""
        entry = self._loop_nodes.get(id(original))
        if entry is None:
            return None
        kind, layer = entry
        if kind == "constructor":
            if layer.refused is not None:
                self.todo(original, RULE_LOOP_LAYERS, layer.refused)
            return updated
        if layer.refused is not None or layer.failed:
            return updated
        args = self.state.call_args_for(layer.constructor, list(updated.args), self, original)  # type: ignore[attr-defined]
        if args is None:
            layer.failed = layer.built is None
            return updated
        if layer.built is None:
            attribute = self.new_attribute(_plural(layer.element))  # type: ignore[attr-defined]
            built = self.state.build(layer.constructor, attribute, list(updated.args), self, layer.constructor)  # type: ignore[attr-defined]
            if built is None:
                layer.failed = True
                return updated
            layer.attribute, (layer.built, layer.output) = attribute, built
        applied = updated.with_changes(func=cst.Name(layer.element), args=[a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in args])
        return self.set_size(applied, layer.output)  # type: ignore[attr-defined]

    def leave_SimpleStatementLine(self, original: cst.SimpleStatementLine, updated: cst.SimpleStatementLine):
        result = super().leave_SimpleStatementLine(original, updated)
        entry = self._loop_nodes.get(id(analysis.simple_assign(original)[1])) if analysis.simple_assign(original) else None
        if entry is not None and entry[1].stored is original:
            self._stored_results[id(result)] = entry[1]
        return result

    # -- the loop, rewritten --------------------------------------------------------------------------
    def leave_For(self, original: cst.For, updated: cst.For):
        loop = self._loops.pop()
        built = [layer for layer in loop.layers if layer.built is not None]
        ends = self._end_chains(loop, built) if loop.chains else {}
        if built:
            self._build_in_init(loop, built, ends)
            updated = _applying_loop(original, updated, built, self._stored_results)
            listed = ", ".join(f"self.{layer.attribute}" for layer in built)
            self.converted(original, RULE_LOOP_LAYERS, f"{listed} built in __init__ as {self.ctx.ns}.List, one layer per iteration")
        return super().leave_For(original, updated)

    def _end_chains(self, loop: _Loop, built: list[_LoopLayer]) -> dict[str, cst.BaseExpression | None]:
        """The carried sizes `__init__` must chain (`__init__` variable -> its value after an iteration, None:
        unknown); the others are the same at every iteration. Sets the sizes after the loop."""
        sizes: dict = self.sizes  # type: ignore[attr-defined]
        hoisted = self.state.hoisted[loop.hoisted_before :]  # type: ignore[attr-defined]  # built once, first called in the loop
        once = [entry.constructor for entry in hoisted] + [layer.resolved for layer in loop.unresolved if layer.resolved is not None]
        referenced = set().union(*(analysis.Names.of(n).used for n in [*(layer.built for layer in built), *once]))  # type: ignore[misc]
        targets = analysis.Names.of(loop.node.target).used
        chain_names = {name for name, _ in loop.chains.values()}
        foreign = (self.method_locals - self.state.locals_in_init) | targets  # type: ignore[attr-defined]
        kept: dict[str, cst.BaseExpression | None] = {}  # `__init__` variable -> the size before the loop
        ends: dict[str, cst.BaseExpression | None] = {}
        for variable, (name, before) in list(loop.chains.items()):
            end = sizes.get(variable)
            if end is not None and analysis.Names.of(end).used & (foreign - targets) - chain_names:
                end = None
            if name in referenced and built:  # the first layer's input size (a constructor argument where nobody knows it)
                before = self.state.input_size(built[0].attribute, before, self, loop.node)  # type: ignore[attr-defined]
                loop.chains[variable] = (name, before)
            if end is not None and code(end) == name:
                kept[name] = before
            elif name in referenced:
                ends[name] = end
        first = {name: before for name, before in loop.chains.values() if before is not None}
        for layer in built:
            layer.built = analysis.substitute(layer.built, {n: b for n, b in kept.items() if b is not None})  # type: ignore[arg-type]
        for entry in hoisted:  # Haiku built them at the first iteration
            entry.constructor = analysis.substitute(entry.constructor, first)
        for layer in loop.unresolved:
            if layer.resolved is not None:
                layer.resolved = analysis.substitute(layer.resolved, first)
        for variable in _assigned(loop.node.body) | targets:
            name = loop.chains[variable][0] if variable in loop.chains else None
            size = sizes.get(variable)
            if name in ends:
                sizes[variable] = cst.Name(name) if ends[name] is not None and self._init_statements_resolved() else None
            elif name is not None:
                sizes[variable] = kept.get(name)
            elif size is not None:
                size = analysis.substitute(size, {n: b for n, b in kept.items() if b is not None})
                sizes[variable] = None if analysis.Names.of(size).used & (targets | chain_names) else size
        loop.chains = {variable: chain for variable, chain in loop.chains.items() if chain[0] in ends}
        return ends

    def _init_statements_resolved(self) -> bool:
        """Are the layers `__init__` itself builds all resolved? An `__init__` variable of the hoisted
        statements is not defined where they are, so no size of theirs may read one."""
        state = self.state  # type: ignore[attr-defined]
        return all(layer.resolved is not None for layer in state.init_layers.values()) and all(
            layers.replacements is not None for layers in state.layer_lists.values()
        )

    def _build_in_init(self, loop: _Loop, built: list[_LoopLayer], ends: dict[str, cst.BaseExpression | None]) -> None:
        """`self.<list> = nnx.List([... for <target> in <iterable>])`, or, where sizes chain, a loop appending."""
        ns, node = self.ctx.ns, loop.node
        if not ends:
            lines: list[cst.BaseStatement] = [
                _assign(attr("self", layer.attribute), cst.Call(attr(ns, "List"), [cst.Arg(cst.ListComp(layer.built, cst.CompFor(node.target, node.iter)))]))  # type: ignore[arg-type]
                for layer in built
            ]
        else:
            appends = [
                _line(cst.Expr(cst.Call(cst.Attribute(attr("self", layer.attribute), cst.Name("append")), [cst.Arg(layer.built)])))  # type: ignore[arg-type]
                for layer in built
            ]
            lines = [
                *(_assign(attr("self", layer.attribute), cst.Call(attr(ns, "List"), [])) for layer in built),  # type: ignore[arg-type]
                *(_assign(cst.Name(name), before if before is not None else cst.Ellipsis()) for name, before in loop.chains.values()),
                cst.For(node.target, node.iter, cst.IndentedBlock([*appends, *(_assign(cst.Name(n), e if e is not None else cst.Ellipsis()) for n, e in ends.items())])),
            ]
            unknown = [name for name, end in ends.items() if end is None]
            if unknown:
                reason = (f"set `{unknown[0]}` to the feature size an iteration leaves, in place of `...`: the input size of "
                          f"the layers of `self.{built[0].attribute}` after the first is not known")
                self.ctx.notes.todo(node, RULE_INPUT_SIZE, reason)
                lines[0] = add_todo_lines(lines[0], [(RULE_INPUT_SIZE, reason)])
            self.state.init_locals |= set(ends)  # type: ignore[attr-defined]
        for index, layer in enumerate(built):
            self.add_to_init(layer.attribute, layer.built, layer.constructor, lines=lines if index == 0 else [])  # type: ignore[attr-defined]


def _applying_loop(original: cst.For, updated: cst.For, built: list[_LoopLayer], stored_results: dict[int, _LoopLayer]) -> cst.For:
    """The method's loop over the built lists: `for block in self.blocks:`, `self.blocks[i]` over a
    `range(n)` whose `i` is still read, or a `zip` with the iterable."""
    layers = {id(layer) for layer in built}
    body = [s for s in updated.body.body if id(stored_results.get(id(s))) not in layers]  # type: ignore[attr-defined]
    if body and body[0] is not updated.body.body[0] and not any(line.comment for line in body[0].leading_lines):  # type: ignore[attr-defined]
        body[0] = body[0].with_changes(leading_lines=[])
    block = updated.body.with_changes(body=body or [_line(cst.Pass())])
    lists = [attr("self", layer.attribute) for layer in built]  # type: ignore[arg-type]
    elements = [cst.Name(layer.element) for layer in built]
    if not analysis.Names.of(original.target).used & analysis.Names.of(block).used:
        if len(built) == 1:
            return updated.with_changes(target=elements[0], iter=lists[0], body=block)
        return updated.with_changes(target=_bare_tuple(elements), iter=_zip(lists), body=block)
    if isinstance(original.target, cst.Name) and _is_range(original.iter):
        return updated.with_changes(body=block.visit(_Indexed({layer.element: layer.attribute for layer in built}, original.target)))  # type: ignore[misc]
    target = updated.target if not isinstance(updated.target, cst.Tuple) else updated.target.with_changes(lpar=[cst.LeftParen()], rpar=[cst.RightParen()])
    return updated.with_changes(target=_bare_tuple([target, *elements]), iter=_zip([updated.iter, *lists]), body=block)


class _Indexed(cst.CSTTransformer):
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
    def __init__(self, is_layer) -> None:
        self.is_layer = is_layer
        self.found: list[cst.Call] = []

    def visit_Call(self, node: cst.Call) -> None:
        if isinstance(node.func, cst.Call) and self.is_layer(node.func):
            self.found.append(node)


def _built_and_called(statement: cst.CSTNode, is_layer) -> list[cst.Call]:
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


def _exits(nodes: list[cst.CSTNode]) -> list[str]:
    walker = _Exits()
    for node in nodes:
        walker.walk(node)
    return walker.found


def _continue_refusal(before: list[cst.BaseStatement]) -> str | None:
    if "continue" in _exits(before):  # type: ignore[arg-type]
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


def _free(base: str, taken: set[str]) -> str:
    candidate, index = base, 0
    while candidate in taken:
        index += 1
        candidate = f"{base}_{index}"
    return candidate


def _listed(names: list[str]) -> str:
    return ", ".join(f"`{n}`" for n in names)
