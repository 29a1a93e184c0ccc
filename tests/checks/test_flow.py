"""Gradient-flow diagnostics: the twin's profile is the reference's adjoints, verdicts, non-finite values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from helpers import EXAMPLES, load_module, rel_err

import rnncheck
from rnncheck import CellCase, Options, verify_case
from rnncheck import reference as R
from rnncheck.convert import from_torch


def _diagnose(case, **kw):
    return verify_case(case, Options(gradient=False, **kw))


@pytest.mark.parametrize("cls", [torch.nn.LSTM, torch.nn.GRU, torch.nn.RNN])
def test_twin_profile_equals_reference_total_adjoints(cls):
    torch.manual_seed(0)
    module = cls(3, 5, num_layers=2, bidirectional=True).double()
    x = torch.randn(9, 2, 3, dtype=torch.float64)
    w = torch.randn(9, 2, 10, dtype=torch.float64)
    result = _diagnose(rnncheck.TorchCase(module, inputs=(x,), loss=lambda out: (out[0] * w).sum()))
    layers = result.diagnostics.layers
    assert [layer.name for layer in layers] == ["rnn/l0", "rnn/l0_reverse", "rnn/l1", "rnn/l1_reverse"]
    twin = result.diagnostics.twin  # the states come from an unrolled twin, which must reproduce the fused module
    assert twin.fused_layers == 1 and twin.reproduces and twin.max_rel_diff < 1e-12

    spec, params = from_torch(module)
    _, _, cache = R.forward(spec, params, x.numpy())
    g = R.backward(cache, w.numpy())
    for k, layer in enumerate(layers):
        expected = np.linalg.norm(g.dh[k].reshape(9, -1), axis=1)  # per time step
        assert rel_err(np.array(layer.profile), expected) <= 1e-10, layer.name
        if cls is torch.nn.LSTM:
            expected_c = np.linalg.norm(g.dc[k].reshape(9, -1), axis=1)
            assert rel_err(np.array(layer.profile_c), expected_c) <= 1e-10


FLOW_EXAMPLES = {
    "flow_vanishing_rnn.py": ("vanishing_rnn", "vanishing"),
    "flow_exploding_rnn.py": ("exploding_rnn", "exploding"),
    "flow_healthy_lstm.py": ("healthy_lstm", "healthy"),
}


@pytest.mark.parametrize("file", FLOW_EXAMPLES)
def test_each_flow_verdict_is_reached_on_its_model_only(file):
    fn_name, verdict = FLOW_EXAMPLES[file]
    module = load_module(EXAMPLES / file)
    result = _diagnose(getattr(module, fn_name)())
    d = result.diagnostics
    assert d.gradient_flow == verdict
    # the verdict comes with its numbers and thresholds
    assert d.thresholds["vanishing"]["source"] and d.layers[0].rho is not None
    others = {v for f, (_, v) in FLOW_EXAMPLES.items() if f != file}
    assert d.gradient_flow not in others


def test_case_without_recurrence_has_null_flow_and_says_why():
    model = torch.nn.Linear(3, 2)
    result = verify_case(rnncheck.TorchCase(model, inputs=(torch.randn(4, 3),)), Options())
    assert result.diagnostics.gradient_flow is None
    assert "cannot see the hidden states" in result.diagnostics.not_computed["all"]


class NaNAt(torch.nn.Module):
    """A tanh cell whose input carries a NaN at one step."""

    def __init__(self):
        super().__init__()
        self.cell = torch.nn.RNNCell(2, 4)

    def forward(self, x, h):
        return self.cell(x, h)


def test_nan_planted_at_a_step_is_located_at_that_step():
    torch.manual_seed(0)
    x = torch.randn(12, 3, 2)
    x[7, 1, 0] = float("nan")
    result = _diagnose(CellCase(torch.nn.RNNCell(2, 4), x, torch.zeros(3, 4)))
    d = result.diagnostics
    assert d.gradient_flow == "nonfinite"  # a NaN never reads as healthy, nor as exploding when it is in the data
    bad = d.layers[0].nonfinite
    assert {k: bad.to_json()[k] for k in ("layer", "step", "tensor", "pass", "cause")} == {
        "layer": "cell",
        "step": 7,
        "tensor": "h",
        "pass": "forward",
        "cause": "input",
    }
    assert bad.source["index"] == [7, 1, 0]


class _InfGradAt(torch.autograd.Function):
    """Identity forward; the backward returns inf at one chosen step."""

    @staticmethod
    def forward(ctx, h, bad):
        ctx.bad = bad
        return h.clone()

    @staticmethod
    def backward(ctx, g):
        return (g * float("inf") if ctx.bad else g), None


class BackwardBlowsUpAt(torch.nn.Module):
    def __init__(self, step):
        super().__init__()
        self.cell = torch.nn.RNNCell(2, 4)
        self.step, self.t = step, 0

    def forward(self, x, h):
        out = _InfGradAt.apply(self.cell(x, h), self.t % 12 == self.step)
        self.t += 1
        return out


def test_nonfinite_in_the_backward_is_located():
    """Step 5's backward turns its gradient infinite: the first non-finite adjoint is dL/dh_4, which it feeds."""
    torch.manual_seed(0)
    cell = BackwardBlowsUpAt(step=5)
    x = torch.randn(12, 3, 2)
    case = CellCase(cell, x, torch.zeros(3, 4))
    result = _diagnose(case)
    bad = result.diagnostics.layers[0].nonfinite
    assert {k: bad.to_json()[k] for k in ("layer", "step", "tensor", "pass", "cause")} == {
        "layer": "cell",
        "step": 4,
        "tensor": "dL/dh",
        "pass": "backward",
        "cause": "overflow",
    }
    assert result.diagnostics.gradient_flow == "exploding"


