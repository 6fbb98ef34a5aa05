import haiku as hk
import jax
import jax.numpy as jnp


class Net(hk.Module):
    def __call__(self, x, training: bool):
        return x


@hk.transform
def transformed(x, training: bool):
    net = Net()
    return net(x, training)


rng = jax.random.PRNGKey(42)
sample = jnp.ones((1,))
params = transformed.init(rng, sample, training=True)
