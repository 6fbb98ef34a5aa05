import haiku as hk


class Net(hk.Module):
    def __call__(self, x):
        pass


@hk.transform
def net(x):
    net = Net()
    return net(x)
