"""verify_case: a check that only measures cannot overturn the verdicts of the checks that judge."""

from __future__ import annotations

import torch

import rnncheck


class Flaky(torch.nn.Module):
    """A GRU whose forward raises once it has been called ``limit`` times.  It shows its output with rnncheck.record,
    so the flow check runs it again (a plain fused layer's states come from the gradient call's own capture)."""

    def __init__(self, limit):
        super().__init__()
        self.rnn = torch.nn.GRU(3, 4).double()
        self.calls, self.limit = 0, limit

    def forward(self, x):
        self.calls += 1
        if self.calls > self.limit:
            raise ValueError("boom in forward")
        return rnncheck.record(self.rnn(x)[0], name="gru", time_dim=0)


def test_an_exception_in_the_flow_check_leaves_a_passed_case_a_warn_named_as_the_users():
    torch.manual_seed(0)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    counting = Flaky(10**9)
    before = rnncheck.verify_case(rnncheck.TorchCase(counting, inputs=(x,)), rnncheck.Options(diagnostics=False))
    assert before.verdict == "pass"
    flaky = Flaky(counting.calls)  # raises on the first call after the checks that judge: in the flow check
    flaky.load_state_dict(counting.state_dict())
    result = rnncheck.verify_case(rnncheck.TorchCase(flaky, inputs=(x,)))
    verdicts = {c.name: c.verdict for c in result.checks}
    assert verdicts["gradient"] == "pass" and verdicts["flow"] == "warn" and result.verdict == "warn"
    message = next(f.message for c in result.checks if c.name == "flow" for f in c.findings)
    assert "ValueError: boom in forward" in message and __file__ in message and "internal error" not in message
    assert result.error is None


def test_a_failure_outranks_a_setup_error_which_keeps_its_own_row_and_names_every_missing_parameter():
    import sys

    from helpers import MODELS

    sys.path.insert(0, str(MODELS))
    try:
        import numpy_bptt_bugs as M
    finally:
        sys.path.remove(str(MODELS))
    case = rnncheck.NumpyCase(
        M.params(),
        M.loss,
        lambda p: M.bptt(p, transpose=False),
        reference="rnn_tanh",
        reference_map={"weight_ih_l0": "W_xh"},  # W_hh and b_h left out
        inputs=M.X[:, None, :],
    )
    result = rnncheck.verify_case(case, rnncheck.Options(diagnostics=False))
    verdicts = {c.name: c.verdict for c in result.checks}
    assert result.verdict == "fail" and verdicts["gradient"] == "fail" and verdicts["reference"] == "error"
    message = next(f.message for c in result.checks if c.name == "reference" for f in c.findings)
    assert "weight_hh_l0, bias_ih_l0, bias_hh_l0" in message and "W_xh, W_hh, b_h" in message
    assert result.error is None
    report = rnncheck.verify([case], rnncheck.Options(diagnostics=False))
    assert report.summary["fail"] == 1 and report.summary["error"] == 0