def test_cellcase_checks_a_custom_cell_and_fails_a_wrong_backward():
    class Scale(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a):
            ctx.save_for_backward(a)
            return torch.tanh(a)

        @staticmethod
        def backward(ctx, g):
            (a,) = ctx.saved_tensors
            return g * (1 - torch.tanh(a) ** 2) * 1.5  # wrong by 50%

    class Cell(torch.nn.Module):
        def __init__(self, wrong):
            super().__init__()
            self.lin = torch.nn.Linear(6, 4)
            self.wrong = wrong

        def forward(self, x, h):
            a = self.lin(torch.cat([x, h], dim=-1))
            return Scale.apply(a) if self.wrong else torch.tanh(a)

    torch.manual_seed(0)
    x = torch.randn(10, 3, 2)
    good = verify_case(CellCase(Cell(False), x, torch.zeros(3, 4)), Options())
    bad = verify_case(CellCase(Cell(True), x, torch.zeros(3, 4)), Options())
    assert good.verdict == "pass" and good.diagnostics.gradient_flow in ("vanishing", "healthy")
    assert bad.verdict == "fail"


def test_lstm_gates_report_saturation_and_forget_timescale():
    torch.manual_seed(0)
    model = torch.nn.LSTM(3, 6)
    with torch.no_grad():
        model.bias_ih_l0[6:12] = 20.0  # forget gate always ~1
    result = _diagnose(rnncheck.TorchCase(model, inputs=(torch.randn(15, 2, 3),)))
    gates = result.diagnostics.layers[0].gates
    assert gates.gates["f"].above == 1.0
    assert gates.timescale.gate == "f" and gates.timescale.steps > 1e5


def test_pascanu_bound_and_spectral_numbers_for_a_plain_rnn():
    torch.manual_seed(0)
    model = torch.nn.RNN(2, 4)
    with torch.no_grad():
        model.weight_hh_l0.copy_(0.5 * torch.eye(4))
    x = torch.randn(6, 1, 2)
    result = _diagnose(rnncheck.TorchCase(model, inputs=(x,)), spectral=True)
    s = result.diagnostics.layers[0].structure
    assert abs(s.blocks["W_hh"].sigma_max - 0.5) < 1e-6 and abs(s.blocks["W_hh"].spectral_radius - 0.5) < 1e-6
    assert s.pascanu.reading == "vanishing guaranteed"
    # without --spectral the eigensolves do not run, and the report says how to ask for them
    plain = _diagnose(rnncheck.TorchCase(model, inputs=(x,)))  # the same input: only --spectral differs
    assert "--spectral" in plain.diagnostics.layers[0].structure.reason
    assert plain.diagnostics.gradient_flow == result.diagnostics.gradient_flow  # no verdict reads the spectrum


