import haiku as hk
import jax
import jax.numpy as jnp


class Block(hk.Module):
    def __call__(self, x, is_training: bool):
        x = hk.dropout(hk.next_rng_key(), 0.1 if is_training else 0.0, x)
        return x


class Encoder(hk.Module):
    def __call__(self, x, is_training: bool):
        x = Block()(x, is_training)
        return x


def make_model():
    def forward(x, is_training):
        return Encoder()(x, is_training=is_training)
    return hk.transform(forward)


net = make_model()
rng = jax.random.PRNGKey(42)
params = net.init(rng, jnp.ones((8,)), is_training=True)
