"""Checks that no other test plants a bug for: each is shown failing (or warning) on one here."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rnncheck
from rnncheck import Options, verify_case

FAST = Options(diagnostics=False)


def _quad(grad, loss=None):
    p = {"w": np.array([1.0, -2.0, 0.5])}
    return rnncheck.NumpyCase(p, loss=loss or (lambda q: float((q["w"] ** 2).sum())), grad=grad)


def test_gradient_reporting_another_loss_is_inconsistent_loss():
    case = _quad(lambda q: (float((q["w"] ** 2).sum()) + 1.0, {"w": 2 * q["w"]}))
    result = verify_case(case, FAST)
    assert result.verdict == "fail"
    assert [f for f in result.findings if f.kind == "inconsistent_loss"]


def test_nan_in_the_gradient_of_a_finite_loss_is_named():
    def grad(q):
        g = 2 * q["w"]
        g[1] = np.nan
        return {"w": g}

    result = verify_case(_quad(grad), FAST)
    bad = [f for f in result.findings if f.kind == "nonfinite_gradient"]
    assert result.verdict == "fail" and bad and bad[0].location["index"] == [1]


@pytest.mark.parametrize("cls", [torch.nn.GRU, torch.nn.LSTM])
def test_twin_that_does_not_reproduce_the_fused_layer_is_reported(monkeypatch, cls):
    from rnncheck import twins

    # one activation of the twin's equations off by 1%: the candidate's, and the LSTM's cell state on its way out
    acts, name = (twins._GRU_ACTS, "n") if cls is torch.nn.GRU else (twins._LSTM_ACTS, "c")
    real = acts[name]
    monkeypatch.setitem(acts, name, lambda a: real(a) * 1.01)
    torch.manual_seed(0)
    result = verify_case(
        rnncheck.TorchCase(cls(3, 4).double(), inputs=(torch.randn(6, 2, 3, dtype=torch.float64),)), Options()
    )
    assert [f for f in result.findings if f.kind == "twin_mismatch"]
    assert result.verdict == "warn"
    assert result.diagnostics.twin.reproduces is False and result.diagnostics.twin.max_rel_diff > 1e-3


def test_fused_layer_that_differs_from_the_reference_is_reported(monkeypatch):
    from rnncheck.reference import gru

    real = gru.backward

    def wrong(dh_out, dh_T, cache):
        grads, dx, dstate, adj = real(dh_out, dh_T, cache)
        grads["W_hh"] = grads["W_hh"] * 1.1
        return grads, dx, dstate, adj

    monkeypatch.setattr(gru, "backward", wrong)
    torch.manual_seed(0)
    result = verify_case(
        rnncheck.TorchCase(torch.nn.GRU(3, 4).double(), inputs=(torch.randn(6, 2, 3, dtype=torch.float64),)), FAST
    )
    bad = [f for f in result.findings if f.kind == "fused_mismatch"]
    assert bad and bad[0].tensor == "weight_hh_l0" and result.verdict == "warn"


def test_head_that_is_not_the_cases_loss_is_a_reference_mismatch():
    from rnncheck import reference as R

    rng = np.random.default_rng(0)
    spec = R.Spec("rnn_tanh", 3, 4)
    params = spec.init_params(rng)
    x, w = rng.normal(size=(5, 2, 3)), rng.normal(size=(5, 2, 4))

    def loss(p):
        return float((R.forward(spec, p, x)[0] * w).sum())

    def grad(p):
        _, _, cache = R.forward(spec, p, x)
        return R.backward(cache, w).params

    case = rnncheck.NumpyCase(
        params, loss=loss, grad=grad, reference="rnn_tanh", inputs=x, head=lambda h, _p: float((h * 2 * w).sum())
    )
    result = verify_case(case, FAST)
    assert [f for f in result.findings if f.kind == "reference_mismatch"]
    assert result.verdict == "warn"


def test_a_tensor_the_probes_cannot_resolve_is_unchecked_and_the_case_a_warn():
    """bfloat16 rounding leaves the probes unable to see even a 100% error in one entry: that is said, not passed."""
    import torch

    import rnncheck

    torch.manual_seed(0)
    model = torch.nn.GRU(3, 4).to(torch.bfloat16)
    case = rnncheck.TorchCase(model, inputs=(torch.randn(5, 2, 3).to(torch.bfloat16),))
    result = rnncheck.verify_case(case, rnncheck.Options(diagnostics=False, reference=False))
    gradient = next(c for c in result.checks if c.name == "gradient")
    # the weights' power is several times 100% in bfloat16; the biases, probed along their own gradient's
    # signs, may be resolved: every row is one or the other, never a plain pass of a weight
    assert {r.name for r in gradient.tensors if r.verdict == "unchecked"} >= {"weight_ih_l0", "weight_hh_l0"}
    assert {r.verdict for r in gradient.tensors} <= {"unchecked", "pass"}
    assert result.verdict == "warn"
    finding = next(f for f in gradient.findings if f.kind == "unchecked")
    assert "would pass unseen" in finding.message and "--probes" in finding.message
    # the same model in float64 is checked: every tensor passes
    case64 = rnncheck.TorchCase(model.double(), inputs=(torch.randn(5, 2, 3, dtype=torch.float64),))
    assert rnncheck.verify_case(case64, rnncheck.Options(diagnostics=False, reference=False)).verdict == "pass"
