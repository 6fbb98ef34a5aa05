"""A model written with the house library: converted with `--rules house_rules.toml`."""

import haiku as hk
import jax
import jax.numpy as jnp
from mylib.nn import Dense


class Classifier(hk.Module):
  def __init__(self, num_classes: int, name=None):
    super().__init__(name=name)
    self.num_classes = num_classes

  def __call__(self, x):
    x = jax.nn.relu(Dense(32)(x))
    return Dense(self.num_classes, use_bias=False)(x)


def forward(x):
  return Classifier(10)(x)


model = hk.without_apply_rng(hk.transform(forward))
params = model.init(jax.random.key(0), jnp.ones((2, 16)))
