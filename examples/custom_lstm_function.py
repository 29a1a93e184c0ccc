"""An LSTM cell as a custom ``torch.autograd.Function`` with a hand-written backward.

``LSTMCellFn`` computes one step; ``UnrolledLSTM`` loops it over time.  Gates are stacked
along the weight's first axis in PyTorch's order (i, f, g, o), so rnncheck probes each
gate block of ``weight_ih``/``weight_hh`` on its own.

``custom_lstm`` is correct and passes in float32.  ``custom_lstm_no_forget`` leaves the
forget gate out of ``dc_prev`` (``dc_prev = dc`` instead of ``dc * f``): it fails.
"""

import torch
from torch import nn

import rnncheck

EXPECTED = {"custom_lstm": "pass", "custom_lstm_no_forget": "fail"}


class LSTMCellFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, h, c, W_ih, W_hh, b, forget_in_backward=True):
        gates = x @ W_ih.T + h @ W_hh.T + b
        i, f, g, o = gates.chunk(4, dim=1)
        i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
        c_next = f * c + i * g
        tc = torch.tanh(c_next)
        h_next = o * tc
        ctx.save_for_backward(x, h, c, W_ih, W_hh, i, f, g, o, tc)
        ctx.forget_in_backward = forget_in_backward
        return h_next, c_next

    @staticmethod
    def backward(ctx, dh_next, dc_next):
        x, h, c, W_ih, W_hh, i, f, g, o, tc = ctx.saved_tensors
        dc = dc_next + dh_next * o * (1 - tc**2)
        da = torch.cat(
            [dc * g * i * (1 - i), dc * c * f * (1 - f), dc * i * (1 - g**2), dh_next * tc * o * (1 - o)], dim=1
        )
        dx = da @ W_ih
        dh = da @ W_hh
        dc_prev = dc * f if ctx.forget_in_backward else dc
        return dx, dh, dc_prev, da.T @ x, da.T @ h, da.sum(0), None


class UnrolledLSTM(nn.Module):
    def __init__(self, input_size, hidden_size, forget_in_backward=True):
        super().__init__()
        k = hidden_size**-0.5
        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size).uniform_(-k, k))
        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size).uniform_(-k, k))
        self.bias = nn.Parameter(torch.empty(4 * hidden_size).uniform_(-k, k))
        self.hidden_size = hidden_size
        self.forget_in_backward = forget_in_backward

    def forward(self, x):
        T, B, _ = x.shape
        h = x.new_zeros(B, self.hidden_size)
        c = x.new_zeros(B, self.hidden_size)
        outs = []
        for t in range(T):
            h, c = LSTMCellFn.apply(x[t], h, c, self.weight_ih, self.weight_hh, self.bias, self.forget_in_backward)
            outs.append(h)
        return torch.stack(outs), (h, c)


def _case(forget_in_backward):
    torch.manual_seed(0)
    model = UnrolledLSTM(6, 12, forget_in_backward)
    x = torch.randn(15, 4, 6)
    gates = ("i", "f", "g", "o")  # stacked along axis 0, as PyTorch stacks them
    return rnncheck.TorchCase(
        model,
        inputs=(x,),
        loss=lambda out: out[0].pow(2).mean(),
        gates={"weight_ih": gates, "weight_hh": gates, "bias": gates},
    )


@rnncheck.case
def custom_lstm():
    return _case(True)


@rnncheck.case
def custom_lstm_no_forget():
    return _case(False)
