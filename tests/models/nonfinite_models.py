"""Non-finite values, each with another cause: in the data, grown by the recurrence, made by an operation."""

import numpy as np
import torch
from torch import nn

import rnncheck


@rnncheck.case
def nan_in_input():
    torch.manual_seed(0)
    x = torch.randn(10, 2, 3)
    x[6, 1, 2] = float("nan")
    return rnncheck.TorchCase(nn.LSTM(3, 4), inputs=(x,))


@rnncheck.case
def overflow():
    torch.manual_seed(0)
    m = nn.RNN(3, 8, nonlinearity="relu")
    with torch.no_grad():
        m.weight_hh_l0.copy_(torch.eye(8) * 1e5)
    return rnncheck.TorchCase(m, inputs=(torch.rand(40, 2, 3),))


class LogCell(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3 + 4, 4)

    def forward(self, x, h):
        a = self.lin(torch.cat([x, h], -1))
        return torch.log(a)  # log of a negative number


@rnncheck.case
def log_of_negative():
    torch.manual_seed(0)
    return rnncheck.CellCase(LogCell(), torch.randn(8, 2, 3), torch.ones(2, 4))


@rnncheck.case
def nan_gradient_entry():
    def grad(p):
        g = 2 * p["w"]
        g[3] = np.nan
        return {"w": g}

    return rnncheck.NumpyCase({"w": np.arange(6.0)}, loss=lambda p: float((p["w"] ** 2).sum()), grad=grad)
