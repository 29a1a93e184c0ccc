"""Models whose weights are rewritten in forward or computed on access, correct and with a planted bug each.

EXPECTED maps each case to its verdict; none may end in error.
"""

import torch
import torch.nn.functional as F
from torch.nn.utils import parametrize

import rnncheck


class WeightDrop(torch.nn.Module):
    """AWD-LSTM's WeightDrop: the raw weight is the parameter; forward writes the (dropped) weight into the LSTM."""

    def __init__(self, module, weights, dropout=0.0, scale_grad=None):
        super().__init__()
        self.module, self.weights, self.dropout, self.scale_grad = module, weights, dropout, scale_grad
        for name in weights:
            w = getattr(module, name)
            del module._parameters[name]
            module.register_parameter(name + "_raw", torch.nn.Parameter(w.data))

    def forward(self, x):
        for name in self.weights:
            raw = getattr(self.module, name + "_raw")
            w = F.dropout(raw, p=self.dropout, training=self.training)
            if self.scale_grad is not None and w.requires_grad:  # the planted bug: a hook scaling its gradient
                w.register_hook(lambda g: g * self.scale_grad)
            setattr(self.module, name, w)
        self.module.flatten_parameters = lambda: None
        return self.module(x)[0]


class Skew(torch.nn.Module):
    """An orthogonal recurrent weight: the matrix exponential of a skew-symmetric parameter."""

    def forward(self, X):
        return torch.linalg.matrix_exp(X - X.T)


class WrongSkew(Skew):
    def right_inverse(self, W):
        return W

    def forward(self, X):
        return ScaledGrad.apply(super().forward(X))


class ScaledGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return g * 1.05  # the planted bug


def _x(n_in=3):
    return torch.randn(7, 2, n_in, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


@rnncheck.case
def weight_drop():
    torch.manual_seed(0)
    return rnncheck.TorchCase(WeightDrop(torch.nn.LSTM(3, 5).double(), ["weight_hh_l0"]).eval(), inputs=(_x(),))


@rnncheck.case
def weight_drop_wrong_hook():
    torch.manual_seed(0)
    model = WeightDrop(torch.nn.LSTM(3, 5).double(), ["weight_hh_l0"], scale_grad=1.05).eval()
    return rnncheck.TorchCase(model, inputs=(_x(),))


@rnncheck.case
def weight_norm():
    torch.manual_seed(0)
    model = torch.nn.utils.parametrizations.weight_norm(torch.nn.LSTM(3, 5).double(), "weight_hh_l0")
    return rnncheck.TorchCase(model, inputs=(_x(),))


@rnncheck.case
def spectral_norm():
    torch.manual_seed(0)
    model = torch.nn.utils.parametrizations.spectral_norm(torch.nn.RNN(3, 5).double(), "weight_hh_l0").eval()
    return rnncheck.TorchCase(model, inputs=(_x(),))


@rnncheck.case
def orthogonal_parametrization():
    torch.manual_seed(0)
    model = torch.nn.RNN(5, 5).double()
    parametrize.register_parametrization(model, "weight_hh_l0", Skew())
    return rnncheck.TorchCase(model, inputs=(_x(5),))


@rnncheck.case
def parametrization_with_wrong_backward():
    torch.manual_seed(0)
    model = torch.nn.RNN(5, 5).double()
    parametrize.register_parametrization(model, "weight_hh_l0", WrongSkew())
    return rnncheck.TorchCase(model, inputs=(_x(5),))


EXPECTED = {
    "weight_drop": "pass",
    "weight_drop_wrong_hook": "fail",
    "weight_norm": "pass",
    "spectral_norm": "pass",
    "orthogonal_parametrization": "pass",
    "parametrization_with_wrong_backward": "fail",
}
