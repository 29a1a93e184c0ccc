"""Gradient flow for any recurrence: states shown with rnncheck.record, checked against theory."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import rnncheck


class Diagonal(torch.nn.Module):
    """h_t = a ⊙ h_(t-1) + B x_t with a fixed per-channel decay, computed in parallel (cumprod)."""

    def __init__(self, decay, n_in=2, record="decay"):
        super().__init__()
        self.decay = torch.as_tensor(decay, dtype=torch.float64)
        self.proj = torch.nn.Linear(n_in, len(self.decay)).double()
        self.record = record

    def forward(self, x):  # x: (B, T, n_in)
        b = self.proj(x)
        T = x.shape[1]
        a = self.decay.expand(x.shape[0], T, -1)
        powers = self.decay ** torch.arange(T, dtype=torch.float64).view(T, 1)  # a^t
        # h_t = sum_j a^(t-j) b_j, by a masked matrix (a parallel form with no loop)
        diff = torch.arange(T).view(T, 1) - torch.arange(T).view(1, T)
        weights = torch.where(diff.unsqueeze(-1) >= 0, self.decay ** diff.clamp(min=0).unsqueeze(-1), 0.0)
        h = torch.einsum("tjd,bjd->btd", weights, b)
        del powers
        if self.record == "decay":
            return rnncheck.record(h, name="diag", time_dim=1, decay=a)
        if self.record == "stacked":
            return rnncheck.record(h, name="diag", time_dim=1)
        return h


class Looped(torch.nn.Module):
    """h_t = s·Q h_(t-1) + x_t with Q orthogonal, written as a loop that records each step's state."""

    def __init__(self, n, scale):
        super().__init__()
        q, _ = torch.linalg.qr(torch.randn(n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(5)))
        self.weight = torch.nn.Parameter(scale * q)

    def forward(self, x):  # (T, B, n)
        h, hs = torch.zeros_like(x[0]), []
        for x_t in x:
            h = rnncheck.record(h @ self.weight.T + x_t, name="loop")
            hs.append(h)
        return torch.stack(hs)


def _flow(model, x, **kw):
    result = rnncheck.verify_case(rnncheck.TorchCase(model, inputs=(x,)), rnncheck.Options(gradient=False, **kw))
    return result, result.diagnostics


@pytest.mark.parametrize("s", [0.3, 0.7, 0.95])
def test_a_constant_decay_has_horizon_minus_one_over_ln_s_exactly(s):
    x = torch.randn(3, 40, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    _, d = _flow(Diagonal([s] * 6), x)
    layer = d.layers[0]
    assert layer.rho == pytest.approx(s, rel=1e-12)
    assert layer.horizon == pytest.approx(-1 / math.log(s), rel=1e-10)
    ch = layer.channels
    assert ch.channels == 6
    assert ch.horizon.min == pytest.approx(-1 / math.log(s), rel=1e-12)
    assert ch.horizon.max == pytest.approx(-1 / math.log(s), rel=1e-12)
    expected = np.array([s**lag for lag in range(40)])
    assert np.allclose(layer.propagation, expected, rtol=1e-12, atol=0)


def test_per_channel_horizons_are_counted_against_the_sequence_length():
    decays = [0.2, 0.3, 0.4, 0.9, 0.999, 0.9999]
    x = torch.randn(2, 100, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    result, d = _flow(Diagonal(decays), x)
    ch = d.layers[0].channels
    lags = [math.log(1e-3) / math.log(s) for s in decays]  # steps until 1e-3
    assert ch.forget_within.channels == sum(lag <= 8 for lag in lags) == 3
    assert ch.keep_past_sequence.channels == sum(lag > 100 for lag in lags) == 2
    note = next(f for c in result.checks for f in c.findings if f.kind == "flow_channels")
    assert "3 of 6 channels forget within 8 steps; 2 keep information past T = 100" in note.message


def test_the_total_adjoint_follows_the_decay_and_matches_a_step_by_step_recording():
    torch.manual_seed(2)
    x = torch.randn(2, 30, 2, dtype=torch.float64)
    model = Diagonal([0.5, 0.8, 0.9])
    _, exact = _flow(model, x)

    class Stepwise(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            b = self.inner.proj(x)
            h, hs = torch.zeros_like(b[:, 0]), []
            for t in range(x.shape[1]):
                h = rnncheck.record(self.inner.decay * h + b[:, t], name="steps")
                hs.append(h)
            return torch.stack(hs, dim=1)

    _, looped = _flow(Stepwise(model), x)
    assert np.allclose(exact.layers[0].profile, looped.layers[0].profile, rtol=1e-10)


def test_stacked_states_without_decay_measure_the_inputs_influence():
    x = torch.randn(2, 50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    _, d = _flow(Diagonal([0.6] * 4, record="stacked"), x)
    layer = d.layers[0]
    assert layer.rho == pytest.approx(0.6, rel=1e-9) and "influence" in layer.source
    assert layer.channels is None


@pytest.mark.parametrize("scale,verdict", [(0.5, "vanishing"), (1.0, "healthy"), (1.3, "exploding")])
def test_states_recorded_in_a_loop_give_the_verdict_with_the_exact_decay(scale, verdict):
    x = torch.randn(40, 2, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    _, d = _flow(Looped(6, scale), x)
    layer = d.layers[0]
    assert layer.name == "loop" and layer.steps == 40 and "one state per step" in layer.source
    assert layer.rho == pytest.approx(scale, rel=1e-9)  # ‖(sQ)^ℓ u‖ = s^ℓ exactly
    assert d.gradient_flow == verdict


def test_a_propagation_below_1e_minus_154_is_not_rounded_to_zero():
    x = torch.randn(1, 500, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    _, d = _flow(Diagonal([0.3]), x)
    far = d.layers[0].propagation[499]
    assert far > 0 and far == pytest.approx(0.3**499, rel=1e-9)  # about 1e-261, which float64 holds


def test_record_outside_a_check_is_the_identity():
    h = torch.randn(3, 4)
    assert rnncheck.record(h) is h
    assert rnncheck.record(h, name="x", time_dim=0, decay=torch.ones(3, 4)) is h


def test_a_record_of_something_else_is_a_warning_not_an_error():
    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(2, 2).double()

        def forward(self, x):
            rnncheck.record("not a tensor", name="odd")
            return self.lin(x)

    result, d = _flow(Odd(), torch.randn(4, 2, dtype=torch.float64))
    flow = next(c for c in result.checks if c.name == "flow")
    assert flow.verdict == "warn" and "not a floating-point tensor" in flow.findings[0].message
    assert result.verdict == "warn" and "rnncheck.record" in d.not_computed["all"]
