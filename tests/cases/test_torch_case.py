"""Ordinary models get a real verdict, never "internal error"; user mistakes are named as the user's."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from helpers import MODELS

from rnncheck import main

MODEL_FILE = MODELS / "ordinary_models.py"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("ordinary") / "r.json"
    result = CliRunner().invoke(main, ["verify", str(MODEL_FILE), "--json", str(out)], catch_exceptions=False)
    assert "internal error" not in result.output, result.output
    assert "Traceback" not in result.output
    return {c["name"]: c for c in json.loads(out.read_text())["cases"]}


def checks(case):
    return {c["name"]: c["verdict"] for c in case["checks"]}


def test_an_lstm_fed_a_packed_sequence_is_checked_compared_and_diagnosed(report):
    case = report["packed_lstm"]
    assert case["verdict"] == "pass", case["error"]
    assert checks(case) == {"sanity": "pass", "gradient": "pass", "reference": "pass", "flow": "pass"}
    assert any(f["kind"] == "forward_match" for f in case["findings"])
    assert case["diagnostics"]["gradient_flow"] in ("healthy", "vanishing")


def test_layers_called_out_of_registration_order_are_matched_by_identity(report):
    case = report["layers_out_of_order"]
    assert case["verdict"] == "pass", case["error"]
    matched = [f["message"] for f in case["findings"] if f["kind"] == "forward_match"]
    assert len(matched) == 2 and any("(first)" in m for m in matched) and any("(second)" in m for m in matched)


def test_a_zero_d_parameter_is_checked_and_its_wrong_gradient_found(report):
    assert report["zero_d_param"]["verdict"] == "pass", report["zero_d_param"]["error"]
    wrong = report["zero_d_param_wrong"]
    assert wrong["verdict"] == "fail"
    rows = {r["name"]: r["verdict"] for c in wrong["checks"] for r in c["tensors"]}
    assert rows == {"a": "fail", "w": "pass"}


def test_a_bfloat16_model_gets_a_verdict(report):
    case = report["bf16_gru"]
    assert case["verdict"] in ("pass", "warn"), case["error"]
    numbers = next(c["numbers"] for c in case["checks"] if c["name"] == "gradient")
    assert numbers["model_dtype"] == "bfloat16" and numbers["numeric_dtype"] == "float64"


def test_a_softmax_cross_entropy_head_gives_no_false_reference_warning(report):
    case = report["numpy_rnn_softmax_head"]
    assert case["verdict"] == "pass", [f["message"] for f in case["findings"] if f["verdict"] != "note"]
    assert checks(case)["reference"] == "pass"


def test_the_same_head_still_catches_a_truncated_backward(report):
    case = report["numpy_rnn_softmax_head_truncated"]
    assert case["verdict"] == "fail"
    assert checks(case)["reference"] == "fail"


def test_user_mistakes_are_named_as_the_users(report):
    assert "grad() returned a list" in report["grad_wrong_type"]["error"]
    detached = report["detached_loss"]["error"]
    assert "detached" in detached and "site-packages" not in detached and "torch/autograd" not in detached


PROJ_MODELS = """
import torch, rnncheck

def _lstm(**kw):
    torch.manual_seed(0)
    return torch.nn.LSTM(4, 8, proj_size=3, **kw).double()

@rnncheck.case
def proj():
    return rnncheck.TorchCase(_lstm(), inputs=(torch.randn(6, 2, 4, dtype=torch.float64),))

@rnncheck.case
def proj_stack():
    model = _lstm(num_layers=2, bidirectional=True, batch_first=True)
    return rnncheck.TorchCase(model, inputs=(torch.randn(2, 6, 4, dtype=torch.float64),))

@rnncheck.case
def proj_wrong_grad():
    model = _lstm()
    model.weight_hr_l0.register_hook(lambda g: g * 1.05)  # a planted 5% error in the projection's gradient
    return rnncheck.TorchCase(model, inputs=(torch.randn(6, 2, 4, dtype=torch.float64),))

