import haiku as hk


class AutoEncoder(hk.Module):
    def encode(self, x):
        return x

    def decode(self, x):
        x = hk.Linear(4)(x)

    def __call__(self, x):
        return self.decode(self.encode(x))


def make_model():
    module = AutoEncoder()

    def init(x):
        return module(x)
    return (init, (module.encode,))


model = hk.without_apply_rng(hk.multi_transform(make_model))
