import haiku as hk
import jax.numpy as jnp


class Policy(hk.Module):
    def __call__(self, x):
        counter = hk.get_state('counter', [], init=jnp.zeros)
        row_proj = hk.Linear(4)
        x = hk.vmap(lambda row: row_proj(row), split_rng=False)(x)
        return x


def forward(x):
    return Policy()(x)


transformed = hk.transform_with_state(forward)
