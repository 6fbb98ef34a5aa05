"""Make dropout comparable: give matching Bernoulli draws the same key in Haiku and in Flax.

Haiku draws dropout keys from `hk.next_rng_key()` (a split chain), Linen from `make_rng` (hashed by
module path), NNX from `nnx.Rngs` (fold_in counters), so the masks differ even from one seed and
training-mode outputs cannot be compared as drawn. All three build the mask the same way,
`jax.random.bernoulli(key, 1 - rate, shape)` then scale by `1/(1 - rate)`, and given the same key the
results are bitwise identical. So while pinned, a draw ignores the key it was given and uses one made
from the seed and the draw's own (shape, probability): the same on both sides, and the same however
many times a framework traces a scanned body (Linen's `nn.scan` traces it more often than Haiku's
`layer_stack`). The draws are recorded, so a dropout that the rewrite lost or added shows up in them.
Pinning replaces `jax.random.bernoulli` process-wide for the block: not for concurrent threads.
"""

from __future__ import annotations

import contextlib
import unittest.mock
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import jax

Draw = tuple[tuple[int, ...] | None, float | str]  # a Bernoulli draw's (shape, probability)


@contextlib.contextmanager
def pinned_bernoulli(seed: int) -> Iterator[list[Draw]]:
    """Within the block, `jax.random.bernoulli` draws with a key made from `seed`, shape and probability.

    Yields the list of draws, (shape, probability), in the order they were traced.
    """
    original = jax.random.bernoulli

    def pinned(
        key: jax.Array, p: Any = 0.5, shape: Sequence[int] | None = None, *args: Any, **kwargs: Any
    ) -> jax.Array:
        del key
        draw = (None if shape is None else tuple(shape), _concrete(p))
        draws.append(draw)
        key = jax.random.fold_in(jax.random.key(seed), zlib.crc32(repr(draw).encode()))
        return original(key, p, shape, *args, **kwargs)

    draws: list[Draw] = []
    with unittest.mock.patch.object(jax.random, "bernoulli", pinned):
        yield draws


def _concrete(value: Any) -> float | str:
    """A draw's probability for the record: the number, or "traced" when it is only known at run time."""
    try:
        return round(float(value), 6)
    except TypeError:
        return "traced"
