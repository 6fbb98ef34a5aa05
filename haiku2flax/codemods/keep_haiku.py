"""`--keep-haiku-modules`: a module that cannot be converted stays in Haiku, and Flax code runs it.

What it does: a conversion first runs as usual. Every `hk.Module` class that comes out with a TODO
(and every Haiku class such a class uses) is then kept exactly as it was, and the rest of the file is
converted around it: where Flax code builds a kept module, it builds it through the interop wrapper
that dm-haiku ships, `hk.experimental.flax.Module.create(Cls, *args)`, a Linen module that runs
`hk.transform_with_state` of the class and stores its Haiku params (and state) in Linen variables:
- Linen: `Encoder(self.hidden)(xs)` -> `hk.experimental.flax.Module.create(Encoder, self.hidden)(xs)`
  (the method gets `@nn.compact` if it lacks it). The Haiku params live under the wrapper's scope
  (`Module_0`), with Haiku's own module paths below it (`Module_0/encoder/gru/w_i`).
- NNX: Flax's bridge turns that Linen module into an NNX one: `self.encoder =
  nnx.bridge.ToNNX(hk.experimental.flax.Module.create(Encoder, hidden), rngs=rngs)` is built in
  `__init__` (`self.x` arguments become `__init__`'s own), and the call becomes `self.encoder(xs)`.
  A bridged Linen module makes its variables from its first input, so call
  `nnx.bridge.lazy_init(model, sample_input)` once after building the model.

A kept module that draws random keys (`hk.next_rng_key()`) gets them from the wrapper's `apply` rng
stream: pass `rngs={'params': key, 'apply': key2}` to Linen's `init`/`apply`, or give NNX's
`nnx.Rngs` an `apply` stream. Example: fixtures/staged/attention_encoder (attention whose values are
wider than its keys, which has no Flax equivalent, kept in Haiku; outputs equal to the all-Haiku
model's on the same weights).

Why: a migration should not wait for its hardest module. The interop exists in one direction only:
Haiku ships a Flax module running Haiku code (used here) and `hk.experimental.flax.lift` running
Flax code inside Haiku; Flax ships `nnx.bridge.ToNNX`/`ToLinen` between its own two APIs and nothing
for Haiku. So the converted (Flax) side calls the kept (Haiku) side, never the reverse, which is why a
Haiku class used by a kept class is kept too.

Each kept class gets a TODO (HK900) saying which rules could not convert it; migrate it later by
running without `--keep-haiku-modules` and reading those rules' TODOs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import libcst as cst
from libcst.metadata import MetadataWrapper, PositionProvider

from ..documents import anchor_output_notes
from ..engine.context import attr, linen_namespace
from ..engine.names import ImportedNames, dotted_name
from ..engine.notes import Note, Outcome, todo_comment
from ..engine.pipeline import HAIKU, Conversion, ConversionError, convert_source
from ..engine.registry import Status, register
from ..engine.tables import Tables
from ..engine.walk import Transformer
from .transforms import RULE_INPUT_SIZE

RULE_KEEP = register(
    "HK900",
    "keep-haiku-module",
    Status.PARTIAL,
    "--keep-haiku-modules: an unconvertible module stays in Haiku, run from Flax via hk.experimental.flax.Module",
    __name__,
)

KEPT_MARKER = "pass  # haiku2flax-kept {}"
KEPT_MARKER_LINE = re.compile(r"^pass  # haiku2flax-kept (\d+)$")
FILLER = "# haiku2flax-kept-line"  # keeps the masked source's line numbers those of the original
INTEROP_NAME = "haiku2flax_interop_{}"
INTEROP_NAME_PATTERN = re.compile(r"\bhaiku2flax_interop_(\d+)\b")
RULE_FROM_TODO = re.compile(r"# TODO\(haiku2flax:(HK\d+)\)")
CREATE = "experimental.flax.Module.create"
# TODOs that do not make a class unconvertible: an input size to pass (HK006), an earlier run's HK900.
NOT_BLOCKING = {RULE_INPUT_SIZE, RULE_KEEP}
RNG_APIS = {"next_rng_key", "next_rng_keys", "maybe_next_rng_key", "reserve_rng_keys"}


def _snake_case(name: str) -> str:
    """Haiku's default module name for a class (`NoisyBlock` -> `noisy_block`)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _is_haiku_module(node: cst.ClassDef, names: ImportedNames) -> bool:
    return any(names.haiku_api(base.value) == "Module" for base in node.bases)


