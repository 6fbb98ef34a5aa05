"""Proof that verify can fail: plant one known bug in a correct Flax model, and verify must reject it.

Each bug is one that a plausible rewrite makes and that leaves every shape intact, so only the numbers
can catch it. The correct model passes first, so each rejection is the planted bug's doing.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from haiku2flax.engine import convert_source
from haiku2flax.harness import conversions, verify
from haiku2flax.harness.pytest_helper import FixtureCase, report_text

GUIDE = Path(__file__).resolve().parent.parent / "fixtures" / "guide"
RECURRENT = GUIDE.parent / "recurrent"
TARGETS = ("linen", "nnx")

# The LayerNorm sees small activations (std ~0.01): there Flax's default epsilon (1e-6 for Haiku's 1e-5)
# changes the output by percents; on unit-variance inputs it is ~5e-6 relative, below float32 tolerance.
LAYER_NORM = {
    "haiku": """
        import haiku as hk


        class Normed(hk.Module):
          def __call__(self, x):
            x = hk.Linear(16)(x)
            x = hk.LayerNorm(axis=-1, create_scale=True, create_offset=True)(0.01 * x)
            return hk.Linear(4)(x)


        def forward(x):
          return Normed()(x)


        model = hk.transform(forward)
        """,
    "linen": """
        import flax.linen as nn


        class Normed(nn.Module):
          @nn.compact
          def __call__(self, x):
            x = nn.Dense(16)(x)
            x = nn.LayerNorm(epsilon=1e-5, use_fast_variance=False)(0.01 * x)
            return nn.Dense(4)(x)


        model = Normed()
        """,
    "nnx": """
        from flax import nnx


        class Normed(nnx.Module):
          def __init__(self, din, *, rngs):
            self.linear = nnx.Linear(din, 16, rngs=rngs)
            self.layer_norm = nnx.LayerNorm(16, epsilon=1e-5, use_fast_variance=False, rngs=rngs)
            self.linear_1 = nnx.Linear(16, 4, rngs=rngs)

          def __call__(self, x):
            x = self.linear(x)
            x = self.layer_norm(0.01 * x)
            return self.linear_1(x)


        model = Normed(8, rngs=nnx.Rngs(0))
        """,
}

# Square layers (8 -> 8), so a transposed kernel still fits. Converted by the engine, not by hand.
SQUARE = """
    import haiku as hk
    import jax
    import jax.numpy as jnp


    class Square(hk.Module):
      def __call__(self, x):
        x = jax.nn.tanh(hk.Linear(8)(x))
        return hk.Linear(8)(x)


    def forward(x):
      return Square()(x)


    model = hk.transform(forward)
    params = model.init(jax.random.key(0), jnp.ones((1, 8)))
    """

TRANSPOSED_DOT = """def transposed_dot_general(lhs, rhs, *args, **kwargs):
  return jax.lax.dot_general(lhs, rhs.T, *args, **kwargs)


