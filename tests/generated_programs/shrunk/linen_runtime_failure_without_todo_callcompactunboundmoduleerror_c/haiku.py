import haiku as hk
import jax
import jax.numpy as jnp


def make_model():
    def forward(x):
        x = hk.Conv2D(6, kernel_shape=(3,))(x)
        return x
    return hk.transform(forward)


transformed = make_model()
rng = jax.random.PRNGKey(42)
params = transformed.init(rng, jnp.ones((4, 4, 1)))