class _NameCollector(cst.CSTVisitor):
    def __init__(self) -> None:
        self.names: set[str] = set()

    def visit_Name(self, node: cst.Name) -> None:
        self.names.add(node.value)


def _names_in(node: cst.CSTNode) -> set[str]:
    collector = _NameCollector()
    node.visit(collector)
    return collector.names


def _kept_classes(source_module: cst.Module, first: Conversion, names: ImportedNames) -> dict[str, list[str]]:
    """Haiku module classes the first conversion left TODOs in, and those they use: name -> blocking rules."""
    haiku_classes = {s.name.value: s for s in source_module.body if isinstance(s, cst.ClassDef) and _is_haiku_module(s, names)}
    converted = cst.parse_module(first.code)
    kept: dict[str, list[str]] = {}
    for statement in converted.body:
        if isinstance(statement, cst.ClassDef) and statement.name.value in haiku_classes:
            blocking = set(RULE_FROM_TODO.findall(converted.code_for_node(statement))) - NOT_BLOCKING
            if blocking:
                kept[statement.name.value] = sorted(blocking)
    pending = list(kept)
    while pending:  # Haiku code can only call Haiku modules: keep what kept classes use
        for used in sorted(_names_in(haiku_classes[pending.pop()]) & haiku_classes.keys() - kept.keys()):
            kept[used] = []
            pending.append(used)
    return kept


# -- masking: what the second conversion must not touch ---------------------------------------------


class _MaskInterop(Transformer):
    """Replace `hk.experimental.flax.…` (interop written by an earlier run) by a name no rule knows."""

    def __init__(self, names: ImportedNames, module: cst.Module) -> None:
        super().__init__()
        self.names = names
        self.module = module
        self.originals: list[str] = []

    def leave_Attribute(self, original: cst.Attribute, updated: cst.Attribute) -> cst.BaseExpression:
        api = self.names.haiku_api(original)
        if api is None or not api.startswith("experimental.flax."):
            return updated
        self.originals.append(self.module.code_for_node(original))
        return cst.Name(INTEROP_NAME.format(len(self.originals) - 1))


def _mask(module: cst.Module, kept: dict[str, list[str]], names: ImportedNames) -> tuple[str, list[str], list[str]]:
    """The source with each kept class replaced by a marker and filler lines (same line count), the
    classes' text, and the interop expressions masked."""
    body: list[cst.BaseStatement] = []
    classes: list[str] = []
    fillers: list[cst.EmptyLine] = []
    for statement in module.body:
        if fillers:
            statement = statement.with_changes(leading_lines=[*fillers, *statement.leading_lines])
            fillers = []
        if isinstance(statement, cst.ClassDef) and statement.name.value in kept:
            text = module.code_for_node(statement.with_changes(leading_lines=[]))
            marker = cst.parse_statement(KEPT_MARKER.format(len(classes))).with_changes(leading_lines=statement.leading_lines)
            classes.append(text)
            fillers = [cst.EmptyLine(indent=False, comment=cst.Comment(FILLER))] * (text.count("\n") - 1)
            body.append(marker)
            continue
        body.append(statement)
    footer = [*fillers, *module.footer]
    masked = module.with_changes(body=body, footer=footer)
    interop = _MaskInterop(names, masked)
    masked = masked.visit(interop)
    return masked.code, classes, interop.originals


# -- bridging: Flax code that uses a kept class -----------------------------------------------------


def _haiku_alias(names: ImportedNames) -> str | None:
    return next((local for local, full in names.aliases.items() if full == HAIKU), None)


