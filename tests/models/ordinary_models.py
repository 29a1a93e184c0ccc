"""Ordinary models that must get a real verdict: packed sequences, layers out of order, 0-d parameters,
bfloat16, a softmax cross-entropy head; and the user errors that must be named as such."""

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnncheck


class Packed(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 5)

    def forward(self, x, lengths):
        packed = pack_padded_sequence(x, lengths.cpu(), enforce_sorted=False)  # as torch's docs ask
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out)
        return out


@rnncheck.case
def packed_lstm():
    torch.manual_seed(0)
    x = torch.randn(6, 3, 3, dtype=torch.float64)
    return rnncheck.TorchCase(Packed().double(), inputs=(x, torch.tensor([6, 4, 2])))


class OutOfOrder(nn.Module):
    def __init__(self):
        super().__init__()
        self.second = nn.GRU(5, 4)
        self.first = nn.LSTM(3, 5)

    def forward(self, x):
        h, _ = self.first(x)
        out, _ = self.second(h)
        return out


@rnncheck.case
def layers_out_of_order():
    torch.manual_seed(0)
    return rnncheck.TorchCase(OutOfOrder().double(), inputs=(torch.randn(5, 2, 3, dtype=torch.float64),))


@rnncheck.case
def zero_d_param():
    p = {"a": np.array(0.3), "w": np.ones(2)}
    return rnncheck.NumpyCase(
        p,
        loss=lambda q: float(q["a"] ** 2 * q["w"].sum()),
        grad=lambda q: {"a": 2 * q["a"] * q["w"].sum(), "w": q["a"] ** 2 * np.ones(2)},
    )


@rnncheck.case
def bf16_gru():
    torch.manual_seed(0)
    return rnncheck.TorchCase(nn.GRU(3, 4).to(torch.bfloat16), inputs=(torch.randn(5, 2, 3).to(torch.bfloat16),))


@rnncheck.case
def grad_wrong_type():
    return rnncheck.NumpyCase({"w": np.ones(2)}, loss=lambda q: float(q["w"].sum()), grad=lambda q: [1.0, 1.0])


@rnncheck.case
def detached_loss():
    lin = nn.Linear(3, 1).double()
    return rnncheck.TorchCase(
        lin, inputs=(torch.randn(4, 3, dtype=torch.float64),), loss=lambda out: out.detach().sum()
    )


from numpy_rnn import P, X, grad, head, loss  # noqa: E402 - the plain NumPy RNN beside this file


@rnncheck.case
def numpy_rnn_softmax_head():
    return rnncheck.NumpyCase(P, loss, grad, reference="rnn_tanh", inputs=X, head=head)


@rnncheck.case
def numpy_rnn_softmax_head_truncated():
    return rnncheck.NumpyCase(P, loss, lambda p: grad(p, truncate=True), reference="rnn_tanh", inputs=X, head=head)


@rnncheck.case
def zero_d_param_wrong():
    p = {"a": np.array(0.3), "w": np.ones(2)}
    return rnncheck.NumpyCase(
        p,
        loss=lambda q: float(q["a"] ** 2 * q["w"].sum()),
        grad=lambda q: {"a": q["a"] * q["w"].sum(), "w": q["a"] ** 2 * np.ones(2)},
    )
