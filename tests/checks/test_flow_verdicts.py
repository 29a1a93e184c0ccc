"""Flow verdicts a user can act on: against the horizon the task needs, about the k-steps-back decay,
with the limiting layer and gate named, and diagnose's summary in its own words."""

from __future__ import annotations

import json

from click.testing import CliRunner
from helpers import EXAMPLES

from rnncheck import main


def _run(*args):
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_the_verdict_is_against_the_horizon_the_task_needs(tmp_path):
    out = tmp_path / "r.json"
    model = f"{EXAMPLES / 'lstm_module.py'}"
    _run("verify", model, "--no-reference", "--json", str(out))
    default = json.loads(out.read_text())["cases"][0]["diagnostics"]
    assert default["gradient_flow"] == "vanishing" and default["thresholds"]["horizon_steps"] is None
    _run("verify", model, "--no-reference", "--horizon", "3", "--json", str(out))
    short = json.loads(out.read_text())["cases"][0]["diagnostics"]
    assert short["gradient_flow"] == "healthy" and short["thresholds"]["horizon_steps"] == 3
    _run("verify", model, "--no-reference", "--horizon", "3", "--fail-on", "vanishing", "--json", str(out))
    assert json.loads(out.read_text())["cases"][0]["verdict"] == "pass"  # a memory of 3 steps is what was asked


def test_the_verdict_says_what_it_is_about_and_which_layer_and_gate_limit_it():
    code, out = _run("verify", str(EXAMPLES / "lstm_module.py"), "--no-reference", "--no-color")
    line = next(s for s in out.splitlines() if "gradient_flow:" in s)
    assert "the layer that limits the memory" in line and "k-steps-back decay, not the per-step profile" in line
    assert "the memory is set by the f gate" in line and "Bengio, Simard & Frasconi" in line
    assert any("steps back (the verdict's)" in s for s in out.splitlines())  # shown beside the profile


def test_a_flat_profile_shows_the_decay_the_vanishing_verdict_is_about():
    code, out = _run("verify", f"{EXAMPLES / 'article_rnn.py'}::article_rnn_corrected", "--no-color")
    lines = out.splitlines()
    i = next(k for k, s in enumerate(lines) if s.strip().startswith("reference/l0"))
    assert "k=0..99 steps back (the verdict's)" in lines[i + 1]


def test_a_numpy_case_explains_its_flow_verdict_as_a_torch_model_does():
    """The NumPy reference's recording is measured by the same steps: the verdict comes with the line that
    names the limiting layer, its decay and the rule."""
    code, out = _run("verify", f"{EXAMPLES / 'article_rnn.py'}::article_rnn_corrected", "--no-color")
    line = next(s for s in out.splitlines() if "gradient_flow:" in s)
    assert "vanishing through time in reference/l0, the layer that limits the memory" in line
    assert "ρ̂ = 0.257" in line and "(rule:" in line


def test_diagnose_counts_flow_verdicts_and_does_not_blame_a_layers_backward_in_numpy_code():
    code, out = _run(
        "diagnose", str(EXAMPLES / "article_rnn.py"), str(EXAMPLES / "flow_exploding_rnn.py"), "--no-color"
    )
    last = out.strip().splitlines()[-1]
    assert last.startswith("0 healthy, 2 vanishing, 1 exploding, 0 not measured")
    assert "passed" not in last and "fused_mismatch" not in out and "the layer's own backward" not in out
    assert "reference_differs" in out and "rnncheck verify says" in out


def test_a_profile_at_500_steps_is_exact_where_float64_holds_it():
    import numpy as np
    import torch

    import rnncheck

    torch.manual_seed(0)
    rnn = torch.nn.RNN(2, 4).double()
    with torch.no_grad():  # near 0 tanh is linear: the gradient falls by 0.3 a step, to ~1e-261 at 499 back
        rnn.weight_hh_l0.copy_(0.3 * torch.eye(4))
        rnn.bias_hh_l0.zero_()
        rnn.bias_ih_l0.zero_()
    x = 1e-3 * torch.randn(500, 1, 2, dtype=torch.float64)
    result = rnncheck.verify_case(
        rnncheck.TorchCase(rnn, inputs=(x,), loss=lambda out: out[0][-1].sum()), rnncheck.Options(gradient=False)
    )
    profile = np.array(result.diagnostics.layers[0].profile)
    assert (profile > 0).all()  # no step rounds to an exact zero (an unscaled norm gave 0.0 below ~1e-154)
    assert 1e-270 < profile[0] < 1e-250 and abs(np.log10(profile[1] / profile[0]) - np.log10(1 / 0.3)) < 0.01