"""


def planted(source: str, correct: str, wrong: str) -> str:
    """`source` with the bug planted; fails loudly if the correct text is not there to replace."""
    assert correct in source, f"{correct!r} not in the Flax source: update the planted bug"
    return source.replace(correct, wrong)


def write_model(folder: Path, sources: dict[str, str]) -> Path:
    for name, text in sources.items():
        (folder / f"{name}.py").write_text(textwrap.dedent(text), encoding="utf-8")
    return folder / "haiku.py"


def assert_rejected(result, section: str):
    assert result.verdict == "not equivalent", report_text(result)
    assert any(not row.ok and row.section == section for row in result.rows), report_text(result)


@pytest.mark.parametrize("target", TARGETS)
def test_changed_activation(target):
    case = FixtureCase.load(GUIDE / "basic_example" / "case.toml")
    converted = convert_source((case.directory / "haiku.py").read_text(), target).code
    assert case.verify(target, converted).ok
    result = case.verify(target, planted(converted, "jax.nn.relu(x)", "jax.nn.gelu(x)"))
    assert_rejected(result, "outputs")


@pytest.mark.parametrize("target", TARGETS)
def test_dropout_lost_in_training_mode(target):
    case = FixtureCase.load(GUIDE / "basic_example" / "case.toml")
    converted = convert_source((case.directory / "haiku.py").read_text(), target).code
    dropout = "x = nn.Dropout(0.5, deterministic=not training)(x)" if target == "linen" else "x = self.dropout(x)"
    result = verify(
        case.directory / "haiku.py",
        target,
        "model",
        case.inputs,
        {"training": True},
        flax_source=planted(converted, dropout, "pass"),
    )
    assert result.verdict == "not equivalent", report_text(result)
    assert any("random draws differ" in problem for problem in result.problems), report_text(result)


@pytest.mark.parametrize("target", TARGETS)
def test_transposed_square_kernel(tmp_path, target):
    haiku_file = tmp_path / "haiku.py"
    haiku_file.write_text(textwrap.dedent(SQUARE), encoding="utf-8")
    converted = convert_source(haiku_file.read_text(), target).code
    assert verify(haiku_file, target, "model", ["f32[3,8]"], flax_source=converted).ok
    layer = "nn.Dense(8" if target == "linen" else "8, rngs=rngs"
    source = planted(converted, layer, layer + ", dot_general=transposed_dot_general")
    source = planted(source, "class ", TRANSPOSED_DOT + "class ")
    assert_rejected(verify(haiku_file, target, "model", ["f32[3,8]"], flax_source=source), "outputs")


@pytest.mark.parametrize("target", TARGETS)
def test_lstm_forget_gate_bias_needs_several_time_steps(target, monkeypatch):
    """Without Haiku's +1 the forget gate is wrong, which a zero initial cell state hides at step 1."""
    haiku_file = RECURRENT / "lstm_unroll" / "haiku.py"  # hk.LSTM unrolled, converted by the built-in rules
    flax_source = convert_source(haiku_file.read_text(), target).code

    def run(inputs: str, steps: int = 0):
        return verify(haiku_file, target, "model", [inputs], steps=steps, flax_source=flax_source)

    assert run("f32[6,2,4]", steps=1).ok  # six time steps; the SGD step checks the split gradients too
    monkeypatch.setattr(conversions, "LSTM_FORGET_BIAS", 0.0)  # the conversion forgets the +1
    assert_rejected(run("f32[6,2,4]"), "outputs")
    assert run("f32[1,2,4]", steps=1).ok, "one time step from a zero cell state cannot see the forget gate"


@pytest.mark.parametrize("target", TARGETS)
def test_layer_norm_with_flax_default_epsilon(tmp_path, target):
    haiku_file = write_model(tmp_path, LAYER_NORM)
    flax_source = (tmp_path / f"{target}.py").read_text()
    assert verify(haiku_file, target, "model", ["f32[4,8]"], flax_source=flax_source).ok
    wrong = planted(flax_source, "epsilon=1e-5, ", "")
    assert_rejected(verify(haiku_file, target, "model", ["f32[4,8]"], flax_source=wrong), "outputs")


@pytest.mark.parametrize("target", TARGETS)
def test_batch_norm_statistics_not_updated(target):
    """momentum=1.0 keeps the statistics frozen: training outputs are unchanged, only the state differs."""
    haiku_file = GUIDE / "handling_state" / "haiku.py"
    converted = convert_source(haiku_file.read_text(), target).code

    def run(source: str):
        return verify(
            haiku_file,
            target,
            "model",
            ["f32[4,784]"],
            {"training": False},
            train_args={"training": True},
            flax_source=source,
        )

    assert run(converted).ok
    result = run(planted(converted, "momentum=0.99", "momentum=1.0"))
    assert_rejected(result, "state after call")
    assert all(row.ok for row in result.rows if row.section == "outputs"), report_text(result)