@rnncheck.case
def nobias():
    torch.manual_seed(0)
    return rnncheck.TorchCase(torch.nn.GRU(4, 8, bias=False).double(), inputs=(torch.randn(6, 2, 4, dtype=torch.float64),))
"""


@pytest.fixture(scope="module")
def proj_report(tmp_path_factory):
    folder = tmp_path_factory.mktemp("proj")
    (folder / "m.py").write_text(PROJ_MODELS)
    out_json = folder / "r.json"
    result = CliRunner().invoke(
        main, ["verify", str(folder / "m.py"), "--spectral", "--json", str(out_json)], catch_exceptions=False
    )
    assert "internal error" not in result.output and "Traceback" not in result.output, result.output
    return result, {c["name"]: c for c in json.loads(out_json.read_text())["cases"]}


@pytest.mark.parametrize("name", ["proj", "proj_stack", "nobias"])
def test_lstm_projections_and_layers_without_biases_are_compared_and_diagnosed(proj_report, name):
    _, cases = proj_report
    case = cases[name]
    assert case["verdict"] == "pass", [f["message"] for f in case["findings"]]
    assert checks(case) == {"sanity": "pass", "gradient": "pass", "reference": "pass", "flow": "pass"}
    assert any(f["kind"] == "forward_match" for f in case["findings"])
    flow = case["diagnostics"]
    assert flow["gradient_flow"] is not None
    if name != "nobias":  # the gates see W_hh W_hr: four square H x H blocks
        assert set(flow["layers"][0]["structure"]) >= {"i", "f", "g", "o"}


def test_a_wrong_projection_gradient_in_the_layer_is_caught_and_named_by_the_reference(proj_report):
    # the hook changes the layer's own backward (what the reference compares), a library
    # layer's mismatch is a warn; the 5% is measured, not just flagged
    _, cases = proj_report
    case = cases["proj_wrong_grad"]
    assert case["verdict"] == "warn"
    assert checks(case)["reference"] == "warn"
    [bad] = [f for f in case["findings"] if f["kind"] == "fused_mismatch"]
    assert bad["tensor"] == "weight_hr_l0"
    assert "rel err 0.05" in bad["message"]


@pytest.mark.parametrize(
    "kind, extra",
    [("LSTM", {"bias": False}), ("GRU", {"bias": False}), ("RNN", {"bias": False}), ("LSTM", {"proj_size": 2})],
)
def test_the_unrolled_twin_reproduces_layers_without_biases_or_with_projections(kind, extra):
    import torch

    import rnncheck.twins  # the twin itself: what the flow profile stands on

    torch.manual_seed(0)
    fused = getattr(torch.nn, kind)(3, 5, num_layers=2, bidirectional=True, **extra).double()
    x = torch.randn(7, 2, 3, dtype=torch.float64)
    out_fused, _ = fused(x)
    out_twin, _ = rnncheck.twins.Twin(fused)(x)
    assert torch.allclose(out_fused, out_twin, atol=1e-12)


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
@pytest.mark.parametrize("given_state", [False, True])
def test_an_unbatched_sequence_is_checked_and_its_flow_measured(kind, given_state):
    # nn.LSTM(x) with x of shape (T, input): the twin used to add a batch axis to its own zero state twice
    import torch

    import rnncheck

    torch.manual_seed(0)
    layer = getattr(torch.nn, kind)(4, 5, num_layers=2).double()
    inputs = [torch.randn(6, 4, dtype=torch.float64)]
    if given_state:
        state = torch.randn(2, 5, dtype=torch.float64)
        inputs.append((state, state.clone()) if kind == "LSTM" else state)
    result = rnncheck.verify_case(rnncheck.TorchCase(layer, inputs=tuple(inputs)), rnncheck.Options())
    assert result.verdict == rnncheck.Verdict.PASS, result.error
    assert result.diagnostics.twin.reproduces
    assert len(result.diagnostics.layers) == 2 and all(len(f.profile) == 6 for f in result.diagnostics.layers)
