import haiku as hk


class Net(hk.Module):
    def __init__(self, hidden, hidden_1, name=None):
        super().__init__()
        self.hidden_1 = hidden_1
        self.linear = hk.Linear(self.hidden_1)

    def __call__(self, x):
        x = self.linear(x)
        return x


def forward(x):
    return Net(6, 4)(x)
