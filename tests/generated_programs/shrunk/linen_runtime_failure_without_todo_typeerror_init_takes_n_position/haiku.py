import haiku as hk


class Mixer(hk.Module):
    def __call__(self, x, is_training):
        x = hk.LayerNorm(-1, True, True)(x)
        return x


class Model(hk.Module):
    def __call__(self, x, is_training):
        x = Mixer()(x, is_training=is_training)
        return x


@hk.transform
def network(x, is_training):
    return Model('model')(x, is_training=is_training)