def _create(alias: str, cls: str, args: list[cst.Arg]) -> cst.Call:
    """`hk.experimental.flax.Module.create(Cls, *args)`."""
    first = cst.Arg(cst.Name(cls), comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")) if args else cst.MaybeSentinel.DEFAULT)
    return cst.Call(func=cst.parse_expression(f"{alias}.{CREATE}"), args=[first, *args])


def _flax_module_base(node: cst.ClassDef, ns: str) -> bool:
    return any(dotted_name(base.value) in (f"{ns}.Module", f"{ns}.nn.Module") for base in node.bases)


def _kept_call(node: cst.BaseExpression, kept: dict[str, list[str]]) -> str | None:
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Name) and node.func.value in kept:
        return node.func.value
    return None


class _LinenBridge(Transformer):
    """Linen: build kept classes through the wrapper; a method that does so becomes `@nn.compact`."""

    def __init__(self, kept: dict[str, list[str]], alias: str, ns: str) -> None:
        super().__init__()
        self.kept = kept
        self.alias = alias
        self.ns = ns  # the output's name for flax.linen
        self.used: set[str] = set()
        self._classes: list[bool] = []  # per open class: is it a Linen module
        self._methods: list[bool] = []  # per open function: does it build a kept class

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self._classes.append(_flax_module_base(node, self.ns))

    def leave_ClassDef(self, original: cst.ClassDef, updated: cst.ClassDef) -> cst.ClassDef:
        self._classes.pop()
        return updated

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self._methods.append(False)

    def leave_FunctionDef(self, original: cst.FunctionDef, updated: cst.FunctionDef) -> cst.FunctionDef:
        builds = self._methods.pop()
        decorators = {dotted_name(d.decorator) for d in updated.decorators}
        if builds and updated.name.value != "setup" and f"{self.ns}.compact" not in decorators:
            return updated.with_changes(decorators=[*updated.decorators, cst.Decorator(attr(self.ns, "compact"))])
        return updated

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        cls = _kept_call(updated, self.kept)
        if cls is None or not (self._classes and self._classes[-1] and self._methods):
            return updated
        self._methods[-1] = True
        self.used.add(cls)
        return _create(self.alias, cls, list(updated.args))


class _NnxBridge(Transformer):
    """NNX: kept classes are built once, in `__init__`, as `nnx.bridge.ToNNX(<wrapper>, rngs=rngs)`."""

    def __init__(self, kept: dict[str, list[str]], alias: str) -> None:
        super().__init__()
        self.kept = kept
        self.alias = alias
        self.used: set[str] = set()
        self.problems: dict[str, list[str]] = {}
        self._class: list[_NnxClass | None] = []
        self._method: list[tuple[str, set[str]]] = []  # open functions: name, locals

    def _bridge(self, cls: str, args: list[cst.Arg]) -> cst.Call:
        return cst.Call(
            func=cst.parse_expression("nnx.bridge.ToNNX"),
            args=[
                cst.Arg(_create(self.alias, cls, args), comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))),
                cst.Arg(cst.Name("rngs"), keyword=cst.Name("rngs"), equal=cst.AssignEqual(cst.SimpleWhitespace(""), cst.SimpleWhitespace(""))),
            ],
        )

    def visit_ClassDef(self, node: cst.ClassDef) -> None:
        self._class.append(_NnxClass.of(node) if _flax_module_base(node, "nnx") else None)

    def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
        self._method.append((node.name.value, _locals(node)))

    def leave_FunctionDef(self, original: cst.FunctionDef, updated: cst.FunctionDef) -> cst.FunctionDef:
        self._method.pop()
        return updated

    def leave_ClassDef(self, original: cst.ClassDef, updated: cst.ClassDef) -> cst.ClassDef:
        info = self._class.pop()
        if info is None or not info.hoisted:
            return updated
        unread = info.moved - _attributes_read(updated)
        body = []
        for statement in updated.body.body:
            if isinstance(statement, cst.FunctionDef) and statement.name.value == "__init__":
                block = statement.body
                assert isinstance(block, cst.IndentedBlock)
                kept = [line for line in block.body if not _stores_copy(line, unread)]
                statement = statement.with_changes(body=block.with_changes(body=[*kept, *info.hoisted]))
            body.append(statement)
        return updated.with_changes(body=updated.body.with_changes(body=body))

    def _problem(self, cls: str, problem: str) -> None:
        self.problems.setdefault(cls, []).append(problem)

    def leave_Call(self, original: cst.Call, updated: cst.Call) -> cst.BaseExpression:
        info = self._class[-1] if self._class else None
        if info is None or not self._method:
            return updated
        method, method_locals = self._method[-1]
        cls = _kept_call(updated, self.kept)
        if cls is not None and method == "__init__":  # `self.x = Kept(...)` in __init__
            if not info.has_rngs:
                self._problem(cls, f"`{info.name}.__init__` takes no `rngs` to pass to `nnx.bridge.ToNNX`")
                return updated
            self.used.add(cls)
            return self._bridge(cls, list(updated.args))
        cls = _kept_call(updated.func, self.kept)
        if cls is None:
            return updated
        assert isinstance(updated.func, cst.Call)
        args = info.init_args(updated.func.args, method_locals)
        if args is None or not info.has_rngs:
            why = "its arguments use the method's own values" if args is None else f"`{info.name}.__init__` takes no `rngs`"
            self._problem(cls, f"a call in `{info.name}.{method}` could not be built in `__init__` ({why})")
            return updated
        attribute = info.new_attribute(_snake_case(cls))
        info.hoisted.append(cst.parse_statement(f"self.{attribute} = _"))  # the value is filled in below
        statement = info.hoisted[-1]
        assert isinstance(statement, cst.SimpleStatementLine)
        assign = statement.body[0]
        assert isinstance(assign, cst.Assign)
        info.hoisted[-1] = statement.with_changes(body=[assign.with_changes(value=self._bridge(cls, args))])
        self.used.add(cls)
        return updated.with_changes(func=cst.parse_expression(f"self.{attribute}"))


