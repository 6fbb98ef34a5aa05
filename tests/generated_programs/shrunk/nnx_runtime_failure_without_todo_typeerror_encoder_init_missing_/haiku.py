"""A generated Haiku program."""
import haiku as hk
import jax
import jax.numpy as jnp


class Block(hk.Module):
  """A block of the model."""

  def __init__(self, **kwargs):
    super().__init__(**kwargs)

  def __call__(self, x, is_training: bool):
    x = hk.dropout(hk.next_rng_key(), 0.1 if is_training else 0.0, x)
    if is_training:
      x = hk.dropout(hk.next_rng_key(), 0.2, x)
    return x


class Encoder(hk.Module):
  """The encoder of the model."""

  def __init__(self, name=None):
    super().__init__(name=name)

  def __call__(self, x, is_training: bool):
    x = jax.nn.gelu(x)
    x = Block(name="block")(x, is_training)
    if is_training:
      x = hk.dropout(hk.next_rng_key(), 0.5, x)
    if is_training:
      x = hk.dropout(hk.next_rng_key(), 0.5, x)
    return x


def make_model():
  """Builds the transformed model."""

  def forward(x, is_training):
    return Encoder()(x, is_training=is_training)
  return hk.transform(forward)


net = make_model()
rng = jax.random.PRNGKey(42)
params = net.init(rng, jnp.ones((2, 5, 8)), is_training=True)
sample = jnp.ones((2, 5, 8))
