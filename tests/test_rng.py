"""Keys: `hk.PRNGSequence` (HK020/HK021) converts where it is only drawn from; keys drawn inside transforms
(HK005, HK022, HK023) are left with a TODO saying how the target draws them. Numbers: fixtures/rng."""

from __future__ import annotations

import pytest

from haiku2flax.engine import convert_source

SCRIPT = "import haiku as hk\nimport jax\n\n{body}\n"


def _convert(body: str, target: str) -> str:
    return convert_source(SCRIPT.format(body=body), target).code


@pytest.mark.parametrize(
    ("body", "linen", "nnx"),
    [
        (
            "seq = hk.PRNGSequence(0)\nk = next(seq)",
            "seq = jax.random.key(0)\nseq, k = jax.random.split(seq)",
            "seq = nnx.Rngs(0)\nk = seq()",
        ),
        (
            "seq = hk.PRNGSequence(jax.random.PRNGKey(3))\na, b = seq.take(2)",
            "seq = jax.random.PRNGKey(3)\nseq, a, b = jax.random.split(seq, 3)",
            "seq = nnx.Rngs(jax.random.PRNGKey(3))\na, b = jax.random.split(seq(), 2)",
        ),
        (
            "seq = hk.PRNGSequence(0)\nkeys = seq.take(n)",
            "seq = jax.random.key(0)\nseq, *keys = jax.random.split(seq, n + 1)",
            "seq = nnx.Rngs(0)\nkeys = jax.random.split(seq(), n)",
        ),
    ],
    ids=["next", "take into names", "take into one name"],
)
def test_sequence_converts(body: str, linen: str, nnx: str):
    assert linen in _convert(body, "linen")
    assert nnx in _convert(body, "nnx")


def test_a_draw_inside_an_expression_converts_in_nnx_only():
    body = "seq = hk.PRNGSequence(0)\nx = jax.random.normal(next(seq), (2,))"
    assert "x = jax.random.normal(seq(), (2,))" in _convert(body, "nnx")
    linen = _convert(body, "linen")
    assert "# TODO(haiku2flax:HK021)" in linen and "a draw is not a statement of its own" in linen and "hk.PRNGSequence(0)" in linen


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("seq = hk.PRNGSequence(0)\nuse(seq)", "`seq` is used otherwise than by `next(seq)`"),
        ("seq = hk.PRNGSequence(0)\nfor key in seq:\n  pass", "`seq` is used otherwise than by `next(seq)`"),
        ("seq = hk.PRNGSequence(0)\nseq = hk.PRNGSequence(1)", "`seq` is assigned more than once"),
        ("use(hk.PRNGSequence(0))", "it is not assigned to a name"),
    ],
    ids=["passed on", "iterated", "reassigned", "not assigned"],
)
@pytest.mark.parametrize("target", ["linen", "nnx"])
def test_sequence_todos(body: str, reason: str, target: str):
    out = _convert(body, target)
    assert "# TODO(haiku2flax:HK021)" in out and reason in out and "hk.PRNGSequence(" in out


def test_linen_needs_to_know_the_seed_is_an_int_or_a_key():
    body = "seq = hk.PRNGSequence(seed)\nk = next(seq)"
    assert "the seed is neither an int literal nor a `jax.random` key" in _convert(body, "linen")
    assert "seq = nnx.Rngs(seed)" in _convert(body, "nnx")  # nnx.Rngs takes either


def test_linen_draw_in_another_function_is_left():
    body = "seq = hk.PRNGSequence(0)\n\n\ndef step():\n  k = next(seq)\n  return k"
    assert "in the scope that creates `seq`" in _convert(body, "linen")  # a split there would make `seq` local


MODULE = """import haiku as hk
import jax


class Noisy(hk.Module):
  def __call__(self, x):
{line}
    return x


def forward(x):
  return Noisy()(x)


model = hk.transform(forward)
"""


@pytest.mark.parametrize(
    ("line", "rule", "reason"),
    [
        ("    x = x + jax.random.normal(hk.next_rng_key(), x.shape)", "HK005", {"linen": "self.make_rng('<stream>')", "nnx": "nnx.Rngs"}),
        ("    key = hk.maybe_next_rng_key()", "HK022", {"linen": "if self.has_rng('<stream>') else None", "nnx": "optional `rngs"}),
        ("    with hk.with_rng(jax.random.key(1)):\n      x = x + 1", "HK023", {"linen": "no scoped key override", "nnx": "no scoped key override"}),
    ],
    ids=["next_rng_key", "maybe_next_rng_key", "with_rng"],
)
@pytest.mark.parametrize("target", ["linen", "nnx"])
def test_keys_in_transforms_are_todos(line: str, rule: str, reason: dict[str, str], target: str):
    out = convert_source(MODULE.format(line=line), target).code
    assert f"# TODO(haiku2flax:{rule})" in out and reason[target] in out