class _NnxClass:
    """What hoisting into an NNX class's `__init__` needs: its parameters and attributes."""

    def __init__(self, name: str, parameters: set[str], attributes: set[str]) -> None:
        self.name = name
        self.parameters = parameters
        self.attributes = attributes
        self.hoisted: list[cst.BaseStatement] = []
        self.moved: set[str] = set()  # attributes hoisted arguments read, now read from `__init__`'s parameters

    @property
    def has_rngs(self) -> bool:
        return "rngs" in self.parameters

    @classmethod
    def of(cls, node: cst.ClassDef) -> _NnxClass:
        parameters: set[str] = set()
        attributes: set[str] = set()
        for statement in node.body.body:
            if isinstance(statement, cst.FunctionDef) and statement.name.value == "__init__":
                params = statement.params
                every = [*params.posonly_params, *params.params, *params.kwonly_params]
                parameters = {p.name.value for p in every}
                attributes = {
                    target.target.attr.value
                    for assign in _assignments(statement)
                    for target in assign.targets
                    if isinstance(target.target, cst.Attribute) and dotted_name(target.target.value) == "self"
                }
        return cls(node.name.value, parameters, attributes)

    def new_attribute(self, base: str) -> str:
        name, index = base, 0
        while name in self.attributes:
            index += 1
            name = f"{base}_{index}"
        self.attributes.add(name)
        return name

    def init_args(self, args: Sequence[cst.Arg], method_locals: set[str]) -> list[cst.Arg] | None:
        """The arguments as `__init__` can write them (`self.size` -> `size`), or None when they read
        the calling method's own values."""
        if any(_free_names(arg.value) & (method_locals - {"self"}) for arg in args):
            return None
        rewrite = _SelfToParameter(self.parameters, self.attributes)
        rewritten = [cst.ensure_type(arg.visit(rewrite), cst.Arg) for arg in args]  # only attributes are replaced
        if rewrite.failed:
            return None
        self.moved |= rewrite.moved
        return rewritten


def _assignments(node: cst.CSTNode) -> list[cst.Assign]:
    found: list[cst.Assign] = []

    class Visitor(cst.CSTVisitor):
        def visit_Assign(self, assign: cst.Assign) -> None:
            found.append(assign)

    node.visit(Visitor())
    return found


