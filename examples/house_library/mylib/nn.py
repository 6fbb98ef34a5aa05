"""House layers built on Haiku, used across a code base."""

import haiku as hk
import jax.numpy as jnp
import numpy as np


class Dense(hk.Module):
  """A Linear layer with the house's naming (`features`, `use_bias`)."""

  def __init__(self, features: int, use_bias: bool = True, name=None):
    super().__init__(name=name)
    self.features = features
    self.use_bias = use_bias

  def __call__(self, x):
    stddev = 1.0 / np.sqrt(x.shape[-1])
    w = hk.get_parameter("w", [x.shape[-1], self.features], init=hk.initializers.TruncatedNormal(stddev))
    y = x @ w
    if self.use_bias:
      y = y + hk.get_parameter("b", [self.features], init=jnp.zeros)
    return y
