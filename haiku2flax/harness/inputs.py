"""Example inputs (`f32[2,784]`, `i32[7,3]:0..50`, `bool[2,5]`) and `KEY=VALUE` call arguments.

Parsing needs no jax, so the command line checks what it was given before loading it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

DTYPES = {
    "f16": "float16",
    "bf16": "bfloat16",
    "f32": "float32",
    "f64": "float64",
    "i8": "int8",
    "i16": "int16",
    "i32": "int32",
    "i64": "int64",
    "u8": "uint8",
    "u32": "uint32",
    "bool": "bool",
}
DEFAULT_INT_RANGE = (0, 10)
SPEC_RE = re.compile(r"^(?P<dtype>[a-z0-9]+)\[(?P<dims>[^\]]*)\](?::(?P<low>-?\d+)\.\.(?P<high>-?\d+))?$")
SPEC_FORM = "expected DTYPE[D1,D2,...], optionally followed by :LOW..HIGH for integers (e.g. f32[2,784], i32[7,3]:0..50)"


@dataclass(frozen=True)
class InputSpec:
    """One positional input: dtype, shape and, for integers, the half-open range values come from."""

    text: str
    dtype: str
    shape: tuple[int, ...]
    low: int | None = None
    high: int | None = None


def parse_input_spec(text: str) -> InputSpec:
    match = SPEC_RE.match(text.strip())
    if not match:
        raise ValueError(f"bad input spec {text!r}: {SPEC_FORM}")
    if match["dtype"] not in DTYPES:
        raise ValueError(f"bad input spec {text!r}: unknown dtype {match['dtype']!r} (one of {', '.join(DTYPES)})")
    dims = match["dims"].replace(" ", "")
    shape = tuple(_dimension(text, index, d) for index, d in enumerate(dims.split(","), 1)) if dims else ()
    dtype = DTYPES[match["dtype"]]
    if match["low"] is None:
        return InputSpec(text, dtype, shape)
    low, high = int(match["low"]), int(match["high"])
    if not dtype.startswith(("int", "uint")) or low >= high:
        raise ValueError(f"bad input spec {text!r}: a LOW..HIGH range needs an integer dtype and LOW < HIGH")
    return InputSpec(text, dtype, shape, low, high)


def _dimension(text: str, index: int, dimension: str) -> int:
    if not dimension:
        raise ValueError(f"bad input spec {text!r}: dimension {index} is empty")
    if not dimension.isdigit():
        raise ValueError(f"bad input spec {text!r}: dimension {index} ({dimension!r}) is not a whole number")
    return int(dimension)


def parse_arg(text: str) -> tuple[str, object]:
    """`KEY=VALUE` -> (key, value): true/false become booleans, then ints, floats, else the string."""
    key, sep, raw = text.partition("=")
    if not sep or not key.isidentifier():
        raise ValueError(f"bad argument {text!r}: expected KEY=VALUE, e.g. is_training=false")
    lowered = raw.strip().lower()
    if lowered in ("true", "false"):
        return key, lowered == "true"
    for convert in (int, float):
        try:
            return key, convert(raw)
        except ValueError:
            pass
    return key, raw


def make_inputs(specs: list[InputSpec], seed: int = 0) -> list[Any]:
    """Random arrays for `specs`, the same for a given seed; never all zeros, so nothing hides behind 0.

    Drawn with numpy, not jax.random: no XLA program to compile for each new shape.
    """
    import jax.numpy as jnp
    import numpy as np

    arrays: list[Any] = []  # jax arrays
    for index, spec in enumerate(specs):
        rng = np.random.default_rng([seed, index])
        dtype = jnp.dtype(spec.dtype)
        array: np.ndarray[Any, Any]
        nonzero: float
        if spec.dtype == "bool":
            array, nonzero = rng.random(spec.shape) < 0.5, True
        elif jnp.issubdtype(dtype, jnp.integer):
            low, high = DEFAULT_INT_RANGE if spec.low is None or spec.high is None else (spec.low, spec.high)
            array, nonzero = rng.integers(low, high, spec.shape), high - 1 or low
        else:
            array, nonzero = rng.standard_normal(spec.shape), 1
        array = np.asarray(array).astype(dtype)
        if array.size and not array.any():
            array.reshape(-1)[0] = nonzero
        arrays.append(jnp.asarray(array))
    return arrays
