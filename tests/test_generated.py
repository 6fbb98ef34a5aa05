"""Generated Haiku programs through the oracle (tests/generated_programs), against a ratchet of known bugs.

Each of a fixed list of seeds gives one program, migrated to each target. The outcome must be
"equivalent" or "todo" (a TODO at the failing statement), unless the pair is listed in
`generated_programs/known_violations.toml`: those are bugs found by the generator that are not fixed
yet, each with the cause the oracle reports. A new violation fails, and so does a listed one that no
longer occurs: once fixed, shrink it (`python bench/generated.py --shrink ...`), make it a fixture
and remove its entry.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from haiku2flax.engine import rewrite
from generated_programs import oracle
from generated_programs import shrink as shrink_module
from generated_programs.generator import generate
from generated_programs.oracle import check, statement_has_todo

SEEDS = range(50)
TARGETS = ("linen", "nnx")
KNOWN_FILE = Path(__file__).parent / "generated_programs" / "known_violations.toml"


ENTRIES = tomllib.loads(KNOWN_FILE.read_text(encoding="utf-8")).get("violation", [])  # none while every bug found is fixed
KNOWN = {(entry["seed"], entry["target"]): entry["cause"] for entry in ENTRIES}


def test_known_violations_are_checked_seeds_each_with_its_reason():
    assert len(KNOWN) == len(ENTRIES), "a seed and target listed twice"
    assert {seed for seed, _ in KNOWN} <= set(SEEDS)
    assert {target for _, target in KNOWN} <= set(TARGETS)
    assert all(entry["reason"].strip() for entry in ENTRIES)


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("seed", SEEDS)
def test_generated_program(seed, target):
    program = generate(seed)
    outcome = check(program, target)
    known = KNOWN.get((seed, target))
    if known is None:
        assert outcome.verdict != "violation", (
            f"new violation, seed {seed} to {target}: {outcome.cause}\n{outcome.detail}\n--- program:\n{program.source}"
        )
    else:
        assert outcome.cause == known, (
            f"the known bug of seed {seed} to {target} ({known}) no longer occurs as listed: now "
            f"{outcome.verdict} {outcome.cause}. Shrink it into a fixture and update {KNOWN_FILE.name}."
        )


def test_generator_is_deterministic():
    assert generate(11) == generate(11)
    assert generate(11).source != generate(12).source


REQUIRED_IDIOMS = {
    # where layers are built
    "place:inline", "place:init", "place:local", "layer:loop", "loop:list_in_init", "layer:if_ctor",
    "layer:if_call_arg", "layer:sequential",
    # how modules nest and pass sizes
    "structure:nested", "size:ctor_arg", "ctor_name:kwargs", "module_name:keyword", "module_name:positional",
    "layer:subclass",
    # layers and rule families
    "layer:linear", "layer:conv1d", "layer:conv2d", "layer:layer_norm", "layer:batch_norm", "layer:embed",
    "layer:dropout", "layer:pool", "layer:flatten", "layer:lstm", "layer:gru", "layer:attention",
    "layer:get_parameter", "layer:get_state", "layer:scan", "layer:layer_stack", "layer:vmap", "layer:remat",
    "layer:cond", "layer:mlp", "unroll:dynamic_unroll", "unroll:static_unroll",
    # transforms
    "transform:module_level", "transform:factory", "transform:decorated", "transform:function",
    "transform:without_apply_rng", "transform:transform_with_state", "transform:multi_transform",
    # init and training
    "init:same_file", "init:main_guard", "init:other_file", "init:absent", "train:sgd", "train:optax",
    "train:train_state", "train:step_at_import",
}  # fmt: skip


def test_generator_draws_every_idiom_of_the_catalogue():
    drawn = set().union(*(generate(seed).idioms for seed in range(300)))
    assert REQUIRED_IDIOMS <= drawn, sorted(REQUIRED_IDIOMS - drawn)


def test_a_todo_counts_on_the_statement_or_the_comments_just_above():
    source = "x = 1\n# TODO(haiku2flax:HK006): pass the size\n# more words\ny = f(\n    x,\n)\nz = 2\n"
    assert statement_has_todo(source, 5)  # inside the multi-line statement under the comments
    assert not statement_has_todo(source, 7)
    assert not statement_has_todo(source, 1)


def test_a_crashing_rewriter_is_a_violation_named_by_where_it_broke(monkeypatch):
    def broken(*args):
        raise KeyError("boom")

    monkeypatch.setattr(rewrite, "rewrite", broken)
    outcome = check(generate(0), "linen")
    assert (outcome.verdict, outcome.cause) == ("violation", "crash: KeyError in pipeline.convert_source")


def test_a_rewrite_that_changes_on_a_second_run_is_a_violation(monkeypatch):
    class Growing:
        def __init__(self, source):
            self.code = source + "\n# again"

    monkeypatch.setattr(oracle, "convert_source", lambda source, target: Growing(source))
    outcome = check(generate(0), "nnx")
    assert (outcome.verdict, outcome.cause) == ("violation", "not idempotent")


def test_shrinking_keeps_the_cause_and_drops_the_rest(monkeypatch):
    """With a stand-in oracle whose "violation" is any hk.Linear, the program shrinks to little but one."""
    program = generate(19)  # 65 lines, one hk.Linear
    assert "hk.Linear(" in program.source

    def fake_check(candidate, target, timeout):
        return oracle.Outcome("violation", "linear" if "hk.Linear(" in candidate.source else "")

    monkeypatch.setattr(shrink_module, "check", fake_check)
    monkeypatch.setattr(shrink_module, "haiku_counts", lambda candidate: (1, 1))
    shrunk = shrink_module.shrink(program, "linen", "linear", log=lambda _: None)
    assert "hk.Linear(" in shrunk.source
    assert len(shrunk.source.splitlines()) < len(program.source.splitlines()) // 3
    assert (shrunk.entry, shrunk.inputs) == (program.entry, program.inputs)
