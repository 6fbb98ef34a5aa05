"""The rule tables the targets dispatch through agree with what the rules declare, and dispatch follows them."""

from __future__ import annotations

import libcst as cst
import pytest

from haiku2flax.codemods.interfaces import LINEN_CALLS, NNX_CALLS, NNX_FILE_CALLS, CallRules, CallSite
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
