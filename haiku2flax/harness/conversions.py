"""The value conversions a rule table may name in a leaf's `reshape`, and what each does.

One-to-one conversions turn one Haiku array into one Flax array; the shaped ones among them read the
Flax leaf's shape, which only the model knows (attention heads: Haiku's (D, H·K) is Flax's (D, H, K)).
Splits turn one Haiku array into several Flax arrays, named relative to the table leaf's `name` (an
empty name: the module itself): Haiku fuses what Flax keeps apart (an LSTM's gates).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

# Haiku's LSTM computes all gates with one Linear on concat([x, h]): columns in blocks i, g, f, o, and
# adds 1 to the forget gate inside the cell. Flax's LSTMCell has one Dense per gate and input (`i?` on
# x, no bias; `h?` on h, with the bias), so the +1 moves into `hf`'s bias.
LSTM_GATE_ORDER = ("i", "g", "f", "o")
LSTM_FORGET_BIAS = 1.0

Array = Any  # a jax or numpy array: neither library types its arrays' methods for mypy
Split = Callable[[Array, str], dict[str, Array]]  # (value, target) -> {Flax part name: value}


def _flatten(value: Array) -> Array:
    """(1, …, C) -> (C,): Haiku keeps scale/offset/statistics broadcastable."""
    return value.reshape(-1)


def _swap_last(value: Array) -> Array:
    """(…, Cout, Cin) -> (…, Cin, Cout): Haiku's transposed-convolution kernel."""
    return jnp.swapaxes(value, -1, -2)


def _flax_shape(value: Array, shape: tuple[int, ...] | None) -> Array:
    """A row-major reshape to the Flax leaf's shape: (D, H·K) -> (D, H, K), (H·V, D') -> (H, V, D')."""
    if shape is None or math.prod(shape) != value.size:
        raise ValueError(f"a {tuple(value.shape)} array cannot take the Flax leaf's shape {shape}")
    return value.reshape(shape)


def _lstm_gate_name(side: str, gate: str, target: str) -> str:
    name = side + gate
    return "if_" if (name == "if" and target == "nnx") else name  # NNX renames the Python keyword


def _lstm_kernel(value: Array, target: str) -> dict[str, Array]:
    """(I+H, 4H) -> `i?/kernel` (I, H) for x and `h?/kernel` (H, H) for h, per gate."""
    hidden = value.shape[-1] // 4
    inputs = value.shape[0] - hidden
    out: dict[str, Array] = {}
    for gate, block in zip(LSTM_GATE_ORDER, jnp.split(value, 4, axis=-1)):
        out[f"{_lstm_gate_name('i', gate, target)}/kernel"] = block[:inputs]
        out[f"{_lstm_gate_name('h', gate, target)}/kernel"] = block[inputs:]
    return out


def _lstm_bias(value: Array, target: str) -> dict[str, Array]:
    """(4H,) -> `h?/bias` (H,) per gate, with Haiku's hidden +1 added to the forget gate's."""
    return {
        f"{_lstm_gate_name('h', gate, target)}/bias": block + (LSTM_FORGET_BIAS if gate == "f" else 0.0)
        for gate, block in zip(LSTM_GATE_ORDER, jnp.split(value, 4, axis=-1))
    }


def _simple_cell_leaf(dense: str, leaf: str) -> Split:
    """Haiku VanillaRNN's `linear` (input) / `linear_1` (hidden) leaf -> SimpleCell's `i`/`h` (Linen),
    `dense_i`/`dense_h` (NNX)."""

    def convert(value: Array, target: str) -> dict[str, Array]:
        return {f"{dense if target == 'linen' else 'dense_' + dense}/{leaf}": value}

    return convert


ONE_TO_ONE: dict[str, Callable[[Array], Array]] = {"flatten": _flatten, "swap_last": _swap_last}
# (value, the Flax leaf's shape) -> value
SHAPED: dict[str, Callable[[Array, tuple[int, ...] | None], Array]] = {"flax_shape": _flax_shape}
SPLITS: dict[str, Split] = {
    "lstm_kernel": _lstm_kernel,
    "lstm_bias": _lstm_bias,
    "simple_cell_input_kernel": _simple_cell_leaf("i", "kernel"),
    "simple_cell_hidden_kernel": _simple_cell_leaf("h", "kernel"),
    "simple_cell_bias": _simple_cell_leaf("i", "bias"),
}
# Conversions whose outputs from several Haiku leaves add up into one Flax leaf: Haiku's VanillaRNN has a
# bias in each of its two Linears, Flax's SimpleCell one (the same function; SGD moves the sum twice as fast).
SUMMED = frozenset({"simple_cell_bias"})


class UnknownConversion(ValueError):
    """A table names a `reshape` that is defined neither in ONE_TO_ONE, SHAPED nor SPLITS."""


def converted(
    value: Array, reshape: str | None, target: str, flax_shape: tuple[int, ...] | None = None
) -> dict[str | None, Array]:
    """`value` converted as the table says: {None: array} one-to-one, {part name: array} for splits.

    `flax_shape`: the shape of the Flax leaf a one-to-one conversion fills (None when there is none)."""
    if reshape is None:
        return {None: value}
    if reshape in ONE_TO_ONE:
        return {None: ONE_TO_ONE[reshape](value)}
    if reshape in SHAPED:
        return {None: SHAPED[reshape](value, flax_shape)}
    if reshape in SPLITS:
        return {part: array for part, array in SPLITS[reshape](value, target).items()}
    raise UnknownConversion(f"unknown reshape {reshape!r} in the rule tables (known: {sorted(ONE_TO_ONE | SHAPED | SPLITS)})")
