"""A custom LSTM Function whose backward gets one gate's derivative wrong: the report must name that gate."""

import torch
from torch import nn

import rnncheck


class LSTMCellFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h, c, W_ih, W_hh, b, bug):
        i, f, g, o = (x @ W_ih.T + h @ W_hh.T + b).chunk(4, dim=1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c_next = f * c + i * g
        tc = torch.tanh(c_next)
        ctx.save_for_backward(x, h, c, W_ih, W_hh, i, f, g, o, tc)
        ctx.bug = bug
        return o * tc, c_next

    @staticmethod
    def backward(ctx, dh_next, dc_next):
        x, h, c, W_ih, W_hh, i, f, g, o, tc = ctx.saved_tensors
        dc = dc_next + dh_next * o * (1 - tc**2)
        df = dc * c * (1 - f) if ctx.bug == "forget_derivative" else dc * c * f * (1 - f)
        do = dh_next * tc * (1 - o) if ctx.bug == "output_derivative" else dh_next * tc * o * (1 - o)
        da = torch.cat([dc * g * i * (1 - i), df, dc * i * (1 - g**2), do], dim=1)
        return da @ W_ih, da @ W_hh, dc * f, da.T @ x, da.T @ h, da.sum(0), None


class Cell(nn.Module):
    def __init__(self, n_in, n_hidden, bug):
        super().__init__()
        k = n_hidden**-0.5
        self.W_ih = nn.Parameter(torch.empty(4 * n_hidden, n_in, dtype=torch.float64).uniform_(-k, k))
        self.W_hh = nn.Parameter(torch.empty(4 * n_hidden, n_hidden, dtype=torch.float64).uniform_(-k, k))
        self.b = nn.Parameter(torch.empty(4 * n_hidden, dtype=torch.float64).uniform_(-k, k))
        self.n_hidden, self.bug = n_hidden, bug

    def forward(self, x):
        h = c = x.new_zeros(x.shape[1], self.n_hidden)
        outs = []
        for x_t in x:
            h, c = LSTMCellFn.apply(x_t, h, c, self.W_ih, self.W_hh, self.b, self.bug)
            outs.append(h)
        return torch.stack(outs)


def _case(bug):
    torch.manual_seed(0)
    gates = ("i", "f", "g", "o")
    x = torch.randn(12, 3, 4, dtype=torch.float64)
    return rnncheck.TorchCase(Cell(4, 6, bug), inputs=(x,), gates={"W_ih": gates, "W_hh": gates, "b": gates})


@rnncheck.case
def forget_derivative():
    return _case("forget_derivative")


@rnncheck.case
def output_derivative():
    return _case("output_derivative")


#: the gate each case's bug is in
EXPECTED_GATE = {"forget_derivative": "f", "output_derivative": "o"}
