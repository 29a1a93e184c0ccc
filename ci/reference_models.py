"""The project's own gate models: the NumPy reference's cells and PyTorch's fused layers.

Each reference cell is checked as a NumpyCase whose gradient is the reference's own
backward, so the gate notices any change that moves the reference's gradients; the
nn.* twins of the same shapes pin PyTorch's side.
"""

import numpy as np
import torch

import rnncheck
from rnncheck import reference as R


def _reference_case(mode, layers=1, bidirectional=False, T=12, B=3, I=4, H=6, seed=0):
    rng = np.random.default_rng(seed)
    spec = R.Spec(mode, I, H, layers, bidirectional)
    params = spec.init_params(rng)
    x = rng.normal(size=(T, B, I))
    w = rng.normal(size=(T, B, H * spec.directions))

    def loss(p):
        out, _, _ = R.forward(spec, p, x)
        return float((out * w).sum())

    def grad(p):
        out, _, cache = R.forward(spec, p, x)
        return float((out * w).sum()), R.backward(cache, w).params

    link = (
        dict(reference=mode, inputs=x, head=lambda h, _p: float((h * w).sum()))
        if layers == 1 and not bidirectional
        else {}
    )
    return rnncheck.NumpyCase(params, loss=loss, grad=grad, **link)


@rnncheck.case
def reference_rnn_tanh():
    return _reference_case("rnn_tanh")


@rnncheck.case
def reference_rnn_sigmoid():
    return _reference_case("rnn_sigmoid")


@rnncheck.case
def reference_lstm():
    return _reference_case("lstm")


@rnncheck.case
def reference_gru():
    return _reference_case("gru")


@rnncheck.case
def reference_lstm_stack():
    return _reference_case("lstm", layers=2, bidirectional=True)


@rnncheck.case
def torch_gru_stack():
    torch.manual_seed(0)
    model = torch.nn.GRU(4, 6, num_layers=2, bidirectional=True).double()
    return rnncheck.TorchCase(model, inputs=(torch.randn(12, 3, 4, dtype=torch.float64),))
