"""Parallel scans with the time bugs people file, each against the plain sequential loop.

Every case fails; the hint each one should get is in EXPECTED (a phrase of the verified hint).
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))

import linear_scans as L  # noqa: E402

import rnncheck  # noqa: E402


def lagging(a, b, h0):  # the initial state emitted as output 0, the last step dropped
    h = L.sequential_scan(a, b, h0)
    return torch.cat([h0.unsqueeze(1), h[:, :-1]], dim=1)


def leading(a, b, h0):  # the first step dropped
    h = L.sequential_scan(a, b, h0)
    return torch.cat([h[:, 1:], h[:, -1:]], dim=1)


def never_flipped_back(a, b, h0):  # a reverse layer that computes in reversed time and forgets to restore it
    return L.log_space_scan(a, b, h0).flip(1)


def decay_one_step_early(a, b, h0):  # h_t = a_(t+1) h_(t-1) + b_t: the cumulative decay off by one
    a_next = torch.cat([a[:, 1:], torch.ones_like(a[:, :1])], dim=1)
    return L.log_space_scan(a_next, b, h0)


def state_not_carried(a, b, h0, chunk=8):  # each chunk restarts from h0
    outs = []
    for s in range(0, a.shape[1], chunk):
        outs.append(L.chunked_scan(a[:, s : s + chunk], b[:, s : s + chunk], h0, chunk))
    return torch.cat(outs, dim=1)


def squared_initial_state(a, b, h0):  # the parallel form starts from a transformed h0
    return L.log_space_scan(a, b, h0 * h0)


class ShiftedBackward(torch.autograd.Function):
    """The Blelloch scan whose reverse scan uses a_t where a_(t+1) belongs."""

    @staticmethod
    def forward(ctx, a, b, h0):
        first = b[:, :1] + a[:, :1] * h0.unsqueeze(1)
        h = L._blelloch(a, torch.cat([first, b[:, 1:]], dim=1))
        ctx.save_for_backward(a, h, h0)
        return h

    @staticmethod
    def backward(ctx, g):
        a, h, h0 = ctx.saved_tensors
        lam = L._blelloch(a.flip(1), g.flip(1)).flip(1)  # bug: a_t, not a_(t+1)
        h_prev = torch.cat([h0.unsqueeze(1), h[:, :-1]], dim=1)
        return lam * h_prev, lam, a[:, 0] * lam[:, 0]


def reverse_scan_missing_shift(a, b, h0):
    return ShiftedBackward.apply(a, b, h0)


EXPECTED = {
    "lagging": "lags one step",
    "leading": "leads one step",
    "never_flipped_back": "reversed in time",
    "decay_one_step_early": "a is applied one step early",
    "state_not_carried": "not carried across chunk boundaries",
    "squared_initial_state": "agrees when h0 is zero",
    "reverse_scan_missing_shift": "the backward applies a one step late",
}


def _case(fn, seed=0, T=37, dtype=torch.float64):
    return rnncheck.FunctionCase(fn, inputs=L.scan_inputs(seed, T=T, dtype=dtype), reference=L.sequential_scan)


def _register(name):
    scan = globals()[name]
    rnncheck.case(name=name)(lambda: _case(scan))


for _name in EXPECTED:
    _register(_name)


class MinGRUTransformedState(L.MinGRU):
    """The parallel form starts from log(h0) where it should start from h0."""

    def forward(self, x, h0):
        k, h_tilde = self.to_gate(x), self.to_hidden(x)
        log_a, log_b = -F.softplus(k), -F.softplus(-k) + L.log_g(h_tilde)
        a_star = F.pad(torch.cumsum(log_a, dim=1), (0, 0, 1, 0))
        start = torch.log(torch.log1p(h0)).unsqueeze(1)  # bug: log(log(1 + h0)) in place of log(h0)
        return torch.exp(a_star + torch.logcumsumexp(torch.cat([start, log_b], dim=1) - a_star, dim=1))[:, 1:]


@rnncheck.case
def mingru_transformed_state():
    torch.manual_seed(0)
    model = MinGRUTransformedState(3, 16).double()
    x = torch.randn(2, 40, 3, dtype=torch.float64)
    return rnncheck.StepCase(model, inputs=x, state0=torch.full((2, 16), 0.5, dtype=torch.float64))
