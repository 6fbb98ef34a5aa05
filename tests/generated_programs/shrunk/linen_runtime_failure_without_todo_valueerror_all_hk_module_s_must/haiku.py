import haiku as hk


class ScaledLinear(hk.Linear):
    pass


class Tower(hk.Module):
    def __call__(self, x, project=True):
        x = ScaledLinear(6)(x)
        return x


def forward(x):
    return Tower()(x)


transformed = hk.without_apply_rng(hk.transform(forward))
