"""Ordinary models get a real verdict, never "internal error"; user mistakes are named as the user's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from rnncheck.cli import main

MODELS = Path(__file__).parent / "models" / "ordinary_models.py"


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("ordinary") / "r.json"
    result = CliRunner().invoke(main, ["verify", str(MODELS), "--json", str(out)], catch_exceptions=False)
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


def test_layers_the_reference_does_not_cover_yet_are_named_not_silently_skipped(tmp_path):
    model = tmp_path / "m.py"
    model.write_text(
        "import torch, rnncheck\n"
        "@rnncheck.case\ndef proj():\n    torch.manual_seed(0)\n"
        "    return rnncheck.TorchCase(torch.nn.LSTM(4, 8, proj_size=3).double(), inputs=(torch.randn(6, 2, 4, dtype=torch.float64),))\n"
        "@rnncheck.case\ndef nobias():\n    torch.manual_seed(0)\n"
        "    return rnncheck.TorchCase(torch.nn.GRU(4, 8, bias=False).double(), inputs=(torch.randn(6, 2, 4, dtype=torch.float64),))\n"
    )
    out_json = tmp_path / "r.json"
    result = CliRunner().invoke(main, ["verify", str(model), "--json", str(out_json)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "nn.LSTM with proj_size is not supported by the reference yet" in out
    assert "no nn.RNN/nn.LSTM/nn.GRU inside" not in out
    # bias=False is supported: the reference with zero biases, compared and diagnosed
    nobias = next(c for c in json.loads(out_json.read_text())["cases"] if c["name"] == "nobias")
    assert {c["name"] for c in nobias["checks"]} >= {"gradient", "reference", "flow"}
    assert any(f["kind"] == "forward_match" for f in nobias["findings"])
    assert nobias["diagnostics"]["gradient_flow"] is not None


@pytest.mark.parametrize("kind", ["LSTM", "GRU", "RNN"])
def test_the_unrolled_twin_reproduces_layers_built_without_biases(kind):
    import torch

    import rnncheck.twins  # the twin itself: what the flow profile stands on

    torch.manual_seed(0)
    fused = getattr(torch.nn, kind)(3, 5, num_layers=2, bidirectional=True, bias=False).double()
    x = torch.randn(7, 2, 3, dtype=torch.float64)
    out_fused, _ = fused(x)
    out_twin, _ = rnncheck.twins.Twin(fused)(x)
    assert torch.allclose(out_fused, out_twin, atol=1e-12)
