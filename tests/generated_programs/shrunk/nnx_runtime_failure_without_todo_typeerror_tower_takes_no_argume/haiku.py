import haiku as hk


class ScaledLinear(hk.Linear):
    pass


class Tower(hk.Module):
    def __call__(self, x, training, project=True):
        x = ScaledLinear(4)(x)
        return x


def forward(x, training):
    net = Tower('tower')
    return net(x, training)


net = hk.transform(forward)
