"""A vanilla tanh RNN on a long sequence: the gradient from the last step dies out.

Recurrent weights at PyTorch's default scale and 200 steps: each step multiplies the
backward signal by roughly σ_max(W_hh)·E|tanh'| < 1, so by a few dozen steps back the
loss at step T no longer reaches the early inputs.  The gradients themselves are right
(verdict ``pass``); ``diagnostics.gradient_flow`` is ``vanishing``.
"""

import torch

import rnncheck

EXPECTED = {"vanishing_rnn": "pass"}
EXPECTED_FLOW = {"vanishing_rnn": "vanishing"}


@rnncheck.case
def vanishing_rnn():
    torch.manual_seed(0)
    model = torch.nn.RNN(8, 32)
    x = torch.randn(200, 4, 8)
    return rnncheck.TorchCase(model, inputs=(x,), loss=lambda out: out[0][-1].pow(2).sum())
