"""A fused RNN layer as a custom ``torch.autograd.Function``, checked against its naive twin.

``FusedTanhRNN`` runs the whole sequence in one Function with a hand-written backward
through time, as a kernel author writes one.  ``NaiveRNN`` is the same equations written
plainly, step by step, with autograd: ``TorchCase(fused, inputs=(x,), reference=naive)``
copies the fused layer's weights into it, runs both on the same inputs, and compares every
output and gradient, with the tolerance measured by running the naive twin in the fused
layer's own dtype.

- ``fused_rnn`` is correct: it passes, in float32.
- ``fused_rnn_relu`` computes relu where tanh belongs, in the forward *and* consistently
  in the backward: its gradient agrees with its own finite differences, and only the
  naive reference shows that it computes the wrong function.
- ``fused_rnn_bf16`` is the correct layer in bfloat16, compared with the naive twin in
  bfloat16 to set the tolerance.  It is a ``warn``, honestly: in bfloat16 the probes could
  miss a single entry off by 200%, so the table marks the tensors ``unchecked``; the naive
  twin agrees with it within its own rounding.
"""

import torch
from torch import nn

import rnncheck

EXPECTED = {"fused_rnn": "pass", "fused_rnn_relu": "fail", "fused_rnn_bf16": "warn"}


class FusedTanhRNNFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, W_ih, W_hh, b, relu):
        T, B, _ = x.shape
        h = x.new_zeros(B, W_hh.shape[0])
        hs = []
        for t in range(T):
            a = x[t] @ W_ih.T + h @ W_hh.T + b
            h = torch.relu(a) if relu else torch.tanh(a)
            hs.append(h)
        out = torch.stack(hs)
        ctx.save_for_backward(x, W_ih, W_hh, out)
        ctx.relu = relu
        return out

    @staticmethod
    def backward(ctx, d_out):
        x, W_ih, W_hh, out = ctx.saved_tensors
        T = x.shape[0]
        dW_ih, dW_hh, db = torch.zeros_like(W_ih), torch.zeros_like(W_hh), torch.zeros_like(W_hh[0])
        dx = torch.zeros_like(x)
        dh = torch.zeros_like(out[0])
        for t in range(T - 1, -1, -1):
            dh = dh + d_out[t]
            da = dh * ((out[t] > 0).to(out.dtype) if ctx.relu else (1 - out[t] ** 2))
            h_prev = out[t - 1] if t else torch.zeros_like(out[0])
            dW_ih += da.T @ x[t]
            dW_hh += da.T @ h_prev
            db += da.sum(0)
            dx[t] = da @ W_ih
            dh = da @ W_hh
        return dx, dW_ih, dW_hh, db, None


class FusedTanhRNN(nn.Module):
    def __init__(self, n_in, n_hidden, relu=False):
        super().__init__()
        k = n_hidden**-0.5
        self.weight_ih = nn.Parameter(torch.empty(n_hidden, n_in).uniform_(-k, k))
        self.weight_hh = nn.Parameter(torch.empty(n_hidden, n_hidden).uniform_(-k, k))
        self.bias = nn.Parameter(torch.empty(n_hidden).uniform_(-k, k))
        self.relu = relu

    def forward(self, x):
        return FusedTanhRNNFn.apply(x, self.weight_ih, self.weight_hh, self.bias, self.relu)


class NaiveRNN(nn.Module):
    """The same layer, written plainly: h_t = tanh(W_ih x_t + W_hh h_(t-1) + b)."""

    def __init__(self, n_in, n_hidden):
        super().__init__()
        self.weight_ih = nn.Parameter(torch.zeros(n_hidden, n_in))
        self.weight_hh = nn.Parameter(torch.zeros(n_hidden, n_hidden))
        self.bias = nn.Parameter(torch.zeros(n_hidden))

    def forward(self, x):
        h = x.new_zeros(x.shape[1], self.weight_hh.shape[0])
        hs = []
        for x_t in x:
            h = torch.tanh(x_t @ self.weight_ih.T + h @ self.weight_hh.T + self.bias)
            hs.append(h)
        return torch.stack(hs)


def _case(relu=False, dtype=torch.float32):
    torch.manual_seed(0)
    fused = FusedTanhRNN(5, 12, relu=relu).to(dtype)
    x = torch.randn(15, 3, 5).to(dtype)
    return rnncheck.TorchCase(fused, inputs=(x,), reference=NaiveRNN(5, 12))


@rnncheck.case
def fused_rnn():
    return _case()


@rnncheck.case
def fused_rnn_relu():
    return _case(relu=True)


@rnncheck.case
def fused_rnn_bf16():
    return _case(dtype=torch.bfloat16)