def test_jacobian_power_iteration_on_a_linear_recurrence():
    model = torch.nn.RNN(1, 3, nonlinearity="relu", bias=True).double()
    with torch.no_grad():
        model.weight_hh_l0.copy_(torch.diag(torch.tensor([0.9, 0.5, 0.2], dtype=torch.float64)))
        model.bias_hh_l0.fill_(10.0)  # every unit active: the recurrence is linear
    x = torch.zeros(9, 1, 1, dtype=torch.float64)
    result = verify_case(rnncheck.TorchCase(model, inputs=(x,)), Options(gradient=False, jacobian=True))
    norms = result.diagnostics.layers[0].jacobian.norms
    for lag, value in norms.items():  # four iterations: converged to (0.5/0.9)^(8·lag)
        assert abs(value - 0.9 ** int(lag)) <= 1e-3 * 0.9 ** int(lag)


def test_lyapunov_exponents_of_a_linear_recurrence():
    model = torch.nn.RNN(1, 2, nonlinearity="relu").double()
    with torch.no_grad():
        model.weight_hh_l0.copy_(torch.diag(torch.tensor([0.8, 0.5], dtype=torch.float64)))
        model.bias_hh_l0.fill_(5.0)
    x = torch.zeros(40, 1, 1, dtype=torch.float64)
    result = verify_case(rnncheck.TorchCase(model, inputs=(x,)), Options(gradient=False, lyapunov=True))
    lyap = result.diagnostics.layers[0].lyapunov
    assert np.allclose(lyap.exponents[:2], [math.log(0.8), math.log(0.5)], atol=1e-4)
    assert lyap.log_base == "e" and lyap.warmup_steps == 10


def test_nonfinite_recurrent_weight_leaves_the_structure_uncomputed_and_the_location_reported():
    model = torch.nn.RNN(3, 200)
    with torch.no_grad():
        model.weight_hh_l0[0, 0] = float("nan")
    result = verify_case(
        rnncheck.TorchCase(model, inputs=(torch.randn(5, 2, 3),)), Options(gradient=False, spectral=True)
    )
    flow = next(c for c in result.checks if c.name == "flow")
    assert flow.verdict != "error", [f.message for f in flow.findings]
    assert "non-finite" in result.diagnostics.layers[0].structure.reason
    assert any("weight_hh_l0[0, 0]" in f.message for f in flow.findings)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gate_statistics_equal_direct_comparisons_at_the_bin_edges(dtype):
    """The gate shares are read from the histogram, whose bins are computed exactly: values on and one float32 step
    beside every edge and threshold must be counted as comparing each value with the thresholds counts them."""
    from rnncheck.checks.flow import GATE_BINS, _gates  # internal structure under test

    torch.manual_seed(0)
    edges = torch.linspace(0, 1, GATE_BINS + 1, dtype=torch.float64).float()
    near = torch.cat([edges, torch.nextafter(edges, torch.tensor(2.0)), torch.nextafter(edges, torch.tensor(-2.0))])
    sig = torch.cat([near.clamp(0, 1), torch.rand(5000)]).to(dtype)
    tanh = torch.cat([(2 * near - 1).clamp(-1, 1), torch.rand(5000) * 2 - 1]).to(dtype)
    for values in (sig, torch.cat([sig[:-1], torch.tensor([float("nan")], dtype=dtype)])):
        stats = _gates("lstm", {"f": values[None], "g": tanh[None]}, 1).gates
        a, t = values.float().double(), tanh.float().double()  # compared as the report reads them: in float32
        n = len(values)
        assert stats["f"].below == float((a < 0.1).sum()) / n and stats["f"].above == float((a > 0.9).sum()) / n
        assert stats["g"].saturated == float((t.abs() > 0.9).sum()) / n
        finite = a[torch.isfinite(a)]
        bounds = np.linspace(0, 1, GATE_BINS + 1)  # bin k is [k/20, (k+1)/20), the last one closed
        direct = [
            int(((finite >= lo) & ((finite <= hi) if hi == 1.0 else (finite < hi))).sum())
            for lo, hi in zip(bounds[:-1], bounds[1:])
        ]
        assert stats["f"].histogram.counts == direct
        assert sum(stats["g"].histogram.counts) == len(tanh)
    # a value outside the gate's range (a custom cell's) is left out of the histogram, and still counted as above
    odd = _gates("lstm", {"f": torch.tensor([[0.5, 1.5, 0.95]], dtype=dtype)}, 1).gates["f"]
    assert sum(odd.histogram.counts) == 2 and odd.above == 2 / 3
