"""Each `hk.initializers.*` mapping in rules/initializers.toml draws the same array as Haiku, given the same key.

Haiku initializers draw `hk.next_rng_key()`; under `hk.with_rng(key)` the first key drawn is known, so the
converted Flax initializer (the table's output, evaluated) is called with exactly that key. Keys are
aligned, so arrays are compared element by element, not statistically: bitwise where the arithmetic is
the same, within 2 ulp where Haiku rounds the scale in float64 and jax in float32, and for Orthogonal on
a square matrix, as the exact transpose (jax reads the square case the other way round; the same
distribution).
"""

from __future__ import annotations

import flax.linen as nn
import haiku as hk
import jax
import jax.numpy as jnp
import libcst as cst
import numpy as np
import pytest

from haiku2flax.engine.calls import code, convert_initializer
from haiku2flax.engine.context import Context
from haiku2flax.engine.names import ImportedNames
from haiku2flax.engine.tables import load_tables

TABLES = load_tables()
CTX = Context("linen", TABLES, ImportedNames.from_module(cst.parse_module("import haiku as hk\n")))
SHAPES = [(7, 5), (5, 7), (6, 6), (3, 3, 4, 8), (3, 3, 8, 4), (1, 37), (25, 1)]
KEYS = range(2)

BITWISE, ULP2 = "bitwise", "2 ulp"
CASES = [
    ("hk.initializers.Constant(0.3)", BITWISE),
    ("hk.initializers.RandomNormal()", BITWISE),
    ("hk.initializers.RandomNormal(stddev=0.2, mean=0.0)", BITWISE),
    ("hk.initializers.TruncatedNormal()", BITWISE),
    ("hk.initializers.TruncatedNormal(0.3, lower=-1.0, upper=3.0)", BITWISE),
    ("hk.initializers.RandomUniform()", BITWISE),
    ("hk.initializers.RandomUniform(0.0, 0.5)", BITWISE),
    ("hk.initializers.VarianceScaling()", ULP2),
    ("hk.initializers.VarianceScaling(2.0, 'fan_out', 'normal')", ULP2),
    ("hk.initializers.VarianceScaling(1 / 3, mode='fan_avg', distribution='uniform')", ULP2),
    ("hk.initializers.UniformScaling()", ULP2),
    ("hk.initializers.UniformScaling(1.7)", ULP2),
    ("hk.initializers.Orthogonal()", BITWISE),
    ("hk.initializers.Orthogonal(2.0, axis=0)", BITWISE),
]


def test_every_table_entry_is_checked():
    checked = {CTX.names.haiku_api(cst.parse_expression(source).func) for source, _ in CASES}  # type: ignore[attr-defined]
    assert checked == set(TABLES.initializers)


def haiku_draw(initializer, shape, key):
    """Haiku's array and the key it drew, inside a transform."""

    def draw():
        with hk.with_rng(key):
            drawn = hk.next_rng_key()
        with hk.with_rng(key):
            return drawn, initializer(shape, jnp.float32)

    return hk.transform(draw).apply({}, None)


def ulps(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.view(np.int32).astype(np.int64) - b.view(np.int32).astype(np.int64)).max())


@pytest.mark.parametrize(("source", "agreement"), CASES, ids=[source for source, _ in CASES])
def test_same_array_for_the_same_key(source: str, agreement: str):
    flax_source = code(convert_initializer(cst.parse_expression(source), CTX, "nn"))
    haiku_init = eval(source, {"hk": hk})
    flax_init = eval(flax_source, {"nn": nn})
    for shape in SHAPES:
        for seed in KEYS:
            drawn, expected = haiku_draw(haiku_init, shape, jax.random.key(seed))
            actual = np.asarray(flax_init(drawn, shape, jnp.float32))
            expected = np.asarray(expected)
            if "Orthogonal" in source and len(shape) == 2 and shape[0] == shape[1]:
                actual = actual.T
            if agreement == BITWISE:
                np.testing.assert_array_equal(actual.view(np.int32), expected.view(np.int32), err_msg=f"{flax_source} {shape}")
            else:
                assert ulps(actual, expected) <= 2, f"{flax_source} {shape}"