def _free_names(node: cst.CSTNode) -> set[str]:
    """The names an expression reads (`a` in `a.b[c]` and `c`, not the attribute `b`)."""
    found: set[str] = set()

    class Visitor(cst.CSTVisitor):
        def visit_Attribute(self, attribute: cst.Attribute) -> bool:
            attribute.value.visit(self)
            return False

        def visit_Name(self, name: cst.Name) -> None:
            found.add(name.value)

    node.visit(Visitor())
    return found


def _locals(node: cst.FunctionDef) -> set[str]:
    """A method's parameters and the plain names it assigns."""
    params = node.params
    names = {p.name.value for p in [*params.posonly_params, *params.params, *params.kwonly_params]}
    for extra in (params.star_arg, params.star_kwarg):
        if isinstance(extra, cst.Param):
            names.add(extra.name.value)
    for assign in _assignments(node):
        for target in assign.targets:
            names |= {n for n in _free_names(target.target) if isinstance(target.target, cst.Name | cst.Tuple | cst.List)}
    return names


def _attributes_read(node: cst.ClassDef) -> set[str]:
    """`x` for every `self.x` the class reads (assignment targets do not count)."""
    read: set[str] = set()

    class Visitor(cst.CSTVisitor):
        def visit_AssignTarget(self, target: cst.AssignTarget) -> bool:
            return not isinstance(target.target, cst.Attribute)

        def visit_Attribute(self, attribute: cst.Attribute) -> None:
            if dotted_name(attribute.value) == "self":
                read.add(attribute.attr.value)

    node.visit(Visitor())
    return read


def _stores_copy(statement: cst.BaseStatement, names: set[str]) -> bool:
    """Whether the statement is `self.x = x` for an `x` in `names`."""
    if not (isinstance(statement, cst.SimpleStatementLine) and len(statement.body) == 1 and isinstance(statement.body[0], cst.Assign)):
        return False
    assign = statement.body[0]
    [target] = assign.targets if len(assign.targets) == 1 else [None]
    return (
        target is not None
        and isinstance(target.target, cst.Attribute)
        and dotted_name(target.target.value) == "self"
        and isinstance(assign.value, cst.Name)
        and assign.value.value == target.target.attr.value
        and target.target.attr.value in names
    )


class _SelfToParameter(Transformer):
    """`self.x` -> `x` where `__init__` takes `x`; fails on an attribute `__init__` does not have."""

    def __init__(self, parameters: set[str], attributes: set[str]) -> None:
        super().__init__()
        self.parameters = parameters
        self.attributes = attributes
        self.failed = False
        self.moved: set[str] = set()

    def leave_Attribute(self, original: cst.Attribute, updated: cst.Attribute) -> cst.BaseExpression:
        if dotted_name(original.value) == "self":
            if original.attr.value in self.parameters:
                self.moved.add(original.attr.value)
                return cst.Name(original.attr.value)
            self.failed |= original.attr.value not in self.attributes
        return updated


# -- putting it together ----------------------------------------------------------------------------


def _ensure_imports(code: str, source_module: cst.Module, needed: set[str]) -> str:
    """Re-add the original imports binding `needed` names that the conversion dropped, where they were."""
    module = cst.parse_module(code)
    present = {module.code_for_node(s).strip() for s in module.body if isinstance(s, cst.SimpleStatementLine)}
    missing = []
    for statement in source_module.body:
        if isinstance(statement, cst.SimpleStatementLine) and any(isinstance(s, cst.Import | cst.ImportFrom) for s in statement.body):
            text = source_module.code_for_node(statement.with_changes(leading_lines=[])).strip()
            if text not in present and _names_in(statement) & needed:
                missing.append(text)
    if not missing:
        return code
    lines = code.split("\n")
    imports = [i for i, line in enumerate(lines) if re.match(r"(?:import|from)\s", line)]
    at = next((i for i in imports if "flax" in lines[i]), imports[-1] + 1 if imports else 0)
    lines[at:at] = missing
    return "\n".join(lines)


