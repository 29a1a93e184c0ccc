"""An LSTM with a sensible forget-gate bias stays healthy over the same 200 steps.

The forget gate's bias is set to 3 (σ(3) ≈ 0.95), so the cell state keeps what it has
for ~20 steps and more where the input does not say otherwise; the gradient from the
last step still reaches the first ones.  Verdict ``pass``; ``gradient_flow`` is
``healthy``.
"""

import torch

import rnncheck

EXPECTED = {"healthy_lstm": "pass"}
EXPECTED_FLOW = {"healthy_lstm": "healthy"}


@rnncheck.case
def healthy_lstm():
    torch.manual_seed(0)
    model = torch.nn.LSTM(8, 32)
    H = 32
    with torch.no_grad():
        model.weight_hh_l0.mul_(0.5)
        model.bias_ih_l0.zero_()
        model.bias_hh_l0.zero_()
        model.bias_ih_l0[H : 2 * H] = 5.0  # forget gate
    x = 0.3 * torch.randn(200, 4, 8)
    return rnncheck.TorchCase(model, inputs=(x,), loss=lambda out: out[0][-1].pow(2).sum())
