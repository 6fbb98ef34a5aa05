import haiku as hk


class AutoEncoder(hk.Module):
    def decode(self, x):
        pass


def make_model():
    module = AutoEncoder()

    def init(x):
        pass
    return (init, (module.decode,))


model = hk.without_apply_rng(hk.multi_transform(make_model))
