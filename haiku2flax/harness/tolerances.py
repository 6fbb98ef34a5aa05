"""Every numeric tolerance the harness uses, in one table: per dtype and per device platform.

Comparisons run under `jax.default_matmul_precision('highest')`, so float32 means real float32 on every
platform (no TF32 on GPUs, no single-pass bf16 on TPUs). What is left is reduction order, which XLA may
choose differently for the two programs: a few ulps per reduction, amplified by depth. The looser dtypes
are bounded by their own epsilon (bfloat16 has 8 bits of mantissa: 2**-8 ≈ 4e-3).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
from jax.typing import DTypeLike


@dataclass(frozen=True)
class Tolerance:
    """`|flax - haiku| <= atol + rtol * |haiku|`, elementwise (numpy's `allclose` rule)."""

    rtol: float
    atol: float


EXACT = Tolerance(0.0, 0.0)  # integers and booleans: no rounding can excuse a difference

# (dtype name, platform) -> tolerance; platform "*" is the default for platforms not listed.
TOLERANCES: dict[tuple[str, str], Tolerance] = {
    ("float64", "*"): Tolerance(1e-10, 1e-10),
    ("float32", "cpu"): Tolerance(1e-5, 1e-5),
    ("float32", "gpu"): Tolerance(1e-5, 1e-5),
    ("float32", "tpu"): Tolerance(1e-4, 1e-4),  # 'highest' on TPU is a multi-pass bf16 emulation of f32
    ("float32", "*"): Tolerance(1e-5, 1e-5),
    ("float16", "*"): Tolerance(2e-3, 2e-3),
    ("bfloat16", "*"): Tolerance(1e-2, 1e-2),
}


def tolerance_for(dtype: DTypeLike, platform: str) -> Tolerance:
    """The tolerance for comparing arrays of `dtype` computed on `platform` ("cpu", "gpu", "tpu")."""
    if not jnp.issubdtype(dtype, jnp.inexact):
        return EXACT
    name = jnp.dtype(dtype).name
    for key in ((name, platform), (name, "*")):
        if key in TOLERANCES:
            return TOLERANCES[key]
    return TOLERANCES[("float32", "*")]
