import haiku as hk
import jax.numpy as jnp


class Tower(hk.Module):
    def __init__(self, **kwargs):
        super().__init__()
        self.core = hk.LSTM(4)

    def __call__(self, x, is_training):
        state = self.core.initial_state(x.shape[0])
        x, _ = hk.dynamic_unroll(self.core, jnp.swapaxes(x, 0, 1), state)
        return x


def forward(x, is_training: bool):
    net = Tower()
    return net(x, is_training=is_training)


network = hk.transform(forward)
