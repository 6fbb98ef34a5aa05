import haiku as hk
import jax


class Layer(hk.Module):
    def __call__(self, x):
        def block_1(y):
            return jax.nn.relu(hk.Linear(4)(y))
        x = hk.remat(block_1)(x)
        return x


class Encoder(hk.Module):
    def __init__(self, **kwargs):
        super().__init__()
        self.layer_1 = Layer()

    def __call__(self, x):
        x = self.layer_1(x)
        return x


def forward(x):
    net = Encoder()
    return net(x)


transformed = hk.transform(forward)
