import haiku as hk


class Net(hk.Module):
    def __init__(self, name=None):
        super().__init__()
        self.mlp = hk.nets.MLP([6])

    def __call__(self, x):
        x = self.mlp(x)
        return x


@hk.transform
def net(x):
    net = Net()
    return net(x)