def _splice(code: str, classes: list[str], todos: dict[int, str]) -> str:
    """Put the kept classes back where their markers are (with their TODO), drop the filler lines."""
    out: list[str] = []
    for line in code.split("\n"):
        if line == FILLER:
            continue
        marker = KEPT_MARKER_LINE.match(line)
        if marker is None:
            out.append(line)
            continue
        index = int(marker.group(1))
        comment = todo_comment(RULE_KEEP, todos[index])
        if not out or out[-1] != comment:
            out.append(comment)
        out.extend(classes[index].rstrip("\n").split("\n"))
    return "\n".join(out)


def _message(cls: str, rules: list[str], target: str, problems: list[str], draws_keys: bool) -> str:
    why = f"{', '.join(rules)} could not convert it" if rules else "kept classes use it"
    wrapper = "`hk.experimental.flax.Module`" if target == "linen" else "`nnx.bridge.ToNNX(hk.experimental.flax.Module…)`"
    parts = [f"`{cls}` stays in Haiku ({why}); the Flax code runs it through {wrapper}"]
    if target == "nnx":
        parts.append("call `nnx.bridge.lazy_init(model, sample_input)` once after building the model")
    if draws_keys:
        parts.append("its random keys come from the `apply` rng stream" + (": pass `rngs={'params': k1, 'apply': k2}`" if target == "linen" else ": give `nnx.Rngs` an `apply` stream"))
    parts += problems
    return "; ".join(parts)


def _draws_keys(node: cst.ClassDef, names: ImportedNames) -> bool:
    found = []

    class Visitor(cst.CSTVisitor):
        def visit_Call(self, call: cst.Call) -> None:
            found.append(names.haiku_api(call.func) in RNG_APIS)

    node.visit(Visitor())
    return any(found)


def convert_keeping_haiku(
    source: str,
    target: str,
    *,
    tables: Tables | None = None,
    select: frozenset[str] | None = None,
    ignore: frozenset[str] = frozenset(),
) -> Conversion:
    """`convert_source`, except that module classes left with TODOs stay Haiku, bridged into Flax."""
    first = convert_source(source, target, tables=tables, select=select, ignore=ignore)
    if not first.changed:
        return first
    source_module = cst.parse_module(source)
    names = ImportedNames.from_module(source_module)
    kept = _kept_classes(source_module, first, names)
    alias = _haiku_alias(names)
    if not kept or alias is None:
        return first
    masked, classes, interop = _mask(source_module, kept, names)
    second = convert_source(masked, target, tables=tables, select=select, ignore=ignore)
    module = cst.parse_module(second.code)
    bridge = _LinenBridge(kept, alias, linen_namespace(source_module)) if target == "linen" else _NnxBridge(kept, alias)
    module = module.visit(bridge)
    problems = bridge.problems if isinstance(bridge, _NnxBridge) else {}
    kept_nodes = {s.name.value: s for s in source_module.body if isinstance(s, cst.ClassDef) and s.name.value in kept}
    needed = {alias} | {name for node in kept_nodes.values() for name in _names_in(node) & names.aliases.keys()}
    code = _ensure_imports(module.code, source_module, needed)
    order = [name for name in kept_nodes if name in kept]
    messages = {
        index: _message(name, kept[name], target, problems.get(name, []), _draws_keys(kept_nodes[name], names))
        for index, name in enumerate(order)
    }
    code = _splice(code, classes, messages)
    code = INTEROP_NAME_PATTERN.sub(lambda m: interop[int(m.group(1))], code)
    try:
        cst.parse_module(code)
    except cst.ParserSyntaxError as error:
        raise ConversionError(f"internal error: keeping Haiku modules gave code that does not parse ({error.message})") from None
    positions = MetadataWrapper(source_module, unsafe_skip_copy=True).resolve(PositionProvider)
    kept_notes = [
        Note(RULE_KEEP, Outcome.TODO, messages[index], positions[kept_nodes[name]].start.line, 1) for index, name in enumerate(order)
    ]
    notes = sorted([*anchor_output_notes(second.notes, code), *kept_notes], key=lambda note: (note.line, note.column))
    return Conversion(source, code, notes)
