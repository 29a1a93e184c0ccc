"""A ReLU RNN with large recurrent weights: the gradient grows with every step back.

``W_hh`` is 1.1 times a slightly perturbed identity and the bias is positive, so the
ReLU units stay active (in their linear range) and each step back multiplies the signal
by about 1.1: over 120 steps that is a factor of ~10^5.  The gradients are right (verdict ``pass``);
``diagnostics.gradient_flow`` is ``exploding``.
"""

import torch

import rnncheck

EXPECTED = {"exploding_rnn": "pass"}
EXPECTED_FLOW = {"exploding_rnn": "exploding"}


@rnncheck.case
def exploding_rnn():
    torch.manual_seed(0)
    model = torch.nn.RNN(4, 32, nonlinearity="relu").double()
    with torch.no_grad():
        eye = torch.eye(32, dtype=torch.float64)
        model.weight_hh_l0.copy_(1.1 * (eye + 0.01 * torch.randn(32, 32, dtype=torch.float64)))
        model.bias_hh_l0.fill_(0.5)
        model.bias_ih_l0.zero_()
    x = 0.01 * torch.randn(120, 2, 4, dtype=torch.float64)
    return rnncheck.TorchCase(model, inputs=(x,), loss=lambda out: out[0][-1].sum())
