"""Two gradients that differ between calls at one point, for two reasons the sanity checks must tell apart.

``shuffled``: the loss is Σ w·x[perm] with w all ones, the same value for every permutation and a
different gradient for each: the model draws random numbers (``torch.randperm``), nondeterminism.
``stateful``: a backward that adds to a running sum it never resets: the second call returns twice
the first, a backward that keeps state.
"""

import torch

import rnncheck


class Shuffled(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(6, dtype=torch.float64))

    def forward(self, x):
        return (self.w * x[torch.randperm(6)]).sum()


class Accumulating(torch.autograd.Function):
    total = None  # the bug: a running sum that is never reset

    @staticmethod
    def forward(ctx, w):
        return w * 1.0

    @staticmethod
    def backward(ctx, g):
        Accumulating.total = g.clone() if Accumulating.total is None else Accumulating.total + g
        return Accumulating.total


class Stateful(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(6, dtype=torch.float64))

    def forward(self, x):
        return (Accumulating.apply(self.w) * x).sum()


def _x():
    return torch.arange(1.0, 7.0, dtype=torch.float64)


@rnncheck.case
def shuffled():
    return rnncheck.TorchCase(Shuffled().eval(), inputs=(_x(),))


@rnncheck.case
def stateful():
    Accumulating.total = None  # each case starts from a fresh sum: only the calls within it accumulate
    return rnncheck.TorchCase(Stateful(), inputs=(_x(),))
