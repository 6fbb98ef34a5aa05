"""The rule tables the targets dispatch through agree with what the rules declare, and dispatch follows them."""

from __future__ import annotations

import libcst as cst
import pytest

from haiku2flax.codemods.interfaces import LINEN_CALLS, NNX_CALLS, NNX_FILE_CALLS, CallRules, CallSite, MethodRoom, NodeRules
from haiku2flax.engine import convert_source
from haiku2flax.engine.context import Context
from haiku2flax.engine.names import ImportedNames
from haiku2flax.engine.registry import RULES, all_rules
from haiku2flax.engine.rewriter import Rewriter
from haiku2flax.engine.tables import load_tables

all_rules()  # imports every family, so every rule has registered

TABLES = {"linen": LINEN_CALLS, "nnx": NNX_CALLS, "nnx file": NNX_FILE_CALLS}


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_api_a_table_dispatches_is_one_its_rule_declares(name):
    """`haiku2flax rules` and the coverage test read a rule's declared APIs: the tables must not handle others."""
    table = TABLES[name]
    entries = [(api, rule) for by in (table.by_api, table.by_constructor) for api, rules in by.items() for rule, _ in rules]
    assert entries, f"no call rules registered for {name}"
    undeclared = [(api, rule) for api, rule in entries if not api.endswith(".*") and api not in RULES[rule].apis]
    assert not undeclared, f"APIs handled but not declared by their rule: {undeclared}"


def _room(source: str, select: frozenset[str] | None = None) -> tuple[Rewriter, cst.Module]:
    """A minimal file room over `source`, as the targets hand it to rules."""
    module = cst.parse_module(source)
    tables = load_tables()
    ctx = Context("linen", tables, ImportedNames.from_module(module, tables.house_apis), selected=select, source=source, module=module)
    return Rewriter(ctx), module


def test_dispatch_calls_the_first_rule_that_converts_and_skips_rules_turned_off():
    calls: list[str] = []
    table: CallRules = CallRules("test")

    @table.on("dropout", rule="HK003")
    def declines(room, call: CallSite):
        calls.append("declines")
        return None

    @table.on("dropout", rule="HK003")
    def converts(room, call: CallSite):
        calls.append(f"converts {call.api}")
        return cst.Name("converted")

    @table.on("initializers.*", rule="HK202")
    def namespace(room, call: CallSite):
        return cst.Name(call.api.replace(".", "_"))

    room, module = _room("import haiku as hk\nhk.dropout(k, 0.5, x)\nhk.initializers.Constant(1.0)\nhk.Linear(3)\n")
    dropout, initializer, linear = (statement.body[0].value for statement in module.body[1:])
    result = table.dispatch(room, dropout, dropout)
    assert isinstance(result, cst.Name) and result.value == "converted"
    assert calls == ["declines", "converts dropout"]
    converted = table.dispatch(room, initializer, initializer)
    assert isinstance(converted, cst.Name) and converted.value == "initializers_Constant"
    assert table.dispatch(room, linear, linear) is None  # no rule for hk.Linear here

    calls.clear()
    off, module = _room("import haiku as hk\nhk.dropout(k, 0.5, x)\n", select=frozenset({"HK2"}))
    call = module.body[1].body[0].value
    assert table.dispatch(off, call, call) is None and calls == []


def test_ignoring_a_call_rule_leaves_its_construct_to_the_safety_net():
    source = "import haiku as hk\n\ndef f(x):\n  return hk.dropout(hk.next_rng_key(), 0.5, x)\n"
    converted = convert_source(source, "linen", ignore=frozenset({"HK003"}))
    assert "hk.dropout" in converted.code and "nn.Dropout" not in converted.code
    assert "nn.Dropout" in convert_source(source, "linen").code


def test_node_rules_may_skip_children_run_after_the_targets_hook_and_drop_statements():
    """A visit rule's False skips the node's children (the target's own visit still runs); an `after`
    leave rule sees what the target's own leave hook returned; `remove_statement` hands on blank lines."""
    table: NodeRules[MethodRoom] = NodeRules("test")
    events: list[str] = []

    @table.on_visit(cst.FunctionDef, rule="HK999")
    def skip(room: MethodRoom, node: cst.FunctionDef) -> bool | None:
        return False if node.name.value == "skipped" else None

    @table.on_leave(cst.FunctionDef, rule="HK999", after=True)
    def renamed(room: MethodRoom, original: cst.FunctionDef, result: cst.FunctionDef) -> cst.FunctionDef:
        events.append(f"after {result.name.value}")
        return result.with_changes(name=cst.Name(f"{result.name.value}_after"))

    @table.on_leave(cst.SimpleStatementLine, rule="HK999", after=True)
    def drop(room: MethodRoom, original: cst.SimpleStatementLine, result: cst.SimpleStatementLine) -> cst.RemovalSentinel | None:
        return room.remove_statement(original) if "dropped" in cst.Module([original]).code else None

    class Target(Rewriter):
        node_rules = table

        def visit_FunctionDef(self, node: cst.FunctionDef) -> None:
            events.append(f"visit {node.name.value}")

        def leave_FunctionDef(self, original: cst.FunctionDef, updated: cst.FunctionDef) -> cst.FunctionDef:
            events.append(f"own {original.name.value}")
            return updated.with_changes(name=cst.Name(original.name.value.upper()))

    source = "def kept():\n  a = 1\n\n  dropped = 2\n  b = 3\n\n\ndef skipped():\n  def hidden():\n    pass\n"
    room, module = _room(source)
    code = module.visit(Target(room.ctx)).code
    assert events == ["visit kept", "own kept", "after KEPT", "visit skipped", "own skipped", "after SKIPPED"]
    assert code == "def KEPT_after():\n  a = 1\n\n  b = 3\n\n\ndef SKIPPED_after():\n  def hidden():\n    pass\n"


