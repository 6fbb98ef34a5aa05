"""Recurrent cores (haiku2flax/codemods/recurrent.py): the TODOs where the rule cannot follow a core, and
the traps a wrong mapping falls into, each planted in a converted fixture and caught by verify.

The conversions themselves are the fixtures in fixtures/recurrent (golden, verified in both targets).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from haiku2flax.engine import convert_source
from haiku2flax.harness import conversions
from haiku2flax.harness.pytest_helper import FixtureCase, report_text

RECURRENT = Path(__file__).resolve().parent.parent / "fixtures" / "recurrent"
TARGETS = ("linen", "nnx")


def converted(body: str, target: str, prelude: str = "") -> str:
    """`body` as the `__call__(self, xs)` of a Haiku module, converted."""
    source = (
        "import haiku as hk\nimport jax\n\n"
        + textwrap.dedent(prelude)
        + "\n\nclass M(hk.Module):\n  def __call__(self, xs):\n"
        + textwrap.indent(textwrap.dedent(body), "    ")
    )
    return convert_source(source, target).code


def todo_above(code: str, rule: str, statement: str) -> str:
    """The reason of the `# TODO(haiku2flax:RULE)` comment right above the line holding `statement`."""
    lines = code.splitlines()
    at = next(i for i, line in enumerate(lines) if statement in line and not line.lstrip().startswith("#"))
    comments = []
    for line in reversed(lines[:at]):
        if not line.lstrip().startswith("#"):
            break
        comments.append(line.strip())
    marker = f"# TODO(haiku2flax:{rule}): "
    found = [c.removeprefix(marker) for c in comments if c.startswith(marker)]
    assert found, f"no {rule} TODO above {statement!r} in:\n{code}"
    return found[0]


# -- TODOs ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("target", TARGETS)
def test_user_rnn_core_subclass_is_a_todo(target):
    prelude = """
        class Counter(hk.RNNCore):
          def __call__(self, inputs, prev_state):
            return inputs, prev_state + 1

          def initial_state(self, batch_size):
            return jax.numpy.zeros([batch_size])
        """
    code = converted("core = Counter()\nouts, _ = hk.dynamic_unroll(core, xs, core.initial_state(2))\nreturn outs\n", target, prelude)
    reason = todo_above(code, "HK403", "class Counter(hk.RNNCore)")
    ns = "nn" if target == "linen" else "nnx"
    assert f"`{ns}.RNNCellBase`" in reason and "Haiku's order reversed" in reason and "initialize_carry" in reason
    assert "unrolls a core this rule cannot see" in todo_above(code, "HK401", "hk.dynamic_unroll(core")


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize(
    ("body", "statement", "reason"),
    [
        pytest.param(
            "core = hk.LSTM(4)\nouts, _ = hk.dynamic_unroll(core, xs, core.initial_state(2))\nout, _ = core(xs[0], core.initial_state(2))\n"
            "return outs, out\n",
            "core = ",
            "both unrolled and stepped",
            id="unrolled-and-stepped",
        ),
        pytest.param(
            "core = hk.LSTM(4)\nouts, _ = hk.dynamic_unroll(core, xs, core.initial_state(2), reverse=True)\nreturn outs\n",
            "hk.dynamic_unroll(",
            "keep_order=True",
            id="reverse",
        ),
        pytest.param(
            "core = hk.DeepRNN([hk.LSTM(4), hk.LSTM(4)])\nouts, state = hk.dynamic_unroll(core, xs, core.initial_state(2))\n"
            "return outs, state\n",
            "hk.dynamic_unroll(",
            "one carry per layer",
            id="deep-rnn-final-state",
        ),
        pytest.param(
            "core = hk.LSTM(4)\nreturn helper(core, xs)\n",
            "core = ",
            "used other than unrolled",
            id="core-passed-on",
        ),
        pytest.param(
            "core = hk.GRU(4, w_i_init=hk.initializers.Orthogonal())\nouts, _ = hk.dynamic_unroll(core, xs, core.initial_state(2))\n"
            "return outs\n",
            "core = ",
            "give `HaikuGRUCell` these initializers by hand",
            id="gru-initializers",
        ),
        pytest.param(
            "outs, _ = hk.dynamic_unroll(self.core, xs, self.core.initial_state(2))\nreturn outs\n",
            "hk.dynamic_unroll(",
            "unrolls a core this rule cannot see",
            id="unseen-core",
        ),
        pytest.param(
            "for core in self.cores:\n  start = core.initial_state(2)\n  xs, _ = hk.dynamic_unroll(core, xs, start)\nreturn xs\n",
            "start = ",
            "Flax cells have no `initial_state`",
            id="unseen-core-initial-state",
        ),
        pytest.param(
            "out, state = hk.LSTM(4)(xs[0], hk.LSTMState(hidden=xs[1], cell=xs[2]))\nreturn out, state\n",
            "out, state = ",
            "a core stepped where it is built",
            id="stepped-where-built",
        ),
    ],
)
def test_core_the_rule_cannot_follow_is_a_todo(target, body, statement, reason):
    code = converted(body, target)
    assert reason in todo_above(code, "HK401", statement)
    assert "HaikuGRUCell(" not in code  # nothing half-converted: the core is left as Haiku wrote it


@pytest.mark.parametrize("target", TARGETS)
def test_vanilla_rnn_double_bias_is_reported(target):
    result = convert_source((RECURRENT / "vanilla_rnn" / "haiku.py").read_text(), target)
    assert any(n.rule == "HK400" and "twice as fast" in n.message for n in result.notes)


def test_gru_cell_is_defined_once():
    source = (RECURRENT / "gru" / "haiku.py").read_text()
    twice = source.replace(
        "    outputs, state = hk.dynamic_unroll(core, xs, core.initial_state(xs.shape[1]))\n",
        "    outputs, state = hk.dynamic_unroll(core, xs, core.initial_state(xs.shape[1]))\n"
        "    other = hk.GRU(self.hidden)\n"
        "    outputs, _ = hk.dynamic_unroll(other, outputs, other.initial_state(xs.shape[1]))\n",
    )
    for target in TARGETS:
        code = convert_source(twice, target).code
        assert code.count("class HaikuGRUCell(") == 1 and code.count("HaikuGRUCell(") == 3, code


# -- traps: a wrong mapping is caught -------------------------------------------------------------------------
def verify_planted(case: str, target: str, correct: str, wrong: str):
    fixture = FixtureCase.load(RECURRENT / case / "case.toml")
    source = (fixture.directory / f"{target}.py").read_text()
    assert correct in source, f"{correct!r} not in the {target} golden: update the planted bug"
    return fixture.verify(target, source.replace(correct, wrong))


PLANTED = {
    # (case, {target: (correct, wrong)}), by trap
    "relu-vs-tanh": ("vanilla_rnn", {"linen": (", activation_fn=nn.relu", ""), "nnx": (", activation_fn=nnx.relu", "")}),
    "batch-major": ("lstm_unroll", {"linen": ("time_major=True, ", ""), "nnx": ("time_major=True, ", "")}),
    "outputs-state-order": (
        "gru",
        {"linen": ("return outputs, state", "return state, outputs"), "nnx": ("return outputs, state", "return state, outputs")},
    ),
    "returned-carry-order": (
        "lstm_state_returned_variant",
        {t: ('"states": [first, second]', '"states": [first[::-1], second]') for t in TARGETS},
    ),
    "carry-order": ("static_unroll", {"linen": ("initial_carry=(cell, hidden)", "initial_carry=(hidden, cell)"),
                                      "nnx": ("initial_carry=(cell, hidden)", "initial_carry=(hidden, cell)")}),
}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("trap", sorted(PLANTED))
def test_wrong_mapping_is_rejected(trap, target):
    case, plants = PLANTED[trap]
    result = verify_planted(case, target, *plants[target])
    assert not result.ok, report_text(result)


@pytest.mark.parametrize("target", TARGETS)
def test_lstm_gate_order_is_checked(target, monkeypatch):
    monkeypatch.setattr(conversions, "LSTM_GATE_ORDER", ("i", "f", "g", "o"))  # Flax's order, not Haiku's
    result = FixtureCase.load(RECURRENT / "lstm_unroll" / "case.toml").verify(target)
    assert not result.ok and any(not row.ok and row.section == "outputs" for row in result.rows), report_text(result)


@pytest.mark.parametrize("target", TARGETS)
def test_lstm_forget_bias_from_a_given_state_shows_in_one_step(target, monkeypatch):
    monkeypatch.setattr(conversions, "LSTM_FORGET_BIAS", 0.0)
    result = FixtureCase.load(RECURRENT / "lstm_step" / "case.toml").verify(target)
    assert not result.ok, report_text(result)


@pytest.mark.parametrize("target", TARGETS)
def test_initial_state_of_a_core_the_unroll_cannot_see_is_a_todo(target):
    """A core built in `__init__` and unrolled in `__call__` keeps its unroll under a TODO; its
    `initial_state` call, which fails first (Flax cells have none), gets one too."""
    source = textwrap.dedent("""\
        import haiku as hk


        class Tower(hk.Module):
          def __init__(self, name=None):
            super().__init__(name=name)
            self.core = hk.LSTM(4)

          def __call__(self, xs):
            state = self.core.initial_state(xs.shape[1])
            outs, _ = hk.dynamic_unroll(self.core, xs, state)
            return outs
        """)
    code = convert_source(source, target).code
    assert "no `initial_state`" in todo_above(code, "HK401", "state = self.core.initial_state(xs.shape[1])")
    assert "cannot see" in todo_above(code, "HK401", "outs, _ = hk.dynamic_unroll(")