def test_a_leave_rule_after_the_target_sees_what_the_target_own_hook_returned():
    """`after=True`: the target's own hook still runs (its bookkeeping of the node), then the rule, on its result."""
    table: NodeRules = NodeRules("test")
    seen: list[str] = []

    @table.on_leave(cst.Name, rule="HK201", after=True)
    def suffix(room, original, result):
        seen.append(result.value)
        return result.with_changes(value=f"{result.value}_after")

    @table.on_leave(cst.Name, rule="HK201", after=True)
    def declines(room, original, result):
        return None

    def own(room, original, updated):
        return updated.with_changes(value="own")

    _, leave = table.hooks(cst.Name, None, own)
    room, module = _room("x\n")
    name = module.body[0].body[0].value
    assert leave(room, name, name).value == "own_after" and seen == ["own"]
    off, _ = _room("x\n", select=frozenset({"HK0"}))  # the rule turned off: the target's result stands
    assert leave(off, name, name).value == "own" and seen == ["own"]


def _declared(protocol: type) -> set[str]:
    """The public members a room protocol declares, with those of the rooms it extends."""
    names: set[str] = set()
    for klass in protocol.__mro__:
        if getattr(klass, "_is_protocol", False) and klass is not protocol.__mro__[-1]:
            names |= {n for n in [*vars(klass), *vars(klass).get("__annotations__", {})] if not n.startswith("_")}
    return names


@pytest.mark.parametrize("target", ["linen", "nnx"])
def test_the_room_a_target_hands_to_rules_has_every_member_its_protocol_declares(target, monkeypatch):
    """The targets are not type-checked yet: a member a room declares and the target lacks would only show
    when a rule first reads it."""
    from haiku2flax.codemods.interfaces import LINEN_NODES, NNX_NODES, LinenMethod, NnxClass, NnxMethod
    from haiku2flax.targets.linen import LinenConverter
    from haiku2flax.targets.nnx import NnxMethodRewriter

    table, converter, protocols = {
        "linen": (LINEN_NODES, LinenConverter, {"room": LinenMethod}),
        "nnx": (NNX_NODES, NnxMethodRewriter, {"room": NnxMethod, "room.conversion": NnxClass}),
    }[target]
    missing: list[str] = []
    probed: list[object] = []

    def probe(room, node):
        probed.append(room)
        objects = {"room": room, "room.conversion": getattr(room, "conversion", None)}
        for where, protocol in protocols.items():
            missing.extend(f"{where}.{name}" for name in sorted(_declared(protocol)) if not hasattr(objects[where], name))

    monkeypatch.setattr(table, "visiting", {**table.visiting, cst.Return: [("HK001", probe)]})
    monkeypatch.setattr(converter, "_hooks", {})  # hooks are looked up once per node type: look again
    source = "import haiku as hk\n\nclass M(hk.Module):\n  def __call__(self, x):\n    return hk.Linear(3)(x)\n"
    convert_source(source, target)
    assert probed, "the probe rule did not run"
    assert _declared(NnxMethod) >= {"size_of", "hoist", "function", "ctx", "todo"}  # the reading itself works
    assert missing == []


def test_object_rules_see_only_calls_their_key_names_and_no_haiku_api():
    table: CallRules = CallRules("test")
    seen: list[str] = []

    def made_by_transform(ctx, call):
        return "transform.init" if isinstance(call.func, cst.Attribute) and call.func.attr.value == "init" else None

    @table.on_object(made_by_transform, rule="HK004")
    def init(room, call: CallSite):
        seen.append(call.api)
        return cst.Name("state")

    room, module = _room("import haiku as hk\nnet.init(k, x)\nhk.init(k)\nnet.apply(p, x)\n")
    on_net, on_haiku, apply = (statement.body[0].value for statement in module.body[1:])
    converted = table.dispatch(room, on_net, on_net)
    assert isinstance(converted, cst.Name) and seen == ["transform.init"]
    assert table.dispatch(room, on_haiku, on_haiku) is None  # a Haiku API: keyed by API, not by object
    assert table.dispatch(room, apply, apply) is None and seen == ["transform.init"]
    off, module = _room("net.init(k, x)\n", select=frozenset({"HK2"}))
    call = module.body[0].body[0].value
    assert table.dispatch(off, call, call) is None and seen == ["transform.init"]
